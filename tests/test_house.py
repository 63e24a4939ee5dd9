"""The house's doors: one import path per module, the estimator and backend registries a new kind plugs into,
shared CLI flags, and the Python API."""
from __future__ import annotations

import importlib
import sys
import warnings

import pandas as pd
import pytest

import fatnas
from fatnas.cli import build_parser
from fatnas.errors import FatnasError
from fatnas.estimate.base import ESTIMATOR_MODULES, ESTIMATORS, Estimate, make_estimator, register_estimator
from fatnas.estimate.cost import parse_budget
from fatnas.estimate.proxy import ProxySettings
from fatnas.model.space import load_space
from fatnas.model.variants import get_config
from fatnas.runs.store import create_run
from fatnas.search import BACKENDS, SearchSettings, register_backend, run_search
from fatnas.search.evaluate import price, train_candidate

from .conftest import TINY_SPACE


@pytest.mark.parametrize("old", ["fatnas.cost", "fatnas.proxy", "fatnas.latency", "fatnas.store", "fatnas.fidelity",
                                 "fatnas.dashboard", "fatnas.config"])
def test_the_flat_module_paths_of_early_0_1_are_gone(monkeypatch, old):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)


def test_packages_that_replaced_a_module_keep_its_names_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        from fatnas.model import FASA, FAT, DropPath  # noqa: F401  (fatnas/model.py before)
        from fatnas.report import html_table, page_html  # noqa: F401  (fatnas/report.py before)


class FixedEstimator:
    name = "fixed"

    def __init__(self, value: float) -> None:
        self.value = value

    def estimate(self, cfg, report=None) -> Estimate:
        if report is not None:
            report(0, self.value)
        return Estimate(score=self.value, metrics=dict(accuracy=self.value, images_seen=64.0), seconds=0.0,
                        provenance=f"fixed:{self.value}", curve=((64, self.value),))


def test_a_new_estimator_kind_plugs_into_the_search_with_one_call(monkeypatch):
    monkeypatch.setitem(ESTIMATORS, "fixed", lambda argument, **context: FixedEstimator(float(argument)))
    space = load_space(TINY_SPACE)
    settings = SearchSettings(space=space, budget=parse_budget("6MFLOPs", res=space.resolution), proxy=ProxySettings(),
                              estimator="fixed:0.5")
    ev = train_candidate(price(get_config("fat_b0"), settings), None, settings)
    assert (ev.accuracy, ev.curve, ev.images_seen, ev.estimates["val_loss"]) == (0.5, [(64, 0.5)], 64, None)
    assert make_estimator("fixed:0.25").estimate(get_config("fat_b0")).provenance == "fixed:0.25"
    with pytest.raises(FatnasError, match="unknown estimator 'nope'"):
        make_estimator("nope")


def test_built_in_estimators_share_the_shape():
    import torch

    from fatnas.estimate.data import DataSplit

    x = torch.randint(0, 255, (8, 1, 28, 28), dtype=torch.uint8)
    data = DataSplit(train_x=x, train_y=torch.arange(8) % 2, val_x=x[:4], val_y=torch.arange(4) % 2, num_classes=2,
                     in_chans=1, name="random", image_size=(28, 28), mean=(0.5,), std=(0.25,),
                     train_indices=torch.arange(8), val_indices=torch.arange(4))
    cfg = get_config("fat_b0")
    params = make_estimator("zero-cost:params", data=data, res=28, batch_size=4).estimate(cfg)
    assert params.provenance == "zero-cost:params" and params.metrics == {"score": params.score}
    assert params.score == fatnas.cost(cfg.replace(in_chans=1, num_classes=2, drop_path_rate=0.0)).params
    register_estimator("zero-cost", ESTIMATORS["zero-cost"])  # registering again replaces, never duplicates
    predictor = make_estimator("predictor", configs=[get_config(n) for n in ("fat_b0", "fat_b1", "fat_b2")],
                               targets=[0.1, 0.2, 0.3])
    assert predictor.estimate(get_config("fat_b1")).provenance == "predictor:ridge(size only)"


class RecordingBackend:
    name, option_names = "recording", ("speed",)
    runs: list = []

    def make_options(self, device, **values):
        return dict(values)

    def check(self, settings=None, *, storage=None, workers=1, joining=False):
        return None

    def run(self, job, options):
        self.runs.append((job.run.id, job.settings.trials, options))


def test_a_new_search_backend_plugs_in_with_one_call(monkeypatch):
    monkeypatch.setitem(BACKENDS, "recording", RecordingBackend)
    space = load_space(TINY_SPACE)
    settings = SearchSettings(space=space, budget=parse_budget("6MFLOPs", res=space.resolution), proxy=ProxySettings(),
                              references=False, trials=3)
    front = run_search(create_run("rec"), settings, backend="recording", data=object(), progress=False)
    assert RecordingBackend.runs[-1] == ("rec", 3, {}) and isinstance(front, pd.DataFrame)
    register_backend("recording", RecordingBackend)
    with pytest.raises(FatnasError, match="--speed: only valid with --backend recording"):
        fatnas.search.backend_options("optuna", "cpu", speed=2)


@pytest.mark.parametrize("command", [["cost", "fat_b0"], ["latency-profile", "-o", "t.json"],
                                     ["search"], ["confirm", "r"], ["fidelity"], ["scale", "fat_b0"]])
def test_shared_flags_read_the_same_everywhere(command):
    parser = build_parser()
    args = parser.parse_args([*command, "--device", "cuda:1", "--threads", "2"])
    assert (args.device, args.threads) == ("cuda:1", 2)
    defaults = parser.parse_args(command)
    assert (defaults.device, defaults.threads) == (None, None)  # cpu and 1, unless a resumed run recorded others
    with pytest.raises(FatnasError, match="accepted forms: cpu, cuda, cuda:N"):
        parser.parse_args([*command, "--device", "gpu0"])


def test_the_python_api():
    assert fatnas.cost("fat_b0").params == 4_494_488
    assert fatnas.cost(get_config("fat_b2")).flops == 2_150_371_712
    assert fatnas.optimize is fatnas.api.optimize and not callable(fatnas.search)  # a package, no trick
    assert fatnas.search.run_search is run_search
    assert fatnas.confirm is fatnas.api.confirm
    assert [row["name"] for row in fatnas.paper_comparison()] == ["fat_b0", "fat_b1", "fat_b2", "fat_b3"]


def test_a_kind_is_imported_where_it_is_first_named(tmp_path, monkeypatch):
    """A Ray trial or a --join worker is a fresh process: naming the kind imports the module that registers it."""
    (tmp_path / "fatnas_lazy_kind.py").write_text(
        "from fatnas.estimate.base import register_estimator\n"
        "from tests.test_house import FixedEstimator\n"
        "register_estimator('lazy', lambda argument, **context: FixedEstimator(float(argument)))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(ESTIMATOR_MODULES, "lazy", "fatnas_lazy_kind")
    monkeypatch.delitem(ESTIMATORS, "lazy", raising=False)
    try:
        assert make_estimator("lazy:0.75").estimate(get_config("fat_b0")).score == 0.75
    finally:
        ESTIMATORS.pop("lazy", None)
