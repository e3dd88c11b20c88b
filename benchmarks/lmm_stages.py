"""Where the time and memory of one ``multilevel.lmm`` fit go, stage by stage.

Runs the pipeline of :func:`multilevel.lmm.fit.fit_design` by hand, timing
each stage and recording the peak RSS above the pre-fit baseline during it
(``VmHWM`` reset through ``/proc/self/clear_refs`` before every stage):

1. ``lmm_design``  formula + data frame -> arrays;
2. ``lmm_core``    arrays -> the C++ object (one pass over the rows);
3. ``optimize``    BOBYQA over theta (``core.objective`` calls);
4. ``result``      ``LmmResult`` (estimates, standard errors, ...).

Usage::

    python benchmarks/lmm_stages.py {insteval,nested,large} [--n-groups N]
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

from lmm_vs_lme4 import (
    INSTEVAL_FORMULA,
    NESTED_FORMULA,
    NESTED_NUMERIC,
    _import_multilevel,
    _load_datasets_module,
    proc_status_kb,
    reset_peak_rss,
)


def main() -> None:
    parser = argparse.ArgumentParser(description="stage timings and memory of one lmm fit")
    parser.add_argument("problem", choices=["insteval", "nested", "large"])
    parser.add_argument("--n-groups", type=int, default=None, help="groups (default 20000 nested, 200000 large)")
    args = parser.parse_args()

    _import_multilevel()
    from multilevel.lmm.design import lmm_design
    from multilevel.lmm.fit import lmm_core
    from multilevel.lmm.result import LmmResult
    from multilevel.lmm.theta import theta_lower_bounds, theta_start
    from multilevel.optimize import minimize_bobyqa

    if args.problem == "insteval":
        from multilevel.datasets import load_dataset

        df, formula, reml, numeric = load_dataset("InstEval"), INSTEVAL_FORMULA, False, ["y"]
    else:
        ds = _load_datasets_module()
        n_groups = args.n_groups or (20_000 if args.problem == "nested" else 200_000)
        df, formula, reml, numeric = ds.nested_lmm(n_groups=n_groups), NESTED_FORMULA, True, NESTED_NUMERIC
    numeric_mb = 8 * len(df) * len(numeric) / 2**20
    gc.collect()
    base = proc_status_kb("VmRSS") or 0
    print(f"{args.problem}: {len(df):,} rows, numeric columns {numeric_mb:.1f} MB, RSS before fit {base / 1024:.0f} MB")
    print(f"{'stage':<12} {'seconds':>8} {'peak +MB':>9} {'after +MB':>10}")

    def stage(name: str, fn: Any) -> Any:
        reset_peak_rss()
        t0 = time.perf_counter()
        out = fn()
        secs = time.perf_counter() - t0
        peak = (proc_status_kb("VmHWM") or 0) - base
        now = (proc_status_kb("VmRSS") or 0) - base
        print(f"{name:<12} {secs:8.3f} {peak / 1024:9.1f} {now / 1024:10.1f}", flush=True)
        return out

    design = stage("lmm_design", lambda: lmm_design(formula, df))
    core = stage("lmm_core", lambda: lmm_core(design))
    x0, lower = theta_start(design.terms), theta_lower_bounds(design.terms)
    nevals = [0]

    def objective(th: Any) -> float:
        nevals[0] += 1
        return core.objective(th, reml)

    optsum = stage("optimize", lambda: minimize_bobyqa(objective, x0, lower))
    print(f"{'':<12} {nevals[0]} evaluations, {1000 * optsum.elapsed / max(nevals[0], 1):.2f} ms each")
    stage("result", lambda: LmmResult(design, core, reml, optsum))


if __name__ == "__main__":
    main()
