"""``tidy()``, ``glance()`` and ``to_dict()`` as methods of every result class (defined in :mod:`multilevel.tidy`)."""

from __future__ import annotations

from typing import Any

import pandas as pd


class TidyMethods:
    """Mixin for the result classes; :mod:`multilevel.tidy` is imported on first use (it imports the results)."""

    def tidy(self, effects: str | list[str] = "fixed", conf_int: bool = False,
             conf_level: float = 0.95) -> pd.DataFrame:
        """broom.mixed's ``tidy``: one row per estimate (see :func:`multilevel.tidy.tidy`)."""
        from multilevel.tidy import tidy

        return tidy(self, effects, conf_int, conf_level)

    def glance(self) -> pd.DataFrame:
        """broom.mixed's ``glance``: one row of fit statistics (see :func:`multilevel.tidy.glance`)."""
        from multilevel.tidy import glance

        return glance(self)

    def to_dict(self) -> dict[str, Any]:
        """Everything a front end needs, JSON-serializable (see :func:`multilevel.tidy.to_dict`)."""
        from multilevel.tidy import to_dict

        return to_dict(self)
