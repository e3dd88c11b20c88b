"""Run the hand-written mutants of tests/mutation/mutants.py and report which the tests catch.

Each mutant is applied to a copy of python/ in a temporary directory (the checkout is never
touched), and the tests named for it run against that copy (pytest -x -q); a failing run
kills the mutant. On demand, not in CI (a few minutes):

    python tests/mutation/run_mutants.py            # all Python mutants
    python tests/mutation/run_mutants.py tukey_range lrt_chisq
    python tests/mutation/run_mutants.py --cpp 1 2  # C++ mutants: one build each (minutes)

Python mutants run against the installed package's compiled core; a C++ mutant N is
built into a wheel with -Ccmake.define.MULTILEVEL_MUTANT=N (cpp/include/multilevel/mutants.hpp)
whose extension modules replace the core in the copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from mutants import CPP_MUTANTS, MUTANTS, Mutant


def compiled_core() -> list[Path]:
    """The built extension modules of the installed package."""
    import multilevel

    found = []
    for entry in getattr(multilevel, "__path__", []):
        found += list(Path(entry).glob("_core_*.so")) + list(Path(entry).glob("_core_*.pyd"))
    import importlib.util

    for name in ("multilevel._core_base", "multilevel._core_avx2"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            found.append(Path(spec.origin))
    return sorted(set(found))


def run_tests(mutant: Mutant, workdir: Path, env: dict[str, str]) -> tuple[bool, float, str]:
    """Run the mutant's tests against the copy. Returns (killed, seconds, last line)."""
    start = time.perf_counter()
    tests = [str(ROOT / "tests" / t) for t in mutant.tests]
    done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=workdir, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in done.stdout.strip().splitlines() if ln.strip()]
    return done.returncode != 0, time.perf_counter() - start, lines[-1] if lines else ""


#: The name, in a mutant's ``tests``, of the C++ unit tests (cpp/tests, the ``test_core`` executable).
CPP_UNIT_TESTS = "test_core"


def run_cpp_unit_tests(n: int, workdir: Path) -> tuple[bool, float, str]:
    """Build the C++ unit tests with C++ mutant ``n`` and run them. Returns (killed, seconds, last line)."""
    start = time.perf_counter()
    build = workdir / f"cpp-tests-{n}"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), *generator, "-DMULTILEVEL_BUILD_TESTS=ON",
                    "-DCMAKE_BUILD_TYPE=Release", f"-DMULTILEVEL_MUTANT={n}"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "--target", CPP_UNIT_TESTS], check=True, capture_output=True)
    done = subprocess.run([str(build / CPP_UNIT_TESTS)], capture_output=True, text=True, check=False)
    lines = [ln for ln in done.stdout.strip().splitlines() if ln.strip()]
    return done.returncode != 0, time.perf_counter() - start, f"C++ unit tests: {lines[-1] if lines else ''}"


def run_cpp_mutant(n: int, mutant: Mutant, workdir: Path, env: dict[str, str]) -> tuple[bool, float, str]:
    """A C++ mutant's C++ unit tests (when it names them) and then its Python tests, against its build."""
    if CPP_UNIT_TESTS in mutant.tests:
        killed, seconds, last = run_cpp_unit_tests(n, workdir)
        if killed:
            return killed, seconds, last
    python_tests = tuple(t for t in mutant.tests if t != CPP_UNIT_TESTS)
    if not python_tests:
        return False, 0.0, "no Python tests named"
    build_cpp_mutant(n, workdir)
    return run_tests(replace(mutant, tests=python_tests), workdir, env)


def run(mutant: Mutant, workdir: Path, env: dict[str, str]) -> tuple[bool, float, str]:
    """Apply a Python mutant to the copy, run its tests, restore."""
    target = workdir / "python" / "multilevel" / mutant.path
    text = target.read_text()
    if text.count(mutant.original) != 1:
        raise SystemExit(f"{mutant.name}: the original text occurs {text.count(mutant.original)} times in "
                         f"{mutant.path}; update tests/mutation/mutants.py")
    target.write_text(text.replace(mutant.original, mutant.replacement))
    try:
        return run_tests(mutant, workdir, env)
    finally:
        target.write_text(text)


def build_cpp_mutant(n: int, workdir: Path) -> None:
    """Build the extension with C++ mutant ``n`` and put its module into the copy.

    One extension only (``MULTILEVEL_NATIVE=ON`` builds ``_core_base`` for this CPU, half the time of
    the two-build wheel); the tests then load it through ``MULTILEVEL_CORE=base`` (set in :func:`main`).
    """
    import zipfile

    out = workdir / f"wheel-{n}"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), f"-Ccmake.define.MULTILEVEL_MUTANT={n}", "-Ccmake.define.MULTILEVEL_NATIVE=ON",
                    f"-Cbuild-dir={workdir / f'build-{n}'}"], check=True)
    wheel = next(out.glob("*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if "/_core_" in name and name.endswith((".so", ".pyd")):
                (workdir / "python" / "multilevel" / Path(name).name).write_bytes(zf.read(name))


def main() -> None:
    cpp = sys.argv[1:2] == ["--cpp"]
    args = sys.argv[2:] if cpp else sys.argv[1:]
    chosen = [CPP_MUTANTS[int(a)] for a in args] if cpp else [m for m in MUTANTS if not args or m.name in args]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        shutil.copytree(ROOT / "python", workdir / "python")
        for so in compiled_core():
            shutil.copy2(so, workdir / "python" / "multilevel" / so.name)
        env = dict(os.environ, PYTHONPATH=str(workdir / "python"))
        if cpp:
            env["MULTILEVEL_CORE"] = "base"  # the one extension a mutant build makes
        # An editable install's finder would import the checkout, not the mutated copy.
        env["SKBUILD_EDITABLE_SKIP"] = os.pathsep.join(str(p) for p in (ROOT / "build").glob("*"))
        probe = subprocess.run([sys.executable, "-c", "import multilevel; print(multilevel.__file__)"], env=env,
                               capture_output=True, text=True, cwd=workdir, check=False)
        if str(workdir) not in probe.stdout:
            raise SystemExit(f"the copy is not the package imported ({probe.stdout.strip()} {probe.stderr[-300:]})")
        killed = 0
        print("| mutant | bug | caught | seconds | last line |\n|---|---|---|---|---|")
        for n, m in zip(args if cpp else range(len(chosen)), chosen):
            dead, seconds, last = run_cpp_mutant(int(n), m, workdir, env) if cpp else run(m, workdir, env)
            killed += dead
            print(f"| {m.name} | {m.bug} | {'yes' if dead else 'NO'} | {seconds:.0f} | {last} |", flush=True)
        print(f"\nkilled {killed} of {len(chosen)} mutants ({100 * killed / max(len(chosen), 1):.0f}%)")


if __name__ == "__main__":
    main()
