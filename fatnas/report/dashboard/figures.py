"""The dashboard's figures: one plotly figure per table of `tables.py`.
"""
from __future__ import annotations

import html
import math
from typing import Any, Sequence

import pandas as pd

from ...estimate.cost import format_flops
from ...model.config import describe
from ...runs.store import trial_config
from ..page import layout, log_axis, palette_color, proxy_accuracy_label
from .tables import (
    HV_LATENCY_MARGIN,
    HypervolumeInfo,
    ImportanceInfo,
    RunData,
    complete_trials,
    error_bars,
    evaluated_references,
    front_table,
)

# ---------------------------------------------------------------- drawing

def _accuracy_label(runs: Sequence[RunData]) -> str:
    return proxy_accuracy_label(d.dataset for d in runs)


def res_text(runs: Sequence[RunData]) -> str:
    res = sorted({d.res for d in runs})
    return f"{res[0]} px" if len(res) == 1 else "each run's resolution"


def hover_text(row: pd.Series, data: RunData) -> str:
    """Trial, accuracy, latency, params, FLOPs (with their convention) and the config, for one point."""
    head = f"<b>{html.escape(str(row['name']))}</b> (published FAT)" if "name" in row and isinstance(row["name"], str) \
        else f"<b>{html.escape(data.run_id)} trial {int(row['trial'])}</b> ({row['state']})"
    lines = [head]
    if pd.notna(row.get("accuracy")):
        what = (f"confirmed accuracy, mean of {int(row['seeds'])} seeds with {html.escape(str(row['recipe']))}"
                if "recipe" in row else "proxy accuracy")
        interval = (f" (90% interval {row['accuracy_low']:.4f} to {row['accuracy_high']:.4f})"
                    if pd.notna(row.get("accuracy_low")) else "")
        lines.append(f"{what} ({html.escape(data.dataset)}): {row['accuracy']:.4f}{interval}")
    if pd.notna(row.get("latency_ms")):
        lines.append(f"latency: {row['latency_ms']:.2f} ms ({html.escape(data.device)}, {data.res} px)")
    if pd.notna(row.get("params")):
        lines.append(f"params: {int(row['params']):,} ({row['params'] / 1e6:.3f} M)")
    if pd.notna(row.get("flops")):
        lines.append(f"FLOPs: {format_flops(row['flops'])}, fvcore total at {data.res} px")
    try:
        cfg = trial_config(row)
        lines.append(f"config: {describe(cfg)}")
    except (KeyError, TypeError, ValueError):
        pass
    return "<br>".join(lines)


def _hovers(table: pd.DataFrame, data: RunData) -> list[str]:
    return [hover_text(row, data) for _, row in table.iterrows()]


POINT_COLUMNS = ("run", "run_index", "group", "x", "accuracy", "error", "label", "hover")
# what each group of points is, how its trace is named and drawn; trials and front get a trace even when empty
POINT_NAMES = {"trials": "trials", "stopped": "stopped early", "published": "published FAT", "front": "Pareto front",
               "confirmed": "confirmed (mean over seeds)", "confirmed_front": "confirmed front"}
POINT_UIDS = {"trials": "trials", "stopped": "stopped", "published": "refs", "front": "front",
              "confirmed": "confirmed", "confirmed_front": "confirmed-front"}
CONFIRMED_GROUPS = ("confirmed", "confirmed_front")  # drawn where the run has confirmed.csv
POINT_STYLES: dict[str, dict[str, Any]] = {
    "trials": dict(mode="markers", marker=dict(size=8, opacity=0.75)),
    "stopped": dict(mode="markers", marker=dict(size=7, symbol="circle-open", opacity=0.6)),
    "published": dict(mode="markers+text", textposition="top center",
                      marker=dict(size=15, symbol="star", line=dict(width=1, color="black"))),
    "front": dict(mode="lines+markers", marker=dict(size=11, symbol="diamond", line=dict(width=1, color="black"))),
    "confirmed": dict(mode="markers", marker=dict(size=12, symbol="square-open", line=dict(width=2))),
    "confirmed_front": dict(mode="lines", marker=dict()),
}
ALWAYS_DRAWN = ("trials", "front")


def accuracy_points(runs: Sequence[RunData], x: str, groups: Sequence[str] = ("trials", "stopped", "published")
                    ) -> pd.DataFrame:
    """Every point of an accuracy plot against column `x`, with its error bar and hover text (POINT_COLUMNS).

    Groups: `trials` (complete), `stopped` (early-stopped, at their accuracy when stopped),
    `published` (the published FATs the run evaluated) and `front` (the run's Pareto front).
    """
    frames = [_point_rows(table, data, i, group, x) for i, data in enumerate(runs)
              for group, table in _point_groups(data, x) if group in groups and not table.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(POINT_COLUMNS))


def _point_groups(data: RunData, x: str) -> list[tuple[str, pd.DataFrame]]:
    t = data.trials
    stopped = t[(t["state"] == "PRUNED") & t["accuracy"].notna() & t[x].notna()] if not t.empty else t
    groups = [("trials", complete_trials(data)), ("stopped", stopped), ("published", evaluated_references(data)),
              ("front", front_table(data))]
    confirmed = confirmed_table(data)
    if not confirmed.empty:
        groups += [("confirmed", confirmed), ("confirmed_front", confirmed[confirmed["on_confirmed_front"]])]
    return groups


def confirmed_table(data: RunData) -> pd.DataFrame:
    """The run's confirmed networks that trained (confirmed.csv), fastest first, ready to draw and hover."""
    table = data.confirmed
    if table is None or table.empty:
        return pd.DataFrame()
    table = table[table["seeds"] > 0].assign(state=lambda t: [f"confirmed, {n} seeds" for n in t["seeds"]],
                                             on_confirmed_front=lambda t: t["on_confirmed_front"].astype(bool))
    table = table.assign(name=[n if t < 0 else None for n, t in zip(table["network"], table["trial"])])
    return table.sort_values("latency_ms").reset_index(drop=True)


def _point_rows(table: pd.DataFrame, data: RunData, run_index: int, group: str, x: str) -> pd.DataFrame:
    return pd.DataFrame(dict(run=data.run_id, run_index=run_index, group=group, x=table[x].astype(float).to_numpy(),
                             accuracy=table["accuracy"].astype(float).to_numpy(),
                             error=(table["accuracy_high"] - table["accuracy"]).tolist()
                             if group in CONFIRMED_GROUPS else error_bars(data, table["accuracy"]),
                             label=table["name"].tolist() if group == "published" else "",
                             hover=_hovers(table, data)), columns=list(POINT_COLUMNS))


def points_figure(points: pd.DataFrame, runs: Sequence[RunData], groups: Sequence[str]) -> Any:
    """One trace per run and group of `accuracy_points`, in the run's colour, with its error bars."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, data in enumerate(runs):
        color = palette_color(i)
        for group in groups:
            part = points[(points["run_index"] == i) & (points["group"] == group)]
            if part.empty and group not in ALWAYS_DRAWN:
                continue
            style = dict(POINT_STYLES[group])
            style["marker"] = dict(color=color, **style["marker"])
            if group == "front":
                style["line"] = dict(color=color, shape="hv", width=2)
            if group == "confirmed_front":
                style["line"] = dict(color=color, shape="hv", width=3, dash="dot")
            name = f"{data.run_id}: {POINT_NAMES[group]}" + (f" ({len(part)})" if group == "front" else "")
            fig.add_trace(go.Scatter(x=part["x"].tolist(), y=part["accuracy"].tolist(), name=name,
                                     uid=f"{POINT_UIDS[group]}-{i}", legendgroup=data.run_id,
                                     text=part["label"].tolist() if group == "published" else None,
                                     hovertext=part["hover"].tolist(), hoverinfo="text",
                                     error_y=dict(type="data", array=part["error"].tolist(), thickness=1, width=3,
                                                  color=color), **style))
    return fig


def pareto_figure(runs: Sequence[RunData]) -> Any:
    """Every trial as a point, each run's front as a staircase line, published FATs as stars; where a run was
    confirmed, its confirmed networks (mean over seeds, 90% intervals) and their front over the search's."""
    groups = ("trials", "stopped", "published", "front", *CONFIRMED_GROUPS)
    points = accuracy_points(runs, "latency_ms", groups)
    fig = points_figure(points, runs, groups)
    devices = ", ".join(sorted({d.device for d in runs}))
    latencies = points.loc[points["group"].isin(["trials", "published"]) & (points["x"] > 0), "x"]
    wide = not latencies.empty and latencies.max() > 20 * latencies.min()  # e.g. a published FAT far right
    for i, data in enumerate(runs):
        if data.budget.max_latency_ms is not None:
            _budget_line(fig, data.budget.max_latency_ms, f"{data.run_id} budget {data.budget.max_latency_ms:g} ms",
                         i, log=wide)
    return layout(fig, "Accuracy-latency Pareto front (hover a point for its config, params and FLOPs)",
                  f"latency (ms, median at batch 1 on {devices}, {res_text(runs)})", _accuracy_label(runs),
                  xaxis=dict(type="log" if wide else "linear"))


def _budget_line(fig: Any, x: float, text: str, run_index: int, *, log: bool) -> None:
    """A dashed vertical budget line in the run's color, labelled left of it, one label row per run.

    (plotly's own vline annotation misplaces labels on log axes, which take log10 positions.)
    """
    color = palette_color(run_index)
    fig.add_vline(x=x, line=dict(color=color, dash="dash", width=2))
    fig.add_annotation(x=math.log10(x) if log else x, y=1 - 0.06 * run_index, xref="x", yref="paper", text=text,
                       showarrow=False, xanchor="right", yanchor="top", xshift=-4, font=dict(color=color),
                       bgcolor="rgba(255,255,255,0.8)")


def cost_figure(runs: Sequence[RunData], column: str) -> Any:
    """Accuracy against FLOPs or params (log axis), each run's budget on that quantity as a dashed line."""
    groups = ("trials", "stopped", "published")
    points = accuracy_points(runs, column, groups)
    fig = points_figure(points, runs, groups)
    limits = [d.budget.max_flops if column == "flops" else d.budget.max_params for d in runs]
    for i, (data, limit) in enumerate(zip(runs, limits)):
        if limit is not None:
            text = format_flops(limit) if column == "flops" else f"{limit / 1e6:.2f}M params"
            _budget_line(fig, limit, f"{data.run_id} budget {text}", i, log=True)
    if column == "flops":
        title, x_title = "Accuracy vs FLOPs", f"FLOPs (fvcore total at {res_text(runs)}, 1 multiply-add = 1 FLOP)"
    else:
        title, x_title = "Accuracy vs parameters", "parameters"
    # the range holds every point and every budget line
    return layout(fig, title, x_title, _accuracy_label(runs),
                  xaxis=log_axis([*points["x"], *limits], min_pad=0.1))


def hypervolume_figure(info: HypervolumeInfo) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (run_id, rows) in enumerate(info.table.groupby("run", sort=False)):
        fig.add_trace(go.Scatter(x=rows["trial"].tolist(), y=rows["hypervolume"].tolist(), uid=f"hv-{i}",
                                 name=run_id, mode="lines+markers", line=dict(color=palette_color(i), shape="hv")))
    ref = f"reference point: accuracy {info.ref_accuracy:g}, latency {info.ref_latency_ms:.1f} ms " \
          f"({HV_LATENCY_MARGIN:g} x the slowest complete trial)"
    return layout(fig, f"Hypervolume of the accuracy-latency front by trial<br><sup>{ref}</sup>",
                   "trial number", "hypervolume (proxy accuracy x ms)", xaxis=_trial_axis(info.table))


def _trial_axis(table: pd.DataFrame) -> dict[str, Any]:
    """Whole trial numbers on the x axis."""
    n = int(table["trial"].max()) + 1 if not table.empty else 1
    return dict(tick0=0, dtick=max(1, math.ceil(n / 12)))


def best_accuracy_figure(info: HypervolumeInfo, summary: pd.DataFrame, runs: Sequence[RunData]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (run_id, rows) in enumerate(info.table.groupby("run", sort=False)):
        best = [None if math.isnan(v) else v for v in rows["best_accuracy"]]
        fig.add_trace(go.Scatter(x=rows["trial"].tolist(), y=best,
                                 uid=f"best-{i}", name=run_id, mode="lines+markers",
                                 line=dict(color=palette_color(i), shape="hv")))
    for i, row in summary.reset_index(drop=True).iterrows():
        if isinstance(row["best_reference"], str):
            fig.add_hline(y=row["best_reference_accuracy"], line=dict(color=palette_color(i), dash="dot"),
                          annotation_text=f"{row['run']}: best published FAT under budget ({row['best_reference']})")
    values = [v for v in info.table["best_accuracy"] if not math.isnan(v)]
    values += [v for v in summary["best_reference_accuracy"] if not math.isnan(v)] if not summary.empty else []
    pad = max(0.01, 0.1 * (max(values) - min(values))) if values else 0
    axis = dict(range=[min(values) - pad, max(values) + pad]) if values else {}
    return layout(fig, "Best proxy accuracy under budget so far (complete trials)", "trial number",
                   _accuracy_label(runs), xaxis=_trial_axis(info.table), yaxis=axis)


def importance_figure(infos: Sequence[tuple[str, ImportanceInfo]]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (run_id, info) in enumerate(infos):
        table = info.table.iloc[::-1]
        fig.add_trace(go.Bar(x=table["importance"].tolist(), y=table["param"].tolist(), orientation="h",
                             name=run_id, uid=f"importance-{i}", marker_color=palette_color(i),
                             hovertext=[info.method] * len(table)))
    methods = "<br>".join(f"<sup>{html.escape(r)}: {html.escape(info.method)}</sup>" for r, info in infos)
    n = max([len(info.table) for _, info in infos] + [1])
    return layout(fig, f"Which architecture choices matter for proxy accuracy<br>{methods}", "importance (normalized)",
                   "choice (field_stage)", barmode="group", height=max(360, 140 + 22 * n * max(len(infos), 1)),
                   margin=dict(l=120, r=20, t=40 + 30 * len(infos), b=60))


def parcoords_figure(table: pd.DataFrame, runs: Sequence[RunData]) -> Any:
    import plotly.graph_objects as go

    run_ids = [d.run_id for d in runs]
    dims = []
    if len(run_ids) > 1:
        dims.append(dict(label="run", values=[run_ids.index(r) for r in table["run"]],
                         tickvals=list(range(len(run_ids))), ticktext=run_ids))
    for column in table.columns:
        if column in ("run", "trial"):
            continue
        values = table[column].astype(float)
        label = {"params": "params (M)", "flops": f"MFLOPs (fvcore, {res_text(runs)})", "latency_ms": "latency (ms)",
                 "accuracy": "proxy accuracy"}.get(column, column)
        scale = 1e6 if column in ("params", "flops") else 1.0
        dims.append(dict(label=label, values=(values / scale).tolist()))
    line = dict(color=table["accuracy"].astype(float).tolist(), colorscale="Viridis", showscale=True,
                colorbar=dict(title="proxy<br>accuracy")) if not table.empty else {}
    fig = go.Figure(go.Parcoords(dimensions=dims, line=line, uid="parcoords-0"))
    return layout(fig, f"Complete trials across architecture choices (color: {_accuracy_label(runs)})", "", "",
                   margin=dict(l=80, r=80, t=90, b=40))
