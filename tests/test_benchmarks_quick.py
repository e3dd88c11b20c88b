"""The benchmark harness's quick mode runs and its estimates agree with the references
(so ``benchmarks/run.py`` cannot rot). No timing is checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_benchmark_quick_mode_passes(tmp_path: Path) -> None:
    # The command of benchmarks/README.md as written (`python benchmarks/run.py --quick`, the installed
    # package, no PYTHONPATH), from the repository root; its record goes to a temporary folder, as
    # tests never write into the checkout.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--quick-dir", str(tmp_path)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "quick check passed (6/6)" in out.stdout
    assert (tmp_path / "quick.json").exists()
