"""The number of threads of the compiled core, for the whole process.

Results never depend on it: the core splits its work into fixed items and
adds them in a fixed order. Threads wait passively at the end of parallel
loops (``OMP_WAIT_POLICY=PASSIVE`` unless set before ``multilevel`` is
imported), so a fit beside other busy processes does not lose its time to
threads spinning for a core that another process holds.
"""

from __future__ import annotations

import operator

from multilevel import _core


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads in every later fit, from any Python thread; ``None`` restores the default.

    The default is ``OMP_NUM_THREADS`` if set, else all cores.

    Examples
    --------
    >>> import multilevel
    >>> multilevel.set_num_threads(1); multilevel.get_num_threads()
    1
    >>> multilevel.set_num_threads(None)
    """
    if n is None:
        _core.set_num_threads(0)
        return
    if isinstance(n, bool):
        raise TypeError("set_num_threads takes a positive integer or None, not a bool")
    try:
        count = operator.index(n)
    except TypeError:
        raise TypeError(f"set_num_threads takes a positive integer or None, not {n!r}") from None
    if count < 1:
        raise ValueError(f"the number of threads must be at least 1, not {count}; pass None for the default")
    _core.set_num_threads(count)


def get_num_threads() -> int:
    """The number of threads the core uses now."""
    return int(_core.get_num_threads())
