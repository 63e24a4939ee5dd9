"""Scaling explorer: rounding rules, power-law fits, the largest scaling within a budget, the run and its report."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from fatnas.cli import main
from fatnas.estimate.cost import analytic_cost, parse_budget
from fatnas.model.config import FATConfig
from fatnas.model.variants import PUBLISHED, get_config, variants_dir
from fatnas.runs.store import open_run
from fatnas.scaling import (
    BASE_RES,
    Compound,
    ScalingGrid,
    ScalingSettings,
    accuracy_fits,
    best_direction,
    compound_scale,
    cost_fits,
    fit_budget,
    fit_power_law,
    fit_x,
    grid_points,
    price_points,
    scale_depth,
    scale_width,
    training_rows,
)
from fatnas.scaling.report import FIT_POINTS, accuracy_curves, cost_curves

from .browser import render_page
from .conftest import TINY_PROXY, needs_fashion_mnist, run_cli

# analytic only: widths and phis where FAT's coarse stage-0 rounding (one head of 16 channels) stays mild
TEST_GRID = ScalingGrid(widths=(0.5, 1, 1.5, 2), depths=(0.5, 1, 1.5, 2), resolutions=(160, 192, 224, 256),
                        phis=(0, 2, 4, 6))
ODD_HEAD_DIM = FATConfig(widths=[30, 60, 120, 240], depths=[1, 2, 3, 1], heads=[2, 4, 8, 16])  # head_dim 15


def test_fitted_cost_curves_reproduce_the_analytic_costs_they_were_fitted_on():
    base = get_config("fat_b0")
    table = price_points(grid_points(base, TEST_GRID), ScalingSettings(grid=TEST_GRID, train=0))
    fits = cost_fits(table).set_index(["direction", "metric"])
    directions = ("width", "depth", "resolution", "compound")
    assert set(fits.index) == {(d, m) for d in directions for m in ("params", "flops")}
    for _, row in table.iterrows():
        cfg = FATConfig.from_dict(json.loads(row["config"]))
        cost = analytic_cost(cfg, int(row["res"]))  # priced afresh, at the point's own resolution
        assert (row["params"], row["flops"]) == (cost.params, cost.flops)
        x = fit_x(row["direction"], row["multiplier"])
        for metric, actual in (("params", cost.params), ("flops", cost.flops)):
            fit = fits.loc[(row["direction"], metric)]
            predicted = fit["coefficient"] * x ** fit["exponent"]
            assert abs(predicted - actual) / actual <= 0.05, (row["direction"], row["multiplier"], metric)
            assert abs(predicted - actual) / actual <= fit["max_rel_error"] + 1e-12
    assert 1 < fits.loc[("width", "flops"), "exponent"] < 2
    assert 1 < fits.loc[("width", "params"), "exponent"] < 2
    assert 0.8 < fits.loc[("depth", "flops"), "exponent"] <= 1
    assert 1.9 < fits.loc[("resolution", "flops"), "exponent"] < 2.2
    assert fits.loc[("resolution", "params"), "exponent"] == 0 and fits.loc[("resolution", "params"), "r2"] == 1
    assert (fits["r2"] > 0.99).all()


def test_power_law_fit_recovers_an_exact_law():
    law = fit_power_law([0.5, 1, 2, 4], [3 * x ** 1.7 for x in (0.5, 1, 2, 4)])
    assert law.exponent == pytest.approx(1.7) and law.coefficient == pytest.approx(3)
    assert law.r2 == pytest.approx(1) and law.max_rel_error < 1e-12
    with pytest.raises(ValueError):
        fit_power_law([1, 1], [2, 3])


@pytest.mark.parametrize("base", [*(get_config(n) for n in PUBLISHED), ODD_HEAD_DIM], ids=[*PUBLISHED, "odd_head_dim"])
def test_width_scaling_keeps_head_dims_and_every_width_divisible_by_its_heads(base):
    head_dims = [w // h for w, h in zip(base.widths, base.heads)]
    for m in np.linspace(0.05, 3.0, 60):
        cfg = scale_width(base, float(m))  # FATConfig validates it too
        assert cfg.widths[0] % 2 == 0
        for s, (w, h) in enumerate(zip(cfg.widths, cfg.heads)):
            assert h >= 1 and w % h == 0 and w // h == head_dims[s]
            step = head_dims[s] * (2 if s == 0 and head_dims[s] % 2 else 1)
            assert w % step == 0
            assert abs(w - base.widths[s] * m) <= step / 2 + 1e-9 or w == step  # nearest multiple, at least one step
        assert cfg.depths == base.depths
        deeper = scale_depth(base, float(m))
        assert all(d >= 1 and (abs(d - d0 * m) <= 0.5 + 1e-9 or d == 1) for d, d0 in zip(deeper.depths, base.depths))


def test_largest_compound_scaling_within_2_gflops_from_fat_b0():
    base = get_config("fat_b0")
    fit = fit_budget(base, parse_budget("2GFLOPs"))
    flops = analytic_cost(fit.config, 224).flops
    assert 0.9 * 2e9 <= flops <= 2e9 and fit.cost.flops == flops
    bigger, res = compound_scale(base, fit.phi + 0.001, scale_resolution=False)
    assert res == BASE_RES and analytic_cost(bigger, 224).flops > 2e9  # the next grid step no longer fits
    assert fit.width_mult == pytest.approx(1.1 ** fit.phi) and fit.depth_mult == pytest.approx(1.2 ** fit.phi)
    # a base over budget shrinks (negative phi); a params budget works the same way
    small = fit_budget(get_config("fat_b2"), parse_budget("1GFLOPs"))
    assert small.phi < 0 and small.cost.flops <= 1e9
    assert fit_budget(base, parse_budget("10Mparams")).cost.params <= 10_000_000


def test_cli_to_exports_a_variant_that_builds_in_a_new_process(capsys):
    out = run_cli("scale", "fat_b0", "--to", "2GFLOPs", "--export", "fat_s2g")
    assert out.returncode == 0, out.stderr
    assert "resolution fixed at 224 px" in out.stdout and "fvcore total at 224x224" in out.stdout
    path = variants_dir() / "fat_s2g.yaml"
    data = yaml.safe_load(path.read_text())
    cfg = FATConfig.from_dict(data["config"])
    assert cfg == fit_budget(get_config("fat_b0"), parse_budget("2GFLOPs")).config
    assert data["source"]["flops"] == analytic_cost(cfg, 224).flops <= 2e9 and data["source"]["base"] == "fat_b0"
    show = run_cli("show", "fat_s2g")  # create_model("fat_s2g") in a new process
    assert show.returncode == 0, show.stderr
    assert f"params: {analytic_cost(cfg, 224).params:,}" in show.stdout
    before = path.read_text()
    assert main(["scale", "fat_b0", "--to", "1GFLOPs", "--export", "fat_s2g"]) == 2
    assert "already exists" in capsys.readouterr().err and path.read_text() == before


def test_cli_grid_run_prices_every_point_and_prints_the_fits(capsys):
    assert main(["scale", "fat_b0", "--train", "0", "--run-id", "g1", "--budget", "1GFLOPs"]) == 0
    out = capsys.readouterr().out
    assert "power-law fits" in out and "fvcore total at each point's resolution" in out
    run = open_run("g1")
    table = run.read_table("scaling.csv")
    assert len(table) == 5 + 4 + 4 + 4 and table["accuracy"].isna().all()
    assert {"direction", "multiplier", "res", "config", "params", "flops", "latency_ms", "accuracy",
            "train_seconds"} <= set(table.columns)
    over = table[table["over_budget"].notna()]
    assert not over.empty and (over["flops"] > 1e9).all()
    assert (table.loc[table["over_budget"].isna(), "flops"] <= 1e9).all()
    meta = run.read_meta()
    assert meta["kind"] == "scaling" and meta["base"] == "fat_b0" and meta["command"]
    assert (run.path / "scaling.html").is_file()


@needs_fashion_mnist
def test_report_of_a_tiny_trained_run_renders_without_javascript_errors():
    out = run_cli("scale", "fat_b0", "--widths", "0.5", "1", "--depths", "--resolutions", "--compound",
                  "--train", "2", "--latency", "--val-images", "200", "--run-id", "s1", *TINY_PROXY)
    assert out.returncode == 0, out.stderr
    verdict = out.stdout.splitlines()[-2]  # the one direction trained decides, whatever its slope's sign
    assert "width scaling" in verdict and "not ImageNet" in verdict
    run = open_run("s1")
    table = run.read_table("scaling.csv")
    assert len(table) == 2 and table["accuracy"].notna().all() and table["latency_ms"].notna().all()
    assert (table["train_seconds"] > 0).all()
    meta = run.read_meta()
    assert meta["seeds"] == {"proxy": 0, "data_split": 0} and meta["proxy"]["train_images"] == 128
    assert {"torch", "python"} <= set(meta["versions"]) and meta["hardware"]["cpu_count"] >= 1
    result = render_page(run.path / "scaling.html", run.path / "scaling.png", scripts=dict(
        acc_axis="return document.getElementById('acc-flops').layout.yaxis.title.text",
        traces="return document.getElementById('acc-flops').data.map(t => [t.uid, t.x.length])",
        fits="return document.getElementById('cost-fits').innerText",
        verdict="return document.getElementById('verdict').innerText"))
    assert result.js_errors == []
    assert {"cost-params", "cost-flops", "cost-latency", "acc-flops"} <= set(result.plot_ids)
    assert result.values["acc_axis"] == "proxy accuracy (fashion-mnist)"
    assert dict(result.values["traces"])["width-points"] == 2 and "width-fit" in dict(result.values["traces"])
    assert "latency_ms" in result.values["fits"] and "not ImageNet" in result.values["verdict"]


BAD_INPUT = [
    ["scale", "fat_b0", "--to", "2GFlerps"],
    ["scale", "fat_b0", "--to", "20ms"],
    ["scale", "fat_b0", "--to", "1KFLOPs"],
    ["scale", "fat_b0", "--to", "2GFLOPs", "--train", "2"],
    ["scale", "fat_b0", "--to", "2GFLOPs", "--export", "Bad-Name"],
    ["scale", "fat_b0", "--to", "2GFLOPs", "--export", "fat_b1"],
    ["scale", "fat_b0", "--export", "fat_x"],
    ["scale", "no_such_model", "--train", "0"],
    ["scale", "fat_b0", "--budget", "2GFlops?", "--train", "0"],
    ["scale", "fat_b0", "--widths", "0", "1", "--train", "0"],
    ["scale", "fat_b0", "--depths", "-1", "--train", "0"],
    ["scale", "fat_b0", "--resolutions", "0", "--train", "0"],
    ["scale", "fat_b0", "--compound", "nan", "--train", "0"],
    ["scale", "fat_b0", "--alpha", "-1.2", "--train", "0"],
    ["scale", "fat_b0", "--widths", "--depths", "--resolutions", "--compound", "--train", "0"],
    ["scale", "fat_b0", "--train", "-1"],
    ["scale", "fat_b0", "--train", "0", "--run-id", "bad id!"],
    ["scale", "fat_b0", "--dataset", "no-such-data", "--run-id", "r"],
]


@pytest.mark.parametrize("argv", BAD_INPUT, ids=[" ".join(a[2:]) for a in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, capsys, isolated_dirs):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (isolated_dirs / "runs").exists() and not (isolated_dirs / "variants").exists()


def test_an_existing_run_id_is_refused_and_left_alone(capsys):
    assert main(["scale", "fat_b0", "--train", "0", "--widths", "1", "--depths", "--resolutions", "--compound",
                 "--run-id", "same"]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in open_run("same").path.iterdir()}
    assert main(["scale", "fat_b0", "--train", "0", "--run-id", "same"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in open_run("same").path.iterdir()} == before


def test_compound_coefficients_and_resolution():
    coeffs = Compound(alpha=1.2, beta=1.1, gamma=1.15)
    cfg, res = compound_scale(get_config("fat_b0"), 2, coeffs)
    assert res == round(224 * 1.15 ** 2)
    assert cfg == scale_depth(scale_width(get_config("fat_b0"), 1.1 ** 2), 1.2 ** 2)
    assert math.isclose(fit_x("compound", 1.0), 2.0) and fit_x("width", 1.5) == 1.5


def test_accuracy_fits_name_the_direction_that_buys_most_accuracy_per_doubling_of_flops():
    grid = ScalingGrid(widths=(0.5, 1, 1.5), depths=(0.5, 1, 2), resolutions=(160,), phis=())
    table = price_points(grid_points(get_config("fat_b0"), grid), ScalingSettings(grid=grid))
    chosen = training_rows(table, 2)
    assert [table.loc[i, "multiplier"] for i in chosen] == [0.5, 1.5, 0.5, 2.0, 160 / 224]  # ends of each direction
    gain = {"width": 0.05, "depth": 0.02}
    for direction, slope in gain.items():
        rows = table["direction"] == direction
        table.loc[rows, "accuracy"] = 0.5 + slope * np.log2(table.loc[rows, "flops"].astype(float))
    fits = accuracy_fits(table).set_index("direction")
    assert set(fits.index) == {"width", "depth"}  # resolution has one point only
    for direction, slope in gain.items():
        assert fits.loc[direction, "slope_per_doubling"] == pytest.approx(slope)
    verdict = best_direction(accuracy_fits(table), "fashion-mnist")
    assert "width scaling buys the most accuracy per FLOP" in verdict and "not ImageNet" in verdict


def test_curve_tables_hold_each_directions_points_and_the_fit_through_them():
    grid = ScalingGrid(widths=(0.5, 1, 1.5), depths=(0.5, 1, 2), resolutions=(160,), phis=())
    table = price_points(grid_points(get_config("fat_b0"), grid), ScalingSettings(grid=grid))
    curves = cost_curves(table, cost_fits(table), "flops")
    points = curves[curves["kind"] == "points"]
    assert list(points.groupby("direction", sort=False).size().items()) == [("width", 3), ("depth", 3),
                                                                             ("resolution", 1)]
    assert points["y"].tolist() == table["flops"].astype(float).tolist()
    assert points.loc[points["direction"] == "resolution", "x"].tolist() == [160 / 224]
    fit = curves[(curves["kind"] == "fit") & (curves["direction"] == "width")]
    assert len(fit) == FIT_POINTS and fit["x"].min() == pytest.approx(0.5) and fit["x"].max() == pytest.approx(1.5)
    assert "resolution" not in set(curves.loc[curves["kind"] == "fit", "direction"])  # one point: no fit
    assert cost_curves(table, cost_fits(table), "latency_ms").empty  # nothing timed

    table.loc[table["direction"] == "width", "accuracy"] = [0.6, 0.7, 0.8]
    acc = accuracy_curves(table, accuracy_fits(table))
    assert set(acc["direction"]) == {"width"} and (acc["kind"] == "points").sum() == 3
    line = acc[acc["kind"] == "fit"]
    slope = accuracy_fits(table).iloc[0]["slope_per_doubling"]
    rise = line["y"].iloc[-1] - line["y"].iloc[0]
    assert rise == pytest.approx(slope * np.log2(line["x"].iloc[-1] / line["x"].iloc[0]))
