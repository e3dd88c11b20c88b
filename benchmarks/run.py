"""One command that puts multilevel beside its peers, and a quick self-check.

Full mode runs the per-family scripts (each fits every installed peer on the
same data in the same run, alternating the tools, each fit in a fresh
process) and gathers their records into one table:

* ``lmm_vs_lme4.py``: lme4 (by default, without its derivative check, and
  on OpenBLAS too), mixedlm, statsmodels MixedLM and ours on one thread; sleepstudy,
  InstEval (two models), nested LMMs of 10^4..10^6 rows (``--large``: 10^7,
  ours only), a crossed LMM of 10^6 rows (50,000 x 5,000 levels);
* ``gee_vs_geepack.py``: geepack (also on OpenBLAS) and statsmodels; binary
  exchangeable and Poisson AR(1), each at 10^5 and 10^6 rows;
* ``gls_vs_nlme.py``: nlme (also on OpenBLAS; statsmodels listed as not
  applicable, with the reason); AR(1) at 2x10^5 rows (``--large``: 10^7, ours only);
* ``glmm_vs_lme4.py``: glmer and glmmTMB, each by default and at its documented
  speed settings, and mixedlm's glmer; logistic at 10^5 and 10^6 rows, crossed binomial.

Every family also runs ours on one thread (the per-core ratio).

Outputs: ``benchmarks/results/all.csv`` and ``all.json`` (one row per problem
and tool: fit seconds, data-loading seconds, ratio peer/ours, peak memory
during the fit, objective, largest coefficient difference from ours in units
of our standard error, status, the warm time (a second fit in the same
process, made when the first took less than ``--warm-limit`` seconds) with its
ratio, the ratio against ours on one thread and the fit's CPU over wall
seconds), a markdown table
``benchmarks/results/summary.md`` and, with matplotlib, ``time_vs_rows.png``.
A peer that is missing is skipped with a line that says so; a fit that fails
or times out is written down with its status.

``--quick`` fits small problems with our code only and checks the estimates
against the stored reference answers (``tests/reference/*.json``); it exits
non-zero on a mismatch. CI runs it (``tests/test_benchmarks_quick.py``). No
timing is asserted anywhere.

Usage::

    python benchmarks/run.py [--quick] [--repeats N] [--large] [--warm-limit SECONDS]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
REFERENCE_DIR = REPO_DIR / "tests" / "reference"

#: Nested LMM sizes of the time-versus-rows sweep: groups of 50.
NESTED_GROUPS = (200, 2_000, 20_000)


# --------------------------------------------------------------------------
# Quick mode: small problems, ours only, checked against the references
# --------------------------------------------------------------------------

def _reference(name: str) -> dict[str, Any]:
    return json.loads((REFERENCE_DIR / name).read_text())


def _check(label: str, ours: Any, ref: Any, scale: Any, tol: float) -> tuple[bool, float]:
    """Largest |ours - ref| / scale and whether it is within tol."""
    worst = float(np.max(np.abs(np.asarray(ours, float) - np.asarray(ref, float)) / np.asarray(scale, float)))
    return worst <= tol, worst


def quick_lmm_sleepstudy() -> tuple[bool, float, str]:
    import multilevel as ml
    from multilevel.datasets import load_dataset

    ref = _reference("lmm.json")["models"]["sleepstudy_reml"]
    fit = ml.lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    ok, worst = _check("fixef", fit.params, ref["fixef"]["values"], ref["fixef_se"], 0.01)
    return ok and fit.loglik >= ref["loglik"] - 1e-4, worst, "fixed effects / SE vs lme4"


def quick_gee_ohio() -> tuple[bool, float, str]:
    import multilevel as ml
    from multilevel.datasets import load_dataset

    ref = _reference("gee.json")["models"]["ohio_exch"]["tight"]
    fit = ml.gee("resp ~ age + smoke", load_dataset("ohio"), groups="id", family="binomial", corr="exchangeable")
    ok, worst = _check("coef", fit.params, ref["coefficients"]["values"], np.abs(ref["coefficients"]["values"]), 1e-6)
    return ok, worst, "coefficients, relative to geepack"


def quick_gls_ovary() -> tuple[bool, float, str]:
    import multilevel as ml
    from multilevel.datasets import load_dataset

    ref = _reference("gls.json")["models"]["ovary_ar1_reml"]
    fit = ml.gls("follicles ~ np.sin(2*np.pi*Time) + np.cos(2*np.pi*Time)", load_dataset("Ovary"), groups="Mare",
                 corr="ar1")
    ok, worst = _check("coef", fit.params, ref["coefficients"]["values"], ref["se"], 0.01)
    return ok and fit.loglik >= ref["loglik"] - 1e-4, worst, "coefficients / SE vs nlme"


def quick_glmm_cbpp() -> tuple[bool, float, str]:
    import multilevel as ml
    from multilevel.datasets import load_dataset

    ref = _reference("glmm.json")["models"]["cbpp_laplace"]["exact_optimum"]
    cbpp = load_dataset("cbpp").assign(p=lambda d: d.incidence / d["size"])
    fit = ml.glmm("p ~ period + (1 | herd)", cbpp, family="binomial", weights="size")
    ok, worst = _check("coef", fit.params, ref["beta"], ref["fixef_se"], 0.02)
    return ok and fit.loglik >= ref["loglik_full"] - 1e-3, worst, "fixed effects / SE vs exact Laplace"


def quick_lmm_nested() -> tuple[bool, float, str]:
    import multilevel as ml

    datasets = _bench_datasets()
    df = datasets.nested_lmm(n_groups=200, group_size=50)
    fit = ml.lmm("y ~ x1 + x2 + x3 + x4 + x5 + (1 + x1 | g)", df)
    truth = np.array(datasets.NESTED_BETA)
    ok, worst = _check("beta", fit.params, truth, 5 * fit.bse.to_numpy(), 1.0)
    return ok and fit.converged, worst, "fixed effects within 5 SE of the truth (10^4 rows)"


def quick_lmm_crossed() -> tuple[bool, float, str]:
    import multilevel as ml

    datasets = _bench_datasets()
    df = datasets.crossed_lmm(n_a=2_000, rows_per_a=20, n_b=200)
    fit = ml.lmm("y ~ x + (1 | a) + (1 | b)", df, reml=False)
    ok, worst = _check("beta", fit.params, datasets.CROSSED_LMM_BETA, 5 * fit.bse.to_numpy(), 1.0)
    return ok and fit.converged, worst, "fixed effects within 5 SE of the truth (4x10^4 rows, 2,000 x 200 levels)"


QUICK: dict[str, Callable[[], tuple[bool, float, str]]] = {
    "lmm sleepstudy": quick_lmm_sleepstudy,
    "lmm nested 10^4": quick_lmm_nested,
    "lmm crossed 4x10^4": quick_lmm_crossed,
    "gee ohio exchangeable": quick_gee_ohio,
    "gls Ovary AR(1)": quick_gls_ovary,
    "glmm cbpp Laplace": quick_glmm_cbpp,
}


def _bench_datasets() -> Any:
    """benchmarks/datasets.py, loaded as the family scripts load it."""
    return _family_script("lmm_vs_lme4")._load_datasets_module()


def _family_script(name: str) -> Any:
    """A family script (``lmm_vs_lme4`` ...) as a module; they import each other by plain name."""
    import importlib

    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return importlib.import_module(name)


def run_quick(results_dir: Path = RESULTS_DIR) -> int:
    """Fit the quick problems; print and save a table; 1 if any estimate disagrees with its reference."""
    rows, failed = [], 0
    for name, job in QUICK.items():
        t0 = time.perf_counter()
        try:
            ok, worst, what = job()
            status = "ok" if ok else "MISMATCH"
        except Exception as exc:  # a harness that rots should say where
            ok, worst, what, status = False, float("nan"), f"{type(exc).__name__}: {exc}", "ERROR"
        failed += not ok
        rows.append({"problem": name, "seconds": time.perf_counter() - t0, "check": what,
                     "worst": worst, "status": status})
        print(f"{name:24s} {rows[-1]['seconds']:7.2f} s  {status:8s} worst {worst:.2e}  ({what})", flush=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "quick.json").write_text(json.dumps(rows, indent=1))
    print("quick check " + ("FAILED" if failed else "passed") + f" ({len(rows) - failed}/{len(rows)})")
    return 1 if failed else 0


# --------------------------------------------------------------------------
# Full mode: run the family scripts, then gather their records
# --------------------------------------------------------------------------

#: (family, problem) pairs where a peer takes minutes per fit: fitted once per tool rather than
#: ``--repeats`` times, which keeps the full run under an hour on 2 cores (51 minutes measured).
ONE_REPEAT = {("lmm", "crossed"), ("lmm", "large"), ("gee", "poisson_ar1_1M"), ("gls", "ar1_10M"),
              ("glmm", "logit_1M"), ("glmm", "crossed_binomial")}


def _family_problems(script: str) -> list[str]:
    """The problem names a family script runs by default (its ``PROBLEMS``, large ones left out)."""
    module = _family_script(script.removesuffix(".py"))
    return [name for name, spec in module.PROBLEMS.items() if not spec.get("large")]


#: The LMM problem where lme4 takes 20+ minutes per fit runs only its default and its best configuration.
LME4_CONFIGS_OF = {"crossed": ("default", "openblas")}
#: Default of ``--warm-limit``: the second, warm fit is made after first fits shorter than this.
WARM_LIMIT_S = 60.0


def family_runs(repeats: int, large: bool, warm_limit: float = WARM_LIMIT_S) -> list[tuple[str, list[str], Path]]:
    """(label, command, JSON output) for every family script run of the full benchmark: one run per
    problem, so a problem's repeats can differ (``ONE_REPEAT``); runs of one family share a JSON file,
    where each problem replaces its earlier entry."""
    runs = []

    def add(family: str, script: str, problem: str, out: Path, *extra: str) -> None:
        times = 1 if (family, problem) in ONE_REPEAT else repeats
        runs.append((family, [sys.executable, str(BENCH_DIR / script), "--repeats", str(times), "--only", problem,
                              "--warm-limit", str(warm_limit), *extra, "--out", str(out)], out))

    py_limit = ("--py-timeout", "600")  # a Python peer that needs more is written down as timed out
    for problem in ("sleepstudy", "insteval", "insteval_dept", "crossed"):
        configs = ("--lme4-configs", *LME4_CONFIGS_OF[problem]) if problem in LME4_CONFIGS_OF else ()
        add("lmm", "lmm_vs_lme4.py", problem, RESULTS_DIR / f"lmm_{problem}.json", *py_limit, *configs)
    for groups in NESTED_GROUPS:
        add("lmm", "lmm_vs_lme4.py", "nested", RESULTS_DIR / f"lmm_nested_{groups * 50}.json", "--n-groups",
            str(groups), *py_limit)
    if large:
        add("lmm", "lmm_vs_lme4.py", "large", RESULTS_DIR / "lmm_nested_10000000.json")
    for family, script, extra in (("gee", "gee_vs_geepack.py", ("--sm-timeout", "900")),
                                  ("gls", "gls_vs_nlme.py", ()), ("glmm", "glmm_vs_lme4.py", ())):
        for problem in _family_problems(script):
            add(family, script, problem, RESULTS_DIR / f"{family}.json", *extra)
    if large:
        add("gls", "gls_vs_nlme.py", "ar1_10M", RESULTS_DIR / "gls.json", "--large")
    return runs


#: The columns of every gathered row (all.csv, all.json, the markdown table).
ROW_FIELDS = ("family", "problem", "rows", "tool", "seconds", "load_seconds", "ratio_to_ours", "warm_seconds",
              "warm_ratio_to_ours", "ratio_to_ours_1thread", "cpu_per_wall", "peak_mb", "objective",
              "max_dbeta_over_se", "status")


def table_row(**values: Any) -> dict[str, Any]:
    """One gathered row: every field of ``ROW_FIELDS``, None where not given."""
    unknown = set(values) - set(ROW_FIELDS)
    if unknown:
        raise KeyError(f"not a column of the benchmark table: {sorted(unknown)}")
    return {field: values.get(field) for field in ROW_FIELDS}


def lmm_rows(problems: dict[str, Any]) -> list[dict[str, Any]]:
    """Uniform rows from lmm_vs_lme4.py's summaries (``<prefix>_...`` keys, one prefix per row of its
    ``TOOLS``; ours are ``ours_...``). Coefficient differences are recomputed from the stored estimates,
    so the name matching is the current one."""
    lmm = _family_script("lmm_vs_lme4")
    rows = []
    for name, s in problems.items():
        label = f"lmm {name}" if name != "nested" else f"lmm nested {s.get('nobs', 0):,}"
        for tool, prefix in lmm.TOOLS.items():
            seconds = s.get(f"{prefix}_median_s")
            errors = s.get(f"{prefix}_errors") or []
            note = s.get(f"{prefix}_note")
            if seconds is None and not errors and not note:
                continue
            status = s.get(f"{prefix}_status") or (errors[0].get("error") if errors else note) or "ok"
            theirs = s.get(f"{prefix}_fixef")
            dbeta = None
            if theirs and prefix != "ours" and "ours_fixef" in s:
                by_position = tool in lmm.NAMES_LEVELS_BY_POSITION
                dbeta = lmm.max_dbeta_over_se(s["ours_fixef"], s["ours_se"], theirs, by_position)
                if by_position and not lmm.matched_by_name(s["ours_fixef"], theirs):
                    status += ", coefs by position"
            rows.append(table_row(
                family="lmm", problem=label, rows=s.get("nobs"), tool=tool, seconds=seconds,
                load_seconds=s.get(f"{prefix}_load_s"),
                ratio_to_ours=None if prefix == "ours" else s.get(f"ratio_{prefix}_over_ours"),
                warm_seconds=s.get(f"{prefix}_warm_median_s"),
                warm_ratio_to_ours=s.get(f"warm_ratio_{prefix}_over_ours"),
                ratio_to_ours_1thread=s.get(f"ratio_{prefix}_over_ours_1thread"),
                cpu_per_wall=s.get(f"{prefix}_cpu_over_wall"),
                peak_mb=s.get(f"{prefix}_fit_increase_mb"), objective=s.get(f"{prefix}_objective"),
                max_dbeta_over_se=dbeta, status=status,
            ))
    return rows


def family_rows(family: str, problems: dict[str, Any]) -> list[dict[str, Any]]:
    """Uniform rows from the GEE, GLS and GLMM scripts (their ``tools`` layout)."""
    rows = []
    for name, p in problems.items():
        if name.endswith("_quick"):
            continue
        for tool, t in p.get("tools", {}).items():
            seconds, ratio, status, warm = t.get("median_s"), t.get("ratio_over_ours"), t.get("status"), None
            if family == "glmm":
                # GLMM peers' times include their standard errors; ours are computed on first use, so
                # they are added to our times here and the ratios are taken against the sums.
                ratio, warm = t.get("ratio_over_ours_with_se", ratio), t.get("warm_with_se_s")
                if t.get("se_s") is not None and seconds is not None:
                    status = f"{status} (fit {seconds:.2f} s + SE {t['se_s']:.2f} s)"
                    seconds += t["se_s"]
            rows.append(table_row(
                family=family, problem=f"{family} {name}", rows=p.get("nobs"), tool=tool, seconds=seconds,
                load_seconds=t.get("load_s"), ratio_to_ours=ratio,
                warm_seconds=warm if family == "glmm" else t.get("warm_median_s"),
                warm_ratio_to_ours=t.get("warm_ratio_over_ours"),
                ratio_to_ours_1thread=t.get("ratio_over_ours_1thread"), cpu_per_wall=t.get("cpu_over_wall"),
                peak_mb=t.get("fit_increase_mb"), objective=t.get("loglik"),
                max_dbeta_over_se=t.get("max_abs_dparams_over_se"), status=status,
            ))
    return rows


#: Problems whose family script ended without writing them (full mode), for the table.
FAILED_RUNS = RESULTS_DIR / "failed_runs.json"


def failed_rows() -> list[dict[str, Any]]:
    """Rows for runs that produced no result, so a crash is written down rather than dropped."""
    return json.loads(FAILED_RUNS.read_text()) if FAILED_RUNS.exists() else []


def _gathered_problems() -> list[tuple[str, dict[str, Any]]]:
    """(family, its problems) from each JSON file that full mode writes, where present."""
    outputs = dict.fromkeys(out for _, _, out in family_runs(1, large=True))  # ordered, no repeats
    return [(path.stem.split("_")[0], json.loads(path.read_text()).get("problems", {}))
            for path in outputs if path.exists()]


def gather() -> list[dict[str, Any]]:
    """All rows from the JSON files that full mode writes (those present in benchmarks/results),
    then the runs that failed."""
    rows: list[dict[str, Any]] = []
    for family, problems in _gathered_problems():
        rows += lmm_rows(problems) if family == "lmm" else family_rows(family, problems)
    return rows + failed_rows()


def machine_lines() -> list[str]:
    """Where and when the gathered measurements were taken: one line per distinct machine and build
    (naming its problems when there is more than one)."""
    seen: dict[tuple[Any, ...], list[tuple[str, str]]] = {}
    for family, problems in _gathered_problems():
        for name, p in problems.items():
            m = p.get("machine") or {}
            key = (m.get("cpu_model"), m.get("nproc"), m.get("mem_total_gib"), m.get("git_commit"),
                   m.get("git_dirty_cpp_python"))
            seen.setdefault(key, []).append((str(m.get("date", "?")), f"{family} {name}"))
    lines = []
    most = max(seen, key=lambda key: len(seen[key])) if seen else None
    for key, runs in seen.items():
        cpu, nproc, mem, commit, dirty = key
        dates = [d for d, _ in runs]
        named = "all other problems" if key == most else ", ".join(sorted({n for _, n in runs}))
        which = f" ({named})" if len(seen) > 1 else ""
        lines.append(f"Machine: {cpu} x {nproc} CPUs, {mem} GiB; git {commit}{' (modified)' if dirty else ''}"
                     f"{which}; {min(dates)[:16]} to {max(dates)[:16]}  ")
    return lines


def write_outputs(rows: list[dict[str, Any]]) -> None:
    """CSV, JSON, markdown table and (with matplotlib) the time-versus-rows plot."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with open(RESULTS_DIR / "all.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=ROW_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (RESULTS_DIR / "all.json").write_text(json.dumps(rows, indent=1, default=str))
    table = "\n".join(machine_lines()) + "\n\n" + markdown_table(rows)
    (RESULTS_DIR / "summary.md").write_text(table)
    print(table)
    plot(rows)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The README's table: one line per problem and tool, a ratio in bold where the row's tool is slower."""
    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    def ratio(v: float | None) -> str:
        return "-" if v is None else (f"**{v:.1f}x**" if v >= 1 else f"{v:.2f}x")

    lines = [("| problem | rows | tool | fit s | load s | peer / ours | warm s | warm peer / ours | "
              "peer / ours 1 thread | CPU / wall | fit +MB | objective | max \\|d\\|/SE | status |"),
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    notes: list[str] = []  # statuses too long for a cell, numbered below the table
    for r in rows:
        status = str(r["status"])
        if len(status) > 40:
            if status not in notes:
                notes.append(status)
            status = f"not run [{notes.index(status) + 1}]" if "not run" in status else f"see [{notes.index(status) + 1}]"
        status = status.replace("|", "\\|")  # lme4 says "max|grad|"
        lines.append(f"| {r['problem']} | {fmt(r['rows'], ',')} | {r['tool']} | {fmt(r['seconds'], '.2f')} | "
                     f"{fmt(r.get('load_seconds'), '.2f')} | {ratio(r['ratio_to_ours'])} | "
                     f"{fmt(r.get('warm_seconds'), '.2f')} | {ratio(r.get('warm_ratio_to_ours'))} | "
                     f"{ratio(r.get('ratio_to_ours_1thread'))} | {fmt(r.get('cpu_per_wall'), '.2f')} | "
                     f"{fmt(r['peak_mb'], '.0f')} | {fmt(r['objective'], '.6f')} | "
                     f"{fmt(r.get('max_dbeta_over_se'), '.1e')} | {status} |")
    lines += [""] + [f"[{k}] {note}  " for k, note in enumerate(notes, start=1)]
    return "\n".join(lines) + "\n"


def _series(problem: str) -> str:
    """The model behind a problem label, without its size (``gls ar1_10M`` -> ``ar1``)."""
    name = problem.split(" ", 1)[1]
    name = re.sub(r"_?\d+[kM]$", "", name)
    return "nested" if name.startswith(("nested", "large")) else name


#: One colour per tool in every panel (ours in black); other tools take the next free colour.
TOOL_COLOURS = {"multilevel": "black", "multilevel (1 thread)": "dimgray", "lme4": "tab:red",
                "lme4 (calc.derivs=FALSE)": "lightcoral", "lme4 (OpenBLAS, calc.derivs=FALSE)": "darkred",
                "lme4 (OpenBLAS, nloptwrap, calc.derivs=FALSE)": "darkred", "mixedlm": "tab:orange",
                "statsmodels": "tab:purple", "geepack": "tab:blue", "geepack (OpenBLAS)": "navy",
                "nlme": "tab:green", "nlme (OpenBLAS)": "darkgreen", "glmmTMB": "tab:brown",
                "glmmTMB (parallel=all cores)": "peru"}
SERIES_MARKERS = "osD^vP*X"


def plot(rows: list[dict[str, Any]]) -> None:
    """Log-log time versus rows, one panel per family: colour = tool, marker = model (skipped without
    matplotlib). Lines join one tool's fits of one model at several sizes, never different models."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    families = sorted({r["family"] for r in rows if r["seconds"] and r["rows"]})
    if not families:
        print("no timed fits: no plot")
        return
    ncols = 2
    nrows = (len(families) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(13, 5.2 * nrows), squeeze=False)
    spare = itertools.cycle(["tab:cyan", "tab:olive", "tab:pink", "tab:gray"])
    colours = dict(TOOL_COLOURS)
    for ax, family in zip(axes.flat, families):
        mine = [r for r in rows if r["family"] == family and r["seconds"] and r["rows"]]
        series_names = sorted({_series(r["problem"]) for r in mine})
        for tool in dict.fromkeys(r["tool"] for r in mine):
            if tool not in colours:
                colours[tool] = next(spare)
            colour = colours[tool]
            for k, series in enumerate(series_names):
                pts = sorted((r["rows"], r["seconds"]) for r in mine if r["tool"] == tool
                             and _series(r["problem"]) == series)
                if pts:
                    ax.loglog(*zip(*pts), color=colour, marker=SERIES_MARKERS[k % len(SERIES_MARKERS)],
                              linewidth=2.2 if tool == "multilevel" else 1.2, label=f"{tool}: {series}")
        ax.set_title(f"{family}: fit seconds against rows (log-log)")
        ax.set_xlabel("rows")
        ax.set_ylabel("seconds")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    for ax in list(axes.flat)[len(families):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / "time_vs_rows.png", dpi=110)
    print(f"wrote {RESULTS_DIR / 'time_vs_rows.png'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small problems, ours only, checked against references")
    parser.add_argument("--repeats", type=int, default=2, help="fits per tool and problem (full mode)")
    parser.add_argument("--large", action="store_true", help="also the 10^7-row problems (ours only)")
    parser.add_argument("--warm-limit", type=float, default=WARM_LIMIT_S, metavar="SECONDS",
                        help="make the warm second fit after first fits shorter than this (default %(default)s)")
    parser.add_argument("--gather-only", action="store_true", help="only gather the JSON already in results/")
    parser.add_argument("--quick-dir", type=Path, default=RESULTS_DIR,
                        help="where --quick writes quick.json (default benchmarks/results/)")
    args = parser.parse_args(argv)
    if args.quick:
        return run_quick(args.quick_dir)
    if not args.gather_only:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        # A fresh table: nothing left over from earlier runs (of other problems, sizes or builds).
        for out in {out for _, _, out in family_runs(1, large=True)} | {FAILED_RUNS}:
            out.unlink(missing_ok=True)
        failed = []
        for label, cmd, out in family_runs(args.repeats, args.large, args.warm_limit):
            script, problem = Path(cmd[1]).name, cmd[cmd.index("--only") + 1]
            print(f"\n=== {label}: {' '.join(cmd[1:])}", flush=True)
            code = subprocess.run(cmd, cwd=REPO_DIR).returncode
            written = json.loads(out.read_text()).get("problems", {}) if out.exists() else {}
            if problem not in written:
                print(f"{label}: {script} exited with status {code} without a result for {problem}")
                failed.append(table_row(family=label, problem=f"{label} {problem} ({' '.join(cmd[2:-2])})",
                                        tool="all", status=f"{script} exited with status {code}, no result"))
                FAILED_RUNS.write_text(json.dumps(failed, indent=1))
    write_outputs(gather())
    return 0


if __name__ == "__main__":
    sys.exit(main())
