"""Results do not depend on the number of threads the core uses."""

from __future__ import annotations

import numpy as np

from multilevel import _core
from multilevel.datasets import load_dataset
from multilevel.lmm import lmm_design
from multilevel.lmm.fit import lmm_core


def test_objective_and_estimates_identical_across_thread_counts():
    design = lmm_design("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", load_dataset("InstEval"))
    core = lmm_core(design)
    assert core.rest_storage == "dense"  # the parallel dense Cholesky path
    theta = np.array([0.27, 0.43, 0.066])
    before = _core.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            _core.set_num_threads(n)
            sol = core.solve(theta, False)
            results.append((core.objective(theta, False), sol["beta"], np.concatenate([b.ravel() for b in sol["b"]])))
    finally:
        _core.set_num_threads(before)
    for obj, beta, b in results[1:]:
        assert obj == results[0][0]  # bitwise
        assert np.array_equal(beta, results[0][1])
        assert np.array_equal(b, results[0][2])
