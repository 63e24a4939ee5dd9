"""The elastic FAT: one set of weights, the largest choice of every dimension of a space.

A sub-network of the space is a plain `FAT(cfg)` whose every tensor is a slice of the supernet's:

- depth: a stage's first d - 1 blocks and its last block (the one that carries the stride);
- width, FFN ratio, stem: channel prefixes in every convolution, norm and the head;
- heads: the same q/k/v channels regrouped (the K and V halves of `kv` are sliced apart);
- kernels (positional, local, FFN, shortcut): the centre crop of the largest kernel, or with `kernel_transform`
  (OFA's kernel transformation) each smaller size of the space the crop of the next larger one times a learned
  matrix of its own (`KernelTransforms`);
- windows: the first log2(w) steps of the refined downsampling.

`SliceMap` states that rule once, for a sub-network's state-dict entries; the supernet's forward
runs the sub-network's own modules (built once per config on the meta device) on those slices
with `torch.func.functional_call`, so gradients reach the shared weights and `extract` is the
same function with the slices copied out.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import torch
from torch import nn
from torch.func import functional_call

from ..estimate.base import NotEstimable
from ..estimate.proxy import crop_oversized_kernels
from ..model.config import NUM_STAGES, FATConfig
from ..model.network import FAT
from ..model.space import SearchSpace

SKELETONS_KEPT = 64  # sub-network skeletons cached by config (meta tensors: no memory to speak of)


def largest_config(space: SearchSpace, in_chans: int, num_classes: int) -> FATConfig:
    """The config holding the largest choice of every dimension; its weights are the supernet's."""
    def most(key: str, default: tuple) -> list:
        return [max(options) for options in space.choices[key]] if key in space.choices else list(default)

    base = FATConfig(widths=(2,) * NUM_STAGES, depths=(1,) * NUM_STAGES, heads=(1,) * NUM_STAGES)
    return FATConfig(widths=most("widths", ()), depths=most("depths", ()), heads=(1,) * NUM_STAGES,
                     kernels=most("kernels", base.kernels), windows=most("windows", base.windows),
                     ffn_ratios=most("ffn_ratios", base.ffn_ratios), ffn_kernels=most("ffn_kernels", base.ffn_kernels),
                     in_chans=in_chans, num_classes=num_classes)


def extreme_config(space: SearchSpace, pick: type[min] | type[max], in_chans: int, num_classes: int) -> FATConfig:
    """The space's smallest (`min`) or largest (`max`) member: every key at that end of its choices."""
    values = {key: [pick(options) for options in per_stage] for key, per_stage in space.choices.items()}
    return space.to_config(values).replace(in_chans=in_chans, num_classes=num_classes)


class SliceMap:
    """Where each tensor of a sub-network lives inside the supernet's largest network."""

    def __init__(self, largest: FATConfig) -> None:
        self.largest = largest

    def check(self, cfg: FATConfig) -> None:
        """Refuse a config the supernet cannot hold (a dimension above its largest choice)."""
        big = self.largest
        for field in ("widths", "depths", "kernels", "windows", "ffn_kernels"):
            for s, (value, most) in enumerate(zip(getattr(cfg, field), getattr(big, field))):
                if value > most:
                    raise SupernetError(f"{field}[{s}] = {value} is above the supernet's largest choice {most}")
        for s in range(NUM_STAGES):
            if int(cfg.widths[s] * cfg.ffn_ratios[s]) > int(big.widths[s] * big.ffn_ratios[s]):
                raise SupernetError(f"ffn_ratios[{s}] = {cfg.ffn_ratios[s]}: the FFN is wider than the supernet's")
        if (cfg.in_chans, cfg.num_classes) != (big.in_chans, big.num_classes):
            raise SupernetError(f"config for {cfg.in_chans} channels and {cfg.num_classes} classes; the supernet "
                                f"has {big.in_chans} and {big.num_classes}")

    def source_name(self, name: str, cfg: FATConfig) -> str:
        """The supernet entry a sub-network entry is cut from: its block index mapped by the depth rule."""
        parts = name.split(".")
        if parts[0] == "stages":
            stage, index = int(parts[1]), int(parts[2])
            if index == cfg.depths[stage] - 1:
                parts[2] = str(self.largest.depths[stage] - 1)
        return ".".join(parts)

    def cut(self, name: str, full: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """The slice of `full` that plays the sub-network's tensor `name` of `shape` (a view where possible)."""
        if full.shape == shape:
            return full
        if name.endswith("mixer.kv.weight") or name.endswith("mixer.kv.bias"):
            return _kv_slice(full, shape)
        out = full
        for dim, (have, want) in enumerate(zip(full.shape, shape)):
            if have == want:
                continue
            start = (have - want) // 2 if full.ndim == 4 and dim >= 2 else 0  # kernels: the centre taps
            out = out.narrow(dim, start, want)
        return out


def _kv_slice(full: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """`kv` stacks K then V: keep the first c channels of each half (and the active input channels)."""
    half, c = full.shape[0] // 2, shape[0] // 2
    rows = torch.cat([full[:c], full[half:half + c]])
    return rows.narrow(1, 0, shape[1]) if full.ndim > 1 else rows


class KernelTransforms(nn.Module):
    """OFA's kernel transformation: a kernel of size k is the centre k x k of the next larger size's kernel
    times a learned (k*k x k*k) matrix, one per layer and size, shared by the channels and starting at identity.

    Only the sizes a space can ask a layer for get a matrix: each kernel field of each stage is set in turn to
    each of its choices, and every tensor whose taps then shrink is noted with that size.
    """

    def __init__(self, space: SearchSpace, largest: FATConfig) -> None:
        super().__init__()
        self.sizes: dict[str, list[int]] = {}  # tensor name of the largest network -> its smaller sizes, largest first
        for name, sizes in sorted(_shrinking_kernels(space, largest).items()):
            self.sizes[name] = sorted(sizes, reverse=True)
        self.matrices = nn.ParameterDict({_matrix_key(name, k): nn.Parameter(torch.eye(k * k))
                                          for name, sizes in self.sizes.items() for k in sizes})

    def shrink(self, name: str, weight: torch.Tensor, size: int) -> torch.Tensor:
        """`weight` (of the largest network's tensor `name`) brought down to `size` x `size` taps step by step;
        a size with no matrix of its own is a plain centre crop."""
        for k in self.sizes.get(name, ()):
            if k < size:
                break
            weight = _centre_taps(weight, k)
            out, inp = weight.shape[:2]
            weight = (weight.reshape(out, inp, k * k) @ self.matrices[_matrix_key(name, k)]).reshape(out, inp, k, k)
        return _centre_taps(weight, size)


def _shrinking_kernels(space: SearchSpace, largest: FATConfig) -> dict[str, set[int]]:
    """Tensor name -> the kernel sizes below its largest that some config of the space gives it."""
    with torch.device("meta"):
        full = {name: t.shape for name, t in FAT(largest).named_parameters() if t.ndim == 4}
        found: dict[str, set[int]] = {}
        for field in ("kernels", "ffn_kernels"):
            for stage, options in enumerate(space.choices.get(field, ())):
                for k in options:
                    values = list(getattr(largest, field))
                    values[stage] = k
                    for name, t in FAT(largest.replace(**{field: tuple(values)})).named_parameters():
                        if name in full and t.ndim == 4 and t.shape[-1] < full[name][-1]:
                            found.setdefault(name, set()).add(int(t.shape[-1]))
    return found


def _matrix_key(name: str, size: int) -> str:
    return f"{name.replace('.', '__')}__k{size}"


def _centre_taps(weight: torch.Tensor, size: int) -> torch.Tensor:
    start = (weight.shape[-1] - size) // 2
    return weight[..., start:start + size, start:start + size]


class SupernetError(NotEstimable):
    """A config the supernet cannot hold."""


class Supernet(nn.Module):
    """All sub-networks of a space in one set of weights (those of the space's largest FAT).

    `set_active(cfg)` picks the sub-network `forward` runs; `extract(cfg)` returns it as a plain
    `FAT(cfg)` holding copies of its weights (and BatchNorm statistics).
    """

    def __init__(self, space: SearchSpace, in_chans: int, num_classes: int, res: int | None = None, *,
                 kernel_transform: bool = False) -> None:
        super().__init__()
        self.space, self.res = space, res
        self.full = FAT(largest_config(space, in_chans, num_classes))
        self.slices = SliceMap(self.full.cfg)
        self.kernel_transforms = KernelTransforms(space, self.full.cfg) if kernel_transform else None
        self.active: FATConfig = self.full.cfg
        self._skeletons: OrderedDict[FATConfig, FAT] = OrderedDict()
        # the sandwich rule's ends, drawn every training step: worked out once
        self.largest = extreme_config(space, max, in_chans, num_classes)
        self.smallest = extreme_config(space, min, in_chans, num_classes)

    def fit(self, cfg: FATConfig) -> FATConfig:
        """`cfg` with the supernet's input channels and classes, checked to fit."""
        cfg = cfg.replace(in_chans=self.full.cfg.in_chans, num_classes=self.full.cfg.num_classes)
        self.slices.check(cfg)
        return cfg

    def set_active(self, cfg: FATConfig) -> None:
        self.active = self.fit(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skeleton = self._skeleton(self.active)
        skeleton.train(self.training)
        tensors = {name: _channels_last(t) for name, t in self.active_tensors(self.active, skeleton)}
        return functional_call(skeleton, tensors, (x,))

    def active_tensors(self, cfg: FATConfig, skeleton: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, slice of the supernet's tensor) for every parameter and buffer of the sub-network."""
        source = dict(self.full.named_parameters())
        source.update(self.full.named_buffers())
        for name, tensor in _named_tensors(skeleton):
            origin = self.slices.source_name(name, cfg)
            full = source[origin]
            if self.kernel_transforms is not None and tensor.ndim == 4 and tensor.shape[-1] < full.shape[-1]:
                full = self.kernel_transforms.shrink(origin, full, tensor.shape[-1])
            yield name, self.slices.cut(name, full, tensor.shape)

    @torch.no_grad()
    def extract(self, cfg: FATConfig) -> FAT:
        """A plain FAT(cfg) with the inherited weights and BatchNorm statistics (copies, not views)."""
        cfg = self.fit(cfg)
        network = FAT(cfg).to(self.full.head.fc.weight.device)
        tensors = dict(self.active_tensors(cfg, network))
        network.load_state_dict({name: tensor.clone() for name, tensor in tensors.items()})
        return network.train(self.training)

    def _skeleton(self, cfg: FATConfig) -> FAT:
        """The sub-network's modules on the meta device (no weights of their own), cached by config."""
        if cfg in self._skeletons:
            self._skeletons.move_to_end(cfg)
            return self._skeletons[cfg]
        with torch.device("meta"):
            skeleton = FAT(cfg)
        if self.res is not None:
            crop_oversized_kernels(skeleton, self.res, cfg.in_chans)
        self._skeletons[cfg] = skeleton
        if len(self._skeletons) > SKELETONS_KEPT:
            self._skeletons.popitem(last=False)
        return skeleton


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """A dense channels-last copy of a sliced convolution weight: slices of one run convolutions slowly."""
    return tensor.contiguous(memory_format=torch.channels_last) if tensor.ndim == 4 else tensor


def _named_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from module.named_parameters()
    yield from module.named_buffers()


__all__ = ["KernelTransforms", "SliceMap", "Supernet", "SupernetError", "extreme_config", "largest_config"]
