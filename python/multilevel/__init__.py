"""multilevel: fast, exact models for clustered data with a C++/Eigen core.

Linear mixed models (:func:`lmm`), generalized estimating equations
(:func:`gee`), generalized least squares (:func:`gls`), generalized linear mixed models
(:func:`glmm`), with an array-level API (:func:`fit_lmm`,
:class:`RandomTerm`) for other front ends, and bundled classic data sets
(:func:`multilevel.datasets.load_dataset`).
"""

import os as _os

# Passive waiting at OpenMP barriers: spinning threads lose badly when another process holds a core.
# libgomp reads this once, when the compiled core first loads it.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from multilevel.correlation import Ar1, Car1, Exchangeable, Fixed, Independence, MDependent, Unstructured
from multilevel.datasets import list_datasets, load_dataset
from multilevel.families import Family, Link, get_family
from multilevel.gee import GeeConvergenceWarning, GeeResult, fit_gee
from multilevel.glmm import GlmmResult, PirlsError, SeparationWarning
from multilevel.gls import GlsBoundaryWarning, GlsConvergenceWarning, GlsResult
from multilevel.inference import anova
from multilevel.inference.emmeans import emmeans
from multilevel.variance import VarExp, VarIdent, VarPower

#: The likelihood-ratio test of nested fits: the same function as :func:`anova`.
lrtest = anova
# gee, glmm, gls and lmm are callable subpackages: multilevel.lmm(...) fits (callable_module.py).
# plot imports matplotlib only when a plot is drawn.
from multilevel import gee, glmm, gls, lmm, plot  # noqa: F401
from multilevel.lmm import ConvergenceWarning, LmmDesign, LmmResult, RandomTerm, SingularFitWarning, fit_lmm
from multilevel.streaming import ChunkSource, chunks
from multilevel.threads import get_num_threads, set_num_threads
from multilevel.tidy import glance, tidy, to_dict

__version__ = "0.1.0"

__all__ = [
    "Ar1",
    "ChunkSource",
    "anova",
    "emmeans",
    "chunks",
    "get_num_threads",
    "set_num_threads",
    "Car1",
    "GlmmResult",
    "GlsBoundaryWarning",
    "GlsConvergenceWarning",
    "PirlsError",
    "SeparationWarning",
    "glmm",
    "GlsResult",
    "VarExp",
    "VarIdent",
    "VarPower",
    "gls",
    "lrtest",
    "Exchangeable",
    "Family",
    "Fixed",
    "GeeConvergenceWarning",
    "GeeResult",
    "Independence",
    "Link",
    "MDependent",
    "Unstructured",
    "fit_gee",
    "gee",
    "get_family",
    "ConvergenceWarning",
    "LmmDesign",
    "LmmResult",
    "RandomTerm",
    "SingularFitWarning",
    "fit_lmm",
    "list_datasets",
    "lmm",
    "load_dataset",
    "glance",
    "tidy",
    "to_dict",
]
