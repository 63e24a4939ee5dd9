"""What a proxy can tell apart: architecture choices that build the same network at a small resolution.

Proxy training runs FAT on res x res images, so the four stages see square maps of side
`stage_output_sizes(res, res)` (28 px: 7, 4, 2, 1). On such small maps some choices are inert:

- kernels and ffn_kernels: a depthwise k x k convolution (stride 1 or 2) on a side x side map
  acts as one of min(k, 2 * side - 1), its outer taps reading only zero padding;
- heads (and head_dims): where the window leaves one pooled key (window >= side), the softmax
  over one key is 1 and the attention returns V whatever the head count, so 1 head is trained.

Depths, widths, windows and FFN ratios are always live. `proxy_config` is the canonical network
a proxy trains; `space_liveness` groups a space's choices into classes and counts its distinct
proxy networks exactly; `collapse` and `sampling_space` let a search draw one value per class.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import FatnasError
from ..model.config import NUM_STAGES, FATConfig, attention_keys, effective_kernel, stage_output_sizes
from ..model.space import HEAD_KEYS, PARAM_ORDER, SearchSpace, param_name, snap_heads, stage_value

KERNEL_KEYS = ("kernels", "ffn_kernels")
DEFAULTED_KEYS = ("kernels", "windows", "ffn_ratios", "ffn_kernels")  # keys a space may leave out


class ResolutionError(FatnasError):
    """A proxy resolution that is not a positive integer number of pixels."""


def check_res(res: Any) -> int:
    """`res` as a positive int (text such as '64' too); anything else raises ResolutionError."""
    value = int(res) if isinstance(res, str) and res.strip().isascii() and res.strip().isdigit() else res
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ResolutionError(f"resolution {res!r}: expected a positive integer number of pixels, e.g. 64")
    return value


def stage_sides(res: int) -> tuple[int, ...]:
    """Side of the square map each stage sees at res x res."""
    return tuple(h for h, _ in stage_output_sizes(res, res))


def proxy_stage(kernel: int, ffn_kernel: int, heads: int, window: int, side: int) -> tuple[int, int, int]:
    """(kernel, ffn_kernel, heads) that a stage with these values trains as on a side x side map."""
    one_key = attention_keys(side, side, window) == 1
    return effective_kernel(kernel, side), effective_kernel(ffn_kernel, side), 1 if one_key else heads


def proxy_config(cfg: FATConfig, res: int) -> FATConfig:
    """The canonical network a proxy trains at res x res: kernels cut to their reach, 1 head where one key.

    Configs that differ only in choices inert at res give the same proxy config, and each computes
    the same function as its proxy config (given the centre taps of its kernels).
    """
    sides = stage_sides(check_res(res))
    stages = [proxy_stage(cfg.kernels[s], cfg.ffn_kernels[s], cfg.heads[s], cfg.windows[s], sides[s])
              for s in range(NUM_STAGES)]
    kernels, ffn_kernels, heads = (tuple(values) for values in zip(*stages))
    return cfg.replace(kernels=kernels, ffn_kernels=ffn_kernels, heads=heads)


@dataclass(frozen=True)
class ValueClass:
    """Choices of one stage and key that build the same proxy network, and the value it trains with."""

    values: tuple[Any, ...]
    trained_as: Any  # the FATConfig value the proxy trains: a kernel size; for heads keys, a head count

    @property
    def kept(self) -> Any:
        """The member a collapsed space keeps: the smallest, the cheapest at the space's resolution."""
        return min(self.values)


@dataclass(frozen=True)
class DimensionLiveness:
    """One stage's choices of one space key, grouped into classes the proxy cannot tell apart."""

    stage: int
    key: str
    classes: tuple[ValueClass, ...]
    one_key_windows: tuple[int, ...] = ()  # heads keys: the stage's windows that leave one key

    @property
    def live(self) -> tuple[Any, ...]:
        """One representative (the smallest member) per class."""
        return tuple(c.kept for c in self.classes)

    @property
    def inert(self) -> dict[Any, Any]:
        """Each other member of a class -> the value its class trains with (heads inert per window: one_key_windows)."""
        return {v: c.trained_as for c in self.classes for v in c.values if len(c.values) > 1 and v != c.kept}

    @property
    def status(self) -> str:
        """fixed (one choice), live, partly inert (some choices collapse or depend on the window) or inert."""
        count = sum(len(c.values) for c in self.classes)
        if count == 1:
            return "fixed"
        if len(self.classes) == 1:
            return "inert"
        return "partly inert" if len(self.classes) < count or self.one_key_windows else "live"


@dataclass(frozen=True)
class Liveness:
    """What a proxy at `res` px can tell apart in a space: per-stage classes and distinct network counts."""

    space: str
    res: int
    stage_maps: tuple[int, ...]  # side of each stage's square map
    dimensions: tuple[DimensionLiveness, ...]  # every key of the space at every stage
    points: int  # the space's size
    distinct: int  # distinct proxy networks among its points

    @property
    def fraction(self) -> float:
        return self.distinct / self.points

    def dimension(self, stage: int, key: str) -> DimensionLiveness:
        return next(d for d in self.dimensions if d.stage == stage and d.key == key)

    def inert_dimensions(self) -> list[DimensionLiveness]:
        """The (stage, key) pairs whose choices collapse, fully or partly."""
        return [d for d in self.dimensions if d.status in ("inert", "partly inert")]

    def to_dict(self) -> dict[str, Any]:
        """The run.yaml view: proxy res, stage maps, inert dimensions with their classes, counts."""
        inert = []
        for d in self.inert_dimensions():
            entry = dict(stage=d.stage, dimension=d.key, status=d.status,
                         classes=[dict(values=list(c.values), trained_as=c.trained_as)
                                  for c in d.classes if len(c.values) > 1])
            if d.one_key_windows:
                entry["one_key_windows"] = list(d.one_key_windows)
            inert.append(entry)
        return dict(proxy_res=self.res, stage_maps=list(self.stage_maps), inert=inert, points=self.points,
                    distinct=self.distinct, distinct_fraction=round(self.fraction, 6))

    def summary(self) -> str:
        """One line: stage maps, choices trained as one, where heads are inert, and the distinct fraction."""
        merged = [f"{param_name(d.key, d.stage)} {_class_text(d.key, c)}" for d in self.dimensions
                  if d.key in KERNEL_KEYS for c in d.classes if len(c.values) > 1]
        heads = [_heads_text(d) for d in self.dimensions if d.key in HEAD_KEYS and d.status != "fixed"
                 and d.one_key_windows]
        parts = [f"proxy at {self.res} px (stage maps {'/'.join(map(str, self.stage_maps))})"]
        if merged:
            parts.append(f"inert, trained as one: {', '.join(merged)}")
        if heads:
            parts.append(f"heads inert where the window leaves one key ({'; '.join(heads)})")
        if not merged and not heads:
            parts.append("every choice is live")
        text = f"{parts[0]}: {'; '.join(parts[1:])}"
        return f"{text}; {percent(self.fraction)} of the space's networks are distinct at this resolution"


def space_liveness(space: SearchSpace, res: int) -> Liveness:
    """Classes of equivalent choices per stage and key at res x res, and the exact count of distinct networks.

    A stage's proxy values depend only on its own choices and map, so the distinct networks are
    the product over stages of the distinct proxy versions of each stage.
    """
    sides = stage_sides(check_res(res))
    dims = tuple(_dimension(space, key, s, sides[s]) for key in PARAM_ORDER if key in space.choices
                 for s in range(NUM_STAGES))
    distinct = math.prod(_stage_networks(space, s, sides[s]) for s in range(NUM_STAGES))
    return Liveness(space.name, res, sides, dims, space.size(), distinct)


def _dimension(space: SearchSpace, key: str, stage: int, side: int) -> DimensionLiveness:
    options = space.choices[key][stage]
    if key in KERNEL_KEYS:
        return DimensionLiveness(stage, key, kernel_classes(options, side))
    if key in HEAD_KEYS:
        windows = space.choices["windows"][stage] if "windows" in space.choices else (_default("windows", stage),)
        one_key = tuple(w for w in windows if attention_keys(side, side, w) == 1)
        classes = ((ValueClass(tuple(options), 1),) if len(one_key) == len(windows)
                   else tuple(ValueClass((v,), v) for v in options))
        return DimensionLiveness(stage, key, classes, one_key)
    return DimensionLiveness(stage, key, tuple(ValueClass((v,), v) for v in options))


def kernel_classes(options: Sequence[int], side: int) -> tuple[ValueClass, ...]:
    """Kernel choices grouped by the kernel they act as on a side x side map (in order of first appearance)."""
    groups: dict[int, list[int]] = {}
    for k in options:
        groups.setdefault(effective_kernel(k, side), []).append(k)
    return tuple(ValueClass(tuple(members), trained) for trained, members in groups.items())


_snap = functools.lru_cache(maxsize=None)(snap_heads)


def _default(key: str, stage: int) -> Any:
    return stage_value({}, key, stage)


def _stage_networks(space: SearchSpace, stage: int, side: int) -> int:
    """Distinct proxy versions of one stage over all combinations of its choices (config semantics)."""
    keys = [k for k in PARAM_ORDER if k in space.choices]
    head_key = "head_dims" if "head_dims" in space.choices else "heads"
    defaults = {k: _default(k, stage) for k in DEFAULTED_KEYS}
    seen = set()
    for combo in itertools.product(*(space.choices[k][stage] for k in keys)):
        v = {**defaults, **dict(zip(keys, combo))}
        heads = _snap(head_key, v["widths"], v[head_key])
        trained = proxy_stage(v["kernels"], v["ffn_kernels"], heads, v["windows"], side)
        seen.add((v["depths"], v["widths"], v["windows"], v["ffn_ratios"], *trained))
    return len(seen)


def collapse(space: SearchSpace, res: int) -> SearchSpace:
    """The space with each class of kernels or ffn_kernels equivalent at res cut to its smallest member.

    The kept value is a real choice of the space (the cheapest at the space's own resolution, where
    cost and latency are measured), not the proxy's clamped kernel.
    """
    sides = stage_sides(check_res(res))
    choices = dict(space.choices)
    for key in KERNEL_KEYS:
        if key in choices:
            choices[key] = tuple(_keep_smallest(options, side) for options, side in zip(choices[key], sides))
    return dataclasses.replace(space, choices=choices)


def _keep_smallest(options: tuple[int, ...], side: int) -> tuple[int, ...]:
    kept = {c.kept for c in kernel_classes(options, side)}
    return tuple(k for k in options if k in kept)


def sampling_space(space: SearchSpace, res: int) -> SearchSpace:
    """What a search draws from: `collapse(space, res)`, with heads drawn only where the window leaves several keys."""
    return dataclasses.replace(collapse(space, res), proxy_res=check_res(res))


def liveness_line(space: SearchSpace, res: int, collapse_inert: bool) -> str:
    """What a proxy at `res` px can tell apart in `space`, and whether trials draw one value per class."""
    lv = space_liveness(space, res)
    if not lv.inert_dimensions():
        return lv.summary()
    sampling = "trials draw one value per class" if collapse_inert else "trials draw every value (--keep-inert)"
    return f"{lv.summary()}; {sampling}"


def table_rows(lv: Liveness) -> list[dict[str, str]]:
    """One row per space key, one column per stage: live values, `{a,b}->k` classes, `[1 key: wN]` windows."""
    rows = []
    for key in dict.fromkeys(d.key for d in lv.dimensions):
        row = {"choice": key}
        for s, side in enumerate(lv.stage_maps):
            row[f"stage {s} ({side}x{side})"] = _cell(lv.dimension(s, key))
        rows.append(row)
    return rows


def _cell(d: DimensionLiveness) -> str:
    parts = [_class_text(d.key, c) for c in d.classes]
    if d.status == "partly inert" and d.one_key_windows:
        parts.append(f"[1 key: w{'/'.join(map(str, d.one_key_windows))}]")
    return " ".join(parts)


def _class_text(key: str, c: ValueClass) -> str:
    if len(c.values) == 1:
        return _number(c.values[0])
    unit = " head" if key in HEAD_KEYS else ""
    return f"{{{','.join(map(_number, c.values))}}}->{_number(c.trained_as)}{unit}"


def _heads_text(d: DimensionLiveness) -> str:
    if d.status == "inert":
        return f"stage {d.stage}: every window"
    windows = ", ".join(map(str, d.one_key_windows))
    return f"stage {d.stage}: window{'s' if len(d.one_key_windows) > 1 else ''} {windows}"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def percent(fraction: float) -> str:
    """A fraction as a percentage with at least two significant digits: 7.1%, 0.34%, 100%."""
    return f"{100 * fraction:.1f}%" if fraction >= 0.01 else f"{100 * fraction:.2g}%"


__all__ = ["DimensionLiveness", "Liveness", "ResolutionError", "ValueClass", "check_res", "collapse",
           "kernel_classes", "percent", "proxy_config", "proxy_stage", "sampling_space", "space_liveness",
           "stage_sides", "table_rows"]
