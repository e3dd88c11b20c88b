"""Inference after an LMM fit: multilevel against lmerTest, pbkrtest and lme4, side by side.

Tasks, each timed after the fit (the fit itself is not counted, on either side):

* ``satterthwaite``: Satterthwaite df of every coefficient (ours:
  ``fit.with_ddf("satterthwaite").coef_table()``; R: ``lmerTest::as_lmerModLmerTest``
  and ``summary(ddf = "Satterthwaite")``);
* ``kenward-roger``: Kenward-Roger df and adjusted SEs (ours: ``with_ddf("kenward-roger")``;
  R: ``summary(ddf = "Kenward-Roger")``, which calls pbkrtest per coefficient);
* ``profile``: every profile interval (ours: ``conf_int(method="profile")``;
  R: ``confint(method = "profile")``);
* ``boot``: ``--nsim`` parametric bootstrap replicates (ours: ``fit.bootstrap``; R: ``bootMer``).

Problems: sleepstudy (180 rows), ham (648 rows, two nested terms), a generated
nested problem of 10^5 rows (2,000 groups of 50, random intercept and slope)
and InstEval (73,421 rows, three crossed terms). pbkrtest is not run where it
would invert the dense n x n marginal covariance (10^5 rows: 80 GB).
Each side runs in a fresh process; each R task gets ``--r-timeout`` seconds (its fit included).

    python benchmarks/inference.py                 # all problems
    python benchmarks/inference.py --only sleepstudy ham
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
R_SCRIPT = HERE / "r" / "inference.R"

PROBLEMS = {
    "sleepstudy": {"dataset": "sleepstudy", "formula": "Reaction ~ Days + (Days | Subject)",
                   "tasks": ["satterthwaite", "kenward-roger", "profile", "boot"], "r_tasks": None},
    "ham": {"dataset": "ham", "formula": "liking ~ Product * Information + (1 | Consumer) + (1 | Consumer:Product)",
            "tasks": ["satterthwaite", "kenward-roger", "profile"], "r_tasks": None},
    "nested_1e5": {"generator": (2_000, 50), "formula": "y ~ x1 + x2 + x3 + x4 + x5 + (1 + x1 | g)",
                   "tasks": ["satterthwaite", "kenward-roger", "profile"], "r_tasks": ["satterthwaite", "profile"]},
    "insteval": {"dataset": "InstEval", "formula": "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)",
                 "tasks": ["satterthwaite", "kenward-roger", "profile"], "r_tasks": ["satterthwaite", "profile"]},
}

OURS = textwrap.dedent("""
    import json, sys, time, warnings
    sys.path.insert(0, {bench!r})
    import numpy as np
    from multilevel import lmm
    spec = json.loads({spec!r})
    import pandas as pd
    df = pd.read_csv({csv!r})
    for col in {factors!r}:
        df[col] = df[col].astype(str).astype("category")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lmm(spec["formula"], df, progress=False)
    out = {{}}
    for task in spec["tasks"]:
        t = time.perf_counter()
        if task == "boot":
            value = fit.bootstrap(spec["nsim"], seed=1).replicates.shape[0]
        elif task == "profile":
            value = fit.conf_int(method="profile").iloc[:, 0].tolist()
        else:
            value = fit.with_ddf(task).coef_table()["df"].tolist()
        out[task] = {{"seconds": time.perf_counter() - t, "value": value}}
    print(json.dumps(out))
""")


def write_csv(name: str, spec: dict, workdir: Path) -> tuple[Path, list[str]]:
    """The problem's data as CSV, and the columns to treat as factors."""
    sys.path.insert(0, str(HERE))
    if "generator" in spec:
        from datasets import nested_lmm

        df = nested_lmm(*spec["generator"])
    else:
        from multilevel.datasets import load_dataset

        df = load_dataset(spec["dataset"]).rename(columns={"Informed.liking": "liking"})
    path = workdir / f"{name}.csv"
    df.to_csv(path, index=False)
    factors = [c for c in df.columns if str(df[c].dtype) == "category"]
    return path, factors


def run_ours(csv: Path, factors: list[str], spec: dict, nsim: int) -> dict:
    payload = json.dumps({"formula": spec["formula"], "tasks": spec["tasks"], "nsim": nsim})
    code = OURS.format(bench=str(HERE), spec=payload, csv=str(csv), factors=factors)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_r(rscript: str, csv: Path, factors: list[str], spec: dict, nsim: int, timeout: float,
          workdir: Path) -> dict:
    """Each task in its own R process (the fit is repeated, not timed), so one slow task cannot hide the others."""
    results = {}
    for task in spec["r_tasks"] or spec["tasks"]:
        out = workdir / f"r_{task}.json"
        cmd = [rscript, str(R_SCRIPT), str(csv), spec["formula"], str(out), task, str(nsim), ",".join(factors)]
        try:
            subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout)
            results.update(json.loads(out.read_text()))
        except subprocess.TimeoutExpired:
            results[task] = {"seconds": None, "error": f"over {timeout:.0f} s (the fit and this task)"}
    return results


def agreement(task: str, ours: dict, theirs: dict) -> str:
    a, b = ours.get("value"), theirs.get("value")
    if a is None or b is None or task == "boot":
        return ""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return "shapes differ"
    return f"max rel diff {np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)):.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--nsim", type=int, default=1000)
    parser.add_argument("--r-timeout", type=float, default=900.0)
    args = parser.parse_args()
    rscript = shutil.which("Rscript")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in args.only:
            spec = PROBLEMS[name]
            csv, factors = write_csv(name, spec, workdir)
            ours = run_ours(csv, factors, spec, args.nsim)
            theirs = run_r(rscript, csv, factors, spec, args.nsim, args.r_timeout, workdir) if rscript else {}
            for task in spec["tasks"]:
                o, t = ours[task], theirs.get(task, {})
                peer = t.get("seconds")
                note = t.get("error") or ("not run: pbkrtest inverts the dense n x n covariance"
                                          if task not in (spec["r_tasks"] or spec["tasks"]) else "")
                ratio = f"{peer / o['seconds']:.1f}x" if peer else ""
                rows.append((name, task, f"{o['seconds']:.3f}", "" if peer is None else f"{peer:.2f}", ratio,
                             agreement(task, o, t), note))
                print(" | ".join(rows[-1]), flush=True)
    print("\n| problem | task | ours (s) | R (s) | R / ours | agreement | note |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
