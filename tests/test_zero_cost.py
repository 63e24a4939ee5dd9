"""Zero-cost proxies on tiny networks: deterministic for a seed, finite, and telling networks apart."""
from __future__ import annotations

import math

import pytest
import torch

from fatnas.errors import FatnasError
from fatnas.estimate.cost import analytic_cost
from fatnas.estimate.data import load_dataset
from fatnas.estimate.zero_cost import PROXIES, ZERO_COST_PROXIES, check_proxy, minibatch, score_config
from fatnas.model.config import FATConfig

from .conftest import FASHION_MNIST

SMALL = FATConfig(widths=[16, 32, 32, 64], depths=[1, 1, 1, 1], heads=[1, 2, 2, 4], kernels=[3, 3, 3, 3],
                  windows=[2, 2, 1, 1])
WIDER = SMALL.replace(widths=[24, 48, 48, 64], heads=[1, 3, 3, 4], ffn_ratios=[2, 2, 2, 2])


@pytest.fixture(scope="module")
def batch():
    if FASHION_MNIST.is_dir():
        return minibatch(load_dataset(val_images=100), res=28, batch_size=16, seed=0)
    gen = torch.Generator().manual_seed(0)  # made-up 1-channel images when the data set is absent
    return torch.randn(16, 1, 28, 28, generator=gen), torch.randint(0, 10, (16,), generator=gen)


@pytest.mark.parametrize("proxy", ZERO_COST_PROXIES)
def test_zero_cost_proxy_is_finite_deterministic_and_tells_networks_apart(proxy, batch):
    first = score_config(proxy, SMALL, batch, num_classes=10, seed=0)
    again = score_config(proxy, SMALL, batch, num_classes=10, seed=0)
    other = score_config(proxy, WIDER, batch, num_classes=10, seed=0)
    assert math.isfinite(first.value) and first.seconds > 0
    assert first.value == again.value
    assert first.value != other.value


@pytest.mark.parametrize("proxy", ["grad_norm", "snip", "naswot"])
def test_data_dependent_proxies_change_with_the_initialization_seed(proxy, batch):
    assert score_config(proxy, SMALL, batch, num_classes=10, seed=0).value != \
        score_config(proxy, SMALL, batch, num_classes=10, seed=1).value


def test_synflow_is_data_free_and_positive(batch):
    x, y = batch
    shuffled = (torch.flip(x, dims=[0]) * 3.0, torch.flip(y, dims=[0]))
    a = score_config("synflow", SMALL, batch, num_classes=10).value
    assert a > 0 and a == score_config("synflow", SMALL, shuffled, num_classes=10).value


def test_naswot_grows_with_more_distinct_activation_patterns(batch):
    x, y = batch
    same = (x[:1].expand_as(x).clone(), y)  # one image repeated: every pair agrees everywhere
    assert score_config("naswot", SMALL, batch, num_classes=10).value > \
        score_config("naswot", SMALL, same, num_classes=10).value


def test_baselines_are_the_cost_model_figures(batch):
    cfg = SMALL.replace(in_chans=1, num_classes=10)
    assert score_config("params", SMALL, batch, num_classes=10).value == analytic_cost(cfg).params
    assert score_config("flops", SMALL, batch, num_classes=10, cost_res=64).value == analytic_cost(cfg, 64).flops


def test_scoring_leaves_the_global_random_state_alone(batch):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for proxy in PROXIES:
        score_config(proxy, SMALL, batch, num_classes=10)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_proxy_names_the_accepted_ones():
    with pytest.raises(FatnasError, match="accepted: synflow, grad_norm, snip, naswot, params, flops"):
        check_proxy("jacov")
