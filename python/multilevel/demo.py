"""``python -m multilevel.demo``: fit classic models on bundled data and print summaries.

Fits lme4's sleepstudy model (random intercept and slope per subject) and
the InstEval crossed model (73,421 ratings of 1,128 lecturers by 2,972
students), and prints lme4-style summaries.
"""

from __future__ import annotations

import time

from multilevel import lmm
from multilevel.datasets import load_dataset


def main() -> None:
    sleep = load_dataset("sleepstudy")
    fit = lmm("Reaction ~ Days + (Days | Subject)", sleep)
    print(fit.summary())
    print()
    insteval = load_dataset("InstEval")
    start = time.perf_counter()
    crossed = lmm("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", insteval, reml=False)
    elapsed = time.perf_counter() - start
    print(crossed.summary())
    print(f"\nInstEval: {crossed.nobs} rows, three crossed factors, fitted in {elapsed:.2f} s")


if __name__ == "__main__":
    main()
