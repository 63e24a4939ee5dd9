"""Exploring a grid: price every point analytically, time and proxy-train some, record run.yaml and scaling.csv."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import check_threads
from ..estimate.base import make_estimator
from ..estimate.cost import Budget, Cost, analytic_cost
from ..estimate.data import DataSplit
from ..estimate.latency import measure_latency
from ..estimate.memory import check_memory
from ..estimate.proxy import ProxySettings, configure_threads
from ..model.config import FATConfig
from ..runs.store import Run, trial_config
from .report import write_report
from .transforms import BASE_RES, Point, ScalingError, ScalingGrid, grid_points, round_half_up

DEFAULT_TRAIN = 2  # proxy-trained points per direction
CSV_COLUMNS = ("direction", "multiplier", "width_mult", "depth_mult", "res", "proxy_res", "config", "params",
               "flops", "latency_ms", "accuracy", "train_seconds", "over_budget")


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
        check_threads(self.threads, ScalingError)

    @property
    def device(self) -> str:
        return self.proxy.device

    def proxy_res(self, res: int) -> int:
        """The proxy's training resolution for a network priced at `res` (scaled relative to 224)."""
        return max(1, round_half_up(self.proxy.res * res / BASE_RES))

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


def check_points_fit(table: pd.DataFrame, settings: ScalingSettings) -> None:
    """Refuse, before anything is written, a priced grid (`price_points`) whose timed or trained points would not
    fit in memory here."""
    trained = set(training_rows(table, settings.train))
    for idx, row in table.iterrows():
        cfg = trial_config(row)
        if settings.latency:
            check_memory(cfg, int(row["res"]), 1, settings.device, training=False, what="--resolutions")
        if idx in trained:
            check_memory(cfg, int(row["proxy_res"]), settings.proxy.batch_size, settings.device, training=True,
                         what="--proxy-res")


def explore(run: Run, base: FATConfig, settings: ScalingSettings, *, data: DataSplit | None = None,
            log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Price, time (with settings.latency) and proxy-train the grid around `base`; writes scaling.csv and the report.

    `run` must already hold run.yaml (`record_scaling_run`). scaling.csv is rewritten after every
    measured point, so a killed run keeps what it measured.
    Points with the same config and resolution (the base appears in every direction) are measured once.
    """
    log = log or (lambda _: None)
    table = price_points(grid_points(base, settings.grid), settings)
    check_points_fit(table, settings)
    configure_threads(settings.threads)
    run.write_table("scaling.csv", table)
    if settings.latency:
        measured: dict[tuple[str, int], float] = {}
        for idx, row in table.iterrows():
            key = (row["config"], int(row["res"]))
            if key not in measured:
                cfg = trial_config(row)
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
            cfg = trial_config(row)
            start = time.perf_counter()
            proxy = make_estimator("proxy", proxy=settings.proxy.replace(res=int(row["proxy_res"])), data=data)
            accuracy = proxy.estimate(cfg).score
            trained[key] = (accuracy, time.perf_counter() - start)
            log(f"trained {_point_name(row)} at {int(row['proxy_res'])} px: proxy accuracy {accuracy:.4f} "
                f"({trained[key][1]:.1f} s)")
        table.at[idx, "accuracy"], table.at[idx, "train_seconds"] = trained[key]
        run.write_table("scaling.csv", table)
    write_report(run)
    return table


def _latency_ms(cfg: FATConfig, res: int, settings: ScalingSettings) -> float:
    from ..model.network import FAT

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


__all__ = ["CSV_COLUMNS", "DEFAULT_TRAIN", "ScalingSettings", "check_points_fit", "explore", "price_points",
           "record_scaling_run", "training_rows"]
