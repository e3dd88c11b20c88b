"""The benchmark report's pieces (benchmarks/run.py, benchmarks/lmm_vs_lme4.py): coefficient matching
across tools' naming schemes and the markdown table. Nothing here is timed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module", autouse=True)
def bench_on_path():
    sys.path.insert(0, str(BENCH_DIR))
    yield
    sys.path.remove(str(BENCH_DIR))


def test_coefficients_matched_by_name_across_naming_schemes() -> None:
    from lmm_vs_lme4 import max_dbeta_over_se

    ours = {"Intercept": 1.0, "dept[T.2]:service[T.1]": 2.0}
    se = {"Intercept": 0.1, "dept[T.2]:service[T.1]": 0.5}
    r_names = {"service1:dept2": 2.1, "(Intercept)": 1.0}  # R's order and spelling
    assert max_dbeta_over_se(ours, se, r_names) == pytest.approx(0.2)


def test_coefficients_matched_by_position_when_names_differ_in_form() -> None:
    from lmm_vs_lme4 import max_dbeta_over_se

    ours = {"Intercept": 1.0, "dept[T.2]": 3.0, "dept[T.3]": 4.0}
    se = dict.fromkeys(ours, 1.0)
    by_position = {"(Intercept)": 1.0, "dept.1": 3.5, "dept.2": 4.0}  # mixedlm numbers levels
    assert max_dbeta_over_se(ours, se, by_position, by_position=True) == pytest.approx(0.5)
    assert max_dbeta_over_se(ours, se, by_position) is None  # only for tools known to number levels
    assert max_dbeta_over_se(ours, se, {"(Intercept)": 1.0}, by_position=True) is None


def test_markdown_table_ratios_and_footnotes() -> None:
    import run

    long_reason = "statsmodels not run: " + "a reason that is much too long for a table cell " * 2
    rows = [
        {"problem": "lmm x", "rows": 1000, "tool": "multilevel", "seconds": 1.0, "load_seconds": 0.1,
         "ratio_to_ours": None, "peak_mb": 10.0, "objective": 12.5, "max_dbeta_over_se": None, "status": "ok"},
        {"problem": "lmm x", "rows": 1000, "tool": "lme4", "seconds": 20.0, "load_seconds": 0.2,
         "ratio_to_ours": 20.0, "peak_mb": 50.0, "objective": 12.5, "max_dbeta_over_se": 1e-6, "status": "ok"},
        {"problem": "lmm x", "rows": 1000, "tool": "glmmTMB", "seconds": 0.5, "load_seconds": 0.2,
         "ratio_to_ours": 0.5, "peak_mb": 50.0, "objective": 12.5, "max_dbeta_over_se": 1e-6, "status": "ok"},
        {"problem": "lmm x", "rows": 1000, "tool": "statsmodels", "seconds": None, "load_seconds": None,
         "ratio_to_ours": None, "peak_mb": None, "objective": None, "max_dbeta_over_se": None,
         "status": long_reason},
    ]
    table = run.markdown_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| problem | rows | tool | fit s | load s | peer / ours")
    assert "| **20.0x** |" in lines[3]  # a slower peer in bold
    assert "| 0.50x |" in lines[4]  # a faster peer is not
    assert lines[5].endswith("| not run [1] |")
    assert lines[-1].startswith("[1] " + long_reason)


def test_a_run_without_a_result_is_written_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import run

    out = tmp_path / "lmm_x.json"
    crashing = [sys.executable, "-c", "import sys; sys.exit(3)", "--only", "x", "--out", str(out)]
    monkeypatch.setattr(run, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(run, "FAILED_RUNS", tmp_path / "failed_runs.json")
    monkeypatch.setattr(run, "family_runs", lambda repeats, large: [("lmm", crashing, out)])
    assert run.main([]) == 0
    table = (tmp_path / "summary.md").read_text()
    assert "| lmm x" in table and "exited with status 3, no result" in table
