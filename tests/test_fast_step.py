"""The CPU fast training path computes the plain network's function: outputs and every gradient."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fatnas.estimate.cost import parse_budget
from fatnas.estimate.fast_step import (
    BMM,
    ONEDNN,
    OUTER,
    FastDepthwiseConv2d,
    accelerate,
    tap_matrix,
    weight_grad_method,
)
from fatnas.estimate.liveness import proxy_config
from fatnas.estimate.proxy import crop_oversized_kernels
from fatnas.model.network import FAT
from fatnas.model.space import load_space
from fatnas.study.fidelity.jobs import sample_architectures

OUTPUT_RTOL = 1e-5
GRAD_RTOL = 1e-5
# A gradient that is zero in exact arithmetic (a bias or a scale just before a BatchNorm, which cancels it) is
# rounding noise in float32 on either path; there the fast path may be at most this many times further from
# the float64 gradient than the plain float32 module is. Measured worst: 4.1 (fat_b3 at 28 px).
ZERO_GRAD_NOISE_FACTOR = 8.0


def _networks() -> dict:
    space = load_space("fat")
    published = {name: space.published(name) for name in ("fat_b0", "fat_b1", "fat_b2", "fat_b3")}
    return {**published, **sample_architectures(space, parse_budget("2GFLOPs"), 2, seed=0)}


NETWORKS = _networks()


def _outputs_and_grads(model: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor):
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(x)
    out.backward(grad)
    return out.detach().double(), [(name, p.grad.double()) for name, p in model.named_parameters()]


def _compare(name: str, res: int) -> None:
    torch.manual_seed(0)
    cfg = proxy_config(NETWORKS[name], res).replace(in_chans=1, num_classes=10)
    plain = FAT(cfg)
    crop_oversized_kernels(plain, res, 1)
    plain = plain.to(memory_format=torch.channels_last)
    fast = copy.deepcopy(plain)
    chosen = accelerate(fast, res, 1)
    assert chosen["pointwise"] > 0 and sum(chosen.values()) > chosen["pointwise"]
    exact = copy.deepcopy(plain).double()
    x = torch.randn(4, 1, res, res).to(memory_format=torch.channels_last)
    grad = torch.randn(4, 10)
    out_exact, grads_exact = _outputs_and_grads(exact, x.double(), grad.double())
    out_plain, grads_plain = _outputs_and_grads(plain, x, grad)
    out_fast, grads_fast = _outputs_and_grads(fast, x, grad)
    assert (out_fast - out_plain).norm() <= OUTPUT_RTOL * out_plain.norm()
    for (param, g_exact), (_, g_plain), (_, g_fast) in zip(grads_exact, grads_plain, grads_fast):
        tolerance = GRAD_RTOL * g_exact.norm() + ZERO_GRAD_NOISE_FACTOR * (g_plain - g_exact).norm()
        assert (g_fast - g_exact).norm() <= tolerance, (name, res, param)


FAST_TIER = [("fat_b0", 28), ("fat_b0", 56), ("arch00", 28), ("arch00", 56)]


@pytest.mark.parametrize("name,res", FAST_TIER)
def test_fast_path_matches_the_plain_module(name, res):
    _compare(name, res)


@pytest.mark.slow  # every other published and sampled network at 28, 56 and 112 px: about a minute and a half
@pytest.mark.parametrize("name,res", [(name, res) for name in NETWORKS for res in (28, 56, 112)
                                      if (name, res) not in FAST_TIER])
def test_fast_path_matches_the_plain_module_in_the_slow_tier(name, res):
    _compare(name, res)


@pytest.mark.parametrize("kernel,stride,size", [(3, 1, 2), (3, 2, 2), (5, 1, 4), (5, 2, 4), (7, 1, 7), (9, 2, 5)])
def test_the_tap_matrix_is_the_depthwise_convolution_as_a_dense_operator(kernel, stride, size):
    torch.manual_seed(kernel + size)
    c, pad = 3, kernel // 2
    x, weight = torch.randn(2, c, size, size), torch.randn(c, 1, kernel, kernel)
    expected = F.conv2d(x, weight, None, stride, pad, groups=c)
    taps = tap_matrix((kernel, kernel), (stride, stride), (pad, pad), (size, size))
    oh = expected.shape[-1]
    dense = (weight.view(c, -1) @ taps).view(c, oh * oh, size * size)  # per channel: out pixels x in pixels
    got = torch.einsum("coi,bci->bco", dense, x.flatten(2)).view_as(expected)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_rules_keep_onednn_where_it_is_fast_and_bound_the_dense_forms():
    assert weight_grad_method(3, 4, 4, 4, 4) == ONEDNN and weight_grad_method(3, 14, 14, 14, 14) == ONEDNN
    assert weight_grad_method(3, 2, 2, 2, 2) == OUTER and weight_grad_method(1, 1, 1, 1, 1) == OUTER
    assert weight_grad_method(5, 4, 4, 4, 4) == BMM and weight_grad_method(5, 7, 7, 7, 7) == BMM
    assert weight_grad_method(5, 14, 14, 14, 14) == ONEDNN and weight_grad_method(9, 28, 28, 28, 28) == ONEDNN
    # the dense forms' memory is bounded by the map: never beyond 12 x 12 input pixels
    assert all(weight_grad_method(k, s, s, s, s) == ONEDNN for k in (3, 5, 7, 9) for s in range(13, 40))


def test_accelerated_network_keeps_its_parameters_and_falls_back_on_other_sizes():
    torch.manual_seed(0)
    cfg = proxy_config(NETWORKS["fat_b0"], 28).replace(in_chans=1, num_classes=10)
    plain = FAT(cfg).to(memory_format=torch.channels_last)
    fast = copy.deepcopy(plain)
    accelerate(fast, 28, 1)
    assert fast.state_dict().keys() == plain.state_dict().keys()
    FAT(cfg).load_state_dict(fast.state_dict())  # a plain module takes its weights as they are
    assert any(isinstance(m, FastDepthwiseConv2d) for m in fast.modules())
    x = torch.randn(2, 1, 40, 40).to(memory_format=torch.channels_last)  # not the size it was planned for
    plain.eval(), fast.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-6)
