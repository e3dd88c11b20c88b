"""Mixed models with AR(1), heteroscedastic residuals: multilevel against nlme's lme, side by side.

Data: :func:`datasets.lme_ar1_power` (subjects with 10 visits, random intercept
and slope, AR(1) residuals in the visit, varPower), ``--rows`` in multiples of
10. Ours: ``multilevel.lmm("y ~ x + t + (t | id)", df, corr="ar1", time="visit",
variance=VarPower("v"))`` (REML), timed from the loaded frame, in a fresh
process. nlme: ``Rscript r/lme_fit.R`` (the lme() call timed, after reading
the CSV), skipped above ``--max-nlme-rows`` and given ``--r-timeout`` seconds.

    python benchmarks/lme_residual.py --rows 1e5 1e6 1e7
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

HERE = Path(__file__).resolve().parent

OURS = textwrap.dedent("""
    import json, resource, sys, time
    sys.path.insert(0, {bench!r})
    from datasets import lme_ar1_power
    import multilevel as ml
    from multilevel.variance import VarPower
    df = lme_ar1_power({subjects})
    t = time.perf_counter()
    fit = ml.lmm("y ~ x + t + (t | id)", df, corr="ar1", time="visit", variance=VarPower("v"), progress=False)
    seconds = time.perf_counter() - t
    print(json.dumps({{"seconds": seconds, "loglik": fit.loglik, "beta": fit.params.tolist(),
                      "corr": float(fit.corr_params[0]), "power": float(fit.variance_params.iloc[0]),
                      "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", type=float, default=[1e5, 1e6])
    parser.add_argument("--max-nlme-rows", type=float, default=1e6)
    parser.add_argument("--r-timeout", type=float, default=1800.0)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from datasets import lme_ar1_power

    rscript = shutil.which("Rscript")
    print("| rows | ours (s) | peak RSS (GiB) | nlme (s) | nlme / ours | logLik ours - nlme | phi | power |")
    print("|---|---|---|---|---|---|---|---|")
    for rows in args.rows:
        subjects = int(rows) // 10
        code = OURS.format(bench=str(HERE), subjects=subjects)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        ours = json.loads(done.stdout.strip().splitlines()[-1])
        peer = None
        if rscript and rows <= args.max_nlme_rows:
            with tempfile.TemporaryDirectory() as tmp:
                csv, out = Path(tmp) / "data.csv", Path(tmp) / "out.json"
                lme_ar1_power(subjects).to_csv(csv, index=False)
                try:
                    subprocess.run([rscript, str(HERE / "r" / "lme_fit.R"), str(csv), str(out)], check=True,
                                   capture_output=True, text=True, timeout=args.r_timeout)
                    peer = json.loads(out.read_text())
                except subprocess.TimeoutExpired:
                    peer = {"error": f"over {args.r_timeout:.0f} s"}
                except subprocess.CalledProcessError as exc:
                    peer = {"error": exc.stderr.strip().splitlines()[-1] if exc.stderr else "failed"}
        nlme = "" if peer is None else peer.get("error") or f"{peer['seconds']:.1f}"
        ratio = f"{peer['seconds'] / ours['seconds']:.1f}x" if peer and "seconds" in peer else ""
        diff = f"{ours['loglik'] - peer['loglik']:.2e}" if peer and "loglik" in peer else ""
        phi = f"{ours['corr']:.4f}" + (f" ({peer['corr']:.4f})" if peer and "corr" in peer else "")
        power = f"{ours['power']:.4f}" + (f" ({peer['power']:.4f})" if peer and "power" in peer else "")
        print(f"| {int(rows):,} | {ours['seconds']:.2f} | {ours['peak_gib']:.2f} | {nlme} | {ratio} | {diff} | "
              f"{phi} | {power} |", flush=True)


if __name__ == "__main__":
    main()
