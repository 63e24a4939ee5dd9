"""Fidelity study: parsing fidelities, sampling architectures, rank statistics, the CLI on tiny settings."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fatnas.cost import analytic_cost, parse_budget
from fatnas.errors import FatnasError
from fatnas.fidelity import (FidelityError, StudySettings, correlations, fidelity_label, parse_fidelity,
                             plan_jobs, sample_architectures, seed_spread, study_architectures, top_k_overlap)
from fatnas.proxy import ProxySettings
from fatnas.space import load_space
from fatnas.store import open_run

from .browser import render_page
from .conftest import TINY_SPACE, needs_fashion_mnist, run_cli

TINY = ["--space", str(TINY_SPACE), "--budget", "6MFLOPs", "--archs", "4", "--low", "train_images=64,val_images=100",
        "--high", "train_images=128,val_images=100", "--spread-seeds", "2", "--proxies", "synflow", "naswot",
        "params", "--quiet"]


def tiny_study(**changes) -> StudySettings:
    space = load_space(TINY_SPACE)
    values = dict(space=space, budget=parse_budget("6MFLOPs", res=space.resolution), archs=4,
                  lows=(parse_fidelity("train_images=64,val_images=100"),),
                  high=parse_fidelity("train_images=128,val_images=100"), proxies=("synflow", "params"),
                  spread_seeds=2)
    values.update(changes)
    return StudySettings(**values)


def test_fidelities_parse_and_label_round_trip():
    s = parse_fidelity("res=56, train_images=512,lr=0.004")
    assert (s.res, s.train_images, s.lr, s.epochs) == (56, 512, 0.004, 1)
    assert fidelity_label(s) == "res=56,train_images=512,lr=0.004"
    assert parse_fidelity(fidelity_label(s)) == s
    assert parse_fidelity("default") == ProxySettings() and fidelity_label(ProxySettings()) == "default"
    big = parse_fidelity("train_images=1000000,lr=0.00001")
    assert parse_fidelity(fidelity_label(big)) == big


@pytest.mark.parametrize("text, problem", [
    ("foo", "cannot read 'foo'"), ("res=", "cannot read"), ("seed=3", "cannot read 'seed=3'"),
    ("res=56.5", "is not an integer"), ("lr=fast", "is not a number"), ("epochs=0", "must be >= 1"),
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


def test_jobs_cover_every_measure_and_the_seed_spread():
    settings = tiny_study(lows=(parse_fidelity("train_images=64"), parse_fidelity("res=40")), spread_seeds=3)
    archs = study_architectures(settings)  # fat_b0..b3 are all over 6 MFLOPs at 64 px
    jobs = plan_jobs(settings, archs)
    per_arch = len(settings.proxies) + 3
    assert len(jobs) == 4 * per_arch + 2 * 3
    assert len({j.key for j in jobs}) == len(jobs)
    spread = [j for j in jobs if j.seed != settings.seed]
    assert {j.arch for j in spread} == {"arch00"} and {j.seed for j in spread} == {1, 2}


def test_invalid_study_settings_are_refused():
    with pytest.raises(FidelityError, match="at least 3"):
        tiny_study(archs=2)
    with pytest.raises(FidelityError, match="must differ"):
        tiny_study(lows=(parse_fidelity("train_images=128,val_images=100"),))
    with pytest.raises(FatnasError, match="unknown proxy"):
        tiny_study(proxies=("zen",))


def synthetic_table(high: list[float], measures: dict[str, list[float]], settings: StudySettings) -> pd.DataFrame:
    rows = []
    for measure, values in {settings.high_label: high, **measures}.items():
        for i, value in enumerate(values):
            rows.append(dict(arch=f"a{i}", kind="train", measure=measure, seed=0, value=value, seconds=1.0))
    return pd.DataFrame(rows)


def test_correlations_of_known_rankings():
    settings = tiny_study(proxies=("synflow", "params"), top_k=2)
    high = [0.1, 0.2, 0.3, 0.4, 0.5]
    table = synthetic_table(high, {settings.label(settings.lows[0]): [1, 2, 3, 4, 5],
                                   "synflow": [5, 4, 3, 2, 1], "params": [1, 3, 2, 4, 5]}, settings)
    summary = correlations(table, settings).set_index("measure")
    assert list(summary.index) == [settings.label(settings.lows[0]), settings.high_label, "synflow", "params"]
    assert summary.loc[settings.label(settings.lows[0]), "kendall_tau"] == pytest.approx(1.0)
    assert summary.loc["synflow", "spearman_rho"] == pytest.approx(-1.0)
    assert summary.loc["params", "kendall_tau"] == pytest.approx(0.8)  # one swapped pair of ten
    assert summary.loc["synflow", "top_k_overlap"] == 0.0 and summary.loc["params", "top_k_overlap"] == 1.0
    low, high_ = summary.loc["params", ["tau_low", "tau_high"]]
    assert -1 <= low <= 0.8 <= high_ <= 1
    assert summary.loc["params", "kind"] == "baseline" and summary.loc["synflow", "kind"] == "zero-cost"


def test_top_k_overlap_counts_shared_members():
    truth = pd.Series([5, 4, 3, 2, 1], index=list("abcde"))
    assert top_k_overlap(pd.Series([5, 1, 4, 2, 3], index=list("abcde")), truth, 2) == 0.5


def test_seed_spread_compares_one_network_over_seeds_with_the_networks():
    settings = tiny_study()
    high = settings.high_label
    rows = [dict(arch=f"a{i}", measure=high, kind="train", seed=0, value=v) for i, v in enumerate([0.5, 0.6, 0.7])]
    rows += [dict(arch="a0", measure=high, kind="train", seed=s, value=v) for s, v in [(1, 0.52), (2, 0.48)]]
    spread = seed_spread(pd.DataFrame(rows), settings).iloc[0]
    assert spread["network"] == "a0" and spread["seeds"] == 3
    assert spread["seed_std"] == pytest.approx(np.std([0.5, 0.52, 0.48], ddof=1))
    assert spread["network_std"] == pytest.approx(0.1)


@needs_fashion_mnist
def test_cli_fidelity_writes_the_study_and_resumes_what_is_missing(isolated_dirs):
    out = run_cli("fidelity", *TINY, "--run-id", "f1")
    assert out.returncode == 0, out.stderr
    assert "not ImageNet accuracy" in out.stdout and "kendall_tau" in out.stdout and "seed_std" in out.stdout
    run = open_run("f1")
    table = run.read_table("fidelity.csv")
    assert len(table) == 4 * (3 + 2) + 2  # 4 archs x (3 proxies + 2 fidelities) + 2 spread trainings
    assert table["value"].notna().all() and table["seconds"].gt(0).all()
    summary = run.read_table("correlations.csv")
    assert set(summary["measure"]) == {"train_images=64,val_images=100", "train_images=128,val_images=100",
                                       "synflow", "naswot", "params"}
    assert summary["kendall_tau"].between(-1, 1).all()
    meta = run.read_meta()
    assert meta["kind"] == "fidelity" and meta["seeds"] == {"study": 0} and "fidelity" in meta["command"]
    # a killed study: drop the last rows, resume, get the same values back
    table.iloc[:-5].to_csv(run.path / "fidelity.csv", index=False)
    out = run_cli("fidelity", "--resume", "f1", "--quiet")
    assert out.returncode == 0, out.stderr
    again = run.read_table("fidelity.csv")
    key = ["arch", "measure", "seed"]
    merged = table.merge(again, on=key, suffixes=("", "_again"))
    assert len(again) == len(table) == len(merged)
    assert np.allclose(merged["value"], merged["value_again"])
    # one more low fidelity for a finished study: only its trainings run
    out = run_cli("fidelity", "--resume", "f1", "--low", "train_images=96,val_images=100", "--quiet")
    assert out.returncode == 0, out.stderr
    assert len(run.read_table("fidelity.csv")) == len(table) + 4 + 1
    assert "train_images=96,val_images=100" in set(run.read_table("correlations.csv")["measure"])
    assert run.read_meta()["lows"] == ["train_images=64,val_images=100", "train_images=96,val_images=100"]

    result = render_page(run.path / "fidelity.html", run.path / "fidelity.png", scripts=dict(
        points="return document.getElementById('fidelity-scatter').data.map(t => t.x.length)",
        bars="return document.getElementById('fidelity-correlations').data[0].x"))
    assert result.js_errors == []
    assert {"fidelity-scatter", "fidelity-correlations", "fidelity-cost"} <= set(result.plot_ids)
    assert result.values["points"] == [4, 4]  # one trace per low fidelity
    assert len(result.values["bars"]) == 6


@pytest.mark.parametrize("args, message", [
    (["--low", "foo"], "cannot read 'foo'"),
    (["--high", "epochs=-1"], "must be >= 1"),
    (["--archs", "2"], "at least 3"),
    (["--proxies", "zen"], "unknown proxy 'zen'"),
    (["--budget", "2 lightyears"], "budget"),
    (["--workers", "0"], "positive"),
    (["--resume", "nope"], "not found"),
    (["--space", "nowhere"], "not found"),
])
def test_cli_fidelity_bad_input_exits_2_and_writes_nothing(isolated_dirs, args, message):
    out = run_cli("fidelity", *args)
    assert out.returncode == 2 and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").iterdir())
