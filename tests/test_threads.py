"""Results do not depend on the number of threads the core uses."""

from __future__ import annotations

import numpy as np
import pytest

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
        _core.set_num_threads(0)  # back to the default
    for obj, beta, b in results[1:]:
        assert obj == results[0][0]  # bitwise
        assert np.array_equal(beta, results[0][1])
        assert np.array_equal(b, results[0][2])


def test_set_num_threads_is_validated_and_process_wide():
    import threading

    import multilevel

    with pytest.raises(ValueError, match="at least 1"):
        multilevel.set_num_threads(0)
    with pytest.raises(ValueError, match="at least 1"):
        multilevel.set_num_threads(-1)
    with pytest.raises(TypeError, match="positive integer"):
        multilevel.set_num_threads(2.5)
    with pytest.raises(TypeError, match="positive integer"):
        multilevel.set_num_threads("2")
    try:
        worker = threading.Thread(target=multilevel.set_num_threads, args=(1,))
        worker.start()
        worker.join()
        assert multilevel.get_num_threads() == 1  # set in another Python thread, seen in this one
    finally:
        multilevel.set_num_threads(None)
    assert multilevel.get_num_threads() >= 1
