"""Both builds of the compiled core (baseline and AVX2) load and give the same fits to rounding;
pickles name multilevel._core whichever build made them."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np

import multilevel
from multilevel import _core

FIT = """
import json, multilevel
from multilevel.datasets import load_dataset
fit = multilevel.lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
print(json.dumps({"build": multilevel._core.build, "params": fit.params.tolist(), "theta": fit.theta.tolist()}))
"""


def test_the_baseline_build_fits_as_the_loaded_one():
    runs = {}
    for choice in ("", "base"):
        out = subprocess.run([sys.executable, "-c", FIT], capture_output=True, text=True, check=True,
                             env={**os.environ, "MULTILEVEL_CORE": choice})
        runs[choice] = json.loads(out.stdout.strip().splitlines()[-1])
    assert runs["base"]["build"] == "_core_base"
    assert runs[""]["build"] in ("_core_avx2", "_core_base")  # the best this CPU runs
    np.testing.assert_allclose(runs["base"]["params"], runs[""]["params"], rtol=1e-9)
    np.testing.assert_allclose(runs["base"]["theta"], runs[""]["theta"], rtol=1e-5)


def test_core_objects_pickle_under_the_dispatching_module():
    assert _core.NormalEquationsAccumulator.__module__ == "multilevel._core"
    acc = _core.NormalEquationsAccumulator(1, [1], [2])
    assert b"multilevel._core" in pickle.dumps(acc) and b"_core_avx2" not in pickle.dumps(acc)
    assert multilevel._core.build in ("_core_base", "_core_avx2")
