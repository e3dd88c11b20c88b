"""Linear mixed models: multilevel against lme4, the mixedlm package and statsmodels MixedLM, side by side.

Problems
--------
sleepstudy     sleepstudy (180 rows), ``Reaction ~ Days + (Days | Subject)``, REML.
insteval       InstEval (73,421 rows), ``y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)``, ML.
insteval_dept  InstEval, ``y ~ service * dept + (1 | s) + (1 | d)`` (28 fixed effects), ML.
nested    generated, 20,000 groups of 50 (1,000,000 rows; ``--n-groups`` sets the size),
          ``y ~ x1 + x2 + x3 + x4 + x5 + (1 + x1 | g)``, REML.
crossed   generated, 1,000,000 rows, two crossed factors with 50,000 and
          5,000 levels, ``y ~ x + (1 | a) + (1 | b)``, ML.
large     as ``nested`` with 200,000 groups (10,000,000 rows); ours only,
          data generated in the fitting process (no CSV). Only with ``--large``
          or ``--only large``; ``--large-lme4`` adds lme4 (CSV of ~1.2 GB).

For every problem but ``large`` the data are written once to a CSV that R
reads, and the tools alternate (ours, ours on one thread, lme4 in each
configuration, mixedlm, statsmodels, ours, ...) ``--repeats`` times, each fit
in a fresh process:

* ours: a subprocess of this script loads the data, then times
  ``multilevel.lmm(formula, df, reml=...)`` (formula handling included), with
  the package's default threads (all cores, or ``--ours-threads`` through
  ``OMP_NUM_THREADS``); "multilevel (1 thread)" is the same after
  ``multilevel.set_num_threads(1)``;
* lme4: ``Rscript r/lmm_fit.R`` reads the CSV, makes the grouping columns
  factors (timed separately as load time), then times ``lmer(...)``, in each
  configuration of ``LME4_CONFIGS`` (``--lme4-configs``): "lme4" is lmer()'s
  defaults on R's reference BLAS (single-threaded); "lme4 (calc.derivs=FALSE)"
  skips the finite-difference gradient and Hessian lme4 computes after the
  optimizer to check convergence; "lme4 (OpenBLAS, calc.derivs=FALSE)" also
  runs R on Debian's multi-threaded OpenBLAS (``libopenblas0-pthread``). Each
  R record says which BLAS and LAPACK R loaded;
* mixedlm (PyPI): a subprocess loads the same data frame and times
  ``mixedlm.lmer(formula, df, REML=...)``;
* statsmodels: a subprocess times ``smf.mixedlm(fixed part, df, groups=...,
  re_formula=...).fit(reml=...)`` with its defaults, on the nested problems and
  sleepstudy; it is not run on crossed designs (the reason is written into the
  results). Its objective is ``-2 llf``, lme4's deviance / REML criterion.

Every fitting process that took less than ``--warm-limit`` seconds (default
120) fits the same model a second time and reports that as the warm time:
R's start-up is never in a fit time, but package loading and first-call costs
are in the first fit. Each fit's status is the tool's own convergence verdict
(ours: ``fit.converged`` and the gradient and Newton steps of ``fit.optsum``;
lme4: the optimizer's return code and ``optinfo$conv$lme4$messages``;
mixedlm: ``converged`` and its gradient norm; statsmodels: ``converged``).

A Python peer's process is killed after ``--py-timeout`` seconds, an R fit
after ``--r-timeout``, and recorded as timed out.

Memory: in each fitting process, RSS just before the fit and the peak RSS
during it (``VmHWM`` after resetting it through ``/proc/self/clear_refs``,
checked against a thread polling ``VmRSS`` every 5 ms); plus the whole
process's ``ru_maxrss`` from ``os.wait4``.

Usage::

    python benchmarks/lmm_vs_lme4.py [--repeats N] [--large]
        [--only sleepstudy|insteval|insteval_dept|nested|crossed|large] [--large-lme4]
        [--lme4-configs default noderivs openblas] [--warm-limit SECONDS]
        [--no-lme4] [--no-mixedlm] [--no-statsmodels] [--out PATH]

Results: a table on stdout and ``benchmarks/results/lmm_vs_lme4.json``
(problems run now replace their earlier entries; others are kept).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DATA_DIR = RESULTS_DIR / "data"
R_SCRIPT = BENCH_DIR / "r" / "lmm_fit.R"
DEFAULT_OUT = RESULTS_DIR / "lmm_vs_lme4.json"

INSTEVAL_FORMULA = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"
INSTEVAL_FACTORS = ["s", "d", "dept", "service"]
INSTEVAL_DEPT_FORMULA = "y ~ service * dept + (1 | s) + (1 | d)"
SLEEPSTUDY_FORMULA = "Reaction ~ Days + (Days | Subject)"
NESTED_FORMULA = "y ~ x1 + x2 + x3 + x4 + x5 + (1 + x1 | g)"
NESTED_NUMERIC = ["y", "x1", "x2", "x3", "x4", "x5"]
CROSSED_FORMULA = "y ~ x + (1 | a) + (1 | b)"

#: Why statsmodels MixedLM is not run on crossed designs.
STATSMODELS_CROSSED_NOTE = (
    "statsmodels not run: MixedLM fits crossed factors only as variance components inside one group "
    "holding every row, with that group's dense n x q design (InstEval: 73,421 x 4,114 doubles, 2.4 GB)")
GROUP_SIZE = 50
#: Seconds under which a fit is followed by a second, warm one in the same process (``--warm-limit``).
WARM_LIMIT = 120.0


class Lme4Config(NamedTuple):
    """One way of running lme4: its row label, the key prefix of its fields in a problem's summary,
    ``lmerControl(calc.derivs = )`` and the BLAS R loads (a key of ``BLAS_DIRS``)."""

    label: str
    prefix: str
    calc_derivs: bool
    blas: str


#: lme4 as run by default (``lmer()``'s defaults, R's reference BLAS) and as a user who knows it would
#: run it for speed: without the post-fit derivative check, and on OpenBLAS (multi-threaded). Keys are
#: the names ``--lme4-configs`` takes.
LME4_CONFIGS = {
    "default": Lme4Config("lme4", "lme4", True, "reference"),
    "noderivs": Lme4Config("lme4 (calc.derivs=FALSE)", "lme4_noderivs", False, "reference"),
    "openblas": Lme4Config("lme4 (OpenBLAS, calc.derivs=FALSE)", "lme4_openblas", False, "openblas"),
}
#: Where Debian keeps each BLAS's libblas.so.3 and liblapack.so.3; each R fit loads the one its
#: configuration names, whatever the system's alternatives point at.
BLAS_DIRS = {"reference": ("/usr/lib/x86_64-linux-gnu/blas", "/usr/lib/x86_64-linux-gnu/lapack"),
             "openblas": ("/usr/lib/x86_64-linux-gnu/openblas-pthread",)}
#: Every row of a problem, in the order the tools alternate: label -> key prefix in its summary. Ours
#: come first: every other row's ratios are taken against them.
TOOLS = {"multilevel": "ours", "multilevel (1 thread)": "ours_1thread",
         **{c.label: c.prefix for c in LME4_CONFIGS.values()}, "mixedlm": "mixedlm", "statsmodels": "statsmodels"}

#: |objective difference| (deviance units) below which both tools are taken
#: to have reached the same optimum.
SAME_OPTIMUM_TOL = 1e-3


def _load_datasets_module() -> Any:
    """benchmarks/datasets.py, imported by path (no clash with other 'datasets')."""
    spec = importlib.util.spec_from_file_location("bench_datasets", BENCH_DIR / "datasets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------
# Memory helpers (Linux /proc)
# --------------------------------------------------------------------------

def proc_status_kb(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS; False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakRssPoller(threading.Thread):
    """Background thread sampling ``VmRSS`` every ``interval`` seconds."""

    def __init__(self, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_kb = proc_status_kb("VmRSS") or 0
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self._sample()
            self._halt.wait(self.interval)

    def _sample(self) -> None:
        kb = proc_status_kb("VmRSS")
        if kb is not None:
            self.samples += 1
            self.peak_kb = max(self.peak_kb, kb)

    def stop(self) -> int:
        """Stop polling; return the peak seen (kB)."""
        self._halt.set()
        self.join()
        self._sample()
        return self.peak_kb


# --------------------------------------------------------------------------
# Worker: one fit of ours in a fresh process
# --------------------------------------------------------------------------

def _import_multilevel() -> Any:
    try:
        import multilevel
    except ImportError:
        sys.path.insert(0, str(REPO_DIR / "python"))
        import multilevel
    return multilevel


def _core_path() -> Path | None:
    """The compiled core of the multilevel package that would be imported, without importing it.

    (The parent process never loads the extension: a rebuild that overwrites
    the file in place would crash a process that has it mapped.)
    """
    spec = importlib.util.find_spec("multilevel")
    if spec is None:
        sys.path.insert(0, str(REPO_DIR / "python"))
        spec = importlib.util.find_spec("multilevel")
    if spec is None or not spec.submodule_search_locations:
        return None
    hits = sorted(Path(next(iter(spec.submodule_search_locations))).glob("_core*.so"))
    return hits[0] if hits else None


def core_fingerprint(path: Path | None = None) -> dict[str, Any]:
    """Path, modification time and sha256 prefix of the compiled core, to tell builds apart."""
    import hashlib

    path = path or _core_path()
    if path is None or not path.exists():
        return {"core_file": None, "core_mtime": None, "core_sha256": None}
    return {
        "core_file": str(path),
        "core_mtime": _dt.datetime.fromtimestamp(path.stat().st_mtime).astimezone().isoformat(timespec="seconds"),
        "core_sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
    }


def _r_level_order(df: Any, factors: list[str]) -> Any:
    """Factor levels in the order R's ``factor()`` gives the CSV columns (numeric if the labels are
    numbers), so both tools drop the same reference level and their coefficients compare."""
    import pandas as pd

    for col in factors:
        if isinstance(df[col].dtype, pd.CategoricalDtype):
            cats = list(df[col].cat.categories)
            numeric = all(str(c).lstrip("-").replace(".", "", 1).isdigit() for c in cats)
            order = sorted(cats, key=lambda c: float(c)) if numeric else sorted(cats)
            df[col] = df[col].cat.reorder_categories(order)
    return df


def _load_problem_data(spec: dict[str, Any]) -> Any:
    if "dataset" in spec:  # a bundled data set
        from multilevel.datasets import load_dataset

        return _r_level_order(load_dataset(spec["dataset"]), spec["factors"])
    return getattr(_load_datasets_module(), spec["generator"])(**spec["kwargs"])


def problem_rows(spec: dict[str, Any]) -> int | None:
    """Rows of a generated problem (None for a bundled data set)."""
    kw = spec.get("kwargs", {})
    if "n_groups" in kw:
        return kw["n_groups"] * kw["group_size"]
    if "n_a" in kw:
        return kw["n_a"] * kw["rows_per_a"]
    return None


def _fit_mixedlm(spec: dict[str, Any], df: Any) -> dict[str, Any]:
    """One ``mixedlm.lmer`` fit (the Rust-backed lme4 port on PyPI); its objective, fixed effects and
    convergence (its ``converged`` flag, optimizer message and norm of the projected gradient)."""
    import mixedlm

    fit = mixedlm.lmer(spec["formula"], df, REML=spec["reml"])
    objective = fit.REMLcrit() if spec["reml"] else fit.deviance
    objective = objective() if callable(objective) else objective
    fixef = fit.fixef() if callable(fit.fixef) else fit.fixef
    return {"version": getattr(mixedlm, "__version__", "?"), "objective": float(objective),
            "fixef": {str(k): float(v) for k, v in fixef.items()},
            "feval": int(getattr(fit, "function_evals", -1) or -1), "converged": bool(fit.converged),
            "optimizer": str(fit.optimizer), "optimizer_message": str(fit.message),
            "gradient_norm": float(fit.gradient_norm)}


def _fit_statsmodels(spec: dict[str, Any], df: Any) -> dict[str, Any]:
    """One ``statsmodels`` ``MixedLM`` fit with its defaults; -2 log-likelihood is lme4's objective."""
    import statsmodels
    import statsmodels.formula.api as smf

    call = spec["statsmodels"]
    fit = smf.mixedlm(call["formula"], df, groups=call["groups"], re_formula=call["re_formula"]).fit(
        reml=spec["reml"])
    return {"version": statsmodels.__version__, "objective": -2.0 * float(fit.llf),
            "fixef": {str(k): float(v) for k, v in fit.fe_params.items()}, "converged": bool(fit.converged),
            "optimizer": str(fit.method)}


#: Python peers fitted in a worker process of this script: tool -> fit function.
PYTHON_PEERS = {"mixedlm": _fit_mixedlm, "statsmodels": _fit_statsmodels}


def _cpu_seconds() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def measure_fit(fit: Callable[[], Any], warm_limit: float) -> tuple[Any, dict[str, Any]]:
    """Call ``fit``: its value and wall and CPU seconds, the RSS before it, the peak RSS during it and the
    warnings it gave. If it took less than ``warm_limit`` seconds, call it once more and time that as
    ``warm_fit_seconds`` (imports, first-call and cache costs left out, as for a second model fitted in a
    session; longer fits are not repeated: their one-off costs are a negligible share)."""
    gc.collect()
    rss_before = proc_status_kb("VmRSS")
    peak_reset = reset_peak_rss()
    poller = PeakRssPoller(0.005)
    poller.start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c0, t0 = _cpu_seconds(), time.perf_counter()
        value = fit()
        fit_seconds, fit_cpu_seconds = time.perf_counter() - t0, _cpu_seconds() - c0
    polled_peak = poller.stop()
    hwm = proc_status_kb("VmHWM") if peak_reset else None
    warm = None
    if fit_seconds < warm_limit:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            fit()
            warm = time.perf_counter() - t0
    return value, {
        "fit_seconds": fit_seconds, "fit_cpu_seconds": fit_cpu_seconds, "warm_fit_seconds": warm,
        "rss_before_fit_kb": rss_before, "peak_rss_fit_kb": max(polled_peak, hwm or 0),
        "peak_rss_fit_hwm_kb": hwm, "peak_rss_fit_polled_kb": polled_peak, "poll_samples": poller.samples,
        "peak_reset": peak_reset, "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught}),
    }


def run_peer_worker(spec: dict[str, Any], out_path: str) -> None:
    """Load one problem, fit it with a Python peer (``spec["tool"]``) and write a JSON record."""
    t0 = time.perf_counter()
    df = _load_problem_data(spec)
    load_seconds = time.perf_counter() - t0
    fitted, figures = measure_fit(lambda: PYTHON_PEERS[spec["tool"]](spec, df), spec["warm_limit"])
    record = {"tool": spec["tool"], "nobs": int(len(df)), "load_seconds": load_seconds, **fitted, **figures}
    record["warnings"] = record["warnings"][:5]
    Path(out_path).write_text(json.dumps(record, indent=1))


def run_worker(spec_path: str, out_path: str) -> None:
    """Load one problem, fit it with ``multilevel.lmm`` (or a Python peer) and write a JSON record."""
    import resource

    import numpy as np

    spec = json.loads(Path(spec_path).read_text())
    if spec.get("tool") in PYTHON_PEERS:
        run_peer_worker(spec, out_path)
        return
    multilevel = _import_multilevel()
    from multilevel import lmm

    if spec.get("threads"):  # the one-thread row; the environment's OMP_NUM_THREADS is left as it is
        multilevel.set_num_threads(spec["threads"])
        threads_set_by = f"multilevel.set_num_threads({spec['threads']})"
    else:
        env = os.environ.get("OMP_NUM_THREADS")
        threads_set_by = f"OMP_NUM_THREADS={env}" if env else "default (all cores)"
    t0 = time.perf_counter()
    df = _load_problem_data(spec)
    load_seconds = time.perf_counter() - t0
    numeric = [c for c in spec["numeric_columns"] if c in df.columns]
    fit, figures = measure_fit(lambda: lmm(spec["formula"], df, reml=spec["reml"]), spec["warm_limit"])
    opt = fit.optsum
    record = {
        "tool": "multilevel",
        "version": getattr(multilevel, "__version__", "?"),
        "multilevel_path": str(Path(multilevel.__file__).parent),
        # multilevel._core is a loader module: the extension it loaded is its _impl
        **core_fingerprint(Path(getattr(multilevel._core, "_impl", multilevel._core).__file__)),
        "core_build": getattr(multilevel._core, "build", None),
        "nobs": int(len(df)),
        "load_seconds": load_seconds,
        **figures,
        "threads": multilevel.get_num_threads(),
        "threads_set_by": threads_set_by,
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "optimizer_seconds": float(opt.elapsed),
        "objective": float(fit.objective),
        "loglik": float(fit.loglik),
        "theta": {str(k): float(v) for k, v in fit.theta.items()},
        "fixef": {str(k): float(v) for k, v in fit.params.items()},
        "se": {str(k): float(v) for k, v in fit.bse.items()},
        "sigma": float(fit.sigma),
        "feval": int(opt.feval),
        "converged": bool(fit.converged),
        "optimizer": str(opt.optimizer),
        "optimizer_return_code": int(opt.return_code),
        "optimizer_message": str(opt.message),
        "gradient": None if opt.gradient is None else [float(g) for g in opt.gradient],
        "max_abs_gradient": None if np.isnan(opt.max_abs_gradient) else float(opt.max_abs_gradient),
        "polish_steps": int(opt.polish_steps),
        "numeric_columns": numeric,
        "numeric_bytes": 8 * len(df) * len(numeric),
        "column_sums": {c: float(np.asarray(df[c], dtype=float).sum()) for c in numeric},
        "self_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    Path(out_path).write_text(json.dumps(record, indent=1))


# --------------------------------------------------------------------------
# Parent: subprocesses, alternation, summary
# --------------------------------------------------------------------------

def run_child(cmd: list[str], timeout: float | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a command; return exit code, wall time, its own ``ru_maxrss`` and CPU time, output tails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        killer = None
        if timeout:
            killer = threading.Timer(timeout, proc.kill)
            killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if killer is not None:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {
            "returncode": proc.returncode,
            "wall_seconds": wall,
            "maxrss_kb": usage.ru_maxrss,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "stdout_tail": out.read().decode(errors="replace")[-2000:],
            "stderr_tail": err.read().decode(errors="replace")[-3000:],
        }


def describe_exit(code: int) -> str:
    """'exit status 1' or 'killed by SIGSEGV' for a subprocess return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def lme4_available() -> tuple[bool, str]:
    """Whether Rscript with lme4 and jsonlite can be run, and why not."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return False, "Rscript not found on PATH"
    code = 'cat(all(sapply(c("lme4", "jsonlite"), requireNamespace, quietly = TRUE)))'
    try:
        res = subprocess.run([rscript, "-e", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"Rscript failed to run: {exc}"
    if res.stdout.strip() != "TRUE":
        return False, "R package lme4 or jsonlite is not installed"
    return True, rscript


def r_blas_env(rscript: str, blas: str) -> tuple[dict[str, str] | None, str | None]:
    """The environment under which Rscript loads ``blas`` (see ``BLAS_DIRS``), or None and why not.

    Debian's R links libblas.so.3 and liblapack.so.3 through the system's alternatives, and its
    ``etc/ldpaths`` puts ``R_LD_LIBRARY_PATH`` (R's lib and /usr/lib/x86_64-linux-gnu, where the
    alternatives' links live) before ``LD_LIBRARY_PATH``: ``LD_LIBRARY_PATH`` alone never wins, so the
    BLAS folders go at the head of ``R_LD_LIBRARY_PATH``. Without Debian's reference-BLAS folders R runs
    as it is; every R record says which BLAS it loaded (checked in :func:`fit_lme4`).
    """
    dirs = BLAS_DIRS[blas]
    found = all(any(Path(d, lib).exists() for d in dirs) for lib in ("libblas.so.3", "liblapack.so.3"))
    if not found:
        if blas == "reference":
            return {}, None
        return None, f"not run: no {blas} BLAS in {', '.join(dirs)} (apt-get install -y libopenblas0-pthread)"
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "R_LD_LIBRARY_PATH")}
    default = subprocess.run([rscript, "-e", 'cat(Sys.getenv("LD_LIBRARY_PATH"))'], env=clean,
                             capture_output=True, text=True, timeout=120, check=False).stdout.strip()  # = R's default
    return {"R_LD_LIBRARY_PATH": ":".join([*dirs, default] if default else dirs)}, None


def run_fit(cmd: list[str], out_path: Path, what: str, timeout: float | None = None,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one fitting process: the JSON record it wrote, with the process's own wall and CPU seconds and
    peak RSS; or an error record (timed out after ``timeout`` seconds, or how the process ended)."""
    child = run_child(cmd, timeout=timeout, env=env)
    if child["returncode"] != 0 or not out_path.exists():
        if timeout and child["returncode"] == -signal.SIGKILL and child["wall_seconds"] >= timeout:
            return {"error": f"timed out (> {timeout:.0f} s)", "timed_out": True, **child}
        return {"error": f"{what} {describe_exit(child['returncode'])}", **child}
    rec = json.loads(out_path.read_text())
    rec.update(process_cpu_seconds=child["cpu_seconds"], process_maxrss_kb=child["maxrss_kb"],
               process_wall_seconds=child["wall_seconds"])
    if child["stderr_tail"].strip():
        rec["stderr_tail"] = child["stderr_tail"]
    return rec


def fit_in_worker(spec: dict[str, Any], workdir: Path, tag: str, timeout: float | None = None,
                  env: dict[str, str] | None = None) -> dict[str, Any]:
    """One fit in a fresh worker process of this script: ours, or the Python peer ``spec["tool"]``."""
    spec_path, out_path = workdir / f"{tag}.spec.json", workdir / f"{tag}.json"
    spec_path.write_text(json.dumps(spec))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", str(spec_path), str(out_path)]
    return run_fit(cmd, out_path, f"{spec.get('tool', 'multilevel')} worker", timeout, env)


def fit_ours(spec: dict[str, Any], workdir: Path, tag: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One fit of ours; says so when the compiled core was rebuilt while it ran."""
    before = core_fingerprint()
    rec = fit_in_worker(spec, workdir, tag, env=env)
    after = core_fingerprint()
    if "error" in rec and before != after:
        rec["error"] += (f" (the compiled core was rebuilt while it ran: {before['core_mtime']} -> "
                         f"{after['core_mtime']})")
    rec["core_changed_during_fit"] = before != after
    return rec


def fit_lme4(rscript: str, csv: Path, spec: dict[str, Any], config: Lme4Config, env: dict[str, str],
             workdir: Path, tag: str, timeout: float) -> dict[str, Any]:
    """One ``lmer`` fit by ``r/lmm_fit.R`` in configuration ``config``; an error record when R did not
    load the BLAS the configuration names."""
    out_path = workdir / f"{tag}.json"
    cmd = [rscript, str(R_SCRIPT), str(csv), spec["formula"], str(spec["reml"]).upper(), str(out_path),
           ",".join(spec["factors"]), str(config.calc_derivs).upper(), str(spec["warm_limit"])]
    return check_blas(run_fit(cmd, out_path, "Rscript", timeout, env), config.blas, env, config.label)


def check_blas(rec: dict[str, Any], blas: str, env: dict[str, str] | None, label: str = "") -> dict[str, Any]:
    """``rec``, made an error record when its R did not load ``blas`` (a key of ``BLAS_DIRS``) although
    it ran under ``env`` (from :func:`r_blas_env`). Runs without an environment (R as it is) and failed
    runs are not checked."""
    if not env or "error" in rec or "blas" not in rec:
        return rec
    dirs = BLAS_DIRS[blas]
    if not all(any(str(rec[k]).startswith(d) for d in dirs) for k in ("blas", "lapack")):
        rec["error"] = f"R loaded {rec['blas']} and {rec['lapack']}, not the {blas} BLAS" + (f" ({label})" if label else "")
    return rec


def r_row_environments(rscript: str | None, why: str, blas_of_row: dict[str, str],
                       notes: dict[str, str | None]) -> dict[str, dict[str, str]]:
    """The environment of each R row (row -> its BLAS in ``blas_of_row``) that can run; for the others
    ``notes[row]`` says why not (``why`` when there is no usable Rscript)."""
    envs = {}
    for row, blas in blas_of_row.items():
        env, notes[row] = r_blas_env(rscript, blas) if rscript else (None, why)
        if env is not None:
            envs[row] = env
    return envs


def csv_path(spec: dict[str, Any]) -> Path:
    """Where a problem's data for R go."""
    if "dataset" in spec:
        return DATA_DIR / f"{spec['dataset']}.csv"
    return DATA_DIR / (spec["generator"] + "".join(f"_{k}{v}" for k, v in sorted(spec["kwargs"].items())) + ".csv")


def write_csv(spec: dict[str, Any], workdir: Path) -> tuple[Path, float]:
    """Write a problem's data for R (in a subprocess); return the path and the seconds it took."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / f"{spec['problem']}.csv-spec.json"
    spec_path.write_text(json.dumps(spec))
    t0 = time.perf_counter()
    child = run_child([sys.executable, str(Path(__file__).resolve()), "--_write-csv", str(spec_path)])
    path = csv_path(spec)
    if child["returncode"] != 0 or not path.exists():
        raise RuntimeError(f"writing {path} failed ({describe_exit(child['returncode'])}): {child['stderr_tail']}")
    return path, time.perf_counter() - t0


def run_write_csv(spec_path: str) -> None:
    """Worker: generate or load a problem's data and write its CSV for R."""
    spec = json.loads(Path(spec_path).read_text())
    path = csv_path(spec)
    if "dataset" in spec:
        _import_multilevel()
        from multilevel.datasets import load_dataset

        load_dataset(spec["dataset"]).to_csv(path, index=False)
    else:
        df = _load_problem_data(spec)
        for col in spec["factors"]:  # integer codes; R makes them factors again
            df[col] = df[col].cat.codes
        df.to_csv(path, index=False, float_format="%.17g")


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _mb(kb: float | None) -> float | None:
    return None if kb is None else kb / 1024.0


def _coef_key(name: str) -> str:
    """A coefficient name in a form both tools share: formulaic's ``dept[T.2]:service[T.1]`` and R's
    ``service1:dept2`` both become ``dept2:service1``."""
    name = "Intercept" if name == "(Intercept)" else name.replace("[T.", "").replace("]", "")
    return ":".join(sorted(name.split(":")))


def max_dbeta_over_se(ours: dict[str, float], se: dict[str, float], theirs: dict[str, float],
                      by_position: bool = False) -> float | None:
    """Largest |their coefficient - ours| in units of our standard error.

    Coefficients are matched by name (formulaic's ``dept[T.2]:service[T.1]``
    = R's ``service1:dept2``). With ``by_position``, for a tool that numbers
    a factor's levels by position (mixedlm: ``dept.1`` is the first level
    after the reference, which R and we call ``dept2``), they are matched by
    position when the names do not match and the counts agree (both tools
    see the same data frame, so the column order is the same). None when
    neither matching applies.
    """
    by_key = {_coef_key(k): v for k, v in theirs.items()}
    if all(_coef_key(k) in by_key for k in ours):
        return max(abs(v - by_key[_coef_key(k)]) / se[k] for k, v in ours.items())
    if by_position and len(theirs) == len(ours):
        return max(abs(v - t) / se[k] for (k, v), t in zip(ours.items(), theirs.values()))
    return None


def matched_by_name(ours: dict[str, float], theirs: dict[str, float]) -> bool:
    """Whether every coefficient of ours has a namesake in ``theirs`` (see :func:`max_dbeta_over_se`)."""
    keys = {_coef_key(k) for k in theirs}
    return all(_coef_key(k) in keys for k in ours)


#: Python peers whose coefficient names number factor levels by position.
NAMES_LEVELS_BY_POSITION = {"mixedlm"}


def status_of(rec: dict[str, Any]) -> str:
    """One fit's status: the error; or "NOT converged" and what the tool said; or "ok" with the tool's own
    measure of the gradient at its optimum (ours and lme4: the largest absolute finite-difference
    gradient of the objective in theta; mixedlm: its norm of the projected gradient), whether lme4
    skipped its derivative check, and our Newton polishing steps."""
    if "error" in rec:
        return rec["error"]
    if not rec.get("converged"):
        return "NOT converged: " + ("; ".join(rec.get("conv_messages") or []) or str(rec.get("optimizer_message")))
    said = ["ok"]
    grad = rec.get("max_abs_gradient", rec.get("gradient_norm"))
    if grad is not None:
        said.append(f"grad {grad:.1e}")  # no "|": the status goes into a markdown cell
    elif rec.get("derivative_check") is False:
        said.append("no derivative check")
    if rec.get("polish_steps"):
        said.append(f"{rec['polish_steps']} Newton step{'s' if rec['polish_steps'] > 1 else ''}")
    return ", ".join(said)


def describe_fit(rec: dict[str, Any]) -> str:
    """One progress line for a fit."""
    if "error" in rec:
        return f"ERROR {rec['error']}: {rec.get('stderr_tail', '')[-800:]}"
    warm, peak = rec.get("warm_fit_seconds"), rec.get("peak_rss_fit_kb")
    said = [f"{rec['fit_seconds']:.2f} s" + ("" if warm is None else f" (warm {warm:.2f} s)"),
            f"load {rec['load_seconds']:.2f} s", f"objective {rec['objective']:.6f}", f"feval {rec.get('feval')}"]
    if peak is not None:
        said.append(f"+{(peak - rec['rss_before_fit_kb']) / 1024:.0f} MB during fit")
    return ", ".join(said + [status_of(rec)])


def summarize_tool(s: dict[str, Any], prefix: str, records: list[dict[str, Any]], note: str | None) -> None:
    """Add one tool's medians, status and (but for ours) ratios and agreement with ours to a problem's
    summary, under ``<prefix>_...`` keys. Ours and our one-thread row must be summarized first."""
    ok = [r for r in records if "error" not in r]
    s[f"{prefix}_errors"] = [r for r in records if "error" in r]
    if note:
        s[f"{prefix}_note"] = note
    if records:  # a failure or non-convergence in any repeat is what the table says
        statuses = [status_of(r) for r in records]
        s[f"{prefix}_status"] = next((x for x in statuses if not x.startswith("ok")), statuses[0])
    if not ok:
        return
    first = ok[0]
    peaks = [r["peak_rss_fit_kb"] - r["rss_before_fit_kb"] for r in ok if r.get("peak_rss_fit_kb") is not None]
    s.update({
        f"{prefix}_version": first.get("version"),
        f"{prefix}_times": [r["fit_seconds"] for r in ok],
        f"{prefix}_median_s": _median([r["fit_seconds"] for r in ok]),
        f"{prefix}_warm_median_s": _median([r["warm_fit_seconds"] for r in ok
                                            if r.get("warm_fit_seconds") is not None]),
        f"{prefix}_cpu_over_wall": _median([r["fit_cpu_seconds"] / r["fit_seconds"] for r in ok
                                            if r.get("fit_cpu_seconds") is not None and r["fit_seconds"] > 0]),
        f"{prefix}_load_s": _median([r["load_seconds"] for r in ok]),
        f"{prefix}_objective": first["objective"],
        f"{prefix}_fixef": first["fixef"],
        f"{prefix}_feval": first.get("feval"),
        f"{prefix}_converged": all(r.get("converged") for r in ok),
        f"{prefix}_warnings": sorted({w for r in ok for w in r.get("warnings", []) + r.get("messages", [])}),
        f"{prefix}_fit_increase_mb": _mb(max(peaks)) if peaks else None,
        f"{prefix}_process_maxrss_mb": _mb(max(r["process_maxrss_kb"] for r in ok)),
    })
    if "blas" in first:
        s[f"{prefix}_blas"], s[f"{prefix}_lapack"] = first["blas"], first["lapack"]
    if prefix == "ours" or not s.get("ours_median_s"):
        return
    for base, key in (("ours", f"ratio_{prefix}_over_ours"), ("ours_1thread", f"ratio_{prefix}_over_ours_1thread")):
        if base != prefix and s.get(f"{base}_median_s"):
            s[key] = s[f"{prefix}_median_s"] / s[f"{base}_median_s"]
    if s[f"{prefix}_warm_median_s"] and s.get("ours_warm_median_s"):
        s[f"warm_ratio_{prefix}_over_ours"] = s[f"{prefix}_warm_median_s"] / s["ours_warm_median_s"]
    s[f"objective_diff_ours_minus_{prefix}"] = s["ours_objective"] - first["objective"]
    s[f"{prefix}_max_abs_dbeta_over_se"] = max_dbeta_over_se(s["ours_fixef"], s["ours_se"], first["fixef"],
                                                             by_position=prefix in NAMES_LEVELS_BY_POSITION)


def summarize_ours(s: dict[str, Any], ok: list[dict[str, Any]]) -> None:
    """Our fields beyond :func:`summarize_tool`'s: threads, build, estimates, memory against the data."""
    first = ok[0]
    s.update({
        "nobs": first["nobs"],
        "ours_threads": first.get("threads"),
        "ours_threads_set_by": first.get("threads_set_by"),
        "ours_omp_num_threads_env": first.get("omp_num_threads_env"),
        "ours_core_changed_during_run": any(r.get("core_changed_during_fit") for r in ok),
        "ours_core_builds": sorted({f"{r['core_sha256']} ({r['core_mtime']})" for r in ok}),
        "ours_optimizer_s": _median([r["optimizer_seconds"] for r in ok]),
        "ours_objective_spread": max(r["objective"] for r in ok) - min(r["objective"] for r in ok),
        "ours_theta": first["theta"],
        "ours_se": first["se"],
        "ours_sigma": first["sigma"],
        "ours_max_abs_gradient": first.get("max_abs_gradient"),
        "ours_polish_steps": first.get("polish_steps"),
        "numeric_columns": first["numeric_columns"],
        "numeric_bytes": first["numeric_bytes"],
        "ours_rss_before_fit_mb": _mb(max(r["rss_before_fit_kb"] for r in ok)),
        "ours_peak_fit_mb": _mb(max(r["peak_rss_fit_kb"] for r in ok)),
        "ours_peak_method": "VmHWM reset via clear_refs + 5 ms VmRSS polling" if first["peak_reset"]
        else "5 ms VmRSS polling",
    })


def compare_lme4(s: dict[str, Any], ours: dict[str, Any], lme4: list[dict[str, Any]]) -> None:
    """lme4's (default configuration's) estimates beside ours: theta, sigma, the optimum, and whether both
    saw the same data (column sums)."""
    first = lme4[0]
    s.update({
        "lme4_reader": first["reader"],
        "r_version": first["r_version"],
        "lme4_objective_kind": first["objective_kind"],
        "lme4_theta": first["theta"],
        "lme4_sigma": first["sigma"],
        "lme4_conv_messages": sorted({m for r in lme4 for m in r["conv_messages"]}),
        "lme4_gc_max_used_mb": max(r["gc_max_used_mb"] for r in lme4),
        "fixef_names": {"ours": list(s["ours_fixef"]), "lme4": list(first["fixef"])},
        "sigma_rel_diff": s["ours_sigma"] / first["sigma"] - 1.0,
    })
    ot, tt = list(s["ours_theta"].values()), list(first["theta"].values())
    if len(ot) == len(tt):
        s["max_abs_dtheta"] = max(abs(a - b) for a, b in zip(ot, tt))
    d = s["objective_diff_ours_minus_lme4"]
    s["optimum"] = "same" if abs(d) <= SAME_OPTIMUM_TOL else f"{'ours' if d < 0 else 'lme4'} lower by {abs(d):.3g}"
    sums_o, sums_r = ours["column_sums"], first["column_sums"]
    s["data_match"] = all(abs(sums_o[c] - sums_r[c]) <= 1e-9 * max(1.0, abs(sums_o[c])) * s["nobs"] ** 0.5
                          for c in sums_o if c in sums_r)


def summarize(problem: str, spec: dict[str, Any], records: dict[str, list[dict[str, Any]]],
              notes: dict[str, str | None]) -> dict[str, Any]:
    """Medians, ratios, agreement and memory for one problem: every tool of ``TOOLS`` under its prefix."""
    s: dict[str, Any] = {"problem": problem, "formula": spec["formula"], "reml": spec["reml"],
                         "repeats": len(records.get("ours", [])), "warm_limit_s": spec["warm_limit"]}
    ok = {prefix: [r for r in recs if "error" not in r] for prefix, recs in records.items()}
    if ok.get("ours"):
        summarize_ours(s, ok["ours"])
    for prefix in TOOLS.values():
        summarize_tool(s, prefix, records.get(prefix, []), notes.get(prefix))
    if ok.get("ours"):
        s["ours_increase_over_numeric"] = s["ours_fit_increase_mb"] * 2**20 / s["numeric_bytes"]
        if ok.get("lme4"):
            compare_lme4(s, ok["ours"][0], ok["lme4"])
    return s


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, memory, date, software versions, git commit."""
    info: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        sched = len(os.sched_getaffinity(0))
        info["usable_cpus"] = sched
    except AttributeError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        info["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                                  if ln.startswith("Model name")), None)
    except OSError:
        info["cpu_model"] = None
    try:
        with open("/proc/meminfo") as fh:
            kb = int(next(ln for ln in fh if ln.startswith("MemTotal")).split()[1])
        info["mem_total_gib"] = round(kb / 2**20, 1)
    except (OSError, StopIteration):
        pass
    try:
        info["git_commit"] = subprocess.run(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
                                            capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "cpp", "python"],
                               capture_output=True, text=True).stdout.strip()
        info["git_dirty_cpp_python"] = bool(dirty)
    except OSError:
        pass
    try:
        import numpy
        import pandas

        info["numpy"] = numpy.__version__
        info["pandas"] = pandas.__version__
    except ImportError:
        pass
    return info


def _fmt(x: Any, spec: str = ".3g") -> str:
    if x is None:
        return "-"
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return format(x, spec)
    return str(x)


def print_table(summaries: list[dict[str, Any]]) -> None:
    rows = [("problem", "rows", "ours s", "warm s", "1 thread s", "threads speed-up", "CPU/wall", "objective",
             "feval", "status")]
    for s in summaries:
        rows.append((
            s["problem"], _fmt(s.get("nobs"), ","), _fmt(s.get("ours_median_s"), ".2f"),
            _fmt(s.get("ours_warm_median_s"), ".2f"), _fmt(s.get("ours_1thread_median_s"), ".2f"),
            _fmt(s.get("ratio_ours_1thread_over_ours"), ".2f"), _fmt(s.get("ours_cpu_over_wall"), ".2f"),
            _fmt(s.get("ours_objective"), ".6f"), _fmt(s.get("ours_feval")), s.get("ours_status", "-"),
        ))
    _print_rows(rows)
    print()
    rows = [("problem", "peer", "s", "warm s", "peer/ours", "warm", "/ours 1 thread", "CPU/wall", "objective diff",
             "max|dB|/SE", "feval", "status")]
    for s in summaries:
        for tool, prefix in TOOLS.items():
            if prefix.startswith("ours") or not any(k.startswith(prefix + "_") for k in s):
                continue
            errors = s.get(f"{prefix}_errors") or []
            status = s.get(f"{prefix}_note") or s.get(f"{prefix}_status") or (errors[0]["error"] if errors else "-")
            rows.append((s["problem"], tool, _fmt(s.get(f"{prefix}_median_s"), ".2f"),
                         _fmt(s.get(f"{prefix}_warm_median_s"), ".2f"), _fmt(s.get(f"ratio_{prefix}_over_ours"), ".1f"),
                         _fmt(s.get(f"warm_ratio_{prefix}_over_ours"), ".1f"),
                         _fmt(s.get(f"ratio_{prefix}_over_ours_1thread"), ".1f"),
                         _fmt(s.get(f"{prefix}_cpu_over_wall"), ".2f"),
                         _fmt(s.get(f"objective_diff_ours_minus_{prefix}"), ".2e"),
                         _fmt(s.get(f"{prefix}_max_abs_dbeta_over_se"), ".1e"), _fmt(s.get(f"{prefix}_feval")),
                         status[:60]))
    _print_rows(rows)
    print()
    rows = [("problem", "numeric MB", "ours fit +MB", "x numeric", "ours maxrss MB", "lme4 fit +MB",
             "lme4 maxrss MB", "lme4 load s")]
    for s in summaries:
        nb = s.get("numeric_bytes")
        rows.append((
            s["problem"], _fmt(None if nb is None else nb / 2**20, ".1f"), _fmt(s.get("ours_fit_increase_mb"), ".1f"),
            _fmt(s.get("ours_increase_over_numeric"), ".2f"), _fmt(s.get("ours_process_maxrss_mb"), ".0f"),
            _fmt(s.get("lme4_fit_increase_mb"), ".1f"), _fmt(s.get("lme4_process_maxrss_mb"), ".0f"),
            _fmt(s.get("lme4_load_s"), ".2f"),
        ))
    _print_rows(rows)


def _print_rows(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def print_targets(summaries: list[dict[str, Any]]) -> None:
    """The issue's targets, one line each, for the problems that ran."""
    by = {s["problem"]: s for s in summaries}
    for name in ("insteval", "nested"):
        s = by.get(name)
        if s is None or "ratio_lme4_over_ours" not in s:
            continue
        fast = s["ratio_lme4_over_ours"] >= 10
        same = s.get("optimum") == "same"
        print(f"target >=10x faster than lme4 at the same optimum ({name}): "
              f"{'MET' if fast and same else 'NOT MET'} (ratio {s['ratio_lme4_over_ours']:.1f}, optimum {s['optimum']})")
    s = by.get("nested")
    if s is not None and "ours_increase_over_numeric" in s:
        r = s["ours_increase_over_numeric"]
        print(f"target peak memory of nested fit <= 3x numeric columns: {'MET' if r <= 3 else 'NOT MET'} "
              f"(+{s['ours_fit_increase_mb']:.0f} MB during the fit = {r:.2f}x {s['numeric_bytes'] / 2**20:.0f} MB)")
    s = by.get("large")
    if s is not None:
        ok = "ours_median_s" in s and s.get("ours_converged")
        extra = (f"(median {s['ours_median_s']:.1f} s, process peak {s['ours_process_maxrss_mb'] / 1024:.2f} GiB, "
                 f"+{s['ours_fit_increase_mb']:.0f} MB during the fit = {s['ours_increase_over_numeric']:.2f}x numeric)"
                 if "ours_median_s" in s else "(failed: see errors in the JSON)")
        print(f"target 10M-row fit on this machine: {'MET' if ok else 'NOT MET'} {extra}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="fits per tool, alternating (default 2)")
    parser.add_argument("--large", action="store_true", help="also run the 10,000,000-row problem (ours only)")
    parser.add_argument("--only", choices=["sleepstudy", "insteval", "insteval_dept", "nested", "crossed", "large"],
                        help="run one problem only")
    parser.add_argument("--n-groups", type=int, default=20_000, help="groups of the nested problem (default 20000)")
    parser.add_argument("--large-groups", type=int, default=200_000,
                        help="groups of the large problem (default 200000)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the generated data")
    parser.add_argument("--no-lme4", action="store_true", help="skip lme4")
    parser.add_argument("--no-mixedlm", action="store_true", help="skip the mixedlm package (PyPI)")
    parser.add_argument("--no-statsmodels", action="store_true", help="skip statsmodels MixedLM")
    parser.add_argument("--py-timeout", type=float, default=1800.0,
                        help="seconds before a Python peer's fit process is killed (default 1800)")
    parser.add_argument("--large-lme4", action="store_true",
                        help="also fit the large problem with lme4 (writes a ~1.2 GB CSV; slow)")
    parser.add_argument("--ours-threads", type=int, default=None,
                        help="OMP_NUM_THREADS for our fits (default: the package's default)")
    parser.add_argument("--r-timeout", type=float, default=3600.0, help="seconds before an lme4 fit is killed")
    parser.add_argument("--lme4-configs", nargs="+", choices=list(LME4_CONFIGS), default=list(LME4_CONFIGS),
                        help="lme4 configurations to fit: "
                        + "; ".join(f"{k}: {c.label}" for k, c in LME4_CONFIGS.items()) + " (default: all)")
    parser.add_argument("--warm-limit", type=float, default=WARM_LIMIT,
                        help="refit in the same process (warm time) after a fit shorter than this many seconds "
                             f"(default {WARM_LIMIT:.0f})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    parser.add_argument("--_worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--_write-csv", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._worker:
        run_worker(*args._worker)
        return 0
    if args._write_csv:
        run_write_csv(args._write_csv)
        return 0

    machine = machine_info()
    machine.update(core_fingerprint())
    print(f"{machine['date']}  {machine['nproc']} CPUs ({machine.get('cpu_model')}), "
          f"{machine.get('mem_total_gib')} GiB; git {machine.get('git_commit')}"
          f"{' + uncommitted changes in cpp/ or python/' if machine.get('git_dirty_cpp_python') else ''}; "
          f"core {machine['core_sha256']} built {machine['core_mtime']}")
    ds = _load_datasets_module()
    seed = ds.NESTED_SEED if args.seed is None else args.seed
    if args.only:
        problems = [args.only]
    else:
        problems = ["sleepstudy", "insteval", "insteval_dept", "nested", "crossed"] + (["large"] if args.large else [])

    rscript: str | None = None
    lme4_note: str | None = None
    if args.no_lme4:
        lme4_note = "lme4 skipped (--no-lme4)"
    else:
        ok, what = lme4_available()
        if ok:
            rscript = what
        else:
            lme4_note = f"lme4 skipped: {what}"
    configs = [LME4_CONFIGS[name] for name in dict.fromkeys(args.lme4_configs)]
    blas_env = {c.blas: r_blas_env(rscript, c.blas) for c in configs} if rscript else {}
    notes: dict[str, str | None] = {c.prefix: lme4_note or blas_env[c.blas][1] for c in configs}
    for tool, flag in (("mixedlm", args.no_mixedlm), ("statsmodels", args.no_statsmodels)):
        if flag:
            notes[tool] = f"{tool} skipped (--no-{tool})"
        elif importlib.util.find_spec(tool) is None:
            notes[tool] = f"{tool} skipped: the {tool} package is not installed"
        else:
            notes[tool] = None
    label = {prefix: tool for tool, prefix in TOOLS.items()}
    for prefix, note in notes.items():
        if note:
            print(f"{label[prefix]}: {note}")
    ours_env = {"OMP_NUM_THREADS": str(args.ours_threads)} if args.ours_threads else None

    nested_sm = {"formula": NESTED_FORMULA.split(" + (")[0], "groups": "g", "re_formula": "~x1"}
    specs = {
        "sleepstudy": {"problem": "sleepstudy", "dataset": "sleepstudy", "formula": SLEEPSTUDY_FORMULA,
                       "reml": True, "numeric_columns": ["Reaction", "Days"], "factors": ["Subject"],
                       "statsmodels": {"formula": "Reaction ~ Days", "groups": "Subject", "re_formula": "~Days"}},
        "insteval": {"problem": "insteval", "dataset": "InstEval", "formula": INSTEVAL_FORMULA, "reml": False,
                     "numeric_columns": ["y"], "factors": INSTEVAL_FACTORS},
        "insteval_dept": {"problem": "insteval_dept", "dataset": "InstEval", "formula": INSTEVAL_DEPT_FORMULA,
                          "reml": False, "numeric_columns": ["y"], "factors": INSTEVAL_FACTORS},
        "nested": {"problem": "nested", "formula": NESTED_FORMULA, "reml": True, "generator": "nested_lmm",
                   "kwargs": {"n_groups": args.n_groups, "group_size": GROUP_SIZE, "seed": seed},
                   "numeric_columns": NESTED_NUMERIC, "factors": ["g"], "statsmodels": nested_sm},
        "crossed": {"problem": "crossed", "formula": CROSSED_FORMULA, "reml": False, "generator": "crossed_lmm",
                    "kwargs": {"seed": ds.CROSSED_LMM_SEED if args.seed is None else args.seed},
                    "numeric_columns": ["x", "y"], "factors": ["a", "b"]},
        "large": {"problem": "large", "formula": NESTED_FORMULA, "reml": True, "generator": "nested_lmm",
                  "kwargs": {"n_groups": args.large_groups, "group_size": GROUP_SIZE, "seed": seed},
                  "numeric_columns": NESTED_NUMERIC, "factors": ["g"], "statsmodels": nested_sm},
    }
    specs["crossed"]["kwargs"].update(n_a=50_000, rows_per_a=20, n_b=5_000)

    summaries = []
    with tempfile.TemporaryDirectory(prefix="lmm_bench_") as tmp:
        workdir = Path(tmp)
        for problem in problems:
            spec = {**specs[problem], "warm_limit": args.warm_limit}
            rows = problem_rows(spec)
            print(f"\n== {problem}: {spec['formula']}  ({'REML' if spec['reml'] else 'ML'}"
                  f"{f', {rows:,} rows' if rows else ''})", flush=True)
            problem_notes = dict(notes)
            if problem == "large" and not args.large_lme4:
                problem_notes = {prefix: note or (
                    "lme4 not run on the 10M-row problem (ours only by default; the 1M-row 'nested' problem shows "
                    "lme4's time and memory; --large-lme4 runs it here too)" if prefix == "lme4" else
                    f"{label[prefix]} not run on the 10M-row problem (as lme4)") for prefix, note in notes.items()}
            if not problem_notes["statsmodels"] and "statsmodels" not in spec:
                problem_notes["statsmodels"] = STATSMODELS_CROSSED_NOTE
            # (prefix, one fit) in the order the tools alternate; a tool with a note is not run
            jobs: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
                ("ours", partial(fit_ours, spec, workdir, env=ours_env)),
                ("ours_1thread", partial(fit_ours, {**spec, "threads": 1}, workdir)),
            ]
            if any(not problem_notes[c.prefix] for c in configs):
                csv, secs = write_csv(spec, workdir)
                print(f"   data for R: {csv} ({csv.stat().st_size / 2**20:.0f} MB, written in {secs:.1f} s)")
                jobs += [(c.prefix, partial(fit_lme4, rscript, csv, spec, c, blas_env[c.blas][0], workdir,
                                            timeout=args.r_timeout)) for c in configs]
            jobs += [(tool, partial(fit_in_worker, {**spec, "tool": tool}, workdir, timeout=args.py_timeout))
                     for tool in PYTHON_PEERS]
            records: dict[str, list[dict[str, Any]]] = {prefix: [] for prefix, _ in jobs}
            for rep in range(args.repeats):
                for prefix, fit in jobs:
                    if problem_notes.get(prefix):
                        continue
                    rec = fit(f"{problem}{rep}.{prefix}")
                    records[prefix].append(rec)
                    print(f"   [{rep + 1}/{args.repeats}] {label[prefix]}: {describe_fit(rec)}", flush=True)
            summaries.append(summarize(problem, spec, records, problem_notes))

    print()
    print_table(summaries)
    print()
    for s in summaries:
        for tool, prefix in TOOLS.items():
            for w in s.get(f"{prefix}_warnings", []):
                print(f"{s['problem']}: {tool} said: {w}")
            for e in s.get(f"{prefix}_errors", []):
                print(f"{s['problem']}: {tool}: ERROR {e['error']}")
        if s.get("ours_cpu_over_wall") is not None and s["ours_cpu_over_wall"] > 1.2:
            print(f"{s['problem']}: note: ours used {s['ours_cpu_over_wall']:.2f} CPU-seconds per second (threads)")
        if len(s.get("ours_core_builds", [])) > 1 or s.get("ours_core_changed_during_run"):
            print(f"{s['problem']}: WARNING the compiled core changed during the run: {s['ours_core_builds']}")
        if s.get("data_match") is False:
            print(f"{s['problem']}: WARNING the column sums seen by R and by us differ")
    print_targets(summaries)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    if args.out.exists():
        try:
            previous = json.loads(args.out.read_text())
        except json.JSONDecodeError:
            previous = {}
    problems_out = previous.get("problems", {})
    for s in summaries:
        s["machine"] = machine
        problems_out[s["problem"]] = s
    args.out.write_text(json.dumps({"problems": problems_out}, indent=1, default=str))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
