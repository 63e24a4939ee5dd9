"""Scaling transforms: one config made wider, deeper, sharper, or all three (compound), and the grid of them.

Rounding. Width: every stage keeps its head dimension, so its width is rounded to the nearest
multiple of it (of twice it in stage 0 when it is odd: the first width must stay even), at least one
head. Depth: every stage's block count is rounded, at least 1. Halves round up.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, Sequence

from ..errors import FatnasError
from ..model.config import FATConfig

BASE_RES = 224
DIRECTIONS = ("width", "depth", "resolution", "compound")
DEFAULT_WIDTHS = (0.5, 0.75, 1.0, 1.25, 1.5)
DEFAULT_DEPTHS = (0.5, 1.0, 1.5, 2.0)
DEFAULT_RESOLUTIONS = (160, 192, 224, 256)
DEFAULT_PHIS = (-1.0, 0.0, 1.0, 2.0)
# what the fitted x is, per direction (compound: 2^phi, so alpha * beta^2 * gamma^2 = 2 gives FLOPs ~ x^1)
X_LABELS = {"width": "width multiplier", "depth": "depth multiplier", "resolution": f"resolution / {BASE_RES}",
            "compound": "2^phi"}


class ScalingError(FatnasError):
    """Bad scaling input: a non-positive multiplier or resolution, an empty grid, a budget no scaling meets."""


def round_half_up(x: float) -> int:
    """x rounded to the nearest whole number, halves up (Python's round() takes halves to even)."""
    return math.floor(x + 0.5)


def scale_width(cfg: FATConfig, multiplier: float) -> FATConfig:
    """Every stage's width times `multiplier`, rounded to a multiple of its head dimension (kept)."""
    widths, heads = [], []
    for stage, (width, h) in enumerate(zip(cfg.widths, cfg.heads)):
        head_dim = width // h
        step = 2 * head_dim if stage == 0 and head_dim % 2 else head_dim  # the first width stays even
        new = max(step, round_half_up(width * multiplier / step) * step)
        widths.append(new)
        heads.append(new // head_dim)
    return cfg.replace(widths=tuple(widths), heads=tuple(heads))


def scale_depth(cfg: FATConfig, multiplier: float) -> FATConfig:
    """Every stage's depth times `multiplier`, rounded, at least 1."""
    return cfg.replace(depths=tuple(max(1, round_half_up(d * multiplier)) for d in cfg.depths))


@dataclass(frozen=True)
class Compound:
    """EfficientNet's compound coefficients: depth alpha^phi, width beta^phi, resolution gamma^phi."""

    alpha: float = 1.2
    beta: float = 1.1
    gamma: float = 1.15

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ScalingError(f"--{name} {value!r}: a compound coefficient must be a positive number")

    def multipliers(self, phi: float) -> tuple[float, float, float]:
        """(depth, width, resolution) multipliers at `phi`."""
        return self.alpha ** phi, self.beta ** phi, self.gamma ** phi


def compound_scale(cfg: FATConfig, phi: float, coeffs: Compound = Compound(), *,
                   scale_resolution: bool = True) -> tuple[FATConfig, int]:
    """The config and input resolution at `phi` (resolution stays at 224 unless `scale_resolution`)."""
    depth, width, res = coeffs.multipliers(phi)
    new_res = max(1, round_half_up(BASE_RES * res)) if scale_resolution else BASE_RES
    return scale_depth(scale_width(cfg, width), depth), new_res


# ---------------------------------------------------------------- the grid

def _positive(values: Sequence[float], what: str) -> tuple[float, ...]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ScalingError(f"{what} {v!r}: must be a positive number")
        out.append(float(v))
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class ScalingGrid:
    """The multipliers explored along each direction; an empty tuple skips a direction."""

    widths: tuple[float, ...] = DEFAULT_WIDTHS
    depths: tuple[float, ...] = DEFAULT_DEPTHS
    resolutions: tuple[int, ...] = DEFAULT_RESOLUTIONS
    phis: tuple[float, ...] = DEFAULT_PHIS
    compound: Compound = Compound()

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", _positive(self.widths, "--widths"))
        object.__setattr__(self, "depths", _positive(self.depths, "--depths"))
        for r in self.resolutions:
            if isinstance(r, bool) or not isinstance(r, int) or r < 1:
                raise ScalingError(f"--resolutions {r!r}: a resolution must be a positive whole number of pixels")
        object.__setattr__(self, "resolutions", tuple(sorted(set(self.resolutions))))
        for phi in self.phis:
            if isinstance(phi, bool) or not isinstance(phi, (int, float)) or not math.isfinite(phi):
                raise ScalingError(f"--compound {phi!r}: phi must be a finite number")
            if abs(phi) > 50:
                raise ScalingError(f"--compound {phi!r}: |phi| must be at most 50")
        object.__setattr__(self, "phis", tuple(sorted({float(p) for p in self.phis})))
        if not (self.widths or self.depths or self.resolutions or self.phis):
            raise ScalingError("the scaling grid is empty: give --widths, --depths, --resolutions or --compound values")

    def to_dict(self) -> dict[str, Any]:
        return dict(widths=list(self.widths), depths=list(self.depths), resolutions=list(self.resolutions),
                    phis=list(self.phis), compound=asdict(self.compound))


class Point(NamedTuple):
    """One scaled network: its direction, the multiplier along it (phi for compound) and what it became."""

    direction: str
    multiplier: float
    width_mult: float
    depth_mult: float
    res: int
    config: FATConfig


def grid_points(base: FATConfig, grid: ScalingGrid) -> list[Point]:
    """Every point of the grid, direction by direction, smallest multiplier first."""
    points = [Point("width", m, m, 1.0, BASE_RES, scale_width(base, m)) for m in grid.widths]
    points += [Point("depth", m, 1.0, m, BASE_RES, scale_depth(base, m)) for m in grid.depths]
    points += [Point("resolution", r / BASE_RES, 1.0, 1.0, r, base) for r in grid.resolutions]
    for phi in grid.phis:
        depth, width, _ = grid.compound.multipliers(phi)
        cfg, res = compound_scale(base, phi, grid.compound)
        points.append(Point("compound", phi, width, depth, res, cfg))
    return points


def fit_x(direction: str, multiplier: float) -> float:
    """The x a power law is fitted against: the multiplier, or 2^phi for compound scaling."""
    return 2.0 ** multiplier if direction == "compound" else multiplier


__all__ = ["BASE_RES", "DIRECTIONS", "X_LABELS", "Compound", "Point", "ScalingError", "ScalingGrid", "compound_scale",
           "fit_x", "grid_points", "round_half_up", "scale_depth", "scale_width"]
