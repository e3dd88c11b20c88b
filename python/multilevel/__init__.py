"""multilevel: fast, exact models for clustered data with a C++/Eigen core.

Linear mixed models (:func:`lmm`), with an array-level API (:func:`fit_lmm`,
:class:`RandomTerm`) for other front ends, and bundled classic data sets
(:func:`multilevel.datasets.load_dataset`).
"""

from multilevel.datasets import list_datasets, load_dataset
from multilevel.lmm import ConvergenceWarning, LmmDesign, LmmResult, RandomTerm, SingularFitWarning, fit_lmm, lmm

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "LmmDesign",
    "LmmResult",
    "RandomTerm",
    "SingularFitWarning",
    "fit_lmm",
    "list_datasets",
    "lmm",
    "load_dataset",
]
