"""Exceptions shared by the model families."""

from __future__ import annotations


class RowsNotKeptError(ValueError):
    """A per-row quantity was asked of a fit whose rows were read in chunks and not kept."""


def require_rows(design: object, what: str, instead: str) -> None:
    """Refuse ``what`` for a fit whose design kept no rows, saying what to call ``instead``."""
    if not getattr(design, "has_rows", True):
        raise RowsNotKeptError(
            f"{what} needs the rows of the fit, which were read in chunks from {design.source} "  # type: ignore[attr-defined]
            f"and not kept; {instead}"
        )
