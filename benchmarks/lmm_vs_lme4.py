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
reads, and the tools alternate (ours, lme4, mixedlm, statsmodels, ours, ...)
``--repeats`` times, each fit in a fresh process:

* ours: a subprocess of this script loads the data, then times
  ``multilevel.lmm(formula, df, reml=...)`` (formula handling included);
* lme4: ``Rscript r/lmm_fit.R`` reads the CSV, makes the grouping columns
  factors (timed separately as load time), then times ``lmer(...)``;
* mixedlm (PyPI): a subprocess loads the same data frame and times
  ``mixedlm.lmer(formula, df, REML=...)``;
* statsmodels: a subprocess times ``smf.mixedlm(fixed part, df, groups=...,
  re_formula=...).fit(reml=...)`` with its defaults, on the nested problems and
  sleepstudy; it is not run on crossed designs (the reason is written into the
  results). Its objective is ``-2 llf``, lme4's deviance / REML criterion.

A Python peer's process is killed after ``--py-timeout`` seconds and recorded
as timed out.

Memory: in each fitting process, RSS just before the fit and the peak RSS
during it (``VmHWM`` after resetting it through ``/proc/self/clear_refs``,
checked against a thread polling ``VmRSS`` every 5 ms); plus the whole
process's ``ru_maxrss`` from ``os.wait4``.

Usage::

    python benchmarks/lmm_vs_lme4.py [--repeats N] [--large]
        [--only sleepstudy|insteval|insteval_dept|nested|crossed|large] [--large-lme4]
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
from pathlib import Path
from typing import Any

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
    """One ``mixedlm.lmer`` fit (the Rust-backed lme4 port on PyPI); its objective and fixed effects."""
    import mixedlm

    fit = mixedlm.lmer(spec["formula"], df, REML=spec["reml"])
    objective = fit.REMLcrit() if spec["reml"] else fit.deviance
    objective = objective() if callable(objective) else objective
    fixef = fit.fixef() if callable(fit.fixef) else fit.fixef
    return {"version": getattr(mixedlm, "__version__", "?"), "objective": float(objective),
            "fixef": {str(k): float(v) for k, v in fixef.items()},
            "feval": int(getattr(fit, "function_evals", -1) or -1)}


def _fit_statsmodels(spec: dict[str, Any], df: Any) -> dict[str, Any]:
    """One ``statsmodels`` ``MixedLM`` fit with its defaults; -2 log-likelihood is lme4's objective."""
    import statsmodels
    import statsmodels.formula.api as smf

    call = spec["statsmodels"]
    fit = smf.mixedlm(call["formula"], df, groups=call["groups"], re_formula=call["re_formula"]).fit(
        reml=spec["reml"])
    return {"version": statsmodels.__version__, "objective": -2.0 * float(fit.llf),
            "fixef": {str(k): float(v) for k, v in fit.fe_params.items()}, "converged": bool(fit.converged)}


#: Python peers fitted in a worker process of this script: tool -> fit function.
PYTHON_PEERS = {"mixedlm": _fit_mixedlm, "statsmodels": _fit_statsmodels}


def run_peer_worker(spec: dict[str, Any], out_path: str) -> None:
    """Load one problem, fit it once with a Python peer (``spec["tool"]``) and write a JSON record."""
    t0 = time.perf_counter()
    df = _load_problem_data(spec)
    load_seconds = time.perf_counter() - t0
    gc.collect()
    rss_before = proc_status_kb("VmRSS")
    peak_reset = reset_peak_rss()
    poller = PeakRssPoller(0.005)
    poller.start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t1 = time.perf_counter()
        fitted = PYTHON_PEERS[spec["tool"]](spec, df)
        fit_seconds = time.perf_counter() - t1
    peak = max(poller.stop(), (proc_status_kb("VmHWM") or 0) if peak_reset else 0)
    record = {"tool": spec["tool"], "nobs": int(len(df)), "load_seconds": load_seconds, "fit_seconds": fit_seconds,
              **fitted, "rss_before_fit_kb": rss_before, "peak_rss_fit_kb": peak,
              "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught})[:5]}
    Path(out_path).write_text(json.dumps(record, indent=1))


def run_worker(spec_path: str, out_path: str) -> None:
    """Load one problem, fit it once with ``multilevel.lmm`` (or a Python peer) and write a JSON record."""
    import numpy as np

    spec = json.loads(Path(spec_path).read_text())
    if spec.get("tool") in PYTHON_PEERS:
        run_peer_worker(spec, out_path)
        return
    multilevel = _import_multilevel()
    from multilevel import lmm

    t0 = time.perf_counter()
    df = _load_problem_data(spec)
    load_seconds = time.perf_counter() - t0
    numeric = [c for c in spec["numeric_columns"] if c in df.columns]
    numeric_bytes = 8 * len(df) * len(numeric)

    gc.collect()
    rss_before = proc_status_kb("VmRSS")
    peak_reset = reset_peak_rss()
    poller = PeakRssPoller(0.005)
    poller.start()
    import resource

    def cpu_now() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c1 = cpu_now()
        t1 = time.perf_counter()
        fit = lmm(spec["formula"], df, reml=spec["reml"])
        fit_seconds = time.perf_counter() - t1
        fit_cpu_seconds = cpu_now() - c1
    polled_peak = poller.stop()
    hwm = proc_status_kb("VmHWM") if peak_reset else None
    peak = max(polled_peak, hwm or 0)

    record = {
        "tool": "multilevel",
        "multilevel_version": getattr(multilevel, "__version__", "?"),
        "multilevel_path": str(Path(multilevel.__file__).parent),
        **core_fingerprint(Path(multilevel._core.__file__)),
        "nobs": int(len(df)),
        "load_seconds": load_seconds,
        "fit_seconds": fit_seconds,
        "fit_cpu_seconds": fit_cpu_seconds,
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "optimizer_seconds": float(fit.optsum.elapsed),
        "objective": float(fit.objective),
        "loglik": float(fit.loglik),
        "theta": {str(k): float(v) for k, v in fit.theta.items()},
        "fixef": {str(k): float(v) for k, v in fit.params.items()},
        "se": {str(k): float(v) for k, v in fit.bse.items()},
        "sigma": float(fit.sigma),
        "feval": int(fit.optsum.feval),
        "converged": bool(fit.converged),
        "optimizer_message": str(fit.optsum.message),
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
        "numeric_columns": numeric,
        "numeric_bytes": numeric_bytes,
        "column_sums": {c: float(np.asarray(df[c], dtype=float).sum()) for c in numeric},
        "rss_before_fit_kb": rss_before,
        "peak_rss_fit_kb": peak,
        "peak_rss_fit_hwm_kb": hwm,
        "peak_rss_fit_polled_kb": polled_peak,
        "poll_samples": poller.samples,
        "peak_reset": peak_reset,
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


def fit_ours(spec: dict[str, Any], workdir: Path, tag: str, threads: int | None = None) -> dict[str, Any]:
    spec_path = workdir / f"{tag}.spec.json"
    out_path = workdir / f"{tag}.ours.json"
    spec_path.write_text(json.dumps(spec))
    before = core_fingerprint()
    env = {"OMP_NUM_THREADS": str(threads)} if threads else None
    child = run_child([sys.executable, str(Path(__file__).resolve()), "--_worker", str(spec_path), str(out_path)],
                      env=env)
    after = core_fingerprint()
    if child["returncode"] != 0 or not out_path.exists():
        err = f"worker {describe_exit(child['returncode'])}"
        if before != after:
            err += f" (the compiled core was rebuilt while it ran: {before['core_mtime']} -> {after['core_mtime']})"
        return {"error": err, **child}
    rec = json.loads(out_path.read_text())
    rec["core_changed_during_fit"] = before != after
    rec["process_cpu_seconds"] = child["cpu_seconds"]
    rec["process_maxrss_kb"] = child["maxrss_kb"]
    rec["process_wall_seconds"] = child["wall_seconds"]
    if child["stderr_tail"].strip():
        rec["stderr_tail"] = child["stderr_tail"]
    return rec


def fit_python_peer(tool: str, spec: dict[str, Any], workdir: Path, tag: str, timeout: float) -> dict[str, Any]:
    """One fit with a Python peer in a fresh process (same worker entry point as ours); killed after
    ``timeout`` seconds and then recorded as timed out."""
    spec_path = workdir / f"{tag}.{tool}.spec.json"
    out_path = workdir / f"{tag}.{tool}.json"
    spec_path.write_text(json.dumps({**spec, "tool": tool}))
    child = run_child([sys.executable, str(Path(__file__).resolve()), "--_worker", str(spec_path), str(out_path)],
                      timeout=timeout)
    if child["returncode"] != 0 or not out_path.exists():
        if child["returncode"] == -signal.SIGKILL and child["wall_seconds"] >= timeout:
            return {"error": f"timed out (> {timeout:.0f} s)", "timed_out": True, **child}
        return {"error": f"{tool} worker {describe_exit(child['returncode'])}", **child}
    return json.loads(out_path.read_text())


def fit_lme4(rscript: str, csv: Path, formula: str, reml: bool, factors: list[str], workdir: Path,
             tag: str, timeout: float) -> dict[str, Any]:
    out_path = workdir / f"{tag}.lme4.json"
    cmd = [rscript, str(R_SCRIPT), str(csv), formula, "TRUE" if reml else "FALSE", str(out_path), ",".join(factors)]
    child = run_child(cmd, timeout=timeout)
    if child["returncode"] != 0 or not out_path.exists():
        return {"error": f"Rscript {describe_exit(child['returncode'])}", **child}
    rec = json.loads(out_path.read_text())
    rec["process_cpu_seconds"] = child["cpu_seconds"]
    rec["process_maxrss_kb"] = child["maxrss_kb"]
    rec["process_wall_seconds"] = child["wall_seconds"]
    return rec


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


def summarize_python_peer(s: dict[str, Any], tool: str, records: list[dict[str, Any]], note: str | None) -> None:
    """Add a Python peer's median time, ratio, objective and agreement to a problem's summary."""
    ok = [r for r in records if "error" not in r]
    s[f"{tool}_errors"] = [r for r in records if "error" in r]
    if note:
        s[f"{tool}_note"] = note
    if not ok:
        return
    s[f"{tool}_version"] = ok[0]["version"]
    s[f"{tool}_median_s"] = _median([r["fit_seconds"] for r in ok])
    s[f"{tool}_load_s"] = _median([r["load_seconds"] for r in ok])
    s[f"{tool}_objective"] = ok[0]["objective"]
    s[f"{tool}_fixef"] = ok[0]["fixef"]
    s[f"{tool}_fit_increase_mb"] = _mb(max(r["peak_rss_fit_kb"] - r["rss_before_fit_kb"] for r in ok))
    if s.get("ours_median_s"):
        s[f"ratio_{tool}_over_ours"] = s[f"{tool}_median_s"] / s["ours_median_s"]
        s[f"objective_diff_ours_minus_{tool}"] = s["ours_objective"] - s[f"{tool}_objective"]
        s[f"{tool}_max_abs_dbeta_over_se"] = max_dbeta_over_se(s["ours_fixef"], s["ours_se"], ok[0]["fixef"],
                                                               by_position=tool in NAMES_LEVELS_BY_POSITION)


def summarize(problem: str, spec: dict[str, Any], ours: list[dict[str, Any]], theirs: list[dict[str, Any]],
              lme4_note: str | None) -> dict[str, Any]:
    """Medians, ratio, agreement and memory for one problem."""
    ok_ours = [r for r in ours if "error" not in r]
    ok_theirs = [r for r in theirs if "error" not in r]
    s: dict[str, Any] = {
        "problem": problem,
        "formula": spec["formula"],
        "reml": spec["reml"],
        "repeats": len(ours),
        "lme4_note": lme4_note,
        "ours_errors": [r for r in ours if "error" in r],
        "lme4_errors": [r for r in theirs if "error" in r],
    }
    if ok_ours:
        first = ok_ours[0]
        s.update({
            "nobs": first["nobs"],
            "ours_times": [r["fit_seconds"] for r in ok_ours],
            "ours_median_s": _median([r["fit_seconds"] for r in ok_ours]),
            "ours_cpu_over_wall": _median([r["fit_cpu_seconds"] / r["fit_seconds"] for r in ok_ours]),
            "ours_omp_num_threads_env": first.get("omp_num_threads_env"),
            "ours_core_changed_during_run": any(r.get("core_changed_during_fit") for r in ok_ours),
            "ours_optimizer_s": _median([r["optimizer_seconds"] for r in ok_ours]),
            "ours_load_s": _median([r["load_seconds"] for r in ok_ours]),
            "ours_objective": first["objective"],
            "ours_objective_spread": max(r["objective"] for r in ok_ours) - min(r["objective"] for r in ok_ours),
            "ours_theta": first["theta"],
            "ours_fixef": first["fixef"],
            "ours_se": first["se"],
            "ours_sigma": first["sigma"],
            "ours_feval": first["feval"],
            "ours_converged": all(r["converged"] for r in ok_ours),
            "ours_core_builds": sorted({f"{r['core_sha256']} ({r['core_mtime']})" for r in ok_ours}),
            "ours_warnings": sorted({w for r in ok_ours for w in r["warnings"]}),
            "numeric_columns": first["numeric_columns"],
            "numeric_bytes": first["numeric_bytes"],
            "ours_rss_before_fit_mb": _mb(max(r["rss_before_fit_kb"] for r in ok_ours)),
            "ours_peak_fit_mb": _mb(max(r["peak_rss_fit_kb"] for r in ok_ours)),
            "ours_fit_increase_mb": _mb(max(r["peak_rss_fit_kb"] - r["rss_before_fit_kb"] for r in ok_ours)),
            "ours_process_maxrss_mb": _mb(max(r["process_maxrss_kb"] for r in ok_ours)),
            "ours_peak_method": "VmHWM reset via clear_refs + 5 ms VmRSS polling" if first["peak_reset"]
            else "5 ms VmRSS polling",
        })
        s["ours_increase_over_numeric"] = s["ours_fit_increase_mb"] * 2**20 / s["numeric_bytes"]
    if ok_theirs:
        first = ok_theirs[0]
        s.update({
            "lme4_times": [r["fit_seconds"] for r in ok_theirs],
            "lme4_median_s": _median([r["fit_seconds"] for r in ok_theirs]),
            "lme4_cpu_over_wall": _median([r["fit_cpu_seconds"] / r["fit_seconds"] for r in ok_theirs
                                           if r.get("fit_cpu_seconds") is not None and r["fit_seconds"] > 0]),
            "lme4_load_s": _median([r["load_seconds"] for r in ok_theirs]),
            "lme4_reader": first["reader"],
            "lme4_version": first["lme4_version"],
            "r_version": first["r_version"],
            "lme4_objective": first["objective"],
            "lme4_objective_kind": first["objective_kind"],
            "lme4_theta": first["theta"],
            "lme4_fixef": first["fixef"],
            "lme4_sigma": first["sigma"],
            "lme4_feval": first["feval"],
            "lme4_messages": sorted({m for r in ok_theirs for m in r["messages"]}),
            "lme4_conv_messages": sorted({m for r in ok_theirs for m in r["conv_messages"]}),
            "lme4_process_maxrss_mb": _mb(max(r["process_maxrss_kb"] for r in ok_theirs)),
            "lme4_rss_before_fit_mb": _mb(max(r["rss_before_fit_kb"] for r in ok_theirs)),
        })
        peaks = [r["peak_rss_fit_kb"] - r["rss_before_fit_kb"] for r in ok_theirs
                 if r.get("peak_rss_fit_kb") is not None]
        s["lme4_fit_increase_mb"] = _mb(max(peaks)) if peaks else None
        s["lme4_gc_max_used_mb"] = max(r["gc_max_used_mb"] for r in ok_theirs)
    if ok_ours and ok_theirs:
        s["ratio_lme4_over_ours"] = s["lme4_median_s"] / s["ours_median_s"]
        s["objective_diff_ours_minus_lme4"] = s["ours_objective"] - s["lme4_objective"]
        s["fixef_names"] = {"ours": list(s["ours_fixef"]), "lme4": list(s["lme4_fixef"])}
        s["max_abs_dbeta_over_se"] = max_dbeta_over_se(s["ours_fixef"], s["ours_se"], s["lme4_fixef"])
        ot, tt = list(s["ours_theta"].values()), list(s["lme4_theta"].values())
        if len(ot) == len(tt):
            s["max_abs_dtheta"] = max(abs(a - b) for a, b in zip(ot, tt))
        s["sigma_rel_diff"] = s["ours_sigma"] / s["lme4_sigma"] - 1.0
        d = s["objective_diff_ours_minus_lme4"]
        if abs(d) <= SAME_OPTIMUM_TOL:
            s["optimum"] = "same"
        else:
            s["optimum"] = f"{'ours' if d < 0 else 'lme4'} lower by {abs(d):.3g}"
        sums_o = ok_ours[0]["column_sums"]
        sums_r = first["column_sums"]
        common = [c for c in sums_o if c in sums_r]
        s["data_match"] = all(abs(sums_o[c] - sums_r[c]) <= 1e-9 * max(1.0, abs(sums_o[c])) * s["nobs"] ** 0.5
                              for c in common)
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
    rows = [("problem", "rows", "ours s", "lme4 s", "lme4/ours", "obj ours", "obj lme4", "diff", "max|dB|/SE",
             "feval o/l")]
    for s in summaries:
        rows.append((
            s["problem"], _fmt(s.get("nobs"), ","), _fmt(s.get("ours_median_s"), ".2f"),
            _fmt(s.get("lme4_median_s"), ".2f"), _fmt(s.get("ratio_lme4_over_ours"), ".1f"),
            _fmt(s.get("ours_objective"), ".4f"), _fmt(s.get("lme4_objective"), ".4f"),
            _fmt(s.get("objective_diff_ours_minus_lme4"), ".2e"), _fmt(s.get("max_abs_dbeta_over_se"), ".1e"),
            f"{_fmt(s.get('ours_feval'))}/{_fmt(s.get('lme4_feval'))}",
        ))
    _print_rows(rows)
    print()
    rows = [("problem", "Python peer", "s", "peer/ours", "objective diff", "max|dB|/SE", "status")]
    for s in summaries:
        for tool in PYTHON_PEERS:
            errors = s.get(f"{tool}_errors") or []
            status = s.get(f"{tool}_note") or (errors[0]["error"] if errors else "ok")
            rows.append((s["problem"], tool, _fmt(s.get(f"{tool}_median_s"), ".2f"),
                         _fmt(s.get(f"ratio_{tool}_over_ours"), ".1f"),
                         _fmt(s.get(f"objective_diff_ours_minus_{tool}"), ".2e"),
                         _fmt(s.get(f"{tool}_max_abs_dbeta_over_se"), ".1e"), status[:60]))
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
    if lme4_note:
        print(lme4_note)

    peer_notes: dict[str, str | None] = {}
    for tool, flag in (("mixedlm", args.no_mixedlm), ("statsmodels", args.no_statsmodels)):
        if flag:
            peer_notes[tool] = f"{tool} skipped (--no-{tool})"
        elif importlib.util.find_spec(tool) is None:
            peer_notes[tool] = f"{tool} skipped: the {tool} package is not installed"
        else:
            peer_notes[tool] = None
        if peer_notes[tool]:
            print(peer_notes[tool])

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
            spec = specs[problem]
            rows = problem_rows(spec)
            print(f"\n== {problem}: {spec['formula']}  ({'REML' if spec['reml'] else 'ML'}"
                  f"{f', {rows:,} rows' if rows else ''})", flush=True)
            note = lme4_note
            csv = None
            if problem == "large" and not args.large_lme4:
                note = ("lme4 not run on the 10M-row problem (ours only by default; the 1M-row 'nested' "
                        "problem shows lme4's time and memory; --large-lme4 runs it here too)")
                print(note)
            elif rscript is not None:
                csv, secs = write_csv(spec, workdir)
                print(f"   data for R: {csv} ({csv.stat().st_size / 2**20:.0f} MB, written in {secs:.1f} s)")
            ours, theirs = [], []
            peers: dict[str, list[dict[str, Any]]] = {tool: [] for tool in PYTHON_PEERS}
            notes = dict(peer_notes)
            if problem == "large" and not args.large_lme4:
                notes = {tool: note or f"{tool} not run on the 10M-row problem (as lme4)" for tool, note in notes.items()}
            if not notes["statsmodels"] and "statsmodels" not in spec:
                notes["statsmodels"] = STATSMODELS_CROSSED_NOTE
            for rep in range(args.repeats):
                rec = fit_ours(spec, workdir, f"{problem}{rep}", args.ours_threads)
                ours.append(rec)
                print(f"   [{rep + 1}/{args.repeats}] ours: " + (
                    f"{rec['fit_seconds']:.2f} s, objective {rec['objective']:.6f}, feval {rec['feval']}, "
                    f"+{(rec['peak_rss_fit_kb'] - rec['rss_before_fit_kb']) / 1024:.0f} MB during fit"
                    if "error" not in rec else f"ERROR {rec['error']}: {rec['stderr_tail'][-800:]}"), flush=True)
                if csv is not None and rscript is not None:
                    rec = fit_lme4(rscript, csv, spec["formula"], spec["reml"], spec["factors"], workdir,
                                   f"{problem}{rep}", args.r_timeout)
                    theirs.append(rec)
                    print(f"   [{rep + 1}/{args.repeats}] lme4: " + (
                        f"{rec['fit_seconds']:.2f} s (load {rec['load_seconds']:.1f} s), "
                        f"objective {rec['objective']:.6f}, feval {rec['feval']}"
                        if "error" not in rec else f"ERROR {rec['error']}: {rec['stderr_tail'][-800:]}"),
                        flush=True)
                for tool in PYTHON_PEERS:
                    if notes[tool]:
                        continue
                    rec = fit_python_peer(tool, spec, workdir, f"{problem}{rep}", args.py_timeout)
                    peers[tool].append(rec)
                    print(f"   [{rep + 1}/{args.repeats}] {tool}: " + (
                        f"{rec['fit_seconds']:.2f} s, objective {rec['objective']:.6f}"
                        if "error" not in rec else f"ERROR {rec['error']}: {rec['stderr_tail'][-800:]}"), flush=True)
            summary = summarize(problem, spec, ours, theirs, note)
            for tool, records in peers.items():
                summarize_python_peer(summary, tool, records, notes[tool])
            summaries.append(summary)

    print()
    print_table(summaries)
    print()
    for s in summaries:
        for w in s.get("ours_warnings", []):
            print(f"{s['problem']}: ours warned: {w}")
        for m in s.get("lme4_messages", []):
            print(f"{s['problem']}: lme4 said: {m}")
        if s.get("ours_cpu_over_wall") is not None and s["ours_cpu_over_wall"] > 1.2:
            print(f"{s['problem']}: note: ours used {s['ours_cpu_over_wall']:.2f} CPU-seconds per second (threads)")
        for e in s.get("ours_errors", []) + s.get("lme4_errors", []):
            print(f"{s['problem']}: ERROR {e['error']}")
        if len(s.get("ours_core_builds", [])) > 1 or s.get("ours_core_changed_during_run"):
            print(f"{s['problem']}: WARNING the compiled core changed during the run: {s['ours_core_builds']}")
        if s.get("data_match") is False:
            print(f"{s['problem']}: WARNING the column sums seen by R and by us differ")
        if s.get("lme4_note") and s["problem"] == "large" and not s.get("lme4_times"):
            print(f"large: {s['lme4_note']}")
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
