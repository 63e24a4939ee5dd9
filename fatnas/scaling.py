"""Scaling explorer: how FAT's cost and proxy accuracy grow when one network is made wider, deeper or sharper.

From a base config, `grid_points` scales width (a channel multiplier), depth (a per-stage block
multiplier), input resolution, and all three at once the EfficientNet way (depth alpha^phi, width
beta^phi, resolution gamma^phi). `explore` prices every point analytically (params; FLOPs at the
point's own resolution), optionally times it, proxy-trains a few points per direction and writes
`runs/<id>/scaling.csv`; `cost_fits` and `accuracy_fits` turn that table into power laws and
accuracy-per-doubling slopes, and `write_report` draws them as `runs/<id>/scaling.html`.
`fit_budget` finds the largest compound scaling (depth and width, resolution fixed) within a budget.

Rounding. Width: every stage keeps its head dimension, so its width is rounded to the nearest
multiple of it (of twice it in stage 0 when it is odd: the first width must stay even), at least one
head. Depth: every stage's block count is rounded, at least 1. Halves round up.

Units, stated once: FLOPs are fvcore totals (1 multiply-add = 1 FLOP) at each point's resolution;
accuracies are proxy accuracies on a small data set, never ImageNet accuracy; the proxy trains at
`proxy.res * res / 224` px, so resolution scaling shows in the proxy too. A budget given to a grid
run limits each point's own FLOPs (at its resolution), params and latency.
"""
from __future__ import annotations

import html
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd

from .config import FATConfig, describe
from .cost import Budget, Cost, analytic_cost, flop_convention, format_flops, measure_latency
from .data import DataSplit
from .errors import FatnasError
from .proxy import ProxySettings, configure_threads, train_proxy
from .store import Run

BASE_RES = 224
DIRECTIONS = ("width", "depth", "resolution", "compound")
DEFAULT_WIDTHS = (0.5, 0.75, 1.0, 1.25, 1.5)
DEFAULT_DEPTHS = (0.5, 1.0, 1.5, 2.0)
DEFAULT_RESOLUTIONS = (160, 192, 224, 256)
DEFAULT_PHIS = (-1.0, 0.0, 1.0, 2.0)
DEFAULT_TRAIN = 2  # proxy-trained points per direction
COST_METRICS = ("params", "flops", "latency_ms")
PLOT_IDS = ("cost-params", "cost-flops", "cost-latency", "acc-flops")
# what the fitted x is, per direction (compound: 2^phi, so alpha * beta^2 * gamma^2 = 2 gives FLOPs ~ x^1)
X_LABELS = {"width": "width multiplier", "depth": "depth multiplier", "resolution": f"resolution / {BASE_RES}",
            "compound": "2^phi"}
CSV_COLUMNS = ("direction", "multiplier", "width_mult", "depth_mult", "res", "proxy_res", "config", "params",
               "flops", "latency_ms", "accuracy", "train_seconds", "over_budget")


class ScalingError(FatnasError):
    """Bad scaling input: a non-positive multiplier or resolution, an empty grid, a budget no scaling meets."""


# ---------------------------------------------------------------- scaling one config

def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def scale_width(cfg: FATConfig, multiplier: float) -> FATConfig:
    """Every stage's width times `multiplier`, rounded to a multiple of its head dimension (kept)."""
    widths, heads = [], []
    for stage, (width, h) in enumerate(zip(cfg.widths, cfg.heads)):
        head_dim = width // h
        step = 2 * head_dim if stage == 0 and head_dim % 2 else head_dim  # the first width stays even
        new = max(step, _round_half_up(width * multiplier / step) * step)
        widths.append(new)
        heads.append(new // head_dim)
    return cfg.replace(widths=tuple(widths), heads=tuple(heads))


def scale_depth(cfg: FATConfig, multiplier: float) -> FATConfig:
    """Every stage's depth times `multiplier`, rounded, at least 1."""
    return cfg.replace(depths=tuple(max(1, _round_half_up(d * multiplier)) for d in cfg.depths))


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
    new_res = max(1, _round_half_up(BASE_RES * res)) if scale_resolution else BASE_RES
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


# ---------------------------------------------------------------- measuring

@dataclass(frozen=True)
class ScalingSettings:
    """Everything that defines a scaling run besides its base, recorded in run.yaml."""

    grid: ScalingGrid = ScalingGrid()
    budget: Budget = Budget()
    proxy: ProxySettings = ProxySettings()
    train: int = DEFAULT_TRAIN  # points proxy-trained per direction (spread along it); 0 = none
    latency: bool = False
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    seed: int = 0
    threads: int = 1
    latency_warmup: int = 2
    latency_repeats: int = 7

    def __post_init__(self) -> None:
        if isinstance(self.train, bool) or not isinstance(self.train, int) or self.train < 0:
            raise ScalingError(f"--train {self.train!r}: must be a whole number >= 0 (0 trains nothing)")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ScalingError(f"--threads {self.threads!r}: must be a positive whole number")

    @property
    def device(self) -> str:
        return self.proxy.device

    def proxy_res(self, res: int) -> int:
        """The proxy's training resolution for a network priced at `res` (scaled relative to 224)."""
        return max(1, _round_half_up(self.proxy.res * res / BASE_RES))

    def to_meta(self) -> dict[str, Any]:
        return dict(grid=self.grid.to_dict(), budget=self.budget.to_dict(), budget_text=self.budget.describe(),
                    proxy=self.proxy.to_dict(), train_per_direction=self.train, dataset=self.dataset,
                    data_dir=self.data_dir, seeds=dict(proxy=self.proxy.seed, data_split=self.seed),
                    latency=dict(measured=self.latency, device=self.device, warmup=self.latency_warmup,
                                 repeats=self.latency_repeats, batch_size=1, threads=self.threads),
                    proxy_resolution_rule=f"round({self.proxy.res} * res / {BASE_RES})")


def price_points(points: Sequence[Point], settings: ScalingSettings) -> pd.DataFrame:
    """One row per point with its analytic params and FLOPs (at its resolution); nothing measured yet."""
    rows = []
    for p in points:
        cost = analytic_cost(p.config, p.res)
        rows.append(dict(direction=p.direction, multiplier=p.multiplier, width_mult=p.width_mult,
                         depth_mult=p.depth_mult, res=p.res, proxy_res=settings.proxy_res(p.res),
                         config=json.dumps(p.config.to_dict()), params=cost.params, flops=cost.flops,
                         latency_ms=math.nan, accuracy=math.nan, train_seconds=math.nan,
                         over_budget="; ".join(_budget_at(settings.budget, p.res).violations(cost))))
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def _budget_at(budget: Budget, res: int) -> Budget:
    """The budget as it applies at `res` (a FLOPs limit is a limit on the point's own FLOPs)."""
    return Budget(budget.max_flops, budget.max_params, budget.max_latency_ms, res)


def training_rows(table: pd.DataFrame, per_direction: int) -> list[int]:
    """Index labels of the rows to proxy-train: `per_direction` points spread evenly along each direction,
    among the points within budget."""
    chosen: list[int] = []
    if per_direction <= 0:
        return chosen
    for _, rows in table.groupby("direction", sort=False):
        rows = rows[rows["over_budget"].fillna("") == ""].sort_values("multiplier")
        if rows.empty:
            continue
        picks = np.unique(np.round(np.linspace(0, len(rows) - 1, min(per_direction, len(rows)))).astype(int))
        chosen += [rows.index[i] for i in picks]
    return chosen


def explore(run: Run, base: FATConfig, settings: ScalingSettings, *, data: DataSplit | None = None,
            log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Price, time (with settings.latency) and proxy-train the grid around `base`; writes scaling.csv and the report.

    `run` must already hold run.yaml (`record_scaling_run`). scaling.csv is rewritten after every
    measured point, so a killed run keeps what it measured.
    Points with the same config and resolution (the base appears in every direction) are measured once.
    """
    log = log or (lambda _: None)
    configure_threads(settings.threads)
    table = price_points(grid_points(base, settings.grid), settings)
    run.write_table("scaling.csv", table)
    if settings.latency:
        measured: dict[tuple[str, int], float] = {}
        for idx, row in table.iterrows():
            key = (row["config"], int(row["res"]))
            if key not in measured:
                cfg = FATConfig.from_dict(json.loads(row["config"]))
                measured[key] = _latency_ms(cfg, int(row["res"]), settings)
                log(f"timed {_point_name(row)}: {measured[key]:.2f} ms")
            table.at[idx, "latency_ms"] = measured[key]
            violations = _budget_at(settings.budget, int(row["res"])).violations(_row_cost(row), measured[key])
            table.at[idx, "over_budget"] = "; ".join(violations)
        run.write_table("scaling.csv", table)
    to_train = training_rows(table, settings.train)
    if to_train and data is None:
        raise ScalingError("explore: training points needs a data set (data=load_dataset(...))")
    trained: dict[tuple[str, int], tuple[float, float]] = {}
    for idx in to_train:
        row = table.loc[idx]
        key = (row["config"], int(row["proxy_res"]))
        if key not in trained:
            cfg = FATConfig.from_dict(json.loads(row["config"]))
            start = time.perf_counter()
            result = train_proxy(cfg, data, settings.proxy.replace(res=int(row["proxy_res"])))
            trained[key] = (result.accuracy, time.perf_counter() - start)
            log(f"trained {_point_name(row)} at {int(row['proxy_res'])} px: proxy accuracy {result.accuracy:.4f} "
                f"({trained[key][1]:.1f} s)")
        table.at[idx, "accuracy"], table.at[idx, "train_seconds"] = trained[key]
        run.write_table("scaling.csv", table)
    write_report(run)
    return table


def _latency_ms(cfg: FATConfig, res: int, settings: ScalingSettings) -> float:
    from .model import FAT

    return measure_latency(FAT(cfg), res=res, in_chans=cfg.in_chans, device=settings.device, threads=settings.threads,
                           warmup=settings.latency_warmup, repeats=settings.latency_repeats).median_ms


def _row_cost(row: pd.Series) -> Cost:
    return Cost(int(row["params"]), int(row["flops"]), {}, int(row["res"]), int(row["res"]))


def _point_name(row: pd.Series) -> str:
    if row["direction"] == "compound":
        return f"compound phi={row['multiplier']:g} ({int(row['res'])} px)"
    if row["direction"] == "resolution":
        return f"resolution {int(row['res'])} px"
    return f"{row['direction']} x{row['multiplier']:g}"


def record_scaling_run(run: Run, base_name: str, base: FATConfig, settings: ScalingSettings,
                       argv: list[str] | None = None) -> None:
    """Write run.yaml: command, base, settings, seeds, versions and hardware."""
    run.record("scaling", dict(base=base_name, base_config=base.to_dict(), base_resolution=BASE_RES,
                                **settings.to_meta()), dataset=settings.dataset,
               flop_convention="fvcore total at each point's resolution (column res), 1 multiply-add = 1 FLOP",
               argv=argv)


# ---------------------------------------------------------------- fits

class PowerLaw(NamedTuple):
    """y = coefficient * x ** exponent, fitted by least squares in log-log space."""

    coefficient: float
    exponent: float
    r2: float  # in log space; 1 when the fit is exact (a constant, say)
    max_rel_error: float  # largest |fitted - actual| / actual over the points fitted

    def __call__(self, x: Any) -> Any:
        return self.coefficient * np.asarray(x, dtype=float) ** self.exponent


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> PowerLaw:
    """Least-squares line through (log x, log y); needs two distinct positive x and positive y."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or len(np.unique(x)) < 2 or (x <= 0).any() or (y <= 0).any():
        raise ScalingError("a power law needs at least two distinct positive x and positive y")
    a = np.column_stack([np.ones(len(x)), np.log(x)])
    (log_c, exponent), *_ = np.linalg.lstsq(a, np.log(y), rcond=None)
    r2 = _r2(np.log(y), a @ np.array([log_c, exponent]))
    exponent = 0.0 if abs(exponent) < 1e-9 else float(exponent)  # a constant (params against resolution)
    law = PowerLaw(float(math.exp(log_c)), exponent, r2, 0.0)
    return law._replace(max_rel_error=float(np.max(np.abs(law(x) - y) / y)))


def _r2(actual: np.ndarray, fitted: np.ndarray) -> float:
    ss_res = float(np.sum((actual - fitted) ** 2))
    ss_tot = float(np.sum((actual - actual.mean()) ** 2))
    if ss_tot <= 1e-12 * max(1.0, float(np.sum(actual ** 2))):
        return 1.0 if ss_res <= 1e-12 * max(1.0, float(np.sum(actual ** 2))) else math.nan
    return 1.0 - ss_res / ss_tot


def cost_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Power laws of params, FLOPs and (where measured) latency against each direction's multiplier."""
    rows = []
    for direction, points in table.groupby("direction", sort=False):
        x = [fit_x(direction, m) for m in points["multiplier"]]
        for metric in COST_METRICS:
            y = points[metric].astype(float)
            ok = y.notna().to_numpy()
            if ok.sum() < 2 or len(set(np.asarray(x)[ok])) < 2:
                continue
            law = fit_power_law(np.asarray(x)[ok], y[ok])
            rows.append(dict(direction=direction, metric=metric, x=X_LABELS[direction], exponent=law.exponent,
                             coefficient=law.coefficient, r2=law.r2, max_rel_error=law.max_rel_error,
                             points=int(ok.sum())))
    return pd.DataFrame(rows, columns=["direction", "metric", "x", "exponent", "coefficient", "r2", "max_rel_error",
                                       "points"])


def accuracy_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Per direction with >= 2 trained points: proxy accuracy = intercept + slope * log2(FLOPs)."""
    rows = []
    for direction, points in table.groupby("direction", sort=False):
        done = points.dropna(subset=["accuracy"])
        log_flops = np.log2(done["flops"].astype(float).to_numpy())
        if len(done) < 2 or len(np.unique(log_flops)) < 2:
            continue
        acc = done["accuracy"].astype(float).to_numpy()
        a = np.column_stack([np.ones(len(acc)), log_flops])
        (intercept, slope), *_ = np.linalg.lstsq(a, acc, rcond=None)
        slope = 0.0 if abs(slope) < 1e-12 else float(slope)  # equal accuracies: no gain, not -0.0000
        rows.append(dict(direction=direction, slope_per_doubling=slope, intercept=float(intercept),
                         r2=_r2(acc, a @ np.array([intercept, slope])), points=len(done),
                         min_flops=int(done["flops"].min()), max_flops=int(done["flops"].max())))
    return pd.DataFrame(rows, columns=["direction", "slope_per_doubling", "intercept", "r2", "points", "min_flops",
                                       "max_flops"])


def best_direction(acc_fits: pd.DataFrame, dataset: str) -> str:
    """One sentence: which direction buys the most proxy accuracy per doubling of FLOPs."""
    if acc_fits.empty:
        return ("No direction has two proxy-trained points yet, so none can be compared "
                "(train more with --train N, N >= 2).")
    best = acc_fits.loc[acc_fits["slope_per_doubling"].idxmax()]
    others = ", ".join(f"{r['direction']} {r['slope_per_doubling']:+.4f}" for _, r in acc_fits.iterrows()
                       if r["direction"] != best["direction"])
    task = f"On the proxy task ({dataset}; proxy accuracy, not ImageNet accuracy)"
    slope = f"{best['slope_per_doubling']:+.4f} accuracy per doubling of FLOPs"
    tail = f" (others: {others})." if others else ", the only direction with two trained points."
    if best["slope_per_doubling"] <= 0:  # e.g. a proxy too short for larger networks to pay off
        return (f"{task} no direction gains accuracy with FLOPs at these proxy settings; "
                f"{best['direction']} scaling loses the least: {slope}" + tail)
    return f"{task} {best['direction']} scaling buys the most accuracy per FLOP: {slope}" + tail


# ---------------------------------------------------------------- the largest scaling within a budget

class BudgetFit(NamedTuple):
    """The largest compound (depth and width) scaling of a base that fits a budget, at 224 px."""

    phi: float
    width_mult: float
    depth_mult: float
    config: FATConfig
    cost: Cost
    budget: Budget


def fit_budget(base: FATConfig, budget: Budget, coeffs: Compound = Compound(), *, step: float = 0.001,
               max_phi: float = 50.0) -> BudgetFit:
    """Bisect phi on a grid of `step` for the largest depth alpha^phi, width beta^phi whose analytic cost fits.

    The resolution stays at 224 px (budgets are priced there). Rounded widths and depths never shrink
    as phi grows, so the cost is monotone in phi and bisection finds the largest fitting grid point.
    """
    if budget.max_latency_ms is not None:
        raise ScalingError("--to takes FLOPs and params budgets (priced analytically), not a latency budget")
    if budget.max_flops is None and budget.max_params is None:
        raise ScalingError("--to needs a FLOPs or params budget, e.g. --to 2GFLOPs")
    if budget.res != BASE_RES:
        raise ScalingError(f"fit_budget prices at {BASE_RES} px; got a budget at {budget.res} px")

    def fits(k: int) -> bool:
        cfg, _ = compound_scale(base, k * step, coeffs, scale_resolution=False)
        return budget.fits(analytic_cost(cfg, BASE_RES))

    limit, quarter = int(round(max_phi / step)), max(1, int(round(0.25 / step)))
    if fits(0):  # grow until something does not fit: lo fits, hi does not
        lo, hi = 0, quarter
        while fits(hi):
            if hi >= limit:
                raise ScalingError(f"{budget.describe()} is beyond phi = {max_phi:g}; give a smaller budget")
            lo, hi = hi, min(limit, 2 * hi)
    else:  # shrink until something fits
        lo, hi = -quarter, 0
        while not fits(lo):
            if lo <= -limit:
                smallest, _ = compound_scale(base, -max_phi, coeffs, scale_resolution=False)
                cost = analytic_cost(smallest, BASE_RES)
                raise ScalingError(f"no compound scaling of the base fits {budget.describe()}: even the smallest "
                                   f"({describe(smallest, ('widths', 'depths'))}) costs {format_flops(cost.flops)}, "
                                   f"{cost.params / 1e6:.2f}M params")
            lo, hi = max(-limit, 2 * lo), lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    phi = round(lo * step, 10)
    depth, width, _ = coeffs.multipliers(phi)
    cfg, _ = compound_scale(base, phi, coeffs, scale_resolution=False)
    return BudgetFit(phi, width, depth, cfg, analytic_cost(cfg, BASE_RES), budget)


def export_budget_fit(fit: BudgetFit, base_name: str, name: str, coeffs: Compound = Compound(), *,
                      force: bool = False):
    """Write a `fit_budget` result as variant `name` through the export path (atomic, name rules, no overwrite)."""
    from .export import export_config

    source = dict(run=None, origin=f"scaling of {base_name}", base=base_name,
                  scaling="compound, depth and width only (resolution fixed at 224)", phi=fit.phi,
                  alpha=coeffs.alpha, beta=coeffs.beta, width_multiplier=fit.width_mult,
                  depth_multiplier=fit.depth_mult, budget=fit.budget.describe(), flops=fit.cost.flops,
                  flop_convention=flop_convention(BASE_RES),
                  resolution=BASE_RES, params=fit.cost.params)
    return export_config(fit.config, name, source, force=force)


# ---------------------------------------------------------------- report

def _direction_color(direction: str) -> str:
    from .dashboard import _color

    return _color(DIRECTIONS.index(direction) if direction in DIRECTIONS else len(DIRECTIONS))


def _hover(row: pd.Series, dataset: str) -> str:
    cfg = FATConfig.from_dict(json.loads(row["config"]))
    what = f"phi = {row['multiplier']:g}" if row["direction"] == "compound" else f"x {row['multiplier']:g}"
    lines = [f"<b>{html.escape(row['direction'])} {what}</b>",
             f"width x{row['width_mult']:.3g}, depth x{row['depth_mult']:.3g}, {int(row['res'])} px",
             f"params: {int(row['params']):,} ({row['params'] / 1e6:.3f} M)",
             f"FLOPs: {format_flops(row['flops'])}, fvcore total at {int(row['res'])} px"]
    if pd.notna(row["latency_ms"]):
        lines.append(f"latency: {row['latency_ms']:.2f} ms")
    if pd.notna(row["accuracy"]):
        lines.append(f"proxy accuracy ({html.escape(dataset)}): {row['accuracy']:.4f} at {int(row['proxy_res'])} px")
    if isinstance(row["over_budget"], str) and row["over_budget"]:
        lines.append(f"over budget: {html.escape(row['over_budget'])}")
    lines.append(f"config: {describe(cfg, ('widths', 'depths', 'heads'))}")
    return "<br>".join(lines)


def cost_figure(table: pd.DataFrame, fits: pd.DataFrame, metric: str, dataset: str) -> Any:
    """One cost against the multiplier (log-log), a trace of points and one of the fitted power law per direction."""
    import plotly.graph_objects as go

    from .dashboard import _layout

    fig = go.Figure()
    for direction, points in table.groupby("direction", sort=False):
        points = points.dropna(subset=[metric])
        if points.empty:
            continue
        color = _direction_color(direction)
        x = [fit_x(direction, m) for m in points["multiplier"]]
        fig.add_trace(go.Scatter(x=x, y=points[metric].astype(float).tolist(), mode="markers",
                                 name=f"{direction} ({X_LABELS[direction]})", uid=f"{direction}-points",
                                 legendgroup=direction, marker=dict(color=color, size=9),
                                 hovertext=[_hover(r, dataset) for _, r in points.iterrows()], hoverinfo="text"))
        fit = fits[(fits["direction"] == direction) & (fits["metric"] == metric)]
        if not fit.empty:
            f = fit.iloc[0]
            xs = np.geomspace(min(x), max(x), 50)
            law = PowerLaw(f["coefficient"], f["exponent"], f["r2"], f["max_rel_error"])
            fig.add_trace(go.Scatter(x=xs.tolist(), y=law(xs).tolist(), mode="lines", uid=f"{direction}-fit",
                                     name=f"{direction} fit: x^{f['exponent']:.3f} (R² {f['r2']:.4f})",
                                     legendgroup=direction, line=dict(color=color, dash="dash")))
    titles = {"params": ("Parameters", "parameters"),
              "flops": ("FLOPs", "FLOPs (fvcore total at the point's resolution)"),
              "latency_ms": ("Latency", "latency (ms, median at batch 1)")}
    title, y_title = titles[metric]
    return _layout(fig, f"{title} against the multiplier, with fitted power laws (log-log)",
                   "multiplier (width, depth, resolution / 224; 2^phi for compound)", y_title,
                   xaxis=_log_axis([v for t in fig.data for v in t.x]),
                   yaxis=_log_axis([v for t in fig.data for v in t.y]))


def _log_axis(values: Sequence[float]) -> dict[str, Any]:
    """A log axis whose range holds the values with a margin (plotly draws no axis for one repeated value)."""
    logs = [math.log10(v) for v in values if v is not None and v > 0]
    if not logs:
        return dict(type="log")
    pad = max(0.05, 0.05 * (max(logs) - min(logs)))
    return dict(type="log", range=[min(logs) - pad, max(logs) + pad])


def accuracy_figure(table: pd.DataFrame, acc_fits: pd.DataFrame, dataset: str) -> Any:
    """Proxy accuracy against FLOPs (log axis) per direction, with the fitted lines in log2 FLOPs."""
    import plotly.graph_objects as go

    from .dashboard import _layout, proxy_accuracy_label

    fig = go.Figure()
    for direction, points in table.groupby("direction", sort=False):
        points = points.dropna(subset=["accuracy"])
        if points.empty:
            continue
        color = _direction_color(direction)
        fig.add_trace(go.Scatter(x=points["flops"].astype(float).tolist(), y=points["accuracy"].astype(float).tolist(),
                                 mode="markers", name=direction, uid=f"{direction}-points", legendgroup=direction,
                                 marker=dict(color=color, size=10),
                                 hovertext=[_hover(r, dataset) for _, r in points.iterrows()], hoverinfo="text"))
        fit = acc_fits[acc_fits["direction"] == direction]
        if not fit.empty:
            f = fit.iloc[0]
            xs = np.geomspace(f["min_flops"], f["max_flops"], 30)
            fig.add_trace(go.Scatter(x=xs.tolist(), y=(f["intercept"] + f["slope_per_doubling"] * np.log2(xs)).tolist(),
                                     mode="lines", uid=f"{direction}-fit", legendgroup=direction,
                                     name=f"{direction} fit: {f['slope_per_doubling']:+.4f} per doubling",
                                     line=dict(color=color, dash="dash")))
    values = table["accuracy"].dropna().astype(float)
    if values.empty:
        fig.add_annotation(text="no proxy-trained points (--train N)", xref="paper", yref="paper", x=0.5, y=0.5,
                           showarrow=False)
    pad = max(0.01, 0.1 * (values.max() - values.min())) if not values.empty else 0.5
    low, high = (values.min(), values.max()) if not values.empty else (0.5, 0.5)
    return _layout(fig, "Proxy accuracy against FLOPs, per scaling direction (fitted: linear in log2 FLOPs)",
                   "FLOPs (fvcore total at each point's resolution, 1 multiply-add = 1 FLOP)",
                   proxy_accuracy_label([dataset]), xaxis=_log_axis([v for t in fig.data for v in t.x] or table["flops"]),
                   yaxis=dict(range=[low - pad, high + pad]))  # an explicit range: plotly fails on equal values


def _html_table(table: pd.DataFrame, table_id: str, formats: dict[str, str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for _, row in table.iterrows():
        cells = []
        for c in table.columns:
            v = row[c]
            text = "-" if isinstance(v, float) and math.isnan(v) else formats.get(c, "{}").format(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table class=\"summary\" id=\"{table_id}\"><thead><tr>{head}</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


FIT_FORMATS = dict(exponent="{:.3f}", coefficient="{:.4g}", r2="{:.5f}", max_rel_error="{:.2%}",
                   slope_per_doubling="{:+.4f}", intercept="{:.4f}", min_flops="{:,}", max_flops="{:,}")


def report_html(run_id: str, meta: dict[str, Any], table: pd.DataFrame) -> str:
    """The scaling report: fit tables and the verdict, then cost and accuracy plots (ids in PLOT_IDS)."""
    from .dashboard import page_html

    dataset = str(meta.get("dataset", "unknown data set"))
    fits, acc = cost_fits(table), accuracy_fits(table)
    figures = [("cost-params", cost_figure(table, fits, "params", dataset), "Parameters against the multiplier"),
               ("cost-flops", cost_figure(table, fits, "flops", dataset), "FLOPs against the multiplier")]
    if table["latency_ms"].notna().any():
        figures.append(("cost-latency", cost_figure(table, fits, "latency_ms", dataset), "Latency against the multiplier"))
    figures.append(("acc-flops", accuracy_figure(table, acc, dataset), "Proxy accuracy against FLOPs"))
    compound = (meta.get("grid") or {}).get("compound") or asdict(Compound())
    note = (f"Base <b>{html.escape(str(meta.get('base', '?')))}</b>, scaled along width (channels, each stage a "
            "multiple of its head dimension), depth (blocks per stage, rounded, at least 1), resolution, and all "
            f"three (compound: depth {compound['alpha']:g}^phi, width {compound['beta']:g}^phi, resolution "
            f"{compound['gamma']:g}^phi x {BASE_RES} px). FLOPs are fvcore totals at each point's own resolution "
            "(1 multiply-add = 1 FLOP). Accuracies are proxy accuracies after short training on "
            f"{html.escape(dataset)} at {html.escape(str(meta.get('proxy_resolution_rule', 'a scaled resolution')))} "
            "px, never ImageNet accuracy. Power laws are fitted in log-log space against the multiplier "
            "(2^phi for compound); max relative error is the fit's worst miss on the points it was fitted on.")
    intro = (f"<p class=\"note\">{note}</p>\n<h2>Power-law fits of cost</h2>\n"
             + _html_table(fits.drop(columns=["coefficient"]), "cost-fits", FIT_FORMATS)
             + "\n<h2>Proxy accuracy per doubling of FLOPs</h2>\n"
             + (_html_table(acc, "accuracy-fits", FIT_FORMATS) if not acc.empty else "")
             + f"\n<p class=\"note\" id=\"verdict\">{html.escape(best_direction(acc, dataset))}</p>")
    return page_html(f"fatnas scaling explorer: {meta.get('base', '?')} ({run_id})", intro, figures)


def write_report(run: Run, path: str | Path | None = None) -> Path:
    """Write scaling.html (default: in the run folder) from run.yaml and scaling.csv."""
    from .store import atomic_write_text

    out = Path(path) if path is not None else run.path / "scaling.html"
    atomic_write_text(out, report_html(run.id, run.read_meta(), run.read_table("scaling.csv")))
    return out


__all__ = ["BudgetFit", "Compound", "DIRECTIONS", "Point", "PowerLaw", "ScalingError", "ScalingGrid",
           "ScalingSettings", "accuracy_fits", "best_direction", "compound_scale", "cost_fits", "explore",
           "export_budget_fit", "fit_budget", "fit_power_law", "grid_points", "price_points", "record_scaling_run",
           "report_html", "scale_depth", "scale_width", "training_rows", "write_report"]
