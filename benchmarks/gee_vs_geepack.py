"""GEE: multilevel against geepack::geeglm and statsmodels GEE, side by side.

Problems (``benchmarks/datasets.py``, fixed seeds; ``--quick`` takes a tenth
of the clusters)
--------
binary_exch_100k, binary_exch_1M
             100,000 / 1,000,000 rows in clusters of 5, ``y ~ x1 + x2 + t``,
             binomial / logit, exchangeable working correlation (the data
             have a shared cluster effect on the logit scale).
poisson_ar1_100k, poisson_ar1_1M
             100,000 / 1,000,000 rows in clusters of 5, ``y ~ x1 + x2 + t``,
             Poisson / log, AR(1) working correlation over ``t`` (the data
             have a latent Gaussian AR(1) series per cluster).

``id`` is the cluster, ``t = 0 .. 4`` the row's position (a covariate, and
the time of the AR(1) structure). The data are written once to a CSV that R
reads; the tools then alternate (ours, geepack, statsmodels, ours, ...)
``--repeats`` times, each fit in a fresh process:

* ours: a subprocess of this script generates the data frame, then times
  ``multilevel.gee(formula, df, groups="id", family=..., corr=...)``
  (``time="t"`` for ar1), formula handling included;
* ours on one thread (``multilevel (1 thread)``, ``OMP_NUM_THREADS=1``): the
  per-core ratio of each peer is taken against it;
* geepack: ``Rscript r/gee_fit.R`` reads the CSV and sorts it by
  ``(id, t)`` (geepack needs each cluster's rows contiguous; reading and
  sorting are timed apart from the fit and reported as load time), then times
  ``geeglm(formula, family, data, id = id, waves = t, corstr = ...)`` with
  ``geese.control()`` defaults, on R's reference BLAS; ``geepack (OpenBLAS)``
  the same on Debian's multi-threaded OpenBLAS (geepack has no speed settings
  of its own; see ``lmm_vs_lme4.r_blas_env`` for how R is pointed at a BLAS);
* statsmodels: a subprocess of this script generates the data frame, then
  times ``GEE.from_formula(formula, groups="id", data=df, family=...,
  cov_struct=...).fit()`` (``time="t"`` for ar1) with the structures'
  defaults (``Exchangeable()``, ``Autoregressive()``). It is stopped after
  ``--sm-timeout`` seconds of fitting and reported as "timed out".

Every fit shorter than ``--warm-limit`` seconds (default 120) is made a
second time in the same process and timed as the warm fit.

The generated data frames and the CSV hold the same rows in the same order
(clusters contiguous, ``t`` ascending), checked through column sums.

Agreement is reported as the largest ``|estimate - ours|`` over the
coefficients, in units of our robust standard error. Memory: in each
fitting process, RSS just before the fit and the peak RSS during it (helpers
of ``lmm_vs_lme4.py``).

Usage::

    python benchmarks/gee_vs_geepack.py [--repeats N] [--quick]
        [--only binary_exch_1M|poisson_ar1_100k|...] [--sm-timeout S] [--no-geepack] [--no-statsmodels]

Results: a table on stdout and ``benchmarks/results/gee_vs_geepack.json``
(problems run now replace their earlier entries; ``--quick`` runs are kept
under ``<problem>_quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

from lmm_vs_lme4 import (
    BENCH_DIR,
    DATA_DIR,
    RESULTS_DIR,
    WARM_LIMIT,
    _fmt,
    _import_multilevel,
    _load_datasets_module,
    _mb,
    _median,
    _print_rows,
    check_blas,
    core_fingerprint,
    describe_exit,
    machine_info,
    measure_fit,
    r_row_environments,
    run_child,
)

R_SCRIPT = BENCH_DIR / "r" / "gee_fit.R"
DEFAULT_OUT = RESULTS_DIR / "gee_vs_geepack.json"
FORMULA = "y ~ x1 + x2 + t"
NUMERIC_COLUMNS = ["id", "t", "x1", "x2", "y"]
#: The rows of a problem, in the order the tools alternate; ours come first, every ratio is taken
#: against them. ``OURS_THREADS``: our rows and the thread count each sets (None: the default, all
#: cores). ``R_ROWS``: geepack's rows and the BLAS each runs on (geepack has no speed settings of its
#: own; OpenBLAS is the multi-threaded BLAS a user who knows R would install).
OURS_THREADS: dict[str, int | None] = {"multilevel": None, "multilevel (1 thread)": 1}
R_ROWS = {"geepack": "reference", "geepack (OpenBLAS)": "openblas"}
TOOLS = (*OURS_THREADS, *R_ROWS, "statsmodels")

#: name -> generator in datasets.py, size, family and working correlation:
#: each model at 10^5 and 10^6 rows (clusters of 5).
PROBLEMS: dict[str, dict[str, Any]] = {
    f"{model}_{label}": {**spec, "n_clusters": n_clusters, "cluster_size": 5}
    for model, spec in {
        "binary_exch": {"generator": "binary_exch", "seed_name": "BINARY_EXCH_SEED", "family": "binomial",
                        "corr": "exchangeable", "time": None},
        "poisson_ar1": {"generator": "poisson_ar1", "seed_name": "POISSON_AR1_SEED", "family": "poisson",
                        "corr": "ar1", "time": "t"},
    }.items()
    for label, n_clusters in (("100k", 20_000), ("1M", 200_000))
}

#: Seconds a statsmodels process may take beyond its fit limit (imports, data) before the parent kills it.
PROCESS_MARGIN_S = 600.0


# --------------------------------------------------------------------------
# Workers (fresh processes): data, one fit, a JSON record
# --------------------------------------------------------------------------

def generate(spec: dict[str, Any]) -> Any:
    """The problem's data frame, from its generator in datasets.py."""
    ds = _load_datasets_module()
    return getattr(ds, spec["generator"])(n_clusters=spec["n_clusters"], cluster_size=spec["cluster_size"],
                                          seed=spec["seed"])


def fit_multilevel(spec: dict[str, Any], df: Any) -> tuple[Callable[[], Any], Callable[[Any], dict[str, Any]]]:
    """The timed call of ours and what to read from its result."""
    multilevel = _import_multilevel()

    def fit() -> Any:
        return multilevel.gee(spec["formula"], df, groups="id", time=spec["time"], family=spec["family"],
                              corr=spec["corr"])

    def read(res: Any) -> dict[str, Any]:
        return {
            "version": multilevel.__version__,
            **core_fingerprint(Path(multilevel._core.__file__)),
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "params": {str(k): float(v) for k, v in res.params.items()},
            "bse": {str(k): float(v) for k, v in res.bse.items()},
            "alpha": [float(a) for a in res.corr_params],
            "phi": float(res.scale),
            "n_iter": int(res.n_iter),
            "converged": bool(res.converged),
        }

    return fit, read


def fit_statsmodels(spec: dict[str, Any], df: Any) -> tuple[Callable[[], Any], Callable[[Any], dict[str, Any]]]:
    """The timed ``GEE.from_formula(...).fit()`` and what to read from its result."""
    import statsmodels
    import statsmodels.api as sm
    from statsmodels.genmod.generalized_estimating_equations import GEE

    families = {"binomial": sm.families.Binomial, "poisson": sm.families.Poisson}
    structures = {"exchangeable": sm.cov_struct.Exchangeable, "ar1": sm.cov_struct.Autoregressive}

    def fit() -> Any:
        model = GEE.from_formula(spec["formula"], groups="id", data=df, time=spec["time"],
                                 family=families[spec["family"]](), cov_struct=structures[spec["corr"]]())
        return model.fit()

    def read(res: Any) -> dict[str, Any]:
        return {
            "version": statsmodels.__version__,
            "params": {str(k): float(v) for k, v in res.params.items()},
            "bse": {str(k): float(v) for k, v in res.bse.items()},
            "alpha": [float(a) for a in [res.cov_struct.dep_params] if a is not None],
            "phi": float(res.scale),
            "n_iter": len(res.fit_history["params"]),
            "converged": bool(getattr(res, "converged", True)),
        }

    return fit, read


WORKER_TOOLS = {"multilevel": fit_multilevel, "statsmodels": fit_statsmodels}


def measured(fit: Callable[[], Any], warm_limit: float) -> tuple[Any, dict[str, Any]]:
    """``fit()`` timed by :func:`lmm_vs_lme4.measure_fit` (warm second call included), its warnings
    under ``messages`` as in the R scripts' records."""
    value, figures = measure_fit(fit, warm_limit)
    figures["messages"] = figures.pop("warnings")
    return value, figures


def run_worker(tool: str, spec_path: str, out_path: str) -> None:
    """Generate one problem, fit it with ``tool`` (twice where the first fit is shorter than
    ``spec["warm_limit"]``: the second is the warm time), write a JSON record.

    With ``spec["time_limit"]`` a watchdog thread writes a "timed_out" record
    and ends the process when the fits run longer.
    """
    import numpy as np
    import pandas  # noqa: F401  (imported before the load is timed)

    spec = json.loads(Path(spec_path).read_text())
    t0 = time.perf_counter()
    df = generate(spec)
    record: dict[str, Any] = {"tool": tool, "nobs": int(len(df)), "load_seconds": time.perf_counter() - t0,
                              "column_sums": {c: float(np.asarray(df[c], dtype=float).sum()) for c in NUMERIC_COLUMNS}}
    fit, read = WORKER_TOOLS[tool](spec, df)
    record["threads"] = _import_multilevel().get_num_threads() if tool == "multilevel" else None

    def give_up() -> None:
        record.update(timed_out=True, time_limit_s=spec["time_limit"])
        Path(out_path).write_text(json.dumps(record, indent=1))
        os._exit(124)

    watchdog = threading.Timer(spec["time_limit"], give_up) if spec.get("time_limit") else None
    if watchdog is not None:
        watchdog.start()
    res, figures = measured(fit, spec["warm_limit"])
    if watchdog is not None:
        watchdog.cancel()
    record.update(figures)
    record.update(read(res))
    Path(out_path).write_text(json.dumps(record, indent=1))


# --------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------

def _collect(child: dict[str, Any], out_path: Path, what: str) -> dict[str, Any]:
    """The record a fitting process wrote, with its process figures; or an error record."""
    if not out_path.exists():
        return {"error": f"{what} {describe_exit(child['returncode'])}", **child}
    rec = json.loads(out_path.read_text())
    if child["returncode"] != 0 and not rec.get("timed_out"):
        return {"error": f"{what} {describe_exit(child['returncode'])}", **child}
    rec.update(process_cpu_seconds=child["cpu_seconds"], process_maxrss_kb=child["maxrss_kb"],
               process_wall_seconds=child["wall_seconds"])
    if child["stderr_tail"].strip():
        rec["stderr_tail"] = child["stderr_tail"]
    return rec


def fit_in_python(tool: str, spec: dict[str, Any], workdir: Path, tag: str, time_limit: float | None,
                  threads: int | None) -> dict[str, Any]:
    """One fit by ours (on ``threads`` threads through ``OMP_NUM_THREADS``; None: the default) or by
    statsmodels, in a fresh process of this script."""
    spec_path, out_path = workdir / f"{tag}.spec.json", workdir / f"{tag}.json"
    spec_path.write_text(json.dumps({**spec, "time_limit": time_limit}))
    env = {"OMP_NUM_THREADS": str(threads)} if threads and tool == "multilevel" else None
    child = run_child([sys.executable, str(Path(__file__).resolve()), "--_worker", tool, str(spec_path),
                       str(out_path)], timeout=None if time_limit is None else time_limit + PROCESS_MARGIN_S,
                      env=env)
    if time_limit is not None and not out_path.exists() and child["returncode"] == -9:
        return {"timed_out": True, "time_limit_s": time_limit, "killed_by_parent": True, **child}
    return _collect(child, out_path, "worker")


def fit_geepack(rscript: str, csv: Path, spec: dict[str, Any], workdir: Path, tag: str, timeout: float,
                blas: str, env: dict[str, str]) -> dict[str, Any]:
    """One ``Rscript r/gee_fit.R`` run on ``blas`` (its environment ``env``, see :func:`lmm_vs_lme4.r_blas_env`)."""
    out_path = workdir / f"{tag}.json"
    child = run_child([rscript, str(R_SCRIPT), str(csv), spec["formula"], spec["family"], spec["corr"],
                       str(out_path), str(spec["warm_limit"])], timeout=timeout, env=env)
    rec = check_blas(_collect(child, out_path, "Rscript"), blas, env)
    if "alpha" in rec:
        rec["alpha"] = list(rec["alpha"].values())
        rec["version"] = rec["geepack_version"]
    return rec


def find_rscript(packages: tuple[str, ...] = ("geepack", "data.table", "jsonlite")) -> tuple[str | None, str]:
    """``(path of Rscript, "")`` when it runs and has ``packages``, else ``(None, the reason)``."""
    found = shutil.which("Rscript")
    if not found:
        return None, "no Rscript on PATH"
    probe = "cat(all(vapply(c(%s), requireNamespace, logical(1), quietly = TRUE)))" % ", ".join(
        f'"{p}"' for p in packages)
    try:
        answer = subprocess.run([found, "-e", probe], capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"Rscript does not run ({exc})"
    return (found, "") if answer.strip() == "TRUE" else (None, f"R lacks one of {', '.join(packages)}")


def data_for_r(spec: dict[str, Any]) -> tuple[Path, float]:
    """Write the problem's rows to a CSV for R (17 significant digits); return its path and the seconds taken."""
    target = DATA_DIR / f"{spec['problem']}_{spec['n_clusters']}x{spec['cluster_size']}_seed{spec['seed']}.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generate(spec).to_csv(target, index=False, float_format="%.17g")
    return target, time.perf_counter() - started


def status_of(rec: dict[str, Any]) -> str:
    if rec.get("timed_out"):
        return f"timed out (> {rec['time_limit_s']:.0f} s)"
    if "error" in rec:
        return f"ERROR {rec['error']}"
    return "ok" if rec.get("converged") else "NOT converged"


def describe_fit(rec: dict[str, Any]) -> str:
    """One progress line for a fit."""
    if "fit_seconds" not in rec:
        tail = rec.get("stderr_tail", "")[-800:]
        return status_of(rec) + (f": {tail}" if "error" in rec and tail else "")
    load = rec.get("load_seconds", 0.0) + rec.get("sort_seconds", 0.0)
    alpha = ", ".join(f"{a:.4f}" for a in rec["alpha"])
    return (f"{rec['fit_seconds']:.2f} s (load {load:.2f} s), alpha {alpha}, phi {rec['phi']:.4f}, "
            f"+{(rec['peak_rss_fit_kb'] - rec['rss_before_fit_kb']) / 1024:.0f} MB during fit, {status_of(rec)}")


def summarize_tool(records: list[dict[str, Any]], note: str | None) -> dict[str, Any]:
    """Medians over the repeats of one tool on one problem."""
    ok = [r for r in records if "fit_seconds" in r]
    s: dict[str, Any] = {"note": note, "statuses": [status_of(r) for r in records],
                         "failures": [r for r in records if "fit_seconds" not in r]}
    if not records:
        s["status"] = f"not run ({note})" if note else "not run"
        return s
    s["status"] = status_of(ok[0]) if ok and len(ok) == len(records) else status_of(
        next(r for r in records if "fit_seconds" not in r))
    limits = [r["time_limit_s"] for r in records if r.get("timed_out")]
    if limits:
        s["more_than_s"] = min(limits)  # a lower bound on the fit time
    if not ok:
        return s
    first = ok[0]
    s.update({
        "times": [r["fit_seconds"] for r in ok],
        "median_s": _median([r["fit_seconds"] for r in ok]),
        "warm_median_s": _median([r["warm_fit_seconds"] for r in ok if r.get("warm_fit_seconds") is not None]),
        "cpu_over_wall": _median([r["fit_cpu_seconds"] / r["fit_seconds"] for r in ok if r["fit_seconds"] > 0]),
        "load_s": _median([r["load_seconds"] + r.get("sort_seconds", 0.0) for r in ok]),
        "fit_increase_mb": _mb(max(r["peak_rss_fit_kb"] - r["rss_before_fit_kb"] for r in ok)),
        "process_maxrss_mb": _mb(max(r["process_maxrss_kb"] for r in ok)),
        "version": first.get("version"),
        "params": first["params"],
        "bse": first["bse"],
        "alpha": first["alpha"],
        "phi": first["phi"],
        "n_iter": first.get("n_iter"),
        "converged": all(r["converged"] for r in ok),
        "messages": sorted({m for r in ok for m in r.get("messages", [])}),
        "column_sums": first["column_sums"],
    })
    for key in ("load_seconds", "sort_seconds", "was_sorted", "gc_max_used_mb", "control", "r_version", "blas",
                "lapack", "threads"):
        if key in first:
            s[key] = first[key]
    return s


def compare(ours: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Ratio of times and differences of estimates, against ours (coefficients matched by position)."""
    out: dict[str, Any] = {}
    if "median_s" in ours and "more_than_s" in other and "median_s" not in other:
        out["ratio_over_ours_more_than"] = other["more_than_s"] / ours["median_s"]
    if "median_s" not in ours or "median_s" not in other:
        return out
    out["ratio_over_ours"] = other["median_s"] / ours["median_s"]
    ob, tb, se = list(ours["params"].values()), list(other["params"].values()), list(ours["bse"].values())
    if len(ob) == len(tb):
        out["max_abs_dparams_over_se"] = max(abs(a - b) / e for a, b, e in zip(ob, tb, se))
        out["max_abs_dbse_rel"] = max(abs(b / a - 1.0) for a, b in zip(se, other["bse"].values()))
    if len(ours["alpha"]) == len(other["alpha"]):
        out["max_abs_dalpha"] = max((abs(a - b) for a, b in zip(ours["alpha"], other["alpha"])), default=0.0)
    out["phi_diff"] = other["phi"] - ours["phi"]
    sums_o, sums_t = ours["column_sums"], other["column_sums"]
    nobs = max(1.0, abs(sums_o.get("t", 1.0)))
    out["data_match"] = all(abs(sums_o[c] - sums_t[c]) <= 1e-9 * max(1.0, abs(sums_o[c])) * nobs ** 0.5
                            for c in sums_o if c in sums_t)
    return out


def speed_ratios(tools: dict[str, dict[str, Any]], seconds: str = "median_s", warm: str = "warm_median_s") -> None:
    """Add to every row but ours its warm time over our warm time (``warm_ratio_over_ours``) and its
    time over ours on one thread (``ratio_over_ours_1thread``: per core where the row's tool runs on
    one core; on our one-thread row, the speed-up our threads give). ``seconds`` and ``warm`` name
    the times compared (the GLMM script compares fit plus standard errors)."""
    ours, one = tools["multilevel"], tools.get("multilevel (1 thread)", {})
    for tool, t in tools.items():
        if tool == "multilevel":
            continue
        if t.get(warm) and ours.get(warm):
            t["warm_ratio_over_ours"] = t[warm] / ours[warm]
        if t is not one and t.get(seconds) and one.get(seconds):
            t["ratio_over_ours_1thread"] = t[seconds] / one[seconds]


def summarize(spec: dict[str, Any], runs: dict[str, list[dict[str, Any]]], notes: dict[str, str | None],
              machine: dict[str, Any]) -> dict[str, Any]:
    tools = {tool: summarize_tool(runs[tool], notes.get(tool)) for tool in TOOLS}
    for tool in TOOLS[1:]:
        tools[tool].update(compare(tools["multilevel"], tools[tool]))
    speed_ratios(tools)
    nobs = spec["n_clusters"] * spec["cluster_size"]
    return {"problem": spec["key"], **{k: spec[k] for k in ("formula", "family", "corr", "n_clusters",
                                                               "cluster_size", "seed", "time")},
            "nobs": nobs, "numeric_bytes": 8 * nobs * len(NUMERIC_COLUMNS), "repeats": spec["repeats"],
            "tools": tools, "machine": machine}


def _at_least(t: dict[str, Any], key: str, bound_key: str, spec: str) -> str:
    """``t[key]`` formatted, or ``>bound`` where only a lower bound is known (a timed-out fit)."""
    if t.get(key) is None and t.get(bound_key) is not None:
        return ">" + _fmt(t[bound_key], spec)
    return _fmt(t.get(key), spec)


def print_tables(summaries: list[dict[str, Any]]) -> None:
    rows = [("problem", "rows", "tool", "fit s", "x ours", "fit +MB", "load s", "iter", "alpha", "phi",
             "max|d|/SE", "status")]
    for s in summaries:
        for tool in TOOLS:
            t = s["tools"][tool]
            rows.append((
                s["problem"], _fmt(s["nobs"], ","), tool, _at_least(t, "median_s", "more_than_s", ".2f"),
                _at_least(t, "ratio_over_ours", "ratio_over_ours_more_than", ".1f"),
                _fmt(t.get("fit_increase_mb"), ".1f"),
                _fmt(t.get("load_s"), ".2f"), _fmt(t.get("n_iter")),
                _fmt(None if "alpha" not in t else "/".join(f"{a:.4f}" for a in t["alpha"])),
                _fmt(t.get("phi"), ".4f"), _fmt(t.get("max_abs_dparams_over_se"), ".1e"), t["status"],
            ))
    _print_rows(rows)
    print()
    names = next((list(s["tools"]["multilevel"]["params"]) for s in summaries
                  if "params" in s["tools"]["multilevel"]), ["Intercept", "x1", "x2", "t"])
    rows = [("problem", "tool", *names, "robust SE (ours)")]
    for s in summaries:
        for tool in TOOLS:
            t = s["tools"][tool]
            values = list(t.get("params", {}).values())
            rows.append((s["problem"], tool, *(_fmt(v, ".6f") for v in values or [None] * len(names)),
                         "/".join(f"{e:.2g}" for e in t["bse"].values()) if tool == "multilevel" and "bse" in t
                         else ""))
    _print_rows(rows)


def print_notes(summaries: list[dict[str, Any]]) -> None:
    for s in summaries:
        for tool in TOOLS:
            t = s["tools"][tool]
            for m in t.get("messages", []):
                print(f"{s['problem']}: {tool} said: {m}")
            for r in t.get("failures", []):
                print(f"{s['problem']}: {tool}: {status_of(r)}")
            if t.get("data_match") is False:
                print(f"{s['problem']}: WARNING the column sums seen by {tool} and by us differ")
            if t.get("cpu_over_wall") is not None and t["cpu_over_wall"] > 1.2:
                print(f"{s['problem']}: note: {tool} used {t['cpu_over_wall']:.2f} CPU-seconds per second")
        if s["family"] in ("binomial", "poisson") and "phi" in s["tools"]["statsmodels"]:
            print(f"{s['problem']}: statsmodels fixes phi at 1 for the {s['family']} family (geepack and ours "
                  f"estimate it); its alpha is computed with phi = 1")
        g = s["tools"]["geepack"]
        if "load_seconds" in g:
            print(f"{s['problem']}: geepack: reading the CSV took {g['load_seconds']:.2f} s, sorting by (id, t) "
                  f"{g['sort_seconds']:.2f} s (data were {'already' if g['was_sorted'] else 'not'} sorted); "
                  f"neither is in its fit time")


def alternate(fitters: dict[str, Callable[[str], dict[str, Any]]], problem: str, repeats: int,
              describe: Callable[[dict[str, Any]], str], tools: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """Fit one problem ``repeats`` times with every tool in ``fitters`` (tool -> fit(tag), a tag unique
    to the fit), the tools alternating (ours, peer, ..., ours, ...) so machine drift hits all; one
    progress line per fit.
    Every tool of ``tools`` gets a list, empty for those not run."""
    runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
    for rep in range(1, repeats + 1):
        for k, (tool, fit) in enumerate(fitters.items()):
            runs[tool].append(fit(f"{problem}{rep}.{k}"))
            print(f"   [{rep}/{repeats}] {tool}: {describe(runs[tool][-1])}", flush=True)
    return runs


def report(summaries: list[dict[str, Any]], out: Path, *shows: Callable[[list[dict[str, Any]]], None]) -> None:
    """Print the tables and notes of a family script's run, then save its summaries to ``out``."""
    for show in shows:
        print()
        show(summaries)
    save(out, summaries)
    print(f"\nwrote {out}")


def save(path: Path, summaries: list[dict[str, Any]]) -> None:
    """Replace the problems just run in the JSON at ``path``, keeping the others."""
    try:
        kept = json.loads(path.read_text()).get("problems", {})
    except (OSError, ValueError):
        kept = {}
    kept.update((s["problem"], s) for s in summaries)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"problems": kept}, indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="fits per tool, alternating (default 1)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the clusters (smoke test)")
    parser.add_argument("--only", choices=sorted(PROBLEMS), help="run one problem only")
    parser.add_argument("--sm-timeout", type=float, default=1200.0,
                        help="seconds of fitting after which statsmodels is stopped (default 1200)")
    parser.add_argument("--r-timeout", type=float, default=3600.0, help="seconds before a geepack run is killed")
    parser.add_argument("--no-geepack", action="store_true", help="skip geepack")
    parser.add_argument("--no-statsmodels", action="store_true", help="skip statsmodels")
    parser.add_argument("--ours-threads", type=int, metavar="N", help="run our fits with OMP_NUM_THREADS=N")
    parser.add_argument("--warm-limit", type=float, default=WARM_LIMIT, metavar="SECONDS",
                        help="a fit shorter than this is made a second time in its process, timed as warm "
                             "(default %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON goes (default: %(default)s)")
    parser.add_argument("--_worker", nargs=3, metavar=("TOOL", "SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:  # a fitting process started by this script
        tool, spec_path, out_path = args._worker
        run_worker(tool, spec_path, out_path)
        return 0

    machine = {**machine_info(), **core_fingerprint()}
    dirty = " (cpp/ or python/ modified)" if machine.get("git_dirty_cpp_python") else ""
    print(f"{machine['date']}: {machine.get('cpu_model')} x {machine['nproc']}, {machine.get('mem_total_gib')} GiB, "
          f"load average {machine['loadavg_at_start'][0]}; commit {machine.get('git_commit')}{dirty}; "
          f"_core sha256 {machine['core_sha256']} of {machine['core_mtime']}")
    notes: dict[str, str | None] = dict.fromkeys(TOOLS)
    rscript, why = (None, "--no-geepack") if args.no_geepack else find_rscript()
    r_envs = r_row_environments(rscript, why, R_ROWS, notes)
    if args.no_statsmodels:
        notes["statsmodels"] = "--no-statsmodels"
    for tool, note in notes.items():
        if note:
            print(f"{tool} skipped: {note}")

    ds = _load_datasets_module()
    summaries = []
    with tempfile.TemporaryDirectory(prefix="gee_bench_") as tmp:
        workdir = Path(tmp)
        for problem in [args.only] if args.only else list(PROBLEMS):
            base = PROBLEMS[problem]
            spec = {**base, "problem": problem, "key": problem + ("_quick" if args.quick else ""),
                    "formula": FORMULA, "seed": getattr(ds, base["seed_name"]), "repeats": args.repeats,
                    "warm_limit": args.warm_limit,
                    "n_clusters": base["n_clusters"] // (10 if args.quick else 1)}
            nobs = spec["n_clusters"] * spec["cluster_size"]
            print(f"\n== {spec['key']}: {FORMULA}, {spec['family']}, {spec['corr']}; {nobs:,} rows in "
                  f"{spec['n_clusters']:,} clusters of {spec['cluster_size']}", flush=True)
            csv = None
            if r_envs:
                csv, secs = data_for_r(spec)
                print(f"   data for R: {csv} ({csv.stat().st_size / 2**20:.0f} MB, written in {secs:.1f} s)")
            fitters: dict[str, Callable[[str], dict[str, Any]]] = {
                row: partial(fit_in_python, "multilevel", spec, workdir, time_limit=None,
                             threads=args.ours_threads if threads is None else threads)
                for row, threads in OURS_THREADS.items()}
            if csv is not None and rscript is not None:
                fitters.update({row: partial(fit_geepack, rscript, csv, spec, workdir, timeout=args.r_timeout,
                                             blas=R_ROWS[row], env=env) for row, env in r_envs.items()})
            if not args.no_statsmodels:
                fitters["statsmodels"] = partial(fit_in_python, "statsmodels", spec, workdir,
                                                 time_limit=args.sm_timeout, threads=None)
            runs = alternate(fitters, problem, args.repeats, describe_fit, TOOLS)
            summaries.append(summarize(spec, runs, notes, machine))
    report(summaries, args.out, print_tables, print_notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
