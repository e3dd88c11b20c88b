"""The benchmark harness's quick mode runs and its estimates agree with the references
(so ``benchmarks/run.py`` cannot rot). No timing is checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import multilevel

REPO = Path(__file__).resolve().parent.parent


def test_benchmark_quick_mode_passes(tmp_path: Path) -> None:
    # The subprocess imports the same multilevel as this process (installed, or a dev tree on PYTHONPATH).
    here = str(Path(multilevel.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
    # Its record goes to a temporary folder: tests never write into the checkout.
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--quick-dir", str(tmp_path)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "quick check passed (6/6)" in out.stdout
    assert (tmp_path / "quick.json").exists()
