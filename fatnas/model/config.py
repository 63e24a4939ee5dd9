"""FATConfig: the plain description of one FAT network, its validation and its plan.

A config holds per-stage hyper-parameters; `plan(cfg)` walks it into the list of blocks
(input/output channels, stride, drop-path rate) that both the model builder and the
analytic cost model consume, so the two cannot disagree.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import yaml

from ..documents import read_yaml
from ..errors import FatnasError, shown

NUM_STAGES = 4
STAGE_FIELDS = ("widths", "depths", "heads", "kernels", "windows", "ffn_ratios", "ffn_kernels")
SCALAR_FIELDS = ("in_chans", "num_classes", "drop_path_rate")


class ConfigError(FatnasError):
    """An invalid FAT config; the message names the field, stage, value and rule."""


def _per_stage(name: str, value: Any) -> tuple:
    """Expand one value to all four stages, or check a list has exactly four."""
    if isinstance(value, (list, tuple)):
        if len(value) != NUM_STAGES:
            raise ConfigError(
                f"{name}: expected exactly {NUM_STAGES} stages (or one value for all), "
                f"got {len(value)}: {list(value)}"
            )
        return tuple(value)
    return (value,) * NUM_STAGES


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class FATConfig:
    """Per-stage FAT hyper-parameters; a scalar for a stage field means all four stages.

    The stem width equals the first stage width.
    """

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    kernels: tuple[int, ...] = (3, 5, 7, 9)
    windows: tuple[int, ...] = (8, 4, 2, 1)
    ffn_ratios: tuple[float, ...] = (4.0, 4.0, 4.0, 4.0)
    ffn_kernels: tuple[int, ...] = (5, 5, 5, 5)
    in_chans: int = 3
    num_classes: int = 1000
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in STAGE_FIELDS:
            object.__setattr__(self, name, _per_stage(name, getattr(self, name)))
        _validate(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FATConfig":
        """Build a config from a plain dict; unknown keys are an error."""
        if not isinstance(data, dict):
            raise ConfigError(f"config: expected a mapping of fields, got {type(data).__name__}")
        known = set(STAGE_FIELDS) | set(SCALAR_FIELDS)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {unknown}; accepted keys: {', '.join(STAGE_FIELDS + SCALAR_FIELDS)}"
            )
        missing = [k for k in ("widths", "depths", "heads") if k not in data]
        if missing:
            raise ConfigError(f"config: missing required key(s) {missing}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of lists and scalars (YAML and JSON friendly)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_yaml(cls, path: str | Path) -> "FATConfig":
        """Load a config from a YAML file (a top-level `config:` key is also accepted)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        data = read_yaml(path, f"config file {path}", ConfigError)
        if isinstance(data, dict) and "config" in data:
            data = data["config"]
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def replace(self, **changes: Any) -> "FATConfig":
        """A copy with some fields changed; unknown field names are an error."""
        known = set(STAGE_FIELDS) | set(SCALAR_FIELDS)
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {unknown}; accepted keys: {', '.join(STAGE_FIELDS + SCALAR_FIELDS)}"
            )
        return dataclasses.replace(self, **changes)

    @property
    def num_blocks(self) -> int:
        return sum(self.depths)


def _fail(field: str, stage: int | None, value: Any, rule: str) -> None:
    where = f"{field}[{stage}]" if stage is not None else field
    raise ConfigError(f"{where} = {shown(value)}: {rule}")


# the range of every per-stage value, shared with search spaces (model.space): (integer?, lowest, highest)
VALUE_RANGES = {"depths": (True, 1, 64), "widths": (True, 1, 16384), "heads": (True, 1, 4096),
                "kernels": (True, 1, 63), "windows": (True, 1, 1024), "ffn_ratios": (False, 0, 64),
                "ffn_kernels": (True, 1, 63)}


def _validate(cfg: FATConfig) -> None:
    """Check every rule; the first violation raises ConfigError."""
    for i, d in enumerate(cfg.depths):
        if not _is_int(d) or not 1 <= d <= VALUE_RANGES["depths"][2]:
            _fail("depths", i, d, f"depth must be an integer from 1 to {VALUE_RANGES['depths'][2]}")
    for i, c in enumerate(cfg.widths):
        if not _is_int(c) or not 1 <= c <= VALUE_RANGES["widths"][2]:
            _fail("widths", i, c, f"width must be an integer from 1 to {VALUE_RANGES['widths'][2]}")
    if cfg.widths[0] % 2:
        _fail("widths", 0, cfg.widths[0], "the first width must be even (the stem's first conv has width/2)")
    for i, (c, h) in enumerate(zip(cfg.widths, cfg.heads)):
        if not _is_int(h) or not 1 <= h <= VALUE_RANGES["heads"][2]:
            _fail("heads", i, h, f"heads must be an integer from 1 to {VALUE_RANGES['heads'][2]}")
        if c % h:
            _fail("heads", i, h, f"width {c} must be divisible by heads {h}")
    for name in ("kernels", "ffn_kernels"):
        for i, k in enumerate(getattr(cfg, name)):
            if not _is_int(k) or not 1 <= k <= VALUE_RANGES[name][2] or k % 2 == 0:
                _fail(name, i, k, f"kernel must be an odd integer from 1 to {VALUE_RANGES[name][2]}")
    for i, w in enumerate(cfg.windows):
        if not _is_int(w) or not 1 <= w <= VALUE_RANGES["windows"][2] or (w & (w - 1)):
            _fail("windows", i, w, f"global downsampling rate must be a power of two from 1 to "
                  f"{VALUE_RANGES['windows'][2]}")
    for i, r in enumerate(cfg.ffn_ratios):
        if not _is_number(r) or not 0 < r <= VALUE_RANGES["ffn_ratios"][2]:
            _fail("ffn_ratios", i, r, f"FFN ratio must be a number > 0 and at most {VALUE_RANGES['ffn_ratios'][2]}")
        if int(cfg.widths[i] * r) < 1:
            _fail("ffn_ratios", i, r, f"FFN hidden width int({cfg.widths[i]} * {r}) must be >= 1")
    if not _is_int(cfg.in_chans) or cfg.in_chans < 1:
        _fail("in_chans", None, cfg.in_chans, "must be an integer >= 1")
    if not _is_int(cfg.num_classes) or cfg.num_classes < 1:
        _fail("num_classes", None, cfg.num_classes, "must be an integer >= 1")
    if not _is_number(cfg.drop_path_rate) or not 0 <= cfg.drop_path_rate < 1:
        _fail("drop_path_rate", None, cfg.drop_path_rate, "must be a number in [0, 1)")


class BlockPlan(NamedTuple):
    """One FAT block as the builder and the cost model see it."""

    stage: int
    index: int  # position within the stage
    c_in: int
    c_out: int
    stride: int
    kernel: int
    heads: int
    window: int
    ffn_hidden: int
    ffn_kernel: int
    drop_path: float


def drop_path_rates(total: int, rate: float) -> list[float]:
    """Rates rising linearly from 0 to `rate` over `total` blocks."""
    if total == 1:
        return [0.0]
    return [rate * i / (total - 1) for i in range(total)]


def plan(cfg: FATConfig) -> list[BlockPlan]:
    """Walk the config into its blocks, in order; the last block of stages 0-2 downsamples."""
    rates = drop_path_rates(cfg.num_blocks, cfg.drop_path_rate)
    blocks: list[BlockPlan] = []
    for s in range(NUM_STAGES):
        c = cfg.widths[s]
        for i in range(cfg.depths[s]):
            last = i == cfg.depths[s] - 1
            downsample = last and s < NUM_STAGES - 1
            blocks.append(BlockPlan(
                stage=s,
                index=i,
                c_in=c,
                c_out=cfg.widths[s + 1] if downsample else c,
                stride=2 if downsample else 1,
                kernel=cfg.kernels[s],
                heads=cfg.heads[s],
                window=cfg.windows[s],
                ffn_hidden=int(c * cfg.ffn_ratios[s]),
                ffn_kernel=cfg.ffn_kernels[s],
                drop_path=rates[len(blocks)],
            ))
    return blocks


def stage_output_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Feature size (H, W) seen by each stage for an input of height x width."""
    h, w = _ceil_half(_ceil_half(height)), _ceil_half(_ceil_half(width))
    sizes = []
    for _ in range(NUM_STAGES):
        sizes.append((h, w))
        h, w = _ceil_half(h), _ceil_half(w)
    return sizes


def _ceil_half(n: int) -> int:
    return -(-n // 2)


def effective_kernel(kernel: int, side: int) -> int:
    """The taps of a depthwise k x k conv (padding k // 2, stride 1 or 2) that can reach a side x side map.

    Taps at offsets |d| >= side only ever read zero padding, so k acts as min(k, 2 * side - 1).
    """
    return min(kernel, 2 * side - 1)


def attention_keys(height: int, width: int, window: int) -> int:
    """Pooled key positions of FASA's global branch on a height x width map: ceil(H/w) * ceil(W/w)."""
    return -(-height // window) * -(-width // window)


def describe(cfg: FATConfig, fields: Iterable[str] = STAGE_FIELDS) -> str:
    """Short one-line summary, e.g. `w=32-80-160-256 d=2-2-6-2 ...`."""
    abbrev = {"widths": "w", "depths": "d", "heads": "h", "kernels": "k", "windows": "g",
              "ffn_ratios": "r", "ffn_kernels": "m"}
    return " ".join(f"{abbrev[f]}={'-'.join(f'{v:g}' for v in getattr(cfg, f))}" for f in fields)
