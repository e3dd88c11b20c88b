"""The compiled core, loaded for the instruction set this CPU has.

The extension is built twice: ``_core_avx2`` (x86-64-v3: AVX2 and FMA,
about 2.4x faster on the dense mixed-model Cholesky) and ``_core_base``
(the compiler's baseline, which runs on every CPU of the platform). This
module loads the first that the CPU can run and re-exports it, so the rest
of the package, and pickles, only ever name ``multilevel._core``.
``MULTILEVEL_CORE=base`` forces the baseline build.
"""

from __future__ import annotations

import importlib
import os


def _cpu_has_avx2() -> bool:
    try:  # numpy's own run-time CPU detection
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return all(__cpu_features__.get(f, False) for f in ("AVX", "AVX2", "FMA3", "F16C"))


def _load():  # type: ignore[no-untyped-def]
    names = ["_core_base"]
    if os.environ.get("MULTILEVEL_CORE", "").lower() != "base" and _cpu_has_avx2():
        names.insert(0, "_core_avx2")
    for name in names:
        try:
            return importlib.import_module(f"multilevel.{name}")
        except ImportError:  # not built for this platform
            continue
    raise ImportError("the compiled core of multilevel is missing; reinstall the package")


_impl = _load()
#: Which build was loaded ("_core_avx2" or "_core_base").
build = _impl.__name__.rsplit(".", 1)[-1]
for _name in dir(_impl):
    if not _name.startswith("__"):
        _obj = getattr(_impl, _name)
        if isinstance(_obj, type):
            _obj.__module__ = __name__  # pickles name multilevel._core, whichever build made them
        globals()[_name] = _obj
del _name, _obj
