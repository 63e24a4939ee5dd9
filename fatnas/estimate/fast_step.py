"""A faster CPU training step that computes the same function: convolutions re-formulated by shape.

Measured on this project's 2-core CPU (bench/trainer_profile.py, one thread, batch 64, channels last):
oneDNN's depthwise forward and input gradient run at a useful rate, but its depthwise *weight*
gradient falls to a slow path for every kernel but 3 x 3 on maps of at least 3 x 3, and on the
2 x 2 and 4 x 4 maps of a 28 px proxy it took over half of a fat_b0 training step. A depthwise
convolution from an h x w map to an oh x ow one is, channel by channel, a dense (oh*ow x h*w)
matrix built from the kernel's taps, so its weight gradient is a sum over the batch of outer
products of output gradient and input, folded back onto the taps by a fixed 0/1 matrix. This
module computes that sum either as one broadcast product (tiny maps) or as a batched matrix
product (small maps), and keeps oneDNN elsewhere. A 1 x 1 convolution on channels-last maps is a
matrix product over the channels, run as `F.linear` on a view, with no copy of the layout.

`accelerate(model, res, in_chans)` swaps the convolutions of a training copy of a network (in place,
by class, as `crop_oversized_kernels` does) once per network and input size, by fixed rules, so
every trial of the same config computes bit for bit the same thing. It changes no parameter, no
state dict key and no model file: the network exported, timed or converted is never accelerated.
"""
from __future__ import annotations

import functools
from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn

ONEDNN, OUTER, BMM = "onednn", "outer", "bmm"  # how a depthwise weight gradient is computed
OUTER_MAX_PAIRS = 64  # oh*ow*h*w up to this: one broadcast product (its temporary is batch x pairs x channels)
BMM_MAX_TAP_RATIO = 2  # h*w up to this many times the kernel's taps: a batched matrix product (bounded memory)


def weight_grad_method(kernel: int, h: int, w: int, oh: int, ow: int) -> str:
    """How the weight gradient of a depthwise `kernel` x `kernel` convolution from h x w to oh x ow is computed.

    oneDNN's own kernel where it is fast (3 x 3 on maps of at least 3 x 3) or where the dense form
    would do more work than the taps (large maps); else the dense form, whose memory is bounded by
    these rules: at most OUTER_MAX_PAIRS (output, input) pixel pairs for the broadcast product, and
    at most 2 x 81 input pixels (12 x 12 maps) for the matrix product.
    """
    if kernel == 3 and min(h, w) >= 3:
        return ONEDNN
    if oh * ow * h * w <= OUTER_MAX_PAIRS:
        return OUTER
    if h * w <= BMM_MAX_TAP_RATIO * kernel * kernel:
        return BMM
    return ONEDNN


@functools.lru_cache(maxsize=256)
def tap_matrix(kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
               size: tuple[int, int]) -> torch.Tensor:
    """0/1 matrix (kh*kw, oh*ow*h*w): which tap joins output pixel o to input pixel i (zero padding included)."""
    (kh, kw), (sh, sw), (ph, pw), (h, w) = kernel, stride, padding, size
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    ky, kx, oy, ox = torch.meshgrid(torch.arange(kh), torch.arange(kw), torch.arange(oh), torch.arange(ow),
                                    indexing="ij")
    iy, ix = oy * sh - ph + ky, ox * sw - pw + kx
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    taps = torch.zeros(kh * kw, oh * ow, h * w)
    tap, out = (ky * kw + kx)[inside], (oy * ow + ox)[inside]
    taps[tap, out, (iy * w + ix)[inside]] = 1.0
    return taps.view(kh * kw, -1)


def _pair_sums(grad: torch.Tensor, x: torch.Tensor, method: str) -> torch.Tensor:
    """(C, oh*ow*h*w): for each channel, the sum over the batch of grad[o] * x[i] for every pixel pair."""
    b, c = x.shape[:2]
    if method == OUTER:
        g = grad.permute(0, 2, 3, 1).reshape(b, -1, 1, c)
        xs = x.permute(0, 2, 3, 1).reshape(b, 1, -1, c)
        return (g * xs).sum(0).view(-1, c).t()
    g = grad.permute(1, 2, 3, 0).reshape(c, -1, b)  # C, oh*ow, B
    xs = x.permute(1, 0, 2, 3).reshape(c, b, -1)  # C, B, h*w
    return torch.bmm(g, xs).view(c, -1)


class _DepthwiseConv(torch.autograd.Function):
    """Depthwise convolution: oneDNN forward and input gradient, the weight gradient by `method`."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, method):  # noqa: D102 (autograd's signature)
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.method, ctx.has_bias = stride, padding, method, bias is not None
        return F.conv2d(x, weight, bias, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, weight = ctx.saved_tensors
        c, kernel = weight.shape[0], tuple(weight.shape[-2:])
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        grad = grad.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        grad_x = grad_w = grad_b = None
        if ctx.method == ONEDNN:
            mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False]
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                grad, x, weight, None, list(ctx.stride), list(ctx.padding), [1, 1], False, [0, 0], c, mask)
        else:
            if ctx.needs_input_grad[0]:
                grad_x = torch.ops.aten.convolution_backward(
                    grad, x, weight, None, list(ctx.stride), list(ctx.padding), [1, 1], False, [0, 0], c,
                    [True, False, False])[0]
            if ctx.needs_input_grad[1]:
                taps = tap_matrix(kernel, ctx.stride, ctx.padding, tuple(x.shape[-2:]))
                grad_w = (_pair_sums(grad, x, ctx.method) @ taps.t()).view_as(weight)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None


class FastDepthwiseConv2d(nn.Conv2d):
    """A depthwise convolution whose weight gradient is computed by `method` for input maps of `size`.

    `crop` outer rings of taps that only meet zero padding are skipped, as in `crop_oversized_kernels`.
    Any other input size takes oneDNN's own path, so the module stays correct for every input.
    """

    crop: int
    method: str
    size: tuple[int, int]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, (kh, kw) = self.crop, self.kernel_size
        weight = self.weight[:, :, c:kh - c, c:kw - c] if c else self.weight
        padding = (self.padding[0] - c, self.padding[1] - c)
        method = self.method if tuple(x.shape[-2:]) == self.size else ONEDNN
        if not torch.is_grad_enabled():
            return F.conv2d(x, weight, self.bias, self.stride, padding, 1, self.groups)
        return _DepthwiseConv.apply(x, weight, self.bias, self.stride, padding, method)


class FastPointwiseConv2d(nn.Conv2d):
    """A 1 x 1 convolution run as a matrix product over the channels of a channels-last map (a view, no copy)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        weight = self.weight.view(self.out_channels, self.in_channels)
        return F.linear(x.permute(0, 2, 3, 1), weight, self.bias).permute(0, 3, 1, 2)


def conv_input_sizes(model: nn.Module, res: int, in_chans: int) -> dict[nn.Conv2d, tuple[int, int, int, int]]:
    """(h, w, oh, ow) of every plain convolution of `model` on one res x res input (run once, in eval mode)."""
    shapes: dict[nn.Conv2d, tuple[int, int, int, int]] = {}
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and isinstance(m.padding, tuple)]
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.__setitem__(m, tuple(i[0].shape[-2:] + o.shape[-2:])))
             for m in convs]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model.eval()
            model(torch.zeros(1, in_chans, res, res, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return shapes


def _is_depthwise(m: nn.Conv2d) -> bool:
    return m.groups == m.in_channels == m.out_channels and m.dilation == (1, 1) and m.padding_mode == "zeros"


def _is_pointwise(m: nn.Conv2d) -> bool:
    return m.kernel_size == (1, 1) and m.stride == (1, 1) and m.padding == (0, 0) and m.groups == 1


def accelerate(model: nn.Module, res: int, in_chans: int) -> Counter:
    """Swap `model`'s depthwise and pointwise convolutions for their fast forms at res x res (in place, CPU only).

    Returns how many convolutions took each form ('pointwise', 'depthwise:onednn', ...).
    """
    chosen: Counter = Counter()
    if next(model.parameters()).device.type != "cpu":
        return chosen
    for m, (h, w, oh, ow) in conv_input_sizes(model, res, in_chans).items():
        if _is_pointwise(m):
            m.__class__ = FastPointwiseConv2d
            chosen["pointwise"] += 1
        elif _is_depthwise(m):
            crop = getattr(m, "crop", 0)
            kernel = max(m.kernel_size) - 2 * crop
            m.__class__, m.crop, m.size = FastDepthwiseConv2d, crop, (h, w)
            m.method = weight_grad_method(kernel, h, w, oh, ow)
            chosen[f"depthwise:{m.method}"] += 1
    return chosen


__all__ = ["BMM", "ONEDNN", "OUTER", "FastDepthwiseConv2d", "FastPointwiseConv2d", "accelerate", "conv_input_sizes",
           "tap_matrix", "weight_grad_method"]
