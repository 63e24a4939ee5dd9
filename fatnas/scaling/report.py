"""The scaling report: small tables of points and fitted curves per direction, drawn into scaling.html."""
from __future__ import annotations

import html
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..estimate.cost import format_flops
from ..model.config import describe
from ..report.page import html_table, layout, log_axis, page_html, palette_color, proxy_accuracy_label
from ..runs.store import Run, atomic_write_text, trial_config
from .fits import PowerLaw, accuracy_fits, best_direction, cost_fits
from .transforms import BASE_RES, DIRECTIONS, X_LABELS, Compound, fit_x

PLOT_IDS = ("cost-params", "cost-flops", "cost-latency", "acc-flops")


CURVE_COLUMNS = ("direction", "kind", "x", "y", "label", "hover")  # kind: "points" or "fit"
FIT_POINTS = 50  # x values a fitted curve is drawn through
COST_TITLES = {"params": ("Parameters", "parameters"),
               "flops": ("FLOPs", "FLOPs (fvcore total at the point's resolution)"),
               "latency_ms": ("Latency", "latency (ms, median at batch 1)")}


def direction_color(direction: str) -> str:
    """Each scaling direction's colour from the shared palette."""
    return palette_color(DIRECTIONS.index(direction) if direction in DIRECTIONS else len(DIRECTIONS))


def _hover(row: pd.Series, dataset: str) -> str:
    cfg = trial_config(row)
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


def _point_rows(direction: str, points: pd.DataFrame, xs: list[float], ys: pd.Series, label: str,
                dataset: str) -> list[dict[str, Any]]:
    return [dict(direction=direction, kind="points", x=float(x), y=float(y), label=label, hover=_hover(row, dataset))
            for x, y, (_, row) in zip(xs, ys, points.iterrows())]


def _fit_rows(direction: str, xs: np.ndarray, ys: np.ndarray, label: str) -> list[dict[str, Any]]:
    return [dict(direction=direction, kind="fit", x=float(x), y=float(y), label=label, hover="")
            for x, y in zip(xs, ys)]


def cost_curves(table: pd.DataFrame, fits: pd.DataFrame, metric: str, dataset: str = "") -> pd.DataFrame:
    """Per direction, one cost's points against the fitted x and its power law through them (CURVE_COLUMNS)."""
    rows: list[dict[str, Any]] = []
    for direction, points in table.groupby("direction", sort=False):
        points = points.dropna(subset=[metric])
        if points.empty:
            continue
        x = [fit_x(direction, m) for m in points["multiplier"]]
        rows += _point_rows(direction, points, x, points[metric], f"{direction} ({X_LABELS[direction]})", dataset)
        fit = fits[(fits["direction"] == direction) & (fits["metric"] == metric)]
        if not fit.empty:
            f = fit.iloc[0]
            xs = np.geomspace(min(x), max(x), FIT_POINTS)
            law = PowerLaw(f["coefficient"], f["exponent"], f["r2"], f["max_rel_error"])
            rows += _fit_rows(direction, xs, law(xs), f"{direction} fit: x^{f['exponent']:.3f} (R² {f['r2']:.4f})")
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def accuracy_curves(table: pd.DataFrame, acc_fits: pd.DataFrame, dataset: str = "") -> pd.DataFrame:
    """Per direction, proxy accuracy against FLOPs and its fitted line in log2 FLOPs (CURVE_COLUMNS)."""
    rows: list[dict[str, Any]] = []
    for direction, points in table.groupby("direction", sort=False):
        points = points.dropna(subset=["accuracy"])
        if points.empty:
            continue
        rows += _point_rows(direction, points, points["flops"].astype(float).tolist(), points["accuracy"], direction,
                            dataset)
        fit = acc_fits[acc_fits["direction"] == direction]
        if not fit.empty:
            f = fit.iloc[0]
            xs = np.geomspace(f["min_flops"], f["max_flops"], FIT_POINTS)
            rows += _fit_rows(direction, xs, f["intercept"] + f["slope_per_doubling"] * np.log2(xs),
                              f"{direction} fit: {f['slope_per_doubling']:+.4f} per doubling")
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def curves_figure(curves: pd.DataFrame) -> Any:
    """Points as markers and fits as dashed lines, one colour and legend group per direction."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for (direction, kind), part in curves.groupby(["direction", "kind"], sort=False):
        style: dict[str, Any] = (dict(mode="markers", marker=dict(color=direction_color(direction), size=9),
                                      hovertext=part["hover"].tolist(), hoverinfo="text") if kind == "points"
                                 else dict(mode="lines", line=dict(color=direction_color(direction), dash="dash")))
        fig.add_trace(go.Scatter(x=part["x"].tolist(), y=part["y"].tolist(), name=part["label"].iloc[0],
                                 uid=f"{direction}-{kind}", legendgroup=direction, **style))
    return fig


def cost_figure(curves: pd.DataFrame, metric: str) -> Any:
    """One cost against the multiplier (log-log), with fitted power laws."""
    title, y_title = COST_TITLES[metric]
    return layout(curves_figure(curves), f"{title} against the multiplier, with fitted power laws (log-log)",
                  "multiplier (width, depth, resolution / 224; 2^phi for compound)", y_title,
                  xaxis=log_axis(curves["x"]), yaxis=log_axis(curves["y"]))


def accuracy_figure(curves: pd.DataFrame, table: pd.DataFrame, dataset: str) -> Any:
    """Proxy accuracy against FLOPs (log axis) per direction, with the fitted lines in log2 FLOPs."""
    fig = curves_figure(curves)
    values = curves.loc[curves["kind"] == "points", "y"]
    if values.empty:
        fig.add_annotation(text="no proxy-trained points (--train N)", xref="paper", yref="paper", x=0.5, y=0.5,
                           showarrow=False)
    pad = max(0.01, 0.1 * (values.max() - values.min())) if not values.empty else 0.5
    low, high = (values.min(), values.max()) if not values.empty else (0.5, 0.5)
    return layout(fig, "Proxy accuracy against FLOPs, per scaling direction (fitted: linear in log2 FLOPs)",
                  "FLOPs (fvcore total at each point's resolution, 1 multiply-add = 1 FLOP)",
                  proxy_accuracy_label([dataset]), xaxis=log_axis(curves["x"] if not curves.empty else table["flops"]),
                  yaxis=dict(range=[low - pad, high + pad]))  # an explicit range: plotly fails on equal values


FIT_FORMATS = dict(exponent="{:.3f}", coefficient="{:.4g}", r2="{:.5f}", max_rel_error="{:.2%}",
                   slope_per_doubling="{:+.4f}", intercept="{:.4f}", min_flops="{:,}", max_flops="{:,}")


def report_html(run_id: str, meta: dict[str, Any], table: pd.DataFrame) -> str:
    """The scaling report: fit tables and the verdict, then cost and accuracy plots (ids in PLOT_IDS)."""
    dataset = str(meta.get("dataset", "unknown data set"))
    fits, acc = cost_fits(table), accuracy_fits(table)
    headings = dict(params="Parameters", flops="FLOPs", latency_ms="Latency")
    figures = [(f"cost-{metric.removesuffix('_ms')}", cost_figure(cost_curves(table, fits, metric, dataset), metric),
                f"{headings[metric]} against the multiplier")
               for metric in ("params", "flops", "latency_ms") if metric != "latency_ms" or table[metric].notna().any()]
    figures.append(("acc-flops", accuracy_figure(accuracy_curves(table, acc, dataset), table, dataset),
                    "Proxy accuracy against FLOPs"))
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
             + html_table(fits.drop(columns=["coefficient"]), "cost-fits", FIT_FORMATS)
             + "\n<h2>Proxy accuracy per doubling of FLOPs</h2>\n"
             + html_table(acc, "accuracy-fits", FIT_FORMATS)
             + f"\n<p class=\"note\" id=\"verdict\">{html.escape(best_direction(acc, dataset))}</p>")
    return page_html(f"fatnas scaling explorer: {meta.get('base', '?')} ({run_id})", intro, figures)


def write_report(run: Run, path: str | Path | None = None) -> Path:
    """Write scaling.html (default: in the run folder) from run.yaml and scaling.csv."""
    out = Path(path) if path is not None else run.path / "scaling.html"
    atomic_write_text(out, report_html(run.id, run.read_meta(), run.read_table("scaling.csv")))
    return out


__all__ = ["CURVE_COLUMNS", "PLOT_IDS", "accuracy_curves", "accuracy_figure", "cost_curves", "cost_figure",
           "report_html", "write_report"]
