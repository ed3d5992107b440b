"""The ensemble explorer (sitsr_core.widgets): transect sampling, state, figures, caching, widget wiring."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sitsr_core import widgets
from sitsr_core.errors import SitsrInputError
from sitsr_core.grid import Grid, grid_mapping_attrs
from sitsr_core.widgets import Explorer, transect

GRID = Grid("custom", 370, 440, 64, 64)
DATES = ("2020-12-01", "2020-12-11")
MEMBERS = 3


def write_outputs(folder, dataset_path, dates=DATES, members=MEMBERS, seed=0):
    """Fake ``sit_hrai_YYYYMMDD.nc`` files following notes/CONTRACTS.md, built from the dataset's fields."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = xr.open_zarr(dataset_path)
    mask = ds["mask"].values.astype(bool)
    lon, lat = GRID.lonlat()
    rng = np.random.default_rng(seed)
    for date in dates:
        snap = ds.sel(time=date).load()
        sit = np.stack([snap["sit"].values + 0.1 * (m + 1) + 0.05 * rng.standard_normal(mask.shape)
                        for m in range(members)]).astype(np.float32)
        sit[:, ~mask] = np.nan
        attrs = {"units": "m", "grid_mapping": "polar_stereographic"}
        out = xr.Dataset(
            {"sit_ai": (("member", "y", "x"), sit, attrs),
             "sit_ai_mean": (("y", "x"), sit.mean(0), attrs),
             "sit_ai_std": (("y", "x"), sit.std(0, ddof=1), attrs),
             "sit_lr": (("y", "x"), snap["sit_lr"].values, attrs),
             "sit_interp": (("y", "x"), snap["sit_interp"].values, attrs),
             "mask": (("y", "x"), mask.astype(np.int8)),
             "polar_stereographic": ((), np.int32(0), grid_mapping_attrs())},
            coords={"member": np.arange(members, dtype=np.int32), "x": GRID.x, "y": GRID.y,
                    "latitude": (("y", "x"), lat), "longitude": (("y", "x"), lon),
                    "time": np.datetime64(pd.Timestamp(date), "ns")},
            attrs={"steps": 4, "eta": 0.0, "seed": seed})
        out.to_netcdf(folder / f"sit_hrai_{pd.Timestamp(date):%Y%m%d}.nc")
    (folder / "notes.txt").write_text("not an output")
    return folder


@pytest.fixture(scope="module")
def outputs(tiny_dataset, tmp_path_factory):
    return write_outputs(tmp_path_factory.mktemp("outputs"), tiny_dataset)


@pytest.fixture
def ex(outputs, tiny_dataset):
    return Explorer(outputs, tiny_dataset)


def _file(outputs, date, var):
    with xr.open_dataset(outputs / f"sit_hrai_{date.replace('-', '')}.nc") as f:
        return f[var].values


def _truth(tiny_dataset, date):
    return xr.open_zarr(tiny_dataset)["sit"].sel(time=date).values


# ----------------------------------------------------------------------------- transect

def test_transect_of_a_linear_field_is_linear():
    rows, cols = np.mgrid[0:40, 0:50]
    field = 0.3 * rows - 0.2 * cols + 1.0
    dist, vals = transect(field, (2.5, 3), (30, 41.25), n=57, dx_km=4.0)
    assert dist.shape == vals.shape == (57,)
    length = np.hypot(30 - 2.5, 41.25 - 3)
    np.testing.assert_allclose(dist, np.linspace(0, 4.0 * length, 57))
    expected = 0.3 * np.linspace(2.5, 30, 57) - 0.2 * np.linspace(3, 41.25, 57) + 1.0
    np.testing.assert_allclose(vals, expected, atol=1e-10)
    np.testing.assert_allclose(np.diff(vals, 2), 0, atol=1e-10)


def test_transect_stacks_default_points_and_land():
    rows, cols = np.mgrid[0:20, 0:20].astype(float)
    stack = np.stack([rows, 2 * rows])  # (2, 20, 20)
    stack[:, 10, 5] = np.nan
    dist, vals = transect(stack, (0, 5), (19, 5))  # along column 5, through the NaN cell
    assert vals.shape == (2, 20) and dist[-1] == pytest.approx(19 * 4.0)
    assert np.isnan(vals[:, 10]).all() and np.isfinite(np.delete(vals, 10, axis=1)).all()
    np.testing.assert_allclose(vals[1, :10], 2 * np.arange(10))
    with pytest.raises(SitsrInputError, match="inside"):
        transect(rows, (0, 0), (20, 3))
    with pytest.raises(SitsrInputError, match="at least 2"):
        transect(rows, (0, 0), (5, 5), n=1)


# ----------------------------------------------------------------------------- data and state

def test_output_files_lists_dates_and_rejects_empty_folders(outputs, tmp_path):
    assert list(widgets.output_files(outputs)) == list(DATES)
    with pytest.raises(SitsrInputError, match="no sit_hrai"):
        widgets.output_files(tmp_path)
    with pytest.raises(SitsrInputError, match="no such folder"):
        Explorer(tmp_path / "missing")


def test_state_shows_the_selected_member_and_date(ex, outputs, tiny_dataset):
    assert ex.dates == list(DATES) and ex.date.options == DATES
    assert ex.grid == GRID
    ex.date.value = DATES[1]
    ex.view.value = "member"
    ex.member.value = 2
    s = ex.state()
    mask = _file(outputs, DATES[1], "mask") > 0
    expected = np.where(mask, _file(outputs, DATES[1], "sit_ai")[2], np.nan)
    np.testing.assert_array_equal(s["field"], expected)
    assert s["n_members"] == MEMBERS and "member 2" in s["title"] and DATES[1] in s["title"]
    ex.view.value = "error"
    truth = _truth(tiny_dataset, DATES[1])
    np.testing.assert_allclose(ex.current_field(), _file(outputs, DATES[1], "sit_ai_mean") - truth, atol=1e-6,
                               equal_nan=True)
    for view, var in (("mean", "sit_ai_mean"), ("std", "sit_ai_std"), ("lr", "sit_lr"), ("interp", "sit_interp")):
        ex.view.value = view
        np.testing.assert_allclose(ex.current_field(), np.where(mask, _file(outputs, DATES[1], var), np.nan),
                                   equal_nan=True)


def test_colour_scales_are_shared_by_thickness_views(ex):
    lims = {v: (ex.state(view=v)["vmin"], ex.state(view=v)["vmax"]) for v in widgets.VIEWS}
    thick = {lims[v] for v in ("member", "mean", "truth", "lr", "interp")}
    assert len(thick) == 1 and next(iter(thick))[0] == 0.0
    assert lims["std"] != lims["mean"] and lims["error"][0] == -lims["error"][1] < 0
    ex.rows.value = (10, 30)
    assert (ex.state(view="mean")["vmin"], ex.state(view="mean")["vmax"]) == lims["mean"]  # not per zoom


def test_zoom_changes_the_array_shape(ex, outputs):
    ex.view.value = "mean"
    assert ex.current_field().shape == (64, 64)
    ex.rows.value = (10, 41)
    ex.cols.value = (5, 20)
    s = ex.state()
    assert s["field"].shape == (32, 16) and s["grid"].shape == (32, 16)
    assert (s["grid"].row0, s["grid"].col0) == (GRID.row0 + 10, GRID.col0 + 5)
    full = np.where(_file(outputs, DATES[0], "mask") > 0, _file(outputs, DATES[0], "sit_ai_mean"), np.nan)
    np.testing.assert_array_equal(s["field"], full[10:42, 5:21])


def test_no_file_is_read_again_on_member_view_or_zoom_change(ex, monkeypatch):
    opened = []
    real = xr.open_dataset
    monkeypatch.setattr(widgets.xr, "open_dataset", lambda *a, **k: opened.append(a[0]) or real(*a, **k))
    reads = ex.reads
    assert reads == 2  # the first date's output and its truth
    for m in range(MEMBERS):
        ex.member.value = m
        for v in widgets.VIEWS:
            ex.view.value = v
            ex.current_field()
    ex.rows.value, ex.cols.value = (5, 40), (3, 33)
    ex.transect_data()
    ex.render_transect()
    assert ex.reads == reads and opened == []
    ex.date.value = DATES[1]
    ex.current_field()
    assert ex.reads == reads + 2 and len(opened) == 1
    ex.date.value = DATES[0]
    ex.member.value = 1
    ex.current_field()
    assert ex.reads == reads + 2 and len(opened) == 1  # back to a cached date


def test_without_dataset_truth_views_are_not_offered(outputs):
    ex = Explorer(outputs, date=DATES[1], member=1, view="member")
    assert [v for _, v in ex.view.options] == ["member", "mean", "std", "lr", "interp"]
    assert ex.reads == 1 and ex.state()["member"] == 1
    assert ex.transect_data()["truth"] is None
    with pytest.raises(SitsrInputError, match="view"):
        Explorer(outputs, view="truth")
    with pytest.raises(SitsrInputError, match="no output for"):
        Explorer(outputs, date="2020-12-05")
    with pytest.raises(SitsrInputError, match="member 3"):
        Explorer(outputs, member=3)


def test_outputs_without_projection_coordinates_get_plain_axes(tmp_path):
    sit = np.arange(2 * 12 * 10, dtype=np.float32).reshape(2, 12, 10)
    mask = np.ones((12, 10), np.int8)
    mask[:3, :2] = 0
    xr.Dataset({"sit_ai": (("member", "y", "x"), sit), "sit_ai_mean": (("y", "x"), sit.mean(0)),
                "sit_ai_std": (("y", "x"), sit.std(0)), "sit_lr": (("y", "x"), sit[0]), "mask": (("y", "x"), mask)},
               coords={"x": np.arange(10.0), "y": np.arange(12.0)}).to_netcdf(tmp_path / "sit_hrai_20210301.nc")
    ex = Explorer(tmp_path, view="member", member=1)
    assert ex.grid is None and [v for _, v in ex.view.options] == ["member", "mean", "std", "lr", "interp"]
    ex.rows.value = (2, 11)
    fig = ex.render()
    expected = np.where(mask > 0, sit[1], np.nan)[2:, :]
    np.testing.assert_array_equal(np.ma.filled(fig.axes[0].images[0].get_array(), np.nan), expected)
    assert "2021-03-01" in fig.axes[0].get_title() and fig.axes[0].get_xlabel() == "column"
    ex.view.value = "interp"  # not in the file, and no dataset: an empty map, not an error
    assert np.isnan(ex.current_field()).all() and "no interpolation" in ex.state()["title"]
    assert "(m)" in ex.render().axes[1].get_ylabel()
    with pytest.raises(SitsrInputError, match="not a date"):
        Explorer(tmp_path, date="2021-13-45")


# ----------------------------------------------------------------------------- figures

def test_render_shows_the_selected_member_and_spectrum(ex, outputs):
    ex.date.value = DATES[1]
    ex.view.value = "member"
    ex.member.value = 1
    fig = ex.render()
    img = fig.axes[0].images[0]
    expected = np.where(_file(outputs, DATES[1], "mask") > 0, _file(outputs, DATES[1], "sit_ai")[1], np.nan)
    np.testing.assert_array_equal(np.ma.filled(img.get_array(), np.nan), expected)
    title = fig.axes[0].get_title()
    assert "member 1" in title and DATES[1] in title
    assert img.get_clim() == (ex.state()["vmin"], ex.state()["vmax"])
    assert "(m)" in fig.axes[1].get_ylabel()  # colour bar
    spec = fig.axes[2]
    assert [t.get_text() for t in spec.get_legend().get_texts()] == ["member 1 of 3", "truth (4 km)", "LR context"]
    assert spec.get_xscale() == "log" and len(spec.lines) >= 3
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # draws the coastlines from the local Natural Earth data
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_render_zoomed_error_and_tiny_zoom(ex):
    ex.view.value = "error"
    ex.rows.value, ex.cols.value = (8, 40), (20, 59)
    fig = ex.render()
    assert fig.axes[0].images[0].get_array().shape == (33, 40)
    assert "mean - truth" in fig.axes[1].get_ylabel()
    ex.rows.value = (8, 12)
    fig = ex.render()
    assert "too small" in fig.axes[2].texts[0].get_text()


def test_render_transect_draws_members_mean_truth_and_lr(ex):
    ex.start_row.value, ex.start_col.value, ex.end_row.value, ex.end_col.value = 50, 10, 50, 60
    t = ex.transect_data()
    assert t["members"].shape == (MEMBERS, t["distance"].size) and t["distance"][-1] == pytest.approx(200.0)
    fig = ex.render_transect()
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert labels.count("members") == 1 and len(ax.lines) == MEMBERS + 5
    assert {"ensemble mean", "truth (4 km)", "LR context", "member 0"} <= set(labels)
    np.testing.assert_array_equal(ax.lines[MEMBERS + 1].get_ydata(), t["mean"])
    assert DATES[0] in ax.get_title() and "(km)" in ax.get_xlabel() and "(m)" in ax.get_ylabel()


def test_render_panels_share_one_thickness_colour_bar(ex):
    fig = ex.render_panels(views=("truth", "mean", "std"), ncols=3)
    maps = [a for a in fig.axes if a.images]
    assert len(maps) == 3
    assert maps[0].images[0].get_clim() == maps[1].images[0].get_clim() != maps[2].images[0].get_clim()


# ----------------------------------------------------------------------------- widget wiring

def test_widget_redraws_on_changes_without_rereading(ex, monkeypatch):
    shown = []
    monkeypatch.setattr(Explorer, "_show", staticmethod(lambda out, fig: shown.append((out, fig))))
    box = ex.widget
    assert box is ex.widget and ex.draws == 1 and len(shown) == 2  # map + transect
    reads = ex.reads
    ex.member.value = 2
    assert ex.draws == 2 and len(shown) == 4
    ex.view.value = "std"
    assert len(shown) == 5 and shown[-1][0] is ex._map_out  # the transect does not depend on the view
    ex.date.value = DATES[1]
    assert ex.draws == 4 and ex.reads == reads + 2
    assert DATES[1] in shown[-2][1].axes[0].get_title() and DATES[1] in shown[-1][1].axes[0].get_title()
    ex.rows.value = (0, 20)
    ex.reset_zoom.click()
    assert ex.rows.value == (0, 63) and ex.reads == reads + 2
    assert "application/vnd.jupyter.widget-view+json" in ex._repr_mimebundle_()
