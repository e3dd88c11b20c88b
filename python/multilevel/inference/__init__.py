"""Inference shared by the model families: Wald tables (:mod:`.wald`) and
likelihood-ratio tests between nested fits (:mod:`.lrt`)."""

from multilevel.inference.lrt import anova
from multilevel.inference.wald import coefficient_table, normal_pvalues, standard_errors, wald_conf_int

__all__ = ["anova", "coefficient_table", "normal_pvalues", "standard_errors", "wald_conf_int"]
