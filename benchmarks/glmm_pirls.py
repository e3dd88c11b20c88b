"""Time one PIRLS run of the GLMM core (the inner loop of every glmm fit), cold and warm-started.

Usage::

    python benchmarks/glmm_pirls.py --clusters 5000 --repeats 100

On the ``glmm logit_100k`` problem of ``datasets.glmm_logit`` (5,000 clusters of 20 rows, ``(1 | g)``)
it reports milliseconds per ``GlmmPirls.run`` from the family's starting linear predictor (about four
iterations) and from the converged one (one iteration), and the iteration counts.
"""

from __future__ import annotations

import argparse
import time

import multilevel as ml
import numpy as np
from datasets import glmm_logit
from multilevel.glmm.pirls import Pirls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    df = glmm_logit(n_clusters=args.clusters)
    fit = ml.glmm("y ~ x1 + x2 + (1 | g)", df, family="binomial")
    pirls = Pirls(fit.design, fit.family)
    theta, beta = np.asarray(fit._theta, dtype=float), np.zeros(len(fit.params))
    for label, eta in (("cold", pirls.eta.copy()), ("warm", fit.state.eta.copy())):
        started = time.perf_counter()
        for _ in range(args.repeats):
            out = pirls.core.run(theta, beta, False, eta, pirls.tol, pirls.maxiter)
        ms = (time.perf_counter() - started) / args.repeats * 1000
        print(f"{label}: {ms:.2f} ms per run, {out['iterations']} iterations, {len(df):,} rows")


if __name__ == "__main__":
    main()
