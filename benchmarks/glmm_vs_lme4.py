"""GLMM: multilevel.glmm against lme4::glmer and glmmTMB, side by side.

Problems (generators in ``datasets.py``, fixed seeds; ``--quick`` takes a
tenth of the groups, of ``a`` for the crossed problem)
--------
logit_100k        100,000 rows: 5,000 groups of 20, ``y ~ x1 + x2 + (1 | g)``,
                  binomial / logit, Laplace; ``x1``, ``x2`` standard normal,
                  ``P(y = 1) = logistic(-0.5 + 0.6 x1 - 0.4 x2 + b_g)``,
                  ``b_g ~ N(0, 0.8^2)`` (``datasets.glmm_logit``).
logit_1M          the same with 50,000 groups of 20 (1,000,000 rows).
crossed_binomial  200,000 rows: 2,000 levels of ``a`` with 100 rows each,
                  each row in one of 200 levels of ``b`` (balanced, random),
                  ``y ~ x + (1 | a) + (1 | b)``, binomial / logit, Laplace;
                  ``P(y = 1) = logistic(-0.3 + 0.5 x + u_a + v_b)``, sds 0.6
                  and 0.4 (``datasets.glmm_crossed_binomial``).

The data are written once to a CSV that R reads; the tools then alternate
(ours, lme4, glmmTMB, ours, ...) ``--repeats`` times, each fit in a fresh
process:

* ours: a subprocess of this script generates the data frame (grouping
  columns categorical), then times ``multilevel.glmm(formula, df,
  family="binomial", nagq=1)``, formula handling included. Our standard
  errors are computed lazily (a finite-difference Hessian on first access
  of ``.bse``); that is timed apart and reported as ``se s``;
* lme4: ``Rscript r/glmm_fit.R lme4 ...`` reads the CSV and makes the
  grouping columns factors (timed apart as load time), then times
  ``glmer(formula, data, family = binomial("logit"), nAGQ = 1)`` with
  ``glmerControl()`` defaults (its Hessian for the standard errors,
  ``calc.derivs = TRUE``, is inside the call);
* glmmTMB: the same driver times ``glmmTMB(formula, data, family =
  binomial("logit"))`` with ``glmmTMBControl()`` defaults (its
  ``sdreport`` is inside the call);
* each R package also at the speed settings it documents (``r/glmm_fit.R``
  ``CONTROL = fast``): ``lme4 (OpenBLAS, nloptwrap, calc.derivs=FALSE)``,
  ``glmerControl(optimizer = "nloptwrap", calc.derivs = FALSE)`` on OpenBLAS
  (its standard errors then come from the PIRLS system, not the Hessian);
  ``glmmTMB (parallel=all cores)``, ``glmmTMBControl(parallel = cores)``;
* ours on one thread (``multilevel (1 thread)``): the per-core ratios;
* mixedlm (PyPI, the Rust-backed lme4 port): a subprocess of this script
  generates the same data frame and times ``mixedlm.glmer(formula, df,
  family=Binomial(), nAGQ=1)`` and its ``vcov()`` (``--no-mixedlm`` skips it).

Every fit shorter than ``--warm-limit`` seconds (default 120) is made a
second time in the same process and timed as the warm fit.

A fit still running after its tool's time limit (``--ours-timeout``,
``--r-timeout`` or the per-tool ``--lme4-timeout`` / ``--glmmtmb-timeout``;
1800 s by default; mixedlm: ``--r-timeout``) is killed and reported as "timed out", its time as a lower
bound. The generated data frames and the CSV hold the same rows in the same
order, checked through column sums.

Reported per tool: fit seconds (median of the repeats), the ratio peer/ours,
the peak RSS increase during the fit (``VmHWM`` reset through
``/proc/self/clear_refs`` and a 5 ms ``VmRSS`` poller: the helpers of
``lmm_vs_lme4.py``), the log-likelihood (Laplace, lme4's scale), the random
effects' standard deviations (= lme4's theta for scalar random intercepts),
the fixed effects, the largest ``|fixef - ours|`` in units of our standard
error, and per problem whether our log-likelihood is no worse than the
better peer's by more than 1e-3.

Usage::

    python benchmarks/glmm_vs_lme4.py [--repeats N] [--quick]
        [--only logit_100k|logit_1M|crossed_binomial] [--r-timeout S] [--lme4-timeout S]
        [--glmmtmb-timeout S] [--ours-timeout S] [--no-lme4] [--no-glmmtmb] [--ours-threads N]

Writes tables to stdout and the summaries to
``benchmarks/results/glmm_vs_lme4.json``, where a problem run now replaces
its earlier entry (a ``--quick`` run is stored as ``<problem>_quick``).
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
import gls_vs_nlme as gls
import lmm_vs_lme4 as lmm

R_SCRIPT = lmm.BENCH_DIR / "r" / "glmm_fit.R"
DEFAULT_OUT = lmm.RESULTS_DIR / "glmm_vs_lme4.json"
#: The rows of a problem, ours first (the GEE script's layout). ``OURS_THREADS``: our rows and the
#: thread count each sets (None: the default, all cores). ``R_ROWS``: row -> (R package, BLAS,
#: r/glmm_fit.R's CONTROL): each package by default and at the speed settings it documents.
OURS_THREADS: dict[str, int | None] = {"multilevel": None, "multilevel (1 thread)": 1}
R_ROWS = {"lme4": ("lme4", "reference", "default"),
          "lme4 (OpenBLAS, nloptwrap, calc.derivs=FALSE)": ("lme4", "openblas", "fast"),
          "glmmTMB": ("glmmTMB", "reference", "default"),
          "glmmTMB (parallel=all cores)": ("glmmTMB", "reference", "fast")}
TOOLS = (*OURS_THREADS, *R_ROWS, "mixedlm")
PEERS = (*R_ROWS, "mixedlm")
FAMILY, LINK, NAGQ = "binomial", "logit", 1

#: Ours passes when its log-likelihood is at most this much below the better peer's.
LOGLIK_TOL = 1e-3

#: name -> generator in datasets.py (called with n_clusters, cluster_size, seed), size and model.
PROBLEMS: dict[str, dict[str, Any]] = {
    "logit_100k": {"generator": "glmm_logit", "seed_name": "GLMM_LOGIT_SEED", "n_clusters": 5_000,
                   "cluster_size": 20, "formula": "y ~ x1 + x2 + (1 | g)", "factors": ["g"]},
    "logit_1M": {"generator": "glmm_logit", "seed_name": "GLMM_LOGIT_SEED", "n_clusters": 50_000,
                 "cluster_size": 20, "formula": "y ~ x1 + x2 + (1 | g)", "factors": ["g"]},
    "crossed_binomial": {"generator": "glmm_crossed_binomial", "seed_name": "GLMM_CROSSED_SEED",
                         "n_clusters": 2_000, "cluster_size": 100, "formula": "y ~ x + (1 | a) + (1 | b)",
                         "factors": ["a", "b"]},
}


def _sd_key(group: str, term: str) -> str:
    """How a random effect's standard deviation is keyed in every tool's record (as r/glmm_fit.R does)."""
    return f"{group}|{'Intercept' if term == '(Intercept)' else term}"


# --------------------------------------------------------------------------
# Worker (a fresh process): data, one fit of ours, a JSON record
# --------------------------------------------------------------------------

def run_worker(spec_path: str, out_path: str) -> None:
    """Generate one problem, fit it once with ``multilevel.glmm``, write a JSON record.

    The record has the keys that r/glmm_fit.R writes (``params``, ``bse``,
    ``sd``, ``theta``, ``feval``, ``loglik``, the timings and memory).
    """
    import numpy as np
    import pandas as pd  # imported before the data are generated and timed

    spec = json.loads(Path(spec_path).read_text())
    ml = lmm._import_multilevel()
    started = time.perf_counter()
    df = gee.generate(spec)
    loaded = time.perf_counter()
    res, figures = gee.measured(lambda: ml.glmm(spec["formula"], df, family=spec["family"], link=spec["link"],
                                                nagq=spec["nagq"]), spec["warm_limit"])
    se_started = time.perf_counter()
    bse = res.bse
    figures["se_seconds"] = time.perf_counter() - se_started
    vc = res.varcorr
    record = {
        **figures,
        "load_seconds": loaded - started,
        "tool": "multilevel", "version": ml.__version__, "nobs": len(df),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"), "threads": ml.get_num_threads(),
        **lmm.core_fingerprint(Path(ml._core.__file__)),
        "params": {str(k): float(v) for k, v in res.params.items()},
        "bse": {str(k): float(v) for k, v in bse.items()},
        "theta": {str(k): float(v) for k, v in res.theta.items()},
        "sd": {_sd_key(str(r.group), str(r.term1)): float(r.sd) for r in vc.itertuples() if r.term2 is None},
        "loglik": float(res.loglik),
        "feval": int(res.optsum.feval),
        "stage1_feval": int(res.stage1.feval),
        "optimizer_seconds": float(res.optsum.elapsed),
        "optimizer_message": str(res.optsum.message),
        "converged": bool(res.converged),
        "column_sums": column_sums(df),
    }
    Path(out_path).write_text(json.dumps(record, indent=1))


def column_sums(df: Any) -> dict[str, float]:
    """Sums of the numeric columns: every tool's record carries them, to check all fitted the same data."""
    import numpy as np
    import pandas as pd

    return {str(c): float(np.asarray(df[c], dtype=float).sum()) for c in df.columns
            if not isinstance(df[c].dtype, pd.CategoricalDtype)}


def run_mixedlm_worker(spec_path: str, out_path: str) -> None:
    """The same problem fitted once by ``mixedlm.glmer`` (the Rust-backed lme4 port on PyPI), in the
    record layout of :func:`run_worker`. Its time includes its covariance, as lme4's does."""
    import mixedlm
    import numpy as np
    from mixedlm import families

    spec = json.loads(Path(spec_path).read_text())
    started = time.perf_counter()
    df = gee.generate(spec)
    loaded = time.perf_counter()

    def fit() -> Any:
        res = mixedlm.glmer(spec["formula"], df, family=families.Binomial(), nAGQ=spec["nagq"])
        res.vcov()
        return res

    res, figures = gee.measured(fit, spec["warm_limit"])
    fixef = res.fixef()
    bse = dict(zip(fixef, (float(v) ** 0.5 for v in np.diag(res.vcov()))))
    sd = {_sd_key(group, term): float(var) ** 0.5 for group, terms in res.VarCorr().as_dict().items()
          for term, var in terms.items()}
    record = {**figures, "load_seconds": loaded - started, "tool": "mixedlm", "version": mixedlm.__version__,
              "nobs": len(df), "params": {_lme4_term(k): float(v) for k, v in fixef.items()},
              "bse": {_lme4_term(k): v for k, v in bse.items()}, "sd": sd,
              "theta": {str(i): float(t) for i, t in enumerate(res.theta)}, "loglik": float(res.logLik().value),
              "feval": int(getattr(res, "n_iter", -1)), "converged": bool(res.converged),
              "column_sums": column_sums(df)}
    Path(out_path).write_text(json.dumps(record, indent=1))


def _lme4_term(name: str) -> str:
    """lme4's ``(Intercept)`` is our ``Intercept``."""
    return "Intercept" if name == "(Intercept)" else str(name)


# --------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------

def run_fit(cmd: list[str], out_path: Path, timeout: float | None, what: str,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one fitting process; its record, a "timed out" record when it was killed at ``timeout``, or an error."""
    child = lmm.run_child(cmd, timeout=timeout, env=env)
    if timeout and not out_path.exists() and child["wall_seconds"] >= timeout:
        return {"timed_out": True, "time_limit_s": timeout, "killed_by_parent": True, **child}
    rec = gee._collect(child, out_path, what)
    if "params" in rec:
        # The GEE summaries read the estimates of correlation and scale as
        # alpha and phi, the iterations as n_iter: here the standard
        # deviations (ordered by key), the dispersion (1) and the evaluations.
        rec.update(alpha=[rec["sd"][k] for k in sorted(rec["sd"])], phi=1.0, sigma=1.0, n_iter=rec["feval"])
    return rec


def fit_python(tool: str, spec: dict[str, Any], workdir: Path, tag: str, *, timeout: float | None,
               threads: int | None = None) -> dict[str, Any]:
    """One fit by ours (on ``threads`` threads; None: the default) or by mixedlm in a fresh process of
    this script."""
    spec_path, out_path = workdir / f"{tag}.spec.json", workdir / f"{tag}.json"
    spec_path.write_text(json.dumps(spec))
    flag = "--_worker" if tool == "multilevel" else "--_mixedlm_worker"
    return run_fit([sys.executable, str(Path(__file__).resolve()), flag, str(spec_path), str(out_path)],
                   out_path, timeout, "worker", env={"OMP_NUM_THREADS": str(threads)} if threads else None)


def fit_r(row: str, rscript: str, csv: Path, spec: dict[str, Any], workdir: Path, tag: str, *,
          timeout: float | None, env: dict[str, str]) -> dict[str, Any]:
    """One ``Rscript r/glmm_fit.R`` run of the R row ``row`` (see ``R_ROWS``) under ``env``."""
    package, blas, control = R_ROWS[row]
    out_path = workdir / f"{tag}.json"
    rec = run_fit([rscript, str(R_SCRIPT), package, str(csv), spec["formula"], spec["family"], spec["link"],
                   str(out_path), ",".join(spec["factors"]), control, str(spec["warm_limit"])], out_path, timeout,
                  "Rscript", env=env)
    return lmm.check_blas(rec, blas, env)


def _sds(rec: dict[str, Any]) -> str:
    return "/".join(f"{v:.4f}" for _, v in sorted(rec.get("sd", {}).items())) or "-"


def _evals(t: dict[str, Any]) -> str:
    """Objective evaluations: ours as stage 1 + stage 2 (lme4 reports its second stage only)."""
    if t.get("feval") is None:
        return "-"
    return f"{t['stage1_feval']}+{t['feval']}" if t.get("stage1_feval") is not None else str(t["feval"])


def describe_fit(rec: dict[str, Any]) -> str:
    """One progress line for a fit (the GEE script's for a fit that failed or timed out)."""
    if "fit_seconds" not in rec:
        return gee.describe_fit(rec)
    se = f", SE {rec['se_seconds']:.2f} s" if "se_seconds" in rec else ""
    return (f"fit {rec['fit_seconds']:.2f} s{se}, +{(rec['peak_rss_fit_kb'] - rec['rss_before_fit_kb']) / 1024:.0f} MB "
            f"(load {rec['load_seconds']:.2f} s); logLik {rec['loglik']:.6f}, sd {_sds(rec)}, "
            f"evals {_evals(rec)}; {gee.status_of(rec)}")


#: Extra per-tool figures kept from the first successful record of a tool.
KEPT = ("sd", "theta", "stage1_feval", "conv_messages", "optimizer", "optimizer_message", "pd_hessian", "geval",
        "peak_reset", "nlevels")


def summarize_tool(records: list[dict[str, Any]], note: str | None) -> dict[str, Any]:
    """The GLS script's summary of one tool's repeats (log-likelihood included) and the GLMM figures."""
    s = gls.summarize_tool(records, note)
    ok = [r for r in records if "fit_seconds" in r]
    if ok:
        s.update({k: ok[0][k] for k in KEPT if k in ok[0]}, feval=s.pop("n_iter"))
        se = [r["se_seconds"] for r in ok if "se_seconds" in r]
        if se:
            s["se_s"] = lmm._median(se)
    return s


def loglik_verdict(tools: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Whether our log-likelihood is no worse than the better peer's by more than ``LOGLIK_TOL``."""
    peers = {p: tools[p]["loglik"] for p in PEERS if "loglik" in tools[p]}
    if "loglik" not in tools["multilevel"] or not peers:
        return {}
    best = max(peers, key=peers.__getitem__)
    d = tools["multilevel"]["loglik"] - peers[best]
    return {"best_peer": best, "loglik_ours_minus_best_peer": d, "loglik_ok": d >= -LOGLIK_TOL,
            "loglik_tol": LOGLIK_TOL}


def summarize(spec: dict[str, Any], runs: dict[str, list[dict[str, Any]]], notes: dict[str, str | None],
              machine: dict[str, Any]) -> dict[str, Any]:
    tools = {tool: summarize_tool(runs[tool], notes.get(tool)) for tool in TOOLS}
    ours = tools["multilevel"]
    for t in tools.values():  # every time with its standard errors: ours computes them on first use
        for key in ("median_s", "warm_median_s"):  # (the warm fit's as long as the first's)
            if t.get(key) is not None:
                t[key.replace("median_s", "with_se_s")] = t[key] + t.get("se_s", 0.0)
    for tool in TOOLS[1:]:
        t = tools[tool]
        t.update(gee.compare(ours, t))
        t["max_abs_dsd"] = t.pop("max_abs_dalpha", None)
        if "loglik" in t and "loglik" in ours:
            t["loglik_minus_ours"] = t["loglik"] - ours["loglik"]
        if "with_se_s" in t and "se_s" in ours:
            t["ratio_over_ours_with_se"] = t["with_se_s"] / ours["with_se_s"]
    gee.speed_ratios(tools, seconds="with_se_s", warm="warm_with_se_s")
    for t in tools.values():
        for key in ("alpha", "phi", "sigma", "phi_diff", "sigma_rel_diff"):
            t.pop(key, None)
    nobs = spec["n_clusters"] * spec["cluster_size"]
    return {"problem": spec["key"], **{k: spec[k] for k in ("formula", "family", "link", "nagq", "n_clusters",
                                                               "cluster_size", "generator", "seed")},
            "nobs": nobs, "repeats": spec["repeats"], **loglik_verdict(tools), "tools": tools, "machine": machine}


def print_tables(summaries: list[dict[str, Any]]) -> None:
    """Per problem and tool: time, ratio, memory, logLik, sds, agreement; then the fixed effects."""
    fmt, bound = lmm._fmt, gee._at_least
    rows = [("problem", "rows", "tool", "fit s", "x ours", "se s", "fit +MB", "load s", "logLik", "sd",
             "max|d|/SE", "evals", "status")]
    for s in summaries:
        rows += [(s["problem"], fmt(s["nobs"], ","), tool, bound(t, "median_s", "more_than_s", ".2f"),
                  bound(t, "ratio_over_ours", "ratio_over_ours_more_than", ".1f"), fmt(t.get("se_s"), ".2f"),
                  fmt(t.get("fit_increase_mb"), ".1f"), fmt(t.get("load_s"), ".2f"), fmt(t.get("loglik"), ".6f"),
                  _sds(t), fmt(t.get("max_abs_dparams_over_se"), ".1e"), _evals(t), t["status"])
                 for tool, t in s["tools"].items()]
    lmm._print_rows(rows)
    by_formula: dict[str, list[dict[str, Any]]] = {}
    for s in summaries:
        by_formula.setdefault(s["formula"], []).append(s)
    for group in by_formula.values():  # one table per set of coefficient names
        names = next((list(s["tools"]["multilevel"]["params"]) for s in group
                      if "params" in s["tools"]["multilevel"]), None)
        if names is None:
            continue
        print()
        rows = [("problem", "tool", *names)]
        for s in group:
            for tool, t in s["tools"].items():
                shown = {tool: t.get("params")}
                if tool == "multilevel":
                    shown["  (our SE)"] = t.get("bse")
                rows += [(s["problem"], label, *(fmt(v, ".6f") for v in (values or {}).values() or [None] * len(names)))
                         for label, values in shown.items()]
        lmm._print_rows(rows)


def notes_of(tool: str, t: dict[str, Any]) -> list[str]:
    """What a tool said, how its failed runs ended, and its threads or why it did not run."""
    said = sorted(set(t.get("messages", [])) | set(t.get("conv_messages", [])))
    out = [f"{tool} said: {m}" for m in said] + [f"{tool}: {gee.status_of(r)}" for r in t.get("failures", [])]
    busy = t.get("cpu_over_wall") or 0.0
    out += [f"{tool} used {busy:.2f} CPU-seconds per second of its fit"] if busy > 1.2 else []
    out += [f"{tool} not run: {t['note']}"] if t.get("note") and not t.get("statuses") else []
    return out


def print_notes(summaries: list[dict[str, Any]]) -> None:
    for s in summaries:
        lines = [f"WARNING the column sums seen by {p} and by us differ" for p in PEERS
                 if s["tools"][p].get("data_match") is False]
        if "loglik_ok" in s:
            lines.insert(0, f"logLik of ours no worse than the better peer's ({s['best_peer']}) by more than "
                            f"{LOGLIK_TOL:g}: {'YES' if s['loglik_ok'] else 'NO'} (ours - {s['best_peer']} = "
                            f"{s['loglik_ours_minus_best_peer']:.3g})")
        lines += [f"{p} / (ours + our SE time) = {s['tools'][p]['ratio_over_ours_with_se']:.1f}x" for p in PEERS
                  if "ratio_over_ours_with_se" in s["tools"][p]]
        for tool, t in s["tools"].items():
            lines += notes_of(tool, t)
        print("\n".join(f"{s['problem']}: {line}" for line in lines))
    print("fit s: ours without its standard errors (se s: the Hessian on first access of .bse); lme4 and glmmTMB "
          "with theirs. evals: ours stage 1 + stage 2; lme4 its second stage; glmmTMB nlminb's function evaluations")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="a tenth of the groups (smoke test)")
    add("--only", choices=sorted(PROBLEMS), help="run one problem only")
    add("--repeats", type=int, default=1, help="fits per tool, alternating (default 1)")
    add("--r-timeout", type=float, default=1800.0, help="seconds before an R fit is killed (default 1800)")
    add("--lme4-timeout", type=float, help="the same for lme4 alone (default: --r-timeout)")
    add("--glmmtmb-timeout", type=float, help="the same for glmmTMB alone (default: --r-timeout)")
    add("--ours-timeout", type=float, default=1800.0, help="seconds before one of our fits is killed (default 1800)")
    add("--no-lme4", action="store_true", help="skip lme4")
    add("--no-glmmtmb", action="store_true", help="skip glmmTMB")
    add("--no-mixedlm", action="store_true", help="skip the mixedlm package (PyPI)")
    add("--ours-threads", type=int, metavar="N", help="OMP_NUM_THREADS=N for our fits")
    add("--warm-limit", type=float, default=lmm.WARM_LIMIT, metavar="SECONDS",
        help="a fit shorter than this is made a second time in its process, timed as warm (default %(default)s)")
    add("--out", type=Path, default=DEFAULT_OUT, help="the JSON file (default: %(default)s)")
    add("--_worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    add("--_mixedlm_worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._worker:  # one of our fits, in a process of its own
        run_worker(*args._worker)
        return 0
    if args._mixedlm_worker:
        run_mixedlm_worker(*args._mixedlm_worker)
        return 0

    machine = {**lmm.machine_info(), **lmm.core_fingerprint()}
    dirty = " (cpp/ or python/ modified)" if machine.get("git_dirty_cpp_python") else ""
    print(f"{machine['date']}, {machine.get('cpu_model')} x {machine['nproc']}, {machine.get('mem_total_gib')} GiB, "
          f"load average {machine['loadavg_at_start'][0]}; commit {machine.get('git_commit')}{dirty}, "
          f"_core {machine['core_sha256']} of {machine['core_mtime']}")
    limits = {"lme4": args.lme4_timeout or args.r_timeout, "glmmTMB": args.glmmtmb_timeout or args.r_timeout}
    notes: dict[str, str | None] = dict.fromkeys(TOOLS)
    r_envs: dict[str, tuple[str, dict[str, str]]] = {}  # R row -> (Rscript, environment)
    for package, skipped in (("lme4", args.no_lme4), ("glmmTMB", args.no_glmmtmb)):
        found, why = ((None, f"--no-{package.lower()}") if skipped
                      else gee.find_rscript((package, "data.table", "jsonlite")))
        rows = {row: blas for row, (row_package, blas, _) in R_ROWS.items() if row_package == package}
        r_envs.update((row, (found, env)) for row, env in lmm.r_row_environments(found, why, rows, notes).items())
    try:
        import mixedlm  # noqa: F401
        notes["mixedlm"] = "--no-mixedlm" if args.no_mixedlm else None
    except ImportError:
        notes["mixedlm"] = "not installed (pip install mixedlm)"
    for tool, note in notes.items():
        if note:
            print(f"{tool} skipped: {note}")
    ds = lmm._load_datasets_module()
    summaries = []
    with tempfile.TemporaryDirectory(prefix="glmm_bench_") as tmp:
        workdir = Path(tmp)
        for problem in [args.only] if args.only else list(PROBLEMS):
            base = PROBLEMS[problem]
            spec = {**base, "problem": problem, "key": problem + ("_quick" if args.quick else ""),
                    "family": FAMILY, "link": LINK, "nagq": NAGQ, "seed": getattr(ds, base["seed_name"]),
                    "repeats": args.repeats, "n_clusters": base["n_clusters"] // (10 if args.quick else 1),
                    "warm_limit": args.warm_limit}
            print(f"\n== {spec['key']}: {spec['formula']}, {FAMILY}/{LINK}, Laplace; "
                  f"{spec['n_clusters'] * spec['cluster_size']:,} rows "
                  f"({spec['n_clusters']:,} x {spec['cluster_size']})", flush=True)
            fitters: dict[str, Callable[[str], dict[str, Any]]] = {
                row: partial(fit_python, "multilevel", spec, workdir, timeout=args.ours_timeout,
                             threads=args.ours_threads if threads is None else threads)
                for row, threads in OURS_THREADS.items()}
            if notes["mixedlm"] is None:
                fitters["mixedlm"] = partial(fit_python, "mixedlm", spec, workdir, timeout=args.r_timeout)
            if r_envs:
                csv, secs = gee.data_for_r(spec)
                print(f"   CSV for R ({csv.stat().st_size / 2**20:.0f} MB, {secs:.1f} s): {csv}")
                fitters.update({row: partial(fit_r, row, rscript, csv, spec, workdir, env=env,
                                             timeout=limits[R_ROWS[row][0]])
                                for row, (rscript, env) in r_envs.items()})
            runs = gee.alternate(fitters, problem, args.repeats, describe_fit, TOOLS)
            summaries.append(summarize(spec, runs, notes, machine))
    gee.report(summaries, args.out, print_tables, print_notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
