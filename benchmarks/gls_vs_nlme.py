"""GLS: multilevel.gls against nlme::gls, side by side.

Problems (``datasets.gls_ar1``, fixed seed; ``--quick`` takes a tenth of the
subjects)
--------
ar1_200k  200,000 rows: 20,000 subjects x 10 times (``t = 0 .. 9``),
          ``y ~ t * trt`` with ``trt`` a two-level subject-level factor and
          stationary AR(1) errors within a subject (phi 0.6, sd 1); REML with
          an AR(1) correlation over ``t`` within ``subject``.
ar1_10M   the same with 1,000,000 subjects (10,000,000 rows); ours only (no
          CSV). Only with ``--large``.

For ar1_200k the data are written once to a CSV that R reads; the tools then
alternate (ours, nlme, ours, ...) ``--repeats`` times, each fit in a fresh
process:

* ours: a subprocess of this script generates the data frame, then times
  ``multilevel.gls("y ~ t * trt", df, groups="subject", time="t",
  corr="ar1", method="REML")``, formula handling included;
* nlme: ``Rscript r/gls_fit.R`` reads the CSV, makes ``subject`` and ``trt``
  factors and sorts the rows by ``(subject, t)`` (timed apart as load time),
  then times ``gls(y ~ t * trt, data = df, correlation = corAR1(form = ~ t |
  subject), method = "REML")`` with ``glsControl()`` defaults, on R's
  reference BLAS; ``nlme (OpenBLAS)`` the same on Debian's OpenBLAS (nlme has
  no speed settings of its own). A run still going after ``--r-timeout``
  seconds is killed and reported as timed out;
* ours on one thread (``multilevel (1 thread)``): the per-core ratios.

Every fit shorter than ``--warm-limit`` seconds (default 120) is made a
second time in the same process and timed as the warm fit.

The generated data frames and the CSV hold the same rows in the same order,
checked through column sums. Agreement: the largest ``|coef - ours|`` in
units of our standard error, and the log-likelihoods (the same optimum when
they differ by less than 1e-4). Memory: in each fitting process, RSS just
before the fit and the peak RSS during it (helpers of ``lmm_vs_lme4.py``).

Usage::

    python benchmarks/gls_vs_nlme.py [--repeats N] [--quick] [--large]
        [--only ar1_200k|ar1_10M] [--r-timeout S] [--no-nlme] [--ours-threads N] [--warm-limit S]

Writes a table to stdout and the summaries to
``benchmarks/results/gls_vs_nlme.json``, where a problem run now replaces its
earlier entry (a ``--quick`` run is stored as ``<problem>_quick``). In the
JSON, ``corr_params`` holds the AR(1) phi, ``sigma2`` the residual variance
and ``feval`` our objective evaluations.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import gee_vs_geepack as gee
import lmm_vs_lme4 as lmm

R_SCRIPT = lmm.BENCH_DIR / "r" / "gls_fit.R"
DEFAULT_OUT = lmm.RESULTS_DIR / "gls_vs_nlme.json"
FORMULA = "y ~ t * trt"
NUMERIC_COLUMNS = ["t", "y"]
#: The rows of a problem, ours first (the GEE script's layout): our thread counts and nlme's BLAS per row.
OURS_THREADS: dict[str, int | None] = {"multilevel": None, "multilevel (1 thread)": 1}
R_ROWS = {"nlme": "reference", "nlme (OpenBLAS)": "openblas"}
TOOLS = (*OURS_THREADS, *R_ROWS, "statsmodels")

#: Why statsmodels is listed but never run: none of its GLS classes fits this model.
STATSMODELS_NOTE = ("statsmodels has no GLS that estimates a within-cluster correlation by ML/REML: "
                    "sm.GLS takes a known dense n x n Sigma (2x10^5 rows: 320 GB) and GLSAR one AR "
                    "series over all rows")

#: |logLik difference| below which both tools are taken to have reached the same optimum.
SAME_OPTIMUM_TOL = 1e-4

#: Bytes per row of the fit's numeric input: ``y`` and the 4 model-matrix columns as float64.
DESIGN_BYTES_PER_ROW = 8 * 5

#: name -> generator in datasets.py, size, model and whether nlme is run on it.
PROBLEMS: dict[str, dict[str, Any]] = {
    "ar1_200k": {"generator": "gls_ar1", "n_clusters": 20_000, "cluster_size": 10, "corr": "ar1",
                 "r_corr": "corAR1", "r_form": "~ t | subject", "method": "REML", "nlme": True, "large": False},
    "ar1_10M": {"generator": "gls_ar1", "n_clusters": 1_000_000, "cluster_size": 10, "corr": "ar1",
                "r_corr": "corAR1", "r_form": "~ t | subject", "method": "REML", "nlme": False, "large": True},
}

#: The GEE script's summaries, reused here, name the correlation parameters
#: ``alpha``, the scale ``phi`` and the iterations ``n_iter``: the fit records
#: carry those names, and the summaries are renamed to these before printing.
GLS_NAMES = {"alpha": "corr_params", "phi": "sigma2", "n_iter": "feval", "max_abs_dalpha": "max_abs_dcorr_params",
             "phi_diff": "sigma2_diff"}


# --------------------------------------------------------------------------
# Worker (a fresh process): data, one fit of ours, a JSON record
# --------------------------------------------------------------------------

def run_worker(spec_path: str, out_path: str) -> None:
    """Generate one problem, fit it once with ``multilevel.gls``, write a JSON record.

    The record uses the GEE script's names (``alpha``, ``phi``, ``n_iter``:
    see ``GLS_NAMES``) so that its summaries apply.
    """
    import numpy as np

    import pandas  # noqa: F401  (imported before the load is timed)

    spec = json.loads(Path(spec_path).read_text())
    multilevel = lmm._import_multilevel()
    t0 = time.perf_counter()
    df = gee.generate(spec)
    load_seconds = time.perf_counter() - t0
    res, figures = gee.measured(lambda: multilevel.gls(spec["formula"], df, groups="subject", time="t",
                                                       corr=spec["corr"], method=spec["method"]),
                                spec["warm_limit"])
    sigma = float(res.sigma)
    record = {
        "tool": "multilevel",
        "version": multilevel.__version__,
        **lmm.core_fingerprint(Path(multilevel._core.__file__)),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "threads": multilevel.get_num_threads(),
        "nobs": int(len(df)),
        "load_seconds": load_seconds,
        **figures,
        "params": {str(k): float(v) for k, v in res.params.items()},
        "bse": {str(k): float(v) for k, v in res.bse.items()},
        "alpha": [float(a) for a in np.atleast_1d(res.corr_params)],
        "phi": sigma**2,
        "sigma": sigma,
        "loglik": float(res.loglik),
        "n_iter": int(res.optsum.feval),
        "converged": bool(res.converged),
        "column_sums": {c: float(np.asarray(df[c], dtype=float).sum()) for c in NUMERIC_COLUMNS},
    }
    Path(out_path).write_text(json.dumps(record, indent=1))


# --------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------

def fit_ours(spec: dict[str, Any], workdir: Path, tag: str, threads: int | None) -> dict[str, Any]:
    """One fit of ours in a fresh process, on ``threads`` threads (None: the default)."""
    spec_path, out_path = workdir / f"{tag}.spec.json", workdir / f"{tag}.json"
    spec_path.write_text(json.dumps(spec))
    child = lmm.run_child([sys.executable, str(Path(__file__).resolve()), "--_worker", str(spec_path),
                           str(out_path)], env={"OMP_NUM_THREADS": str(threads)} if threads else None)
    return gee._collect(child, out_path, "worker")


def fit_nlme(rscript: str, csv: Path, spec: dict[str, Any], workdir: Path, tag: str, timeout: float,
             blas: str, env: dict[str, str]) -> dict[str, Any]:
    """One ``Rscript r/gls_fit.R`` run on ``blas`` (its environment ``env``); its record with the GEE
    script's names added."""
    out_path = workdir / f"{tag}.json"
    child = lmm.run_child([rscript, str(R_SCRIPT), str(csv), spec["formula"], spec["r_corr"], spec["r_form"],
                           spec["method"], str(out_path), "subject,trt", str(spec["warm_limit"])],
                          timeout=timeout, env=env)
    if not out_path.exists() and child["wall_seconds"] >= timeout:
        return {"timed_out": True, "time_limit_s": timeout, "killed_by_parent": True, **child}
    rec = lmm.check_blas(gee._collect(child, out_path, "Rscript"), blas, env)
    if "corr_params" in rec:
        rec.update(alpha=list(rec.pop("corr_params").values()), phi=rec["sigma"] ** 2, version=rec["nlme_version"])
    return rec


def describe_fit(rec: dict[str, Any]) -> str:
    """One progress line for a fit."""
    status = gee.status_of(rec)
    if "fit_seconds" not in rec:
        tail = rec.get("stderr_tail", "")[-800:] if "error" in rec else ""
        return f"{status}: {tail}" if tail else status
    grew_mb = (rec["peak_rss_fit_kb"] - rec["rss_before_fit_kb"]) / 1024
    before = rec.get("load_seconds", 0.0) + rec.get("sort_seconds", 0.0)
    return (f"fit {rec['fit_seconds']:.2f} s, +{grew_mb:.0f} MB (data ready in {before:.2f} s); "
            f"logLik {rec['loglik']:.6f}, phi {rec['alpha'][0]:.6f}, sigma {rec['sigma']:.6f}; {status}")


def summarize_tool(records: list[dict[str, Any]], note: str | None) -> dict[str, Any]:
    """The GEE script's summary of one tool's repeats, plus sigma and the log-likelihood."""
    s = gee.summarize_tool(records, note)
    ok = [r for r in records if "fit_seconds" in r]
    if ok:
        s.update(sigma=ok[0]["sigma"], loglik=ok[0]["loglik"], nobs=ok[0]["nobs"],
                 loglik_spread=max(r["loglik"] for r in ok) - min(r["loglik"] for r in ok),
                 rss_before_fit_mb=lmm._mb(max(r["rss_before_fit_kb"] for r in ok)),
                 **{k: ok[0][k] for k in ("core_sha256", "core_mtime", "omp_num_threads_env") if k in ok[0]})
    return s


def optimum(ours: dict[str, Any], other: dict[str, Any], name: str) -> dict[str, Any]:
    """Log-likelihood and sigma of ``other`` (the row ``name``) against ours, and whether both reached
    the same optimum."""
    if "loglik" not in ours or "loglik" not in other:
        return {}
    d = other["loglik"] - ours["loglik"]
    return {"loglik_diff_other_minus_ours": d, "same_optimum": abs(d) < SAME_OPTIMUM_TOL,
            "optimum": "same" if abs(d) < SAME_OPTIMUM_TOL else f"{name if d > 0 else 'ours'} higher by {abs(d):.3g}",
            "sigma_rel_diff": other["sigma"] / ours["sigma"] - 1.0}


def summarize(spec: dict[str, Any], runs: dict[str, list[dict[str, Any]]], notes: dict[str, str | None],
              machine: dict[str, Any]) -> dict[str, Any]:
    raw = {tool: summarize_tool(runs[tool], notes.get(tool)) for tool in TOOLS}
    for tool in TOOLS[1:]:
        raw[tool].update(gee.compare(raw["multilevel"], raw[tool]), **optimum(raw["multilevel"], raw[tool], tool))
    gee.speed_ratios(raw)
    tools = {tool: {GLS_NAMES.get(k, k): v for k, v in t.items()} for tool, t in raw.items()}
    nobs = spec["n_clusters"] * spec["cluster_size"]
    grew = tools["multilevel"].get("fit_increase_mb")
    return {"problem": spec["key"], **{k: spec[k] for k in ("formula", "corr", "method", "n_clusters",
                                                               "cluster_size", "seed", "r_corr", "r_form")},
            "nobs": nobs, "design_bytes": DESIGN_BYTES_PER_ROW * nobs, "repeats": spec["repeats"],
            "ours_increase_over_design": None if grew is None else grew * 2**20 / (DESIGN_BYTES_PER_ROW * nobs),
            "tools": tools, "machine": machine}


def each_tool(summaries: list[dict[str, Any]]) -> Any:
    """``(summary, tool, its results)`` for every problem and tool."""
    return ((s, tool, s["tools"][tool]) for s in summaries for tool in TOOLS)


def print_tables(summaries: list[dict[str, Any]]) -> None:
    fmt = lmm._fmt
    rows = [("problem", "rows", "tool", "fit s", "nlme/ours", "fit +MB", "load s", "logLik", "phi", "sigma",
             "max|d|/SE", "evals", "status")]
    rows += [(s["problem"], fmt(s["nobs"], ","), tool, gee._at_least(t, "median_s", "more_than_s", ".2f"),
              gee._at_least(t, "ratio_over_ours", "ratio_over_ours_more_than", ".1f"),
              fmt(t.get("fit_increase_mb"), ".1f"), fmt(t.get("load_s"), ".2f"), fmt(t.get("loglik"), ".6f"),
              fmt(t["corr_params"][0] if t.get("corr_params") else None, ".6f"), fmt(t.get("sigma"), ".6f"),
              fmt(t.get("max_abs_dparams_over_se"), ".1e"), fmt(t.get("feval")), t["status"])
             for s, tool, t in each_tool(summaries)]
    lmm._print_rows(rows)
    print()
    names = next((list(s["tools"]["multilevel"]["params"]) for s in summaries
                  if "params" in s["tools"]["multilevel"]), ["Intercept", "t", "trt", "t:trt"])
    rows = [("problem", "tool", *names)]
    for s, tool, t in each_tool(summaries):
        rows.append((s["problem"], tool, *(fmt(v, ".8f") for v in list(t.get("params", {}).values())
                                             or [None] * len(names))))
        if "bse" in t and tool == "multilevel":
            rows.append((s["problem"], "  (our SE)", *(fmt(v, ".6f") for v in t["bse"].values())))
    lmm._print_rows(rows)


def print_notes(summaries: list[dict[str, Any]]) -> None:
    for s in summaries:
        name, ours = s["problem"], s["tools"]["multilevel"]
        if "fit_increase_mb" in ours:
            print(f"{name}: ours: +{ours['fit_increase_mb']:.0f} MB during the fit "
                  f"({s['ours_increase_over_design']:.2f}x the {s['design_bytes'] / 2**20:.0f} MB of y and the model "
                  f"matrix as float64), process peak {ours['process_maxrss_mb']:.0f} MB")
        for row in R_ROWS:
            other = s["tools"][row]
            if "optimum" in other:
                print(f"{name}: same optimum: {'YES' if other['same_optimum'] else 'NO'} (logLik {row} - ours = "
                      f"{other['loglik_diff_other_minus_ours']:.3g}; tolerance {SAME_OPTIMUM_TOL:g}); "
                      f"{row} / ours = {other['ratio_over_ours']:.1f}x")
            elif "ratio_over_ours_more_than" in other:
                print(f"{name}: {row} / ours > {other['ratio_over_ours_more_than']:.1f}x ({row} timed out)")
            if other.get("data_match") is False:
                print(f"{name}: WARNING the column sums seen by {row} and by us differ")
            if "load_s" in other:
                print(f"{name}: {row}: reading the CSV, making factors and sorting took {other['load_s']:.2f} s "
                      f"(data were {'already' if other.get('was_sorted') else 'not'} sorted), not in its fit time")
    for s, tool, t in each_tool(summaries):
        lines = [f"{tool} said: {m}" for m in t.get("messages", [])]
        lines += [f"{tool}: {gee.status_of(r)}" for r in t.get("failures", [])]
        if (t.get("cpu_over_wall") or 0.0) > 1.2:
            lines.append(f"note: {tool} used {t['cpu_over_wall']:.2f} CPU-seconds per second")
        if t.get("note") and not t.get("statuses"):
            lines.append(f"{tool} not run: {t['note']}")
        for line in lines:
            print(f"{s['problem']}: {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="fits per tool, alternating (default 1)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the subjects (smoke test)")
    parser.add_argument("--large", action="store_true", help="also run ar1_10M (10,000,000 rows, ours only)")
    parser.add_argument("--only", choices=sorted(PROBLEMS), help="run one problem only (ar1_10M needs --large)")
    parser.add_argument("--r-timeout", type=float, default=1800.0,
                        help="seconds before an nlme run is killed (default 1800)")
    parser.add_argument("--no-nlme", action="store_true", help="skip nlme")
    parser.add_argument("--ours-threads", type=int, metavar="N", help="run our fits with OMP_NUM_THREADS=N")
    parser.add_argument("--warm-limit", type=float, default=lmm.WARM_LIMIT, metavar="SECONDS",
                        help="a fit shorter than this is made a second time in its process, timed as warm "
                             "(default %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON goes (default: %(default)s)")
    parser.add_argument("--_worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:  # a fitting process started by this script
        run_worker(*args._worker)
        return 0
    problems = [args.only] if args.only else [p for p in PROBLEMS if args.large or not PROBLEMS[p]["large"]]
    if not args.large and any(PROBLEMS[p]["large"] for p in problems):
        parser.error("ar1_10M runs only with --large")

    machine = {**lmm.machine_info(), **lmm.core_fingerprint()}
    print(f"{machine['date']}  {machine['nproc']} CPUs ({machine.get('cpu_model')}), {machine.get('mem_total_gib')} GiB, "
          f"load {machine['loadavg_at_start'][0]}; git {machine.get('git_commit')}"
          f"{' + changes in cpp/ or python/' if machine.get('git_dirty_cpp_python') else ''}; "
          f"core {machine['core_sha256']} built {machine['core_mtime']}")
    notes: dict[str, str | None] = {**dict.fromkeys(TOOLS), "statsmodels": STATSMODELS_NOTE}
    rscript, why = None, "--no-nlme"
    if not args.no_nlme and any(PROBLEMS[p]["nlme"] for p in problems):
        rscript, why = gee.find_rscript(("nlme", "data.table", "jsonlite"))
    r_envs = lmm.r_row_environments(rscript, why, R_ROWS, notes)
    for row in R_ROWS:
        if notes[row]:
            print(f"{row} skipped: {notes[row]}")

    seed = lmm._load_datasets_module().GLS_AR1_SEED
    summaries = []
    with tempfile.TemporaryDirectory(prefix="gls_bench_") as tmp:
        workdir = Path(tmp)
        for problem in problems:
            base = PROBLEMS[problem]
            spec = {**base, "problem": problem, "key": problem + ("_quick" if args.quick else ""),
                    "formula": FORMULA, "seed": seed, "repeats": args.repeats, "warm_limit": args.warm_limit,
                    "n_clusters": base["n_clusters"] // (10 if args.quick else 1)}
            print(f"\n== {spec['key']}: {FORMULA}, {spec['corr']} over t within subject, {spec['method']}; "
                  f"{spec['n_clusters'] * spec['cluster_size']:,} rows "
                  f"({spec['n_clusters']:,} subjects x {spec['cluster_size']})", flush=True)
            problem_notes = {**notes, **({} if base["nlme"] else dict.fromkeys(R_ROWS, "ours only on this problem"))}
            csv = None
            if base["nlme"] and r_envs:
                csv, secs = gee.data_for_r(spec)
                print(f"   CSV for nlme ({secs:.1f} s): {csv}")
            fitters: dict[str, Callable[[str], dict[str, Any]]] = {
                row: partial(fit_ours, spec, workdir, threads=args.ours_threads if threads is None else threads)
                for row, threads in OURS_THREADS.items()}
            if csv is not None and rscript is not None:
                fitters.update({row: partial(fit_nlme, rscript, csv, spec, workdir, timeout=args.r_timeout,
                                             blas=R_ROWS[row], env=env) for row, env in r_envs.items()})
            runs = gee.alternate(fitters, problem, args.repeats, describe_fit, TOOLS)
            summaries.append(summarize(spec, runs, problem_notes, machine))
    gee.report(summaries, args.out, print_tables, print_notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
