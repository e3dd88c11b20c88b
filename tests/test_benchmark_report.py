"""The benchmark report's pieces (benchmarks/run.py, benchmarks/lmm_vs_lme4.py): coefficient matching
across tools' naming schemes and the markdown table. Nothing here is timed."""

from __future__ import annotations

import re
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
    rows[1].update(warm_seconds=4.0, warm_ratio_to_ours=2.0, ratio_to_ours_1thread=12.5, cpu_per_wall=1.0)
    table = run.markdown_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| problem | rows | tool | fit s | load s | peer / ours | warm s | warm peer / ours | "
                               "peer / ours 1 thread | CPU / wall |")
    assert "| **20.0x** | 4.00 | **2.0x** | **12.5x** | 1.00 |" in lines[3]  # cold, warm, one-thread, CPU
    cells = [len(re.findall(r"(?<!\\)\|", line)) for line in lines[:6]]
    assert cells == [cells[0]] * 6  # no unescaped "|" inside a cell
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
    monkeypatch.setattr(run, "family_runs", lambda repeats, large, warm_limit=60.0: [("lmm", crashing, out)])
    assert run.main([]) == 0
    table = (tmp_path / "summary.md").read_text()
    assert "| lmm x" in table and "exited with status 3, no result" in table


def test_lmm_rows_name_each_configuration_and_its_status() -> None:
    import run
    from lmm_vs_lme4 import TOOLS, status_of, summarize

    def rec(seconds: float, **extra: object) -> dict:
        return {"fit_seconds": seconds, "fit_cpu_seconds": seconds, "warm_fit_seconds": seconds / 2,
                "load_seconds": 0.1, "objective": 10.0, "fixef": {"Intercept": 1.0}, "converged": True,
                "rss_before_fit_kb": 0, "peak_rss_fit_kb": 1024, "process_maxrss_kb": 2048, **extra}

    ours = rec(1.0, nobs=100, se={"Intercept": 0.5}, theta={"g": 1.0}, sigma=1.0, optimizer_seconds=0.5,
               core_sha256="x", core_mtime="t", numeric_columns=["y"], numeric_bytes=800, peak_reset=True,
               max_abs_gradient=1e-7, polish_steps=2, column_sums={"y": 1.0})
    records = {"ours": [ours], "ours_1thread": [{**ours, "fit_seconds": 1.5, "warm_fit_seconds": 0.75}],
               "lme4": [rec(20.0, derivative_check=True, max_abs_gradient=3e-4, conv_messages=[])],
               "lme4_noderivs": [rec(15.0, derivative_check=False, conv_messages=[])],
               "lme4_openblas": [{"error": "timed out (> 60 s)", "timed_out": True}],
               "mixedlm": [rec(2.0, converged=False, optimizer_message="ABNORMAL")]}
    records["lme4"][0].update(reader="fread", r_version="R", objective_kind="deviance", theta={"g": 1.0},
                              sigma=1.0, gc_max_used_mb=1.0, column_sums={"y": 1.0})
    spec = {"formula": "y ~ 1 + (1 | g)", "reml": False, "warm_limit": 120.0}
    s = summarize("x", spec, records, {"statsmodels": "statsmodels not run: a reason"})
    rows = {r["tool"]: r for r in run.lmm_rows({"x": s})}
    assert list(rows) == list(TOOLS)  # every configuration is its own row
    assert rows["multilevel"]["status"] == "ok, grad 1.0e-07, 2 Newton steps"
    assert rows["multilevel (1 thread)"]["ratio_to_ours"] == pytest.approx(1.5)  # the threads' speed-up
    lme4 = rows["lme4"]
    assert (lme4["ratio_to_ours"], lme4["warm_ratio_to_ours"], lme4["ratio_to_ours_1thread"]) == pytest.approx(
        (20.0, 20.0, 20.0 / 1.5))
    assert lme4["status"] == "ok, grad 3.0e-04"
    assert rows["lme4 (calc.derivs=FALSE)"]["status"] == "ok, no derivative check"
    assert rows["lme4 (OpenBLAS, calc.derivs=FALSE)"]["status"] == "timed out (> 60 s)"
    assert rows["mixedlm"]["status"] == "NOT converged: ABNORMAL"
    assert rows["statsmodels"]["status"] == "statsmodels not run: a reason"
    assert status_of({"converged": False, "conv_messages": ["Model failed to converge"]}).endswith("to converge")


def test_warm_and_per_core_ratios_of_the_family_scripts() -> None:
    from gee_vs_geepack import speed_ratios

    tools = {"multilevel": {"median_s": 2.0, "warm_median_s": 1.0},
             "multilevel (1 thread)": {"median_s": 3.0, "warm_median_s": 1.5},
             "geepack": {"median_s": 30.0, "warm_median_s": 20.0},
             "statsmodels": {"status": "not run"}}
    speed_ratios(tools)
    assert tools["geepack"]["warm_ratio_over_ours"] == pytest.approx(20.0)
    assert tools["geepack"]["ratio_over_ours_1thread"] == pytest.approx(10.0)
    assert tools["multilevel (1 thread)"]["warm_ratio_over_ours"] == pytest.approx(1.5)
    assert "ratio_over_ours_1thread" not in tools["multilevel (1 thread)"]  # not against itself
    assert "warm_ratio_over_ours" not in tools["statsmodels"] and "warm_ratio_over_ours" not in tools["multilevel"]


def test_glmm_rows_add_our_standard_error_time() -> None:
    import run

    problems = {"logit_100k": {"nobs": 100, "tools": {
        "multilevel": {"median_s": 2.0, "se_s": 0.5, "warm_with_se_s": 1.5, "status": "ok"},
        "multilevel (1 thread)": {"median_s": 3.0, "se_s": 0.75, "ratio_over_ours_with_se": 1.5, "status": "ok"},
        "lme4": {"median_s": 25.0, "ratio_over_ours": 12.5, "ratio_over_ours_with_se": 10.0,
                 "ratio_over_ours_1thread": 25 / 3.75, "cpu_over_wall": 1.0, "status": "ok"}}}}
    rows = {r["tool"]: r for r in run.family_rows("glmm", problems)}
    assert rows["multilevel"]["seconds"] == pytest.approx(2.5)
    assert rows["multilevel"]["status"] == "ok (fit 2.00 s + SE 0.50 s)"
    assert rows["multilevel"]["warm_seconds"] == pytest.approx(1.5)
    assert rows["multilevel (1 thread)"]["seconds"] == pytest.approx(3.75)
    assert rows["lme4"]["ratio_to_ours"] == pytest.approx(10.0)  # against ours with its SE
    assert rows["lme4"]["ratio_to_ours_1thread"] == pytest.approx(25 / 3.75)
    assert rows["lme4"]["cpu_per_wall"] == pytest.approx(1.0)


def test_an_r_fit_on_another_blas_than_its_row_names_is_an_error() -> None:
    from lmm_vs_lme4 import check_blas

    env = {"R_LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu/openblas-pthread"}
    reference = {"blas": "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0",
                 "lapack": "/usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3.11.0"}
    assert "error" not in check_blas(dict(reference), "reference", env)
    wrong = check_blas(dict(reference), "openblas", env, "lme4 (OpenBLAS)")
    assert wrong["error"].startswith("R loaded /usr/lib/x86_64-linux-gnu/blas/") and wrong["error"].endswith("(lme4 (OpenBLAS))")
    assert "error" not in check_blas(dict(reference), "openblas", {})  # R run as it is: not checked
