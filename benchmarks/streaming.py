"""Fits of data larger than memory: generated nested data written to Parquet,
fitted in chunks (``lmm``, ``gee``) and, for comparison, in memory; and the
same problem on a local Dask cluster.

Each fit runs in a fresh process, which reports its wall time and its peak
resident memory (``ru_maxrss``: the whole process, the Python interpreter
and the libraries included).

    python benchmarks/streaming.py --rows 1e7 --modes parquet memory dask
    python benchmarks/streaming.py --rows 3e7 --modes parquet memory
    python benchmarks/streaming.py --rows 1e8 --modes parquet

The problem: clusters of 50 rows, ``y ~ x1 + x2 + x3 + (1 + x1 | g)``
(REML), and a GEE with an exchangeable working correlation for a binary
column ``yb ~ x1 + x2 + x3`` clustered by ``g``. The Parquet files are
written once per size into ``--dir`` (default ``benchmarks/results/parquet``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CLUSTER = 50
ROWS_PER_FILE = 2_000_000
LMM_FORMULA = "y ~ x1 + x2 + x3 + (1 + x1 | g)"
GEE_FORMULA = "yb ~ x1 + x2 + x3"


def write_parquet(rows: int, folder: Path, seed: int = 20261201) -> Path:
    """Generated nested data in files of ROWS_PER_FILE rows, sorted by cluster (written once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = folder / f"nested_{rows}"
    done = target / "_complete"
    if done.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    nclusters = rows // CLUSTER
    b0 = rng.normal(scale=1.0, size=nclusters)
    b1 = rng.normal(scale=0.5, size=nclusters)
    per_file = ROWS_PER_FILE // CLUSTER
    for i, first in enumerate(range(0, nclusters, per_file)):
        g = np.repeat(np.arange(first, min(nclusters, first + per_file), dtype=np.int64), CLUSTER)
        n = g.size
        x1, x2, x3 = rng.normal(size=(3, n))
        eta = 0.5 + 0.3 * x1 - 0.2 * x2 + 0.1 * x3 + b0[g] + b1[g] * x1
        y = eta + rng.normal(size=n)
        yb = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.float64)
        table = pa.table({"g": g, "x1": x1, "x2": x2, "x3": x3, "y": y, "yb": yb})
        pq.write_table(table, target / f"part-{i:04d}.parquet", row_group_size=250_000)
    done.write_text("ok")
    return target


def fit_once(model: str, mode: str, path: str, workers: int) -> dict:
    """One fit in this process; returns time, peak RSS and the estimates."""
    import pyarrow.dataset as pds

    import multilevel

    if mode == "memory":
        t0 = time.perf_counter()
        data = pds.dataset(path, format="parquet").to_table().to_pandas()
        load = time.perf_counter() - t0
    elif mode == "dask":
        import dask.dataframe as dd
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        data = dd.read_parquet(path)
        load = 0.0
    else:
        data, load = path, 0.0
    t0 = time.perf_counter()
    if model == "lmm":
        fit = multilevel.lmm(LMM_FORMULA, data, progress=False)
        objective, extra = float(fit.objective), {"theta": fit.theta.tolist()}
    else:
        fit = multilevel.gee(GEE_FORMULA, data, groups="g", family="binomial", corr="exchangeable", progress=False)
        objective, extra = float("nan"), {"alpha": fit.corr_params.tolist(), "n_iter": fit.n_iter}
    bse = fit.bse.tolist()
    seconds = time.perf_counter() - t0
    record = {"model": model, "mode": mode, "fit_s": seconds, "load_s": load, "objective": objective,
              "params": fit.params.tolist(), "bse": bse, **extra,
              "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if mode == "dask":
        memory = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
        record["worker_peak_rss_gib"] = sorted(memory.values())
        client.close()
        cluster.close()
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=float, default=1e6)
    parser.add_argument("--modes", nargs="+", default=["parquet", "memory"], choices=["parquet", "memory", "dask"])
    parser.add_argument("--models", nargs="+", default=["lmm", "gee"], choices=["lmm", "gee"])
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--dir", type=Path, default=HERE / "results" / "parquet")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(fit_once(*args.one, workers=args.workers)))
        return
    rows = int(args.rows)
    t0 = time.perf_counter()
    path = write_parquet(rows, args.dir)
    print(f"data: {rows:,} rows in {path} ({time.perf_counter() - t0:.1f} s to write or find)", flush=True)
    records = []
    for model in args.models:
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--workers", str(args.workers), "--one", model, mode, str(path)]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if out.returncode != 0:
                print(f"{model} {mode}: failed\n{out.stderr[-2000:]}", flush=True)
                continue
            rec = json.loads(out.stdout.strip().splitlines()[-1])
            records.append(rec)
            workers = f", workers' peak {rec['worker_peak_rss_gib']} GiB" if "worker_peak_rss_gib" in rec else ""
            print(f"{model:4s} {mode:8s} fit {rec['fit_s']:8.2f} s (load {rec['load_s']:.1f} s), "
                  f"peak RSS {rec['peak_rss_gib']:.2f} GiB{workers}", flush=True)
    for model in args.models:
        by_mode = {r["mode"]: r for r in records if r["model"] == model}
        if "memory" in by_mode:
            ref = np.array(by_mode["memory"]["params"])
            for mode, rec in by_mode.items():
                if mode != "memory":
                    d = np.max(np.abs(np.array(rec["params"]) - ref) / np.array(by_mode["memory"]["bse"]))
                    print(f"{model} {mode} vs memory: max |d params| / SE = {d:.2e}, "
                          f"time ratio {rec['fit_s'] / by_mode['memory']['fit_s']:.2f}")
    out_file = args.dir.parent / f"streaming_{rows}.json"
    out_file.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
