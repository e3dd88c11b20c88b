"""Three fits timed with whichever core build loads (best of 3, in this process):
InstEval LMM (ML), a 1M-row binary GEE (exchangeable) and a 100k-row logistic GLMM
with its standard errors. Compare the builds of the compiled core:

    python benchmarks/core_builds.py                       # the AVX2 build where the CPU has AVX2
    MULTILEVEL_CORE=base python benchmarks/core_builds.py  # the portable baseline build
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd


def best(fit, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fit()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    warnings.simplefilter("ignore")
    import multilevel
    from multilevel.datasets import load_dataset

    print(f"core build: {multilevel._core.build}")
    ie = load_dataset("InstEval")
    print(f"InstEval lmm ML   {best(lambda: multilevel.lmm('y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)', ie, reml=False)):.3f} s")
    rng = np.random.default_rng(1)
    n = 1_000_000
    g = np.repeat(np.arange(n // 20), 20)
    x = rng.normal(size=n)
    eta = 0.3 * x + rng.normal(size=n // 20)[g]
    df = pd.DataFrame({"g": g, "x": x, "y": (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float)})
    print(f"GEE 1M exch       {best(lambda: multilevel.gee('y ~ x', df, groups='g', family='binomial', corr='exchangeable')):.3f} s")
    small = df.iloc[:100_000]
    print(f"GLMM 100k + SEs   {best(lambda: multilevel.glmm('y ~ x + (1 | g)', small).bse, 2):.3f} s")


if __name__ == "__main__":
    main()
