"""Trust shown where results are read: a search proxy's seed spread and tau, from its fidelity studies."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from fatnas.cli import main
from fatnas.estimate.proxy import ProxySettings
from fatnas.report.dashboard import load_run_data
from fatnas.runs.noise import Z
from fatnas.runs.store import Run, create_run
from fatnas.study.fidelity import fidelity_fields
from fatnas.study.trust import OBJECTIVE, find_proxy_trust

from .browser import render_page
from .tiny_run import copy_run

PROXY = ProxySettings(train_images=128, epochs=1, batch_size=32, val_images=200)  # tests/test_search.py's
ERROR_BARS = "return document.getElementById('pareto').data.find(t => t.uid === 'trials-0').error_y.array"


def make_study(root: Path, run_id: str, proxy: ProxySettings, *, tau: float = 0.52, seed_std: float = 0.011,
               dataset: str = "fashion-mnist", classes: list[int] | None = None, seed_tau: float = 0.61,
               scorers: tuple[str, ...] = ()) -> Run:
    """A fidelity study folder whose low fidelity 'default' is `proxy`, as cli.py fidelity writes it."""
    run = create_run(run_id, root=root)
    run.write_meta(dict(id=run_id, kind="fidelity", lows=["default"], high="reference", dataset=dataset,
                        classes=classes, fidelity_settings=dict(lows=[fidelity_fields(proxy)], high={}),
                        scorers=list(scorers), space=dict(name="fat", resolution=224), budget=dict(max_flops=2e9),
                        archs=34, proxies=[], proxy_batch=64, spread_seeds=3, references=True, seeds=dict(study=0),
                        workers=1, threads=1, top_k=5))
    run.write_table("seed_spread.csv", pd.DataFrame([dict(measure="default", network="fat_b0", seeds=3,
                                                          seed_std=seed_std, archs=34)]))
    run.write_table("correlations.csv", pd.DataFrame([
        dict(estimator="default:-loss", measure="default", kendall_tau=0.6, tau_low=0.4, tau_high=0.7, archs=34,
             reference="-test loss (2-seed mean)"),
        dict(estimator="default:accuracy", measure="default", kendall_tau=tau, tau_low=0.31, tau_high=0.66,
             archs=34, reference="-test loss (2-seed mean)"),
        *[dict(estimator=f"{spec}:accuracy", measure=spec, kendall_tau=0.47, tau_low=0.3, tau_high=0.6, archs=34,
               reference="-test loss (2-seed mean)") for spec in scorers],
    ]))
    run.write_table("reliability.csv", pd.DataFrame([dict(metric="loss", chosen=True, seed_tau=seed_tau),
                                                     dict(metric="accuracy", chosen=False, seed_tau=0.3)]))
    return run


def test_a_study_of_the_proxy_gives_its_seed_std_and_tau(tmp_path):
    make_study(tmp_path, "study-a", PROXY)
    trust = find_proxy_trust(PROXY.to_dict(), roots=[tmp_path])
    assert (trust.seed_std, trust.tau, trust.tau_low, trust.tau_high) == (0.011, 0.52, 0.31, 0.66)
    assert trust.study == "study-a" and trust.archs == 34 and trust.reference == "-test loss (2-seed mean)"
    assert trust.error_bars(pd.Series([0.5, 0.9]), 200) == [0.011, 0.011]
    text = trust.describe()
    assert OBJECTIVE in text and "0.52" in text and "-test loss (2-seed mean)" in text and "fat_b0 over 3 seeds" in text
    assert trust.reference_seed_tau == 0.61 and "own seed-to-seed tau is 0.61" in text
    own = trust.describe(error_bars=False)  # a run that measured its own noise states its bars itself
    assert "error bars" not in own and "0.52" in own and own.startswith(f"Accuracy objective: {OBJECTIVE}. Its")


def test_without_a_study_of_that_proxy_error_bars_are_the_validation_sampling_error(tmp_path):
    make_study(tmp_path, "study-other", PROXY.replace(res=28))  # another resolution: another proxy
    make_study(tmp_path, "study-classes", PROXY, classes=[0, 2, 4, 6])  # the same proxy on another task
    make_study(tmp_path, "study-cifar", PROXY, dataset="cifar10")
    trust = find_proxy_trust(PROXY.to_dict(), roots=[tmp_path])
    assert trust.seed_std is None and trust.tau is None and trust.study is None
    assert trust.error_bars(pd.Series([0.5, 0.9]), 100) == pytest.approx([0.05, math.sqrt(0.09 / 100)])
    text = trust.describe()
    assert "No ranking reference exists for this task (fashion-mnist, all classes, estimator proxy)" in text
    assert "lower bound" in text


def test_a_study_is_quoted_only_for_its_own_classes(tmp_path):
    make_study(tmp_path, "study-upper", PROXY, classes=[0, 2, 4, 6], tau=0.26)
    assert find_proxy_trust(PROXY.to_dict(), roots=[tmp_path], classes=(0, 2, 4, 6)).tau == 0.26
    assert find_proxy_trust(PROXY.to_dict(), roots=[tmp_path]).tau is None  # all classes: another task
    assert find_proxy_trust(PROXY.to_dict(), roots=[tmp_path], classes=(0, 2)).tau is None


def test_a_reference_that_does_not_repeat_is_not_quoted(tmp_path):
    make_study(tmp_path, "study-noisy", PROXY, tau=0.43, seed_tau=0.23)  # the 10-class study's reference
    trust = find_proxy_trust(PROXY.to_dict(), roots=[tmp_path])
    assert trust.tau is None and trust.seed_std == 0.011  # its seed spread still sizes the error bars
    assert "0.43" not in trust.describe() and "No ranking reference exists for this task" in trust.describe()


def test_a_supernet_search_quotes_the_study_that_scored_that_supernet(tmp_path):
    make_study(tmp_path, "study-ws", PROXY, classes=[0, 2, 4, 6], tau=0.26, scorers=("supernet:sn1",))
    trust = find_proxy_trust(PROXY.to_dict(), roots=[tmp_path], classes=(0, 2, 4, 6), estimator="supernet:sn1")
    assert (trust.tau, trust.study, trust.seed_std) == (0.47, "study-ws", None)  # a supernet has no seed spread
    other = find_proxy_trust(PROXY.to_dict(), roots=[tmp_path], classes=(0, 2, 4, 6), estimator="supernet:sn2")
    assert other.tau is None and "estimator supernet:sn2" in other.describe()


def test_the_study_with_a_tau_and_more_networks_wins(tmp_path):
    unfinished = make_study(tmp_path, "study-unfinished", PROXY, tau=0.9)
    (unfinished.path / "correlations.csv").write_text("")  # a study still running has no correlations yet
    make_study(tmp_path, "study-small", PROXY, tau=0.2).write_table("correlations.csv", pd.DataFrame(
        [dict(estimator="default:accuracy", kendall_tau=0.2, archs=8)]))
    make_study(tmp_path, "study-big", PROXY, tau=0.4)
    (tmp_path / "not-a-run").mkdir()
    assert find_proxy_trust(PROXY.to_dict(), roots=[tmp_path]).study == "study-big"
    (tmp_path / "study-big" / "seed_spread.csv").unlink()  # a study whose spread network has not finished
    trust = find_proxy_trust(PROXY.to_dict(), roots=[tmp_path])
    assert trust.seed_std is None and trust.tau == 0.4 and "binomial std of 200 validation images" in trust.describe()


def test_the_dashboard_draws_error_bars_and_names_the_proxy_tau(tiny_run, isolated_dirs, capsys):
    run = copy_run(tiny_run, isolated_dirs / "runs")
    meta = run.read_meta()
    meta.pop("noise")  # a run that measured no noise of its own (an older run) falls back to a study's seed std
    run.write_meta(meta)
    assert load_run_data(run).trust.seed_std is None
    make_study(isolated_dirs / "runs", "study-a", PROXY, seed_std=0.02)
    data = load_run_data(run)
    assert data.trust.study == "study-a"
    assert main(["dashboard", run.id]) == 0
    page = run.path / "dashboard.html"
    result = render_page(page, run.path / "dashboard.png",
                         scripts=dict(bars=ERROR_BARS, trust="return document.getElementById('trust-0').innerText"))
    assert result.js_errors == []
    complete = (data.trials["state"] == "COMPLETE").sum()
    assert result.values["bars"] == pytest.approx([Z * 0.02] * complete)  # 90% intervals from the study's std
    assert "error bars: 90% intervals from +-0.0200" in result.values["trust"]
    assert "Kendall tau against the reference (-test loss (2-seed mean)) is 0.52" in result.values["trust"]


def test_the_sentence_names_the_runs_objective_and_the_validation_images_it_used(tmp_path):
    trust = find_proxy_trust(PROXY.to_dict(), roots=[tmp_path], classes=(0, 2, 4, 6), estimator="supernet:sn1",
                             objective="validation accuracy with weights inherited from supernet sn1", val_images=832)
    text = trust.describe()
    assert "Accuracy objective: validation accuracy with weights inherited from supernet sn1;" in text
    assert "binomial std of 832 validation images" in text and OBJECTIVE not in text
