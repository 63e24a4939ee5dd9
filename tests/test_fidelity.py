"""Fidelity study: parsing fidelities, sampling architectures, rank statistics, the CLI on tiny settings."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from fatnas.cli import main
from fatnas.errors import FatnasError
from fatnas.estimate.cost import analytic_cost, parse_budget
from fatnas.estimate.data import DataError, DataSplit, parse_classes, select_classes
from fatnas.estimate.proxy import ProxySettings
from fatnas.model.space import load_space
from fatnas.runs.store import open_run
from fatnas.study import fidelity, rank_stats
from fatnas.study.fidelity import (
    PREDICTOR,
    REFERENCE,
    FidelityError,
    StudySettings,
    correlations,
    fidelity_label,
    loo_predictions,
    parse_fidelity,
    plan_jobs,
    reliability,
    sample_architectures,
    seed_spread,
    study_architectures,
    top_k_overlap,
    with_metric,
)

from .browser import render_page
from .conftest import ROOT, TINY_SPACE, needs_fashion_mnist, run_cli

LOW, HIGH = "train_images=64,val_images=100", "train_images=128,val_images=200,augment=1,eval_split=test"
TINY = ["--space", str(TINY_SPACE), "--budget", "6MFLOPs", "--archs", "4", "--low", LOW, "--high", HIGH,
        "--spread-seeds", "2", "--proxies", "synflow", "naswot", "params", "--quiet"]
KEY = ["arch", "measure", "seed"]


def tiny_study(**changes) -> StudySettings:
    space = load_space(TINY_SPACE)
    values = dict(space=space, budget=parse_budget("6MFLOPs", res=space.resolution), archs=4,
                  lows=(parse_fidelity("train_images=64,val_images=100"),),
                  high=parse_fidelity("train_images=128,val_images=100"), proxies=("synflow", "params"),
                  spread_seeds=2)
    values.update(changes)
    return StudySettings(**values)


def test_fidelities_parse_and_label_round_trip():
    s = parse_fidelity("res=40, train_images=512,lr=0.004")
    assert (s.res, s.train_images, s.lr, s.epochs) == (40, 512, 0.004, 1)
    assert fidelity_label(s) == "res=40,train_images=512,lr=0.004"
    assert parse_fidelity(fidelity_label(s)) == s
    assert parse_fidelity("default") == ProxySettings() and fidelity_label(ProxySettings()) == "default"
    big = parse_fidelity("train_images=1000000,lr=0.00001")
    assert parse_fidelity(fidelity_label(big)) == big


@pytest.mark.parametrize("text, problem", [
    ("foo", "cannot read 'foo'"), ("res=", "cannot read"), ("seed=3", "cannot read 'seed=3'"),
    ("res=56.5", "is not an integer"), ("lr=fast", "is not a number"), ("epochs=0", "must be >= 1"),
    ("augment=yes", "is not 0, 1, true or false"), ("eval_split=train", "expected 'val' or 'test'"),
    ("res=40,reference", "cannot read 'reference'"),
])
def test_malformed_fidelities_are_refused_with_the_accepted_forms(text, problem):
    with pytest.raises(FidelityError, match=problem):
        parse_fidelity(text)


def test_sampled_architectures_are_distinct_within_budget_and_seeded():
    space, budget = load_space(TINY_SPACE), parse_budget("6MFLOPs", res=64)
    archs = sample_architectures(space, budget, 6, seed=1)
    assert list(archs) == [f"arch{i:02d}" for i in range(6)]
    assert len({str(c.to_dict()) for c in archs.values()}) == 6
    assert all(analytic_cost(c, 64).flops <= budget.max_flops for c in archs.values())
    assert sample_architectures(space, budget, 6, seed=1) == archs != sample_architectures(space, budget, 6, seed=2)
    with pytest.raises(FidelityError, match="found only"):
        sample_architectures(space, budget, 100, seed=0)  # the tiny space has 16 points


def test_reference_preset_booleans_and_splits_parse_and_label():
    ref = parse_fidelity("reference")
    assert ref == parse_fidelity(REFERENCE)
    assert (ref.train_images, ref.epochs, ref.augment, ref.eval_split, ref.val_images) == \
        (16384, 2, True, "test", 10000)
    assert parse_fidelity(fidelity_label(ref)) == ref and "augment=1" in fidelity_label(ref)
    longer = parse_fidelity("reference, epochs=4")
    assert longer.epochs == 4 and longer.augment and longer.eval_split == "test"
    assert parse_fidelity("default,augment=true").augment and not parse_fidelity("augment=0").augment
    assert parse_fidelity("default") == ProxySettings()


def test_jobs_cover_every_measure_the_reference_seeds_and_the_seed_spread():
    settings = tiny_study(lows=(parse_fidelity("train_images=64"), parse_fidelity("res=40")), spread_seeds=3,
                          high_seeds=2)
    archs = study_architectures(settings)  # fat_b0..b3 are all over 6 MFLOPs at 64 px
    jobs = plan_jobs(settings, archs)
    per_arch = len(settings.proxies) + 2 + 2  # proxies, two lows, the high fidelity with two seeds
    assert len(jobs) == 4 * per_arch + 2 * 2 + 1  # spread: seeds 1 and 2 at the lows, seed 2 at the high
    assert len({j.key for j in jobs}) == len(jobs)
    high = [j for j in jobs if j.measure == settings.high_label]
    assert {(j.arch, j.seed) for j in high} >= {(a, s) for a in archs for s in (0, 1)}
    assert all(j.proxy["seed"] == j.seed for j in high)
    spread = [j for j in jobs if j.seed == 2]
    assert {j.arch for j in spread} == {"arch00"}


def test_invalid_study_settings_are_refused():
    with pytest.raises(FidelityError, match="at least 3"):
        tiny_study(archs=2)
    with pytest.raises(FidelityError, match="must differ"):
        tiny_study(lows=(parse_fidelity("train_images=128,val_images=100"),))
    with pytest.raises(FatnasError, match="unknown proxy"):
        tiny_study(proxies=("zen",))
    with pytest.raises(FidelityError, match="high_seeds = 0"):
        tiny_study(high_seeds=0)
    with pytest.raises(FidelityError, match="reference metric 'f1'"):
        tiny_study(reference_metric="f1")
    with pytest.raises(DataError, match="two distinct"):
        parse_classes("3,3")
    with pytest.raises(DataError, match="two distinct"):
        tiny_study(classes=(3, 3))
    with pytest.raises(FidelityError, match="device 'tpu'"):
        tiny_study(device="tpu")


def test_study_settings_round_trip_and_old_run_yaml_keeps_its_meaning():
    settings = tiny_study(high=parse_fidelity("reference"), high_seeds=3, reference_metric="loss", classes=(0, 2, 4, 6),
                          device="cuda:1")
    meta = settings.to_meta()
    assert meta["high_seeds"] == 3 and meta["classes"] == [0, 2, 4, 6] and meta["device"] == "cuda:1"
    assert meta["fidelity_settings"]["high"]["augment"] is True
    assert StudySettings.from_meta(meta) == settings
    old = {k: v for k, v in meta.items() if k not in ("high_seeds", "reference_metric", "classes", "device")}
    for fields in old["fidelity_settings"]["lows"] + [old["fidelity_settings"]["high"]]:
        del fields["augment"], fields["eval_split"]
    restored = StudySettings.from_meta(old)
    restored_fields = (restored.high_seeds, restored.reference_metric, restored.classes, restored.device)
    assert restored_fields == (1, "accuracy", (), "cpu")
    assert not restored.high.augment and restored.high.eval_split == "val"


def test_select_classes_keeps_and_relabels_the_chosen_classes_in_every_split():
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 2])
    x = torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1)
    data = DataSplit(train_x=x, train_y=y, val_x=x[:4], val_y=y[:4], num_classes=10, in_chans=1, name="toy",
                     image_size=(1, 1), mean=(0.5,), std=(0.2,), train_indices=torch.arange(8),
                     val_indices=torch.arange(4), test_x=x, test_y=y)
    kept = select_classes(data, (6, 2))
    assert kept.num_classes == 2 and kept.train_y.tolist() == [1, 0, 1] and kept.train_x.flatten().tolist() == [2, 6, 7]
    assert kept.val_y.tolist() == [1] and kept.test_y.tolist() == [1, 0, 1] and kept.train_indices.tolist() == [2, 6, 7]
    assert select_classes(data, ()) is data
    with pytest.raises(DataError, match="classes 0 to 9"):
        select_classes(data, (0, 10))


# ---------------------------------------------------------------- rank statistics

def test_batched_kendall_tau_is_scipys_tau_b_with_ties():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, (50, 9)).astype(float), rng.normal(size=(50, 9)).round()
    batched = rank_stats.kendall_tau(x, y)
    expected = [stats.kendalltau(a, b).statistic for a, b in zip(x, y)]
    assert np.allclose(batched, expected, equal_nan=True)
    assert math.isnan(rank_stats.kendall_tau(np.ones(5), np.arange(5)))


@pytest.mark.parametrize("tau, one, two", [(0.5, 0.64, 0.73), (0.6, 0.71, 0.79)])
def test_noise_ceiling_matches_the_proxy_science_examples(tau, one, two):
    assert rank_stats.tau_ceiling(tau, 1) == pytest.approx(one, abs=0.005)
    assert rank_stats.tau_ceiling(tau, 2) == pytest.approx(two, abs=0.005)
    assert rank_stats.tau_ceiling(1.0, 1) == pytest.approx(1.0) and rank_stats.tau_ceiling(-1.0, 2) == 0.0
    r1 = rank_stats.tau_to_r(tau)
    assert rank_stats.spearman_brown(r1, 1) == pytest.approx(r1) and rank_stats.spearman_brown(r1, 2) > r1


def test_icc_of_a_perfect_and_of_a_pure_noise_table():
    networks = np.arange(6.0)[:, None]
    assert rank_stats.icc1(np.hstack([networks, networks])) == pytest.approx((1.0, 1.0))
    values = np.array([[1.0, 2.0], [2.0, 1.0], [1.0, 2.0], [2.0, 1.0]])  # every network has the same mean
    assert rank_stats.icc1(values)[0] == pytest.approx(-1.0)


def test_band_tau_weights_the_taus_within_each_factor_of_two():
    flops = np.array([100, 120, 150, 190, 400, 500, 600, 700, 2000.0])  # bands 0 (4 nets), 2 (4 nets), 4 (1 net)
    x = np.array([1, 2, 3, 4, 4, 3, 2, 1, 9.0])
    y = np.arange(9.0)
    assert rank_stats.flops_bands(flops).tolist() == [0, 0, 0, 0, 2, 2, 2, 2, 4]
    assert rank_stats.band_tau(x, y, flops) == (pytest.approx(0.0), 8)  # +1 in one band, -1 in the other
    assert rank_stats.band_tau(y, y, flops)[0] == pytest.approx(1.0)


def test_partial_tau_removes_size_and_keeps_what_is_beyond_it():
    raw, partial, beyond = [], [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        params = rng.lognormal(15, 0.6, 34)
        flops = params * rng.lognormal(0, 0.3, 34)
        size, skill = np.log(np.c_[params, flops]), rng.normal(size=34)
        truth = -2 * rank_stats.ranks(params) / 34 + skill  # small is better, plus what size does not say
        if seed == 0:  # a pure size ranking leaves no residual: nothing beyond size (NaN)
            assert math.isnan(rank_stats.partial_tau(-params, truth, size))
        noisy_size = -np.log(params) + 0.05 * rng.normal(size=34)  # a size ranking with a few swaps
        raw.append(rank_stats.kendall_tau(noisy_size, truth))
        partial.append(rank_stats.partial_tau(noisy_size, truth, size))
        beyond.append(rank_stats.partial_tau(skill - np.log(params), truth, size))
    assert np.mean(raw) > 0.25 and abs(np.mean(partial)) < 0.06 and np.mean(beyond) > 0.6
    low, high = rank_stats.partial_interval(skill, truth, size)
    assert low < rank_stats.partial_tau(skill, truth, size) < high


def test_paired_difference_of_an_estimator_with_itself_is_zero_and_with_a_worse_one_positive():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=30)
    good, bad = truth + 0.3 * rng.normal(size=30), rng.normal(size=30)
    assert rank_stats.paired_difference(good, good, truth) == (0.0, 0.0, 0.0)
    diff, low, high = rank_stats.paired_difference(good, bad, truth)
    assert diff == pytest.approx(rank_stats.kendall_tau(good, truth) - rank_stats.kendall_tau(bad, truth))
    assert 0 < low < diff < high


def test_loo_predictor_fits_a_linear_signal_and_never_sees_the_held_out_target():
    rng = np.random.default_rng(3)
    features = pd.DataFrame(rng.normal(size=(20, 3)), index=[f"a{i}" for i in range(20)], columns=list("xyz"))
    target = features["x"] - 0.5 * features["z"] + 0.05 * pd.Series(rng.normal(size=20), index=features.index)
    predicted = loo_predictions(features, target)
    assert rank_stats.kendall_tau(predicted, target) > 0.8
    changed = target.copy()
    changed["a7"] = 100.0
    again = loo_predictions(features, changed)
    assert again["a7"] == pytest.approx(predicted["a7"]) and again["a3"] != pytest.approx(predicted["a3"])
    assert loo_predictions(features.iloc[:4], target).isna().all()  # too few networks


# ---------------------------------------------------------------- study tables

def study_rows(settings: StudySettings, *, high_loss: list[list[float]], high_acc: list[list[float]] | None = None,
               measures: dict[tuple[str, str], list[float]] | None = None, params: list[float] | None = None,
               ) -> pd.DataFrame:
    """A synthetic fidelity.csv: per seed, the high fidelity's loss (and accuracy), plus (measure, metric) values."""
    n = len(high_loss[0])
    params = params or [1e6 * (i + 1) for i in range(n)]
    rows = []

    def add(measure: str, metric: str, seed: int, values: list[float], kind: str = "train", seconds: float = 1.0):
        for i, value in enumerate(values):
            rows.append(dict(arch=f"a{i}", kind=kind, measure=measure, metric=metric, seed=seed, value=value,
                             seconds=seconds, params=params[i], flops=100 * params[i], config="{}"))

    for seed, values in enumerate(high_loss):
        add(settings.high_label, "loss", seed, values, seconds=10.0)
        add(settings.high_label, "accuracy", seed, (high_acc or [[0.5] * n] * len(high_loss))[seed], seconds=10.0)
    for (measure, metric), values in (measures or {}).items():
        kind = "train" if metric != "score" else ("baseline" if measure in ("params", "flops") else "zero-cost")
        add(measure, metric, 0, values, kind=kind, seconds=1.0 if kind == "train" else 0.1)
    return pd.DataFrame(rows)


def test_a_perfectly_reliable_loss_becomes_the_reference_and_names_itself():
    settings = tiny_study(high_seeds=2, high=parse_fidelity("train_images=128,val_images=100,eval_split=test"))
    loss = [3.0, 2.5, 2.0, 1.5, 1.0, 0.5]
    noisy_acc = [[0.1, 0.5, 0.2, 0.6, 0.3, 0.4], [0.6, 0.1, 0.5, 0.2, 0.4, 0.3]]
    table = study_rows(settings, high_loss=[loss, loss], high_acc=noisy_acc)
    reliable = reliability(table, settings).set_index("metric")
    assert reliable.loc["loss", "seed_tau"] == pytest.approx(1.0) and reliable.loc["loss", "icc1"] == pytest.approx(1.0)
    assert reliable.loc["loss", "ceiling"] == pytest.approx(1.0) and reliable.loc["loss", "chosen"]
    assert reliable.loc["accuracy", "seed_tau"] < 0 and not reliable.loc["accuracy", "chosen"]
    assert reliable.loc["loss", "params_tau"] == pytest.approx(1.0)  # -loss grows with params here: a size ranking
    assert not reliable.loc["loss", "meets_targets"]
    assert reliable.loc["loss", "reference"] == "-test loss (2-seed mean)"
    forced = reliability(table, tiny_study(high_seeds=2, high=settings.high, reference_metric="accuracy"))
    assert forced.set_index("metric").loc["accuracy", "chosen"]


def test_correlations_of_known_rankings():
    settings = tiny_study(proxies=("synflow", "params"), top_k=2, high_seeds=1, reference_metric="accuracy")
    low = settings.label(settings.lows[0])
    acc = [0.1, 0.2, 0.3, 0.4, 0.5]
    table = study_rows(settings, high_loss=[[1.0] * 5], high_acc=[acc], params=[1, 3, 2, 4, 5], measures={
        (low, "accuracy"): [1, 2, 3, 4, 5], (low, "loss"): [5, 4, 3, 2, 1], ("synflow", "score"): [5, 4, 3, 2, 1],
        ("params", "score"): [1, 3, 2, 4, 5]})
    summary = correlations(table, settings).set_index("estimator")
    assert list(summary.index) == [f"{low}:accuracy", f"{low}:-loss", "synflow", "params", PREDICTOR]
    assert (summary["reference"] == "validation accuracy (one seed)").all()
    assert summary.loc[f"{low}:accuracy", "kendall_tau"] == pytest.approx(1.0)
    assert summary.loc[f"{low}:-loss", "kendall_tau"] == pytest.approx(1.0)  # lower loss is better
    assert summary.loc["synflow", "spearman_rho"] == pytest.approx(-1.0)
    assert summary.loc["params", "kendall_tau"] == pytest.approx(0.8)  # one swapped pair of ten
    assert summary.loc["params", "minus_params"] == pytest.approx(0.0)  # the estimator equal to params
    assert summary.loc[f"{low}:accuracy", "minus_params"] == pytest.approx(0.2)
    assert summary.loc[f"{low}:accuracy", "minus_proxy"] == pytest.approx(0.0)
    assert math.isnan(summary.loc["params", "partial_tau"])  # params is what the partial tau removes
    assert summary.loc["synflow", "top_k_overlap"] == 0.0 and summary.loc["params", "top_k_overlap"] == 1.0
    low_, high_ = summary.loc["params", ["tau_low", "tau_high"]]
    assert -1 <= low_ <= 0.8 <= high_ <= 1
    assert summary.loc["params", "kind"] == "baseline" and summary.loc["synflow", "kind"] == "zero-cost"
    assert summary.loc[f"{low}:accuracy", "cost_vs_high"] == pytest.approx(0.1)


def test_page_tables_behind_the_figures():
    settings = tiny_study(proxies=("params",), top_k=2, high_seeds=1, reference_metric="accuracy")
    low = settings.label(settings.lows[0])
    table = study_rows(settings, high_loss=[[1.0] * 5], high_acc=[[0.1, 0.2, 0.3, 0.4, 0.5]], params=[1, 3, 2, 4, 5],
                       measures={(low, "accuracy"): [0.5, 0.6, 0.7, 0.9, 0.8], ("params", "score"): [1, 3, 2, 4, 5]})
    reliable = reliability(table, settings)
    summary = correlations(table, settings, reliable)
    reference = fidelity.study_reference(table, settings, reliable)
    points = fidelity.low_vs_reference(summary, fidelity.estimator_table(table, settings, reference), reference)
    assert list(points["arch"]) == [f"a{i}" for i in range(5)] and set(points["low"]) == {low}
    assert points["low_value"].tolist() == [0.5, 0.6, 0.7, 0.9, 0.8]
    assert points["reference"].tolist() == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert points["tau"].iloc[0] == pytest.approx(0.8)

    bars = fidelity.correlation_bars(summary)
    assert len(bars) == 3 * len(summary)  # Kendall, partial and band tau per estimator
    kendall = bars[bars["measure"] == "Kendall tau"].set_index("estimator")
    assert kendall.loc[f"{low}:accuracy", "tau"] == pytest.approx(0.8)
    assert kendall["low"].le(kendall["tau"]).all() and kendall["high"].ge(kendall["tau"]).all()
    assert bars.loc[bars["measure"] == "tau within FLOPs bands", "low"].isna().all()  # no interval measured
    assert fidelity.noise_ceiling(reliable) is None  # one seed: the reference's noise is unknown

    costs = fidelity.cost_table(summary)
    assert list(costs.columns) == ["estimator", "seconds_per_arch", "kendall_tau"] and len(costs) == len(summary)
    assert fidelity.cost_table(summary.iloc[0:0]).empty and fidelity.correlation_bars(summary.iloc[0:0]).empty


def test_predictor_row_and_old_tables_without_a_metric_column():
    settings = tiny_study(proxies=("synflow", "params"), high_seeds=2)
    low = settings.label(settings.lows[0])
    rng = np.random.default_rng(4)
    truth = rng.normal(size=12)
    loss = [list(2 - truth), list(2 - truth + 0.01 * rng.normal(size=12))]
    table = study_rows(settings, high_loss=loss, params=list(rng.lognormal(14, 0.5, 12)), measures={
        (low, "accuracy"): list(truth + 0.3 * rng.normal(size=12)), (low, "loss"): list(-truth),
        ("synflow", "score"): list(rng.lognormal(3, 1, 12))})
    summary = correlations(table, settings).set_index("estimator")
    assert summary.loc[PREDICTOR, "kind"] == "predictor" and summary.loc[PREDICTOR, "kendall_tau"] > 0.5
    assert summary.loc[PREDICTOR, "seconds_per_arch"] == pytest.approx(1.0 + 0.1)
    old = table[table["metric"].isin(["accuracy", "score"])].drop(columns="metric")
    assert set(with_metric(old)["metric"]) == {"accuracy", "score"}


def test_top_k_overlap_counts_shared_members():
    truth = pd.Series([5, 4, 3, 2, 1], index=list("abcde"))
    assert top_k_overlap(pd.Series([5, 1, 4, 2, 3], index=list("abcde")), truth, 2) == 0.5


def test_seed_spread_compares_one_network_over_seeds_with_the_networks():
    settings = tiny_study()
    high = settings.high_label
    rows = [dict(arch=f"a{i}", measure=high, kind="train", seed=0, value=v) for i, v in enumerate([0.5, 0.6, 0.7])]
    rows += [dict(arch="a0", measure=high, kind="train", seed=s, value=v) for s, v in [(1, 0.52), (2, 0.48)]]
    rows += [dict(arch="a1", measure=high, kind="train", seed=1, value=0.62)]
    spread = seed_spread(pd.DataFrame(rows), settings).iloc[0]
    assert spread["network"] == "a0" and spread["seeds"] == 3
    assert spread["seed_std"] == pytest.approx(np.std([0.5, 0.52, 0.48], ddof=1))
    assert spread["network_std"] == pytest.approx(0.1)
    assert spread["pooled_archs"] == 2
    assert spread["pooled_seed_std"] == pytest.approx(math.sqrt((np.var([0.5, 0.52, 0.48], ddof=1) + 0.0002) / 2))


@needs_fashion_mnist
def test_cli_fidelity_writes_the_study_and_resumes_what_is_missing(isolated_dirs):
    out = run_cli("fidelity", *TINY, "--run-id", "f1")
    assert out.returncode == 0, out.stderr
    assert "not ImageNet accuracy" in out.stdout and "kendall_tau" in out.stdout and "seed_std" in out.stdout
    assert "reference: -test loss (2-seed mean)" in out.stdout or "reference: test accuracy" in out.stdout
    run = open_run("f1")
    table = run.read_table("fidelity.csv")
    jobs = table.drop_duplicates(KEY)
    assert len(jobs) == 4 * (3 + 1 + 2) + 1  # 4 archs x (3 proxies, 1 low, 2 high seeds) + 1 spread training
    assert len(table) == 4 * (3 + 4 + 2 * 4) + 4  # trainings write accuracy, loss, sotl_e and slope
    assert set(table["metric"]) == {"accuracy", "loss", "sotl_e", "slope", "score"}
    trained = table[table["metric"].isin(["accuracy", "loss", "sotl_e"])]
    assert trained["value"].notna().all() and table["seconds"].gt(0).all()
    assert set(table[table["seed"] == 1]["measure"]) == {HIGH, LOW}  # the second reference seed, the spread network
    summary = run.read_table("correlations.csv")
    expected = {f"{LOW}:accuracy", f"{LOW}:-loss", f"{LOW}:-sotl_e", "synflow", "naswot", "params"}
    assert expected <= set(summary["estimator"])
    assert summary["kendall_tau"].between(-1, 1).all() and summary["reference"].nunique() == 1
    for column in ("partial_tau", "band_tau", "minus_params_low", "minus_proxy_high", "cost_vs_high"):
        assert column in summary
    reliable = run.read_table("reliability.csv")
    assert set(reliable["metric"]) == {"loss", "accuracy", "both"} and reliable["chosen"].sum() == 1
    meta = run.read_meta()
    assert meta["kind"] == "fidelity" and meta["seeds"] == {"study": 0} and "fidelity" in meta["command"]
    assert meta["high_seeds"] == 2 and meta["reference_metric"] == "auto"
    assert meta["device"] == "cpu"
    out = run_cli("fidelity", "--resume", "f1", "--device", "cuda", "--quiet")
    assert out.returncode == 2 and "keeps one device" in out.stderr
    # a killed study: drop the last jobs' rows, resume, get the same values back
    last = set(map(tuple, jobs[KEY].tail(5).to_numpy().tolist()))
    kept = [k not in last for k in map(tuple, table[KEY].to_numpy().tolist())]
    table[kept].to_csv(run.path / "fidelity.csv", index=False)
    out = run_cli("fidelity", "--resume", "f1", "--quiet")
    assert out.returncode == 0, out.stderr
    again = run.read_table("fidelity.csv")
    merged = table.merge(again, on=KEY + ["metric"], suffixes=("", "_again"))
    assert len(again) == len(table) == len(merged)
    assert np.allclose(merged["value"], merged["value_again"], equal_nan=True)
    # one more low fidelity for a finished study: only its trainings run
    out = run_cli("fidelity", "--resume", "f1", "--low", "train_images=96,val_images=100", "--quiet")
    assert out.returncode == 0, out.stderr
    assert len(run.read_table("fidelity.csv").drop_duplicates(KEY)) == len(jobs) + 4 + 1
    assert "train_images=96,val_images=100:accuracy" in set(run.read_table("correlations.csv")["estimator"])
    assert run.read_meta()["lows"] == [LOW, "train_images=96,val_images=100"]

    result = render_page(run.path / "fidelity.html", run.path / "fidelity.png", scripts=dict(
        points="return document.getElementById('fidelity-scatter').data.map(t => t.x.length)",
        bars="return document.getElementById('fidelity-correlations').data[0].x"))
    assert result.js_errors == []
    assert {"fidelity-scatter", "fidelity-correlations", "fidelity-cost"} <= set(result.plot_ids)
    assert result.values["points"] == [4, 4]  # one trace per low fidelity
    assert len(result.values["bars"]) == len(run.read_table("correlations.csv"))


@needs_fashion_mnist
def _cmdline(pid: int) -> str:
    """The command line of a process, or "" where it has already ended (children come and go while listed)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
def test_killing_a_study_ends_its_workers(isolated_dirs):
    args = [sys.executable, str(ROOT / "cli.py"), "fidelity", *TINY[:-1], "--run-id", "f-kill", "--workers", "2",
            "--high", "train_images=20000,epochs=5", "--quiet"]
    study = subprocess.Popen(args, cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while len(workers) < 2 and time.monotonic() < deadline:  # the pool's two workers (and its resource tracker)
            time.sleep(0.5)
            workers = [p for p in _children(study.pid) if "spawn_main" in _cmdline(p)]
        assert len(workers) == 2, "the study never started its workers"
        time.sleep(3)  # the workers are loading data or training
        study.send_signal(signal.SIGKILL)
        study.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(_alive(p) for p in workers)
    finally:
        if study.poll() is None:
            study.kill()


def test_cli_fidelity_resumes_a_study_from_before_metrics_and_reference_seeds(isolated_dirs):
    out = run_cli("fidelity", *TINY, "--archs", "3", "--proxies", "params", "--high-seeds", "1", "--spread-seeds", "1",
                  "--run-id", "old")
    assert out.returncode == 0, out.stderr
    run = open_run("old")
    meta = run.read_meta()
    for key in ("high_seeds", "reference_metric", "classes"):
        del meta[key]
    run.write_meta(meta)
    table = run.read_table("fidelity.csv")
    old = table[table["metric"].isin(["accuracy", "score"])].drop(columns="metric")
    old[old["arch"] != "arch02"].to_csv(run.path / "fidelity.csv", index=False)  # old format, one network to go
    out = run_cli("fidelity", "--resume", "old", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "reference: test accuracy (one seed)" in out.stdout  # as the study was defined: accuracy, one seed
    again = run.read_table("fidelity.csv")
    assert len(again) == 2 * 3 + 1 + 2 * 4  # two networks from before (accuracy or score); arch02 with every metric
    assert set(again[again["arch"] != "arch02"]["metric"]) == {"accuracy", "score"}
    assert set(run.read_table("correlations.csv")["reference"]) == {"test accuracy (one seed)"}


@needs_fashion_mnist
def test_cli_fidelity_on_chosen_classes(isolated_dirs):
    out = run_cli("fidelity", *TINY, "--archs", "3", "--proxies", "params", "--high-seeds", "1", "--spread-seeds", "1",
                  "--classes", "0,2,4,6", "--run-id", "four")
    assert out.returncode == 0, out.stderr
    assert "(classes 0,2,4,6)" in out.stdout and open_run("four").read_meta()["classes"] == [0, 2, 4, 6]


@pytest.mark.parametrize("args, message", [
    (["--low", "foo"], "cannot read 'foo'"),
    (["--high", "epochs=-1"], "must be >= 1"),
    (["--archs", "2"], "at least 3"),
    (["--proxies", "zen"], "unknown proxy 'zen'"),
    (["--budget", "2 lightyears"], "budget"),
    (["--workers", "0"], "positive"),
    (["--resume", "nope"], "not found"),
    (["--space", "nowhere"], "not found"),
    (["--high-seeds", "0"], "positive"),
    (["--high", "augment=2"], "is not 0, 1, true or false"),
    (["--classes", "a,b"], "expected class numbers"),
    (["--classes", "0,10"], "classes 0 to 9"),
    (["--reference-metric", "f1"], "invalid choice"),
])
def test_cli_fidelity_bad_input_exits_2_and_writes_nothing(isolated_dirs, args, message, capsys):
    assert main(["fidelity", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").iterdir())


def test_a_running_study_is_analysed_on_its_finished_networks_only():
    settings = tiny_study()
    low, high = settings.label(settings.lows[0]), settings.high_label
    rows = [("a", "train", low, 0), ("a", "train", high, 0), ("a", "train", high, 1), ("a", "zero-cost", "synflow", 0),
            ("b", "train", low, 0), ("b", "train", high, 0), ("b", "zero-cost", "synflow", 0)]  # b: a seed to go
    table = pd.DataFrame(rows, columns=["arch", "kind", "measure", "seed"]).assign(metric="accuracy", value=0.5)
    finished = fidelity.finished_networks(table, settings)
    assert set(finished["arch"]) == {"a"} and len(finished) == 4
