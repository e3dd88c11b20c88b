"""One command that puts multilevel beside its peers, and a quick self-check.

Full mode runs the per-family scripts (each fits every installed peer on the
same data in the same run, alternating the tools, each fit in a fresh
process) and gathers their records into one table:

* ``lmm_vs_lme4.py``: lme4 and mixedlm; sleepstudy, InstEval (two models),
  nested LMMs of 10^4..10^6 rows (``--large``: 10^7, ours only);
* ``gee_vs_geepack.py``: geepack and statsmodels; binary exchangeable
  (10^6 rows) and Poisson AR(1) (10^5 rows);
* ``gls_vs_nlme.py``: nlme; AR(1) at 2x10^5 rows (``--large``: 10^7, ours only);
* ``glmm_vs_lme4.py``: glmer and glmmTMB; logistic at 10^5 and 10^6 rows, crossed binomial.

Outputs: ``benchmarks/results/all.csv`` and ``all.json`` (one row per problem
and tool: seconds, ratio peer/ours, peak memory, status), a markdown table
``benchmarks/results/summary.md`` and, with matplotlib, ``time_vs_rows.png``.
A peer that is missing is skipped with a line that says so; a fit that fails
or times out is written down with its status.

``--quick`` fits small problems with our code only and checks the estimates
against the stored reference answers (``tests/reference/*.json``); it exits
non-zero on a mismatch. CI runs it (``tests/test_benchmarks_quick.py``). No
timing is asserted anywhere.

Usage::

    PYTHONPATH=python python benchmarks/run.py [--quick] [--repeats N] [--large]
"""

from __future__ import annotations

import argparse
import csv
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


QUICK: dict[str, Callable[[], tuple[bool, float, str]]] = {
    "lmm sleepstudy": quick_lmm_sleepstudy,
    "lmm nested 10^4": quick_lmm_nested,
    "gee ohio exchangeable": quick_gee_ohio,
    "gls Ovary AR(1)": quick_gls_ovary,
    "glmm cbpp Laplace": quick_glmm_cbpp,
}


def _bench_datasets() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_datasets", BENCH_DIR / "datasets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_quick() -> int:
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
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "quick.json").write_text(json.dumps(rows, indent=1))
    print("quick check " + ("FAILED" if failed else "passed") + f" ({len(rows) - failed}/{len(rows)})")
    return 1 if failed else 0


# --------------------------------------------------------------------------
# Full mode: run the family scripts, then gather their records
# --------------------------------------------------------------------------

def family_runs(repeats: int, large: bool) -> list[tuple[str, list[str], Path]]:
    """(label, command, JSON output) for every family script run of the full benchmark."""
    py = [sys.executable]
    rep = ["--repeats", str(repeats)]
    runs = []
    for problem in ("sleepstudy", "insteval", "insteval_dept"):
        out = RESULTS_DIR / f"lmm_{problem}.json"
        runs.append(("lmm", py + [str(BENCH_DIR / "lmm_vs_lme4.py"), *rep, "--only", problem, "--out", str(out)],
                     out))
    for groups in NESTED_GROUPS:
        out = RESULTS_DIR / f"lmm_nested_{groups * 50}.json"
        runs.append(("lmm", py + [str(BENCH_DIR / "lmm_vs_lme4.py"), *rep, "--only", "nested", "--n-groups",
                                  str(groups), "--out", str(out)], out))
    if large:
        out = RESULTS_DIR / "lmm_nested_10000000.json"
        runs.append(("lmm", py + [str(BENCH_DIR / "lmm_vs_lme4.py"), "--repeats", "1", "--only", "large",
                                  "--out", str(out)], out))
    for script, out in (("gee_vs_geepack.py", "gee.json"), ("gls_vs_nlme.py", "gls.json"),
                        ("glmm_vs_lme4.py", "glmm.json")):
        cmd = py + [str(BENCH_DIR / script), *rep, "--out", str(RESULTS_DIR / out)]
        if large and script == "gls_vs_nlme.py":  # the only family script with a 10^7-row problem
            cmd.append("--large")
        runs.append((script.split("_")[0], cmd, RESULTS_DIR / out))
    return runs


def lmm_rows(problems: dict[str, Any]) -> list[dict[str, Any]]:
    """Uniform rows from lmm_vs_lme4.py's summaries."""
    rows = []
    for name, s in problems.items():
        label = f"lmm {name}" if name != "nested" else f"lmm nested {s.get('nobs', 0):,}"
        for tool, prefix in (("multilevel", "ours"), ("lme4", "lme4"), ("mixedlm", "mixedlm")):
            seconds = s.get(f"{prefix}_median_s")
            errors = s.get(f"{prefix}_errors") or []
            if seconds is None and not errors:
                continue
            rows.append({
                "family": "lmm", "problem": label, "rows": s.get("nobs"), "tool": tool, "seconds": seconds,
                "ratio_to_ours": None if tool == "multilevel" else s.get(f"ratio_{prefix}_over_ours"),
                "peak_mb": s.get(f"{prefix}_fit_increase_mb"),
                "objective": s.get(f"{prefix}_objective"),
                "status": "ok" if seconds is not None else f"failed: {errors[0].get('error')}",
            })
    return rows


def family_rows(family: str, problems: dict[str, Any]) -> list[dict[str, Any]]:
    """Uniform rows from the GEE, GLS and GLMM scripts (their ``tools`` layout)."""
    rows = []
    for name, p in problems.items():
        if name.endswith("_quick"):
            continue
        for tool, t in p.get("tools", {}).items():
            rows.append({
                "family": family, "problem": f"{family} {name}", "rows": p.get("nobs"), "tool": tool,
                "seconds": t.get("median_s"), "ratio_to_ours": t.get("ratio_over_ours"),
                "peak_mb": t.get("fit_increase_mb"), "objective": t.get("loglik"), "status": t.get("status"),
            })
    return rows


def gather() -> list[dict[str, Any]]:
    """All rows from the family JSON files present in benchmarks/results."""
    rows: list[dict[str, Any]] = []
    for path in sorted(RESULTS_DIR.glob("lmm_*.json")):
        rows += lmm_rows(json.loads(path.read_text()).get("problems", {}))
    # run.py's own outputs, else the family scripts' defaults
    for family, default in (("gee", "gee_vs_geepack.json"), ("gls", "gls_vs_nlme.json"),
                            ("glmm", "glmm_vs_lme4.json")):
        path = next((p for p in (RESULTS_DIR / f"{family}.json", RESULTS_DIR / default) if p.exists()), None)
        if path is not None:
            rows += family_rows(family, json.loads(path.read_text()).get("problems", {}))
    return rows


def write_outputs(rows: list[dict[str, Any]]) -> None:
    """CSV, JSON, markdown table and (with matplotlib) the time-versus-rows plot."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    fields = ["family", "problem", "rows", "tool", "seconds", "ratio_to_ours", "peak_mb", "objective", "status"]
    with open(RESULTS_DIR / "all.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    (RESULTS_DIR / "all.json").write_text(json.dumps(rows, indent=1, default=str))
    lines = ["| problem | rows | tool | seconds | peer / ours | peak MB | status |", "|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        def fmt(v: Any, spec: str) -> str:
            return "-" if v is None else format(v, spec)
        lines.append(f"| {r['problem']} | {fmt(r['rows'], ',')} | {r['tool']} | {fmt(r['seconds'], '.2f')} | "
                     f"{fmt(r['ratio_to_ours'], '.1f')} | {fmt(r['peak_mb'], '.0f')} | {r['status']} |")
    (RESULTS_DIR / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(rows)


def _series(problem: str) -> str:
    """The model behind a problem label, without its size (``gls ar1_10M`` -> ``ar1``)."""
    name = problem.split(" ", 1)[1]
    name = re.sub(r"_?\d+[kM]$", "", name)
    return "nested" if name.startswith(("nested", "large")) else name


def plot(rows: list[dict[str, Any]]) -> None:
    """Log-log time versus rows per family and tool (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    families = sorted({r["family"] for r in rows})
    fig, axes = plt.subplots(1, len(families), figsize=(4.5 * len(families), 4), squeeze=False)
    for ax, family in zip(axes[0], families):
        # One line per tool and model (the same model at several sizes), never across models.
        for tool, series in sorted({(r["tool"], _series(r["problem"])) for r in rows if r["family"] == family}):
            pts = sorted((r["rows"], r["seconds"]) for r in rows if r["family"] == family and r["tool"] == tool
                         and _series(r["problem"]) == series and r["seconds"] and r["rows"])
            if pts:
                ax.loglog(*zip(*pts), marker="o", label=f"{tool}: {series}")
        ax.set_title(family)
        ax.set_xlabel("rows")
        ax.set_ylabel("seconds")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / "time_vs_rows.png", dpi=120)
    print(f"wrote {RESULTS_DIR / 'time_vs_rows.png'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small problems, ours only, checked against references")
    parser.add_argument("--repeats", type=int, default=2, help="fits per tool and problem (full mode)")
    parser.add_argument("--large", action="store_true", help="also the 10^7-row problems (ours only)")
    parser.add_argument("--gather-only", action="store_true", help="only gather the JSON already in results/")
    args = parser.parse_args(argv)
    if args.quick:
        return run_quick()
    if not args.gather_only:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        for label, cmd, out in family_runs(args.repeats, args.large):
            script = Path(cmd[1]).name
            if not Path(cmd[1]).exists():
                print(f"{label}: {script} not found, skipped")
                continue
            print(f"\n=== {label}: {' '.join(cmd[1:])}", flush=True)
            code = subprocess.run(cmd, cwd=REPO_DIR).returncode
            if code != 0:
                print(f"{label}: {script} exited with status {code}; its problems are reported as far as they ran")
    write_outputs(gather())
    return 0


if __name__ == "__main__":
    sys.exit(main())
