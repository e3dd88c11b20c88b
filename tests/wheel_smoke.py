"""Smoke test of an installed wheel (not collected by pytest): run it from outside the checkout.

Used by cibuildwheel's test-command and by .ci/run: the package imports with its compiled core,
ships its data sets and typing files, and fits sleepstudy to lme4's estimates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import multilevel as ml
from multilevel import _core

package = Path(ml.__file__).parent
for name in ("py.typed", "_core.pyi", "datasets/data/sleepstudy.csv", "datasets/data/InstEval.csv.gz"):
    assert (package / name).is_file(), f"{name} is missing from the installed package at {package}"

fit = ml.lmm("Reaction ~ Days + (Days | Subject)", ml.load_dataset("sleepstudy"))
print(fit.params)
np.testing.assert_allclose(fit.params.to_numpy(), [251.405105, 10.467286], rtol=1e-6)  # lme4 1.1-31, REML
print(f"multilevel {ml.__version__} from {package}: core {_core.build}, {_core.get_num_threads()} threads")
