"""Memory, before any network is built: an estimate of the parameter and activation memory of a config or of a
space's largest network, the limit of this machine (or GPU), and the check that refuses what would not fit."""
from __future__ import annotations

import os
from typing import Any, Callable

import torch

from ..model.config import NUM_STAGES, FATConfig, attention_keys, stage_output_sizes
from ..model.space import stage_value
from .proxy import ProxyError

MEMORY_LIMIT_ENV = "FATNAS_MEMORY_LIMIT_GB"  # overrides the limit found (the machine's memory, or the GPU's)
BYTES_PER_VALUE = 4  # float32 activations and weights
TRAINING_COPIES = 4  # weights, gradients and AdamW's two moments


def activation_bytes(source: Any, res: int, batch: int, *, training: bool) -> int:
    """An estimate of the activation memory of a network at res x res and `batch` images: of a config, or of a
    space's largest network (the largest width, depth and FFN ratio, the smallest window and most heads of every
    stage). Training keeps every block's activations for the backward pass; inference holds about two blocks'
    at a time."""
    stages = _largest_stages(source)
    width0 = stages[0][0]
    stem = width0 * (-(-res // 2)) ** 2 * 4 + width0 * (-(-res // 4)) ** 2 * 4
    blocks = []
    for (width, ratio, heads, window, depth), (h, w) in zip(stages, stage_output_sizes(res, res)):
        per_block = int(width * h * w * (8 + 2 * ratio)) + max(1, heads) * h * w * attention_keys(h, w, window)
        blocks += [per_block] * depth
    values = stem + sum(blocks) if training else 2 * max([stem, *blocks])
    return values * batch * BYTES_PER_VALUE


def parameter_bytes(source: Any, *, training: bool) -> int:
    """The memory of a network's parameters (of a config, or of a space's largest network), with their gradients
    and optimizer state when training; counted analytically, so no module is built to find it."""
    from .cost import analytic_cost

    cfg = source if isinstance(source, FATConfig) else _largest_config(source)
    return analytic_cost(cfg, 32).params * BYTES_PER_VALUE * (TRAINING_COPIES if training else 1)


def _largest_config(space: Any) -> FATConfig:
    """The space's network with the most parameters: the largest of every choice (the smallest head size)."""
    smallest = ("windows", "head_dims")
    values = {key: [(min if key in smallest else max)(options) for options in per_stage]
              for key, per_stage in space.choices.items()}
    return space.to_config(values)


def _largest_stages(source: Any) -> list[tuple[int, float, int, int, int]]:
    """(width, FFN ratio, heads, window, depth) of every stage: a config's own, or a space's largest choices."""
    if isinstance(source, FATConfig):
        return list(zip(source.widths, source.ffn_ratios, source.heads, source.windows, source.depths))

    def most(key: str, stage: int, pick: Callable = max) -> Any:
        options = source.choices.get(key)
        return pick(options[stage]) if options else stage_value({}, key, stage)

    def heads(stage: int, width: int) -> int:
        if "heads" in source.choices:
            return most("heads", stage)
        return width // min(source.choices["head_dims"][stage]) if "head_dims" in source.choices else 8

    return [(most("widths", s), most("ffn_ratios", s), heads(s, most("widths", s)), most("windows", s, min),
             most("depths", s)) for s in range(NUM_STAGES)]


def memory_limit_bytes(device: str) -> tuple[int, str]:
    """How much memory a trial may use here, and where that figure comes from."""
    override = os.environ.get(MEMORY_LIMIT_ENV)
    if override:
        try:
            return int(float(override) * 2**30), f"${MEMORY_LIMIT_ENV}"
        except ValueError:
            raise ProxyError(f"${MEMORY_LIMIT_ENV}={override!r}: expected a number of GiB") from None
    if device.startswith("cuda") and torch.cuda.is_available():
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        return int(torch.cuda.get_device_properties(index).total_memory), f"the memory of {device}"
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "this machine's memory"
    except (ValueError, OSError):
        return 64 * 2**30, "an assumed 64 GiB"


def check_memory(source: Any, res: int, batch: int, device: str, *, training: bool, what: str) -> None:
    """Refuse, before any work starts, a resolution at which a config (or a space's largest network) would not
    fit in memory here."""
    weights = parameter_bytes(source, training=training)
    need = weights + activation_bytes(source, res, batch, training=training)
    limit, origin = memory_limit_bytes(device)
    if need > limit:
        doing = f"{'training' if training else 'timing'} at batch {batch}"
        network = "the network" if isinstance(source, FATConfig) else f"the largest network of space {source.name!r}"
        raise ProxyError(f"{what} {res}: {network} needs about {need / 2**30:,.1f} GiB for {doing} at {res} px "
                         f"({weights / 2**30:,.1f} GiB of it for parameters; an estimate); the limit is "
                         f"{limit / 2**30:,.1f} GiB ({origin}); use a smaller network or resolution")


__all__ = ["BYTES_PER_VALUE", "MEMORY_LIMIT_ENV", "activation_bytes", "check_memory", "memory_limit_bytes",
           "parameter_bytes"]
