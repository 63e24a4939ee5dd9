"""Noise measured in the run, intervals on every accuracy, the band, and differences that say 'not distinguishable'."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from fatnas.errors import FatnasError
from fatnas.estimate.proxy import ProxySettings
from fatnas.model.variants import get_config
from fatnas.runs.noise import (
    INDISTINCT,
    Z,
    band_mask,
    noise_aware_band,
    pooled_std,
    summary_line,
    verdict,
    with_intervals,
)
from fatnas.runs.store import create_run, pareto_mask
from fatnas.search import record_run, run_search
from fatnas.search.noise import measured_noise, sampling_noise

from .conftest import needs_fashion_mnist
from .test_search import tiny_settings

LEARNING_PROXY = ProxySettings(train_images=384, epochs=1, batch_size=32, val_images=400)  # above chance: seeds differ


def networks(accuracies, latencies):
    return pd.DataFrame(dict(trial=range(len(accuracies)), state="COMPLETE", accuracy=accuracies,
                             latency_ms=latencies))


def test_pooled_std_pools_only_networks_seen_twice():
    rows = pd.DataFrame(dict(network=["a", "a", "b", "b", "c"], accuracy=[0.5, 0.7, 0.2, 0.2, 0.9]))
    std, groups, values = pooled_std(rows)
    assert (groups, values) == (2, 4)
    assert std == pytest.approx(math.sqrt((0.02 + 0.0) / 2))
    assert pooled_std(rows[rows["network"] == "c"]) == (None, 0, 0)


def test_band_holds_what_no_network_beats_beyond_the_noise():
    table = with_intervals(networks([0.60, 0.62, 0.50, 0.70], [1.0, 2.0, 3.0, 4.0]), std=0.01)
    # 0.62 at 2 ms is within noise of 0.60 at 1 ms; 0.50 at 3 ms is beaten by both; 0.70 is the most accurate
    assert band_mask(table).tolist() == [True, True, False, True]
    assert pareto_mask(table).tolist() == [True, True, False, True]
    noisy = with_intervals(networks([0.60, 0.59, 0.58], [1.0, 2.0, 3.0]), std=0.01)
    assert pareto_mask(noisy).tolist() == [True, False, False]
    assert band_mask(noisy).tolist() == [True, True, True]  # not beaten with confidence: all stay in the band


def test_a_difference_inside_the_noise_is_never_a_bare_number():
    text = verdict(0.0385, 0.0385 - 0.1, 0.0385 + 0.1, "fat_b0")
    assert text.startswith(f"{INDISTINCT} from fat_b0") and "+0.0385, 90% interval -0.0615 to +0.1385" in text
    assert verdict(0.05, 0.01, 0.09, "fat_b0").startswith("better than fat_b0")
    assert verdict(-0.05, -0.09, -0.01, "fat_b0").startswith("worse than fat_b0")


def test_band_compares_each_network_with_the_best_reference_under_budget():
    done = networks([0.656, 0.60], [24.2, 10.0])
    refs = pd.DataFrame(dict(name=["fat_b0", "fat_b1"], state=["REFERENCE", "OVER_BUDGET"], accuracy=[0.618, 0.9],
                             latency_ms=[30.0, 50.0]))
    band = noise_aware_band(done, pareto_mask(done), refs, std=0.042)
    assert list(band["trial"]) == [1, 0] and band["on_front"].all()
    best = band[band["trial"] == 0].iloc[0]
    assert best["reference"] == "fat_b0" and best["vs_reference"] == pytest.approx(0.038)
    assert best["vs_reference_high"] - best["vs_reference"] == pytest.approx(Z * 0.042 * math.sqrt(2))
    assert INDISTINCT in best["verdict"]
    assert "none of them can be told apart from fat_b0" in summary_line(band)


def test_noise_seeds_out_of_range_is_refused():
    with pytest.raises(FatnasError, match="--noise-seeds 0: accepted 1"):
        tiny_settings(noise_seeds=0)


@pytest.mark.slow  # three trainings and a resume: 15 s
@needs_fashion_mnist
def test_a_search_measures_its_noise_and_gives_every_trial_an_interval(isolated_dirs):
    settings = tiny_settings(trials=2, proxy=LEARNING_PROXY)
    run = create_run("noisy")
    record_run(run, settings, "optuna", argv=["test"])
    run_search(run, settings, progress=False)
    noise = run.read_meta()["noise"]
    assert noise["source"] == "measured" and noise["std"] > 0 and 0 < noise["share"] < 1
    repeats = run.read_table("noise.csv")
    assert set(repeats["seed"]) == {0, 1} and len(repeats) == 2 * noise["networks"]
    trials = run.trials()
    assert (trials["accuracy_low"] < trials["accuracy"]).all() and (trials["accuracy"] < trials["accuracy_high"]).all()
    band = run.read_table("band.csv")
    assert set(run.pareto()["trial"]) <= set(band["trial"]) and band["verdict"].notna().all()
    run_search(run, settings, progress=False)  # resumed: nothing evaluated twice
    assert len(run.read_table("noise.csv")) == len(repeats)


def test_seeds_that_agree_exactly_fall_back_to_the_sampling_error(isolated_dirs):
    run = create_run("flat")
    config = json.dumps(get_config("fat_b0").to_dict())
    run.write_table("trials.csv", networks([0.25, 0.25], [1.0, 2.0]).assign(params=1, flops=1, config=config))
    same = pd.DataFrame(dict(network=["a", "a"], seed=[0, 1], accuracy=[0.25, 0.25], train_seconds=[1.0, 1.0]))
    assert measured_noise(run, same, 0, 200) is None
    close = same.assign(accuracy=[0.25, 0.2501])  # two repeats that agree by chance: the sampling error is the floor
    floored = measured_noise(run, close, 0, 200)
    assert floored["std"] == pytest.approx(math.sqrt(0.25 * 0.75 / 200), rel=1e-3) and "raised to" in floored["note"]
    noise = sampling_noise(run, 200, "every network evaluated again scored the same on each seed")
    assert noise["source"] == "binomial" and "a lower bound" in noise["note"]
    assert noise["std"] == pytest.approx(math.sqrt(0.25 * 0.75 / 200))
