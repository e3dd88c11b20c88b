"""Build and run the C++ unit tests (cpp/tests/test_core.cpp): the core's
kernels against brute-force dense algebra on small random problems."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cpp_core_against_dense_algebra(tmp_path: Path) -> None:
    cmake = shutil.which("cmake")
    assert cmake, "cmake is needed for the C++ tests: pip install '.[test]' installs it"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    build = tmp_path / "build"
    subprocess.run([cmake, "-S", str(ROOT), "-B", str(build), *generator, "-DMULTILEVEL_BUILD_TESTS=ON",
                    "-DCMAKE_BUILD_TYPE=Release"], check=True, capture_output=True, text=True)
    subprocess.run([cmake, "--build", str(build), "--target", "test_core"], check=True, capture_output=True,
                   text=True)
    run = subprocess.run([str(build / "test_core")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 failed" in run.stdout.splitlines()[-1]
