"""Analytic cost of single layers, the twins of the torch layers in `fatnas.model`.

Units follow fvcore's `FlopCountAnalysis` exactly, at batch 1 in eval mode: one multiply-add
is one FLOP; a convolution costs out_h * out_w * c_out * (c_in / groups) * k * k (its bias is
free); a matmul (m x n) @ (n x p) costs m * n * p; BatchNorm in eval costs 2 per element,
GroupNorm 5 per element (both with affine); a linear layer in * out; average pooling one per
input element. Element-wise ops (add, mul, sigmoid, GELU, softmax) cost nothing.
"""
from __future__ import annotations

OPERATORS = ("conv", "matmul", "batch_norm", "group_norm", "linear", "adaptive_avg_pool2d")


class Cx:
    """Running cost of a walk through a network: current feature size, params, FLOPs by operator."""

    __slots__ = ("h", "w", "params", "flops")

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.params = 0
        self.flops = dict.fromkeys(OPERATORS, 0)

    @property
    def total_flops(self) -> int:
        return sum(self.flops.values())


def conv_out(size: int, k: int, stride: int) -> int:
    """Output length of a convolution with padding k // 2 (odd k): ceil(size / stride)."""
    return (size + 2 * (k // 2) - k) // stride + 1


def conv2d_cx(cx: Cx, c_in: int, c_out: int, k: int, *, stride: int = 1, groups: int = 1,
              bias: bool = True) -> Cx:
    """A k x k convolution with padding k // 2."""
    cx.h, cx.w = conv_out(cx.h, k, stride), conv_out(cx.w, k, stride)
    weights = c_out * (c_in // groups) * k * k
    cx.flops["conv"] += cx.h * cx.w * weights
    cx.params += weights + (c_out if bias else 0)
    return cx


def batchnorm2d_cx(cx: Cx, c: int) -> Cx:
    cx.flops["batch_norm"] += 2 * c * cx.h * cx.w
    cx.params += 2 * c
    return cx


def groupnorm_cx(cx: Cx, c: int) -> Cx:
    cx.flops["group_norm"] += 5 * c * cx.h * cx.w
    cx.params += 2 * c
    return cx


def attention_cx(cx: Cx, c: int, n_query: int, n_key: int) -> Cx:
    """Softmax attention, all heads together: q @ k^T and attn @ v, each c * n_query * n_key."""
    cx.flops["matmul"] += 2 * c * n_query * n_key
    return cx


def avgpool_cx(cx: Cx, c: int) -> Cx:
    cx.flops["adaptive_avg_pool2d"] += c * cx.h * cx.w
    cx.h = cx.w = 1
    return cx


def linear_cx(cx: Cx, c_in: int, c_out: int) -> Cx:
    cx.flops["linear"] += c_in * c_out
    cx.params += c_in * c_out + c_out
    return cx
