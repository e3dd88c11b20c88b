"""multilevel.plot: what the figures contain (panels, points, order, labels), not their pixels."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import multilevel as ml
from multilevel import plot

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")  # before pyplot loads a backend
plt = pytest.importorskip("matplotlib.pyplot")

_fits: dict[str, Any] = {}


def fit(name: str) -> Any:
    """The fits the tests draw, made once."""
    if name not in _fits:
        if name == "sleepstudy":
            _fits[name] = ml.lmm("Reaction ~ Days + (Days | Subject)", ml.load_dataset("sleepstudy"))
        elif name == "pastes":
            _fits[name] = ml.lmm("strength ~ 1 + (1 | batch/cask)", ml.load_dataset("Pastes"))
        elif name == "cbpp":
            d = ml.load_dataset("cbpp")
            _fits[name] = ml.glmm("_y ~ period + (1 | herd)", d.assign(_y=d["incidence"] / d["size"]),
                                  family="binomial", weights="size")
        elif name == "ovary_ar1":
            _fits[name] = ml.gls("follicles ~ np.sin(2*np.pi*Time) + np.cos(2*np.pi*Time)", ml.load_dataset("Ovary"),
                                 groups="Mare", corr="ar1")
        elif name == "bodyweight_car1":
            _fits[name] = ml.gls("weight ~ Time * Diet", ml.load_dataset("BodyWeight"), groups="Rat", time="Time",
                                 corr="car1")
        elif name == "ohio_exch":
            _fits[name] = ml.gee("resp ~ age + smoke", ml.load_dataset("ohio"), groups="id", family="binomial",
                                 corr="exchangeable")
    return _fits[name]


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def errorbars(ax: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y and half-widths of the first errorbar series of a panel."""
    line, _caps, (bars,) = ax.containers[0]
    segments = np.asarray(bars.get_segments())
    return np.asarray(line.get_xdata()), np.asarray(line.get_ydata()), (segments[:, 1, 0] - segments[:, 0, 0]) / 2


def scatter_points(ax: Any) -> np.ndarray:
    return np.asarray(ax.collections[0].get_offsets())


# ----- caterpillar -----------------------------------------------------------------
def test_caterpillar_sorts_levels_by_the_first_column_in_every_panel() -> None:
    f = fit("sleepstudy")
    fig = plot.caterpillar(f)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert [ax.get_title() for ax in fig.axes] == ["(Intercept)", "Days"]
    modes, condvar = f.ranef["Subject"], f.ranef_condvar()["Subject"]
    order = np.argsort(modes["Intercept"].to_numpy())
    for ax, col in zip(fig.axes, ["Intercept", "Days"]):
        x, y, half = errorbars(ax)
        assert len(x) == 18
        np.testing.assert_allclose(x, modes[col].to_numpy()[order])
        np.testing.assert_allclose(y, np.arange(18))
        np.testing.assert_allclose(half, 1.959963984540054 * np.sqrt(condvar[col].to_numpy()[order]))
    x0 = errorbars(fig.axes[0])[0]
    assert np.all(np.diff(x0) >= 0)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == [str(v) for v in modes.index[order]]
    assert fig.axes[0].get_ylabel() == "Subject"


def test_caterpillar_draws_one_row_per_grouping_factor_or_the_one_asked() -> None:
    f = fit("pastes")
    fig = plot.caterpillar(f)
    assert [len(errorbars(ax)[0]) for ax in fig.axes] == [30, 10]
    assert [ax.get_ylabel() for ax in fig.axes] == ["cask:batch", "batch"]
    one = plot.caterpillar(f, term="batch", level=0.5)
    (ax,) = one.axes
    x, _, half = errorbars(ax)
    np.testing.assert_allclose(np.sort(x), np.sort(f.ranef["batch"]["Intercept"].to_numpy()))
    np.testing.assert_allclose(np.sort(half), np.sort(0.6744897501960817 * np.sqrt(
        f.ranef_condvar()["batch"]["Intercept"].to_numpy())))
    with pytest.raises(ValueError, match="'plate' is not a grouping factor"):
        plot.caterpillar(f, term="plate")


def test_caterpillar_of_a_glmm_and_of_a_marginal_model() -> None:
    fig = plot.caterpillar(fit("cbpp"))
    assert len(fig.axes) == 1 and len(errorbars(fig.axes[0])[0]) == 15
    with pytest.raises(TypeError, match="mixed model"):
        plot.caterpillar(fit("ohio_exch"))


# ----- residuals ------------------------------------------------------------------------
def test_residual_panels_of_an_lmm() -> None:
    f = fit("sleepstudy")
    fig = plot.residuals(f)
    assert [ax.get_title() for ax in fig.axes] == ["Residuals vs fitted", "Scale-location", "Normal Q-Q: residuals",
                                                   "Normal Q-Q: Subject (Intercept)", "Normal Q-Q: Subject Days"]
    np.testing.assert_allclose(scatter_points(fig.axes[0]), np.column_stack([f.fitted(), f.resid()]))
    np.testing.assert_allclose(scatter_points(fig.axes[1])[:, 1], np.sqrt(np.abs(f.resid().to_numpy() / f.sigma)))
    qq = scatter_points(fig.axes[2])
    assert len(qq) == 180 and np.all(np.diff(qq[:, 0]) > 0)
    np.testing.assert_allclose(qq[:, 1], np.sort(f.resid().to_numpy()))
    assert len(scatter_points(fig.axes[4])) == 18
    assert fig.axes[0].get_xlabel() == "fitted values"


@pytest.mark.parametrize(("name", "qq_title"), [("cbpp", "Normal Q-Q: Pearson residuals"),
                                                ("ovary_ar1", "Normal Q-Q: normalized residuals"),
                                                ("ohio_exch", "Normal Q-Q: standardized Pearson residuals")])
def test_residual_panels_of_other_models(name: str, qq_title: str) -> None:
    f = fit(name)
    fig = plot.residuals(f)
    assert len(fig.axes) == (4 if name == "cbpp" else 3)
    assert fig.axes[2].get_title() == qq_title
    assert len(scatter_points(fig.axes[0])) == f.nobs
    if name == "ovary_ar1":
        np.testing.assert_allclose(scatter_points(fig.axes[2])[:, 1], np.sort(f.resid("normalized").to_numpy()))
    if name == "ohio_exch":
        np.testing.assert_allclose(scatter_points(fig.axes[0])[:, 1], f.resid("pearson").to_numpy())


# ----- correlation ----------------------------------------------------------------------
def test_gls_ar1_correlation_heat_map() -> None:
    f = fit("ovary_ar1")
    fig = plot.correlation(f)
    ax, bar = fig.axes
    sizes = np.diff(f.design.layout.ptr)
    n = int(sizes.max())
    label = f.design.cluster_labels[int(np.argmax(sizes))]
    lag = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    np.testing.assert_allclose(ax.images[0].get_array(), f.corr_params[0] ** lag, rtol=1e-12)
    assert ax.get_title() == f"ar1 residual correlation, cluster {label}"
    assert bar.get_ylabel() == "correlation"
    assert ax.images[0].get_clim() == (-1.0, 1.0)


def test_car1_correlation_uses_the_times() -> None:
    f = fit("bodyweight_car1")
    r, label, times = plot.cluster_correlation(f, cluster=f.design.cluster_labels[0])
    np.testing.assert_allclose(r, f.corr_params[0] ** np.abs(np.subtract.outer(times, times)), rtol=1e-12)
    assert label == f.design.cluster_labels[0] and np.all(np.diff(times) > 0)
    fig = plot.correlation(f)
    assert fig.axes[0].get_xlabel() == "time"


def test_gee_working_correlation_of_a_chosen_cluster() -> None:
    f = fit("ohio_exch")
    cluster = f.design.cluster_labels[5]
    fig = plot.correlation(f, cluster=cluster)
    shown = fig.axes[0].images[0].get_array()
    size = int(f.cluster_sizes[cluster])
    expected = np.full((size, size), f.corr_params[0])
    np.fill_diagonal(expected, 1.0)
    np.testing.assert_allclose(shown, expected, rtol=1e-12)
    assert fig.axes[0].get_title().endswith(f"cluster {cluster}")
    with pytest.raises(ValueError, match="is not a cluster of the fit"):
        plot.correlation(f, cluster="no such cluster")


def test_lmm_marginal_correlation_and_glmm_refusal() -> None:
    f = fit("sleepstudy")
    r, label, _ = plot.cluster_correlation(f, cluster=f.ranef["Subject"].index[0])
    cov = f.marginal_cov(label).to_numpy()
    np.testing.assert_allclose(r, cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov))), rtol=1e-12)
    assert plot.correlation(f).axes[0].get_title().startswith("marginal correlation, Subject")
    with pytest.raises(TypeError, match="GLMM has no closed-form"):
        plot.correlation(fit("cbpp"))


def test_missing_matplotlib_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # makes the import fail
    with pytest.raises(ImportError, match=r'pip install "multilevel\[plot\]"'):
        plot.residuals(fit("sleepstudy"))


def test_profile_traces_one_panel_per_parameter_with_the_interval() -> None:
    f = fit("sleepstudy")
    fig = plot.profile(f)
    ci = f.profile().conf_int(0.95)
    assert [ax.get_title() for ax in fig.axes] == ci.index.tolist()
    for ax, name in zip(fig.axes, ci.index):
        x, z = ax.lines[0].get_data()
        assert len(x) >= 3 and np.all(np.diff(x) > 0) and np.all(np.diff(z) >= -1e-6)
        bounds = sorted(float(seg[0, 0]) for c in ax.collections for seg in c.get_segments())
        np.testing.assert_allclose(bounds, ci.loc[name].to_numpy(), rtol=1e-12)
    with pytest.raises(TypeError, match="takes a fitted mixed model"):
        plot.profile(fit("ohio_exch"))
