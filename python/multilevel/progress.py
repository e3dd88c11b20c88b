"""Progress bars for long fits (tqdm), shown only where someone watches.

A bar appears after two seconds (shorter fits show nothing), on a terminal
or in a notebook; ``progress=False`` turns it off, ``progress=True`` forces
it on. Without tqdm installed there is no bar.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

#: Seconds before a bar appears.
DELAY_S = 2.0


def _watched() -> bool:
    """True on a terminal or in a Jupyter kernel."""
    if "ipykernel" in sys.modules:
        return True
    stream = getattr(sys, "stderr", None)
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


def progress_enabled(progress: bool | None) -> bool:
    """Resolve a ``progress=`` argument: None means "if watched"."""
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, not {progress!r}")
    return _watched() if progress is None else progress


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(desc: str, enabled: bool, total: int | None = None, unit: str = "it") -> Any:
    """A tqdm bar (or a stand-in with the same ``update``/``close``)."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return _NoBar()
    return tqdm(desc=desc, total=total, unit=unit, delay=DELAY_S, leave=False, file=sys.stderr)


def iterate_with_progress(items: Iterable[T], desc: str, enabled: bool, unit: str = "chunk",
                          total: int | None = None) -> Iterator[T]:
    """Yield ``items``, advancing a bar per item."""
    bar = progress_bar(desc, enabled, total, unit)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()
