"""fidelity.html: the reference and its reliability, estimators against it, ranking quality per second
(small tables first, then figures, through the one page shell).
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...report.page import html_table, layout, log_axis, page_html, proxy_accuracy_label
from ...runs.store import Run
from .analysis import Reference, estimator_table, study_reference
from .jobs import read_rows, read_study_table
from .settings import StudySettings
from .specs import DEFAULT_LOW, TARGET_PARAMS_TAU, TARGET_SEED_TAU, TRAIN

# ---------------------------------------------------------------- report

PLOT_IDS = ("fidelity-scatter", "fidelity-correlations", "fidelity-cost")
# columns of the page's (and the CLI's) tables; the CSV files hold them all
SUMMARY_COLUMNS = ("estimator", "archs", "kendall_tau", "tau_low", "tau_high", "partial_tau", "partial_low",
                   "partial_high", "band_tau", "spearman_rho", "top_k_overlap", "minus_params", "minus_params_low",
                   "minus_params_high", "minus_proxy", "minus_proxy_low", "minus_proxy_high", "seconds_per_arch",
                   "cost_vs_high")
RELIABILITY_COLUMNS = ("reference", "chosen", "seeds", "archs", "seed_tau", "seed_tau_low", "seed_tau_high", "icc1",
                       "icc1_mean", "r_1", "r_2", "ceiling_1", "ceiling_2", "ceiling", "params_tau", "flops_tau",
                       "meets_targets")


def chosen_reference(reliable: pd.DataFrame) -> dict[str, Any] | None:
    """The reliability row of the reference the study ranks against (None before any high-fidelity row)."""
    if reliable.empty or "chosen" not in reliable or not reliable["chosen"].any():
        return None
    return reliable[reliable["chosen"].astype(bool)].iloc[0].to_dict()


def reference_line(reliable: pd.DataFrame) -> str:
    """One sentence on the reference: its name, seed-to-seed tau, the noise ceiling and its tau with #params."""
    row = chosen_reference(reliable)
    if row is None:
        return "reference: none yet (no high-fidelity rows)"
    verdict = "meets" if row["meets_targets"] else "misses"
    size = f"tau with #params {row['params_tau']:.3f}"
    if not np.isfinite(row["seed_tau"]):
        return f"reference: {row['reference']}; its reliability is unknown (one seed per network); {size}"
    return (f"reference: {row['reference']}; seed-to-seed tau {row['seed_tau']:.3f} [{row['seed_tau_low']:.3f}, "
            f"{row['seed_tau_high']:.3f}], ICC(1) {row['icc1']:.3f}; a noise-free proxy reaches at most tau "
            f"{row['ceiling']:.3f}; {size} ({verdict} the targets seed tau >= {TARGET_SEED_TAU} and "
            f"|tau with #params| <= {TARGET_PARAMS_TAU})")


def report_html(run_id: str, meta: dict[str, Any], summary: pd.DataFrame, spread: pd.DataFrame,
                reliable: pd.DataFrame, reference: Reference, estimates: pd.DataFrame) -> str:
    """The study's page: the reference and its reliability, estimators against it, ranking quality per second."""
    acc_label = proxy_accuracy_label([meta["dataset"]])
    classes = f" (classes {', '.join(map(str, meta['classes']))} only)" if meta.get("classes") else ""
    archs = int(summary["archs"].max()) if not summary.empty else 0
    intro = (f"<p class=\"note\">Fidelity study {html.escape(run_id)}: {archs} architectures from space "
             f"{html.escape(meta['space']['name'])} within {html.escape(meta['budget_text'])} (FLOPs: fvcore total at "
             f"{meta['space']['resolution']}px), trained on {html.escape(meta['dataset'])}{classes}. Accuracies are "
             f"{acc_label}. The reference is <b>{html.escape(reference.name)}</b> at the high fidelity "
             f"({html.escape(meta['high'])}); every tau is against it. Estimators are oriented so that higher = "
             f"predicted better. Intervals are 90% bootstrap intervals over architectures; partial_tau is controlled "
             f"for size (ranks residualized on the ranks of params and FLOPs), band_tau is within FLOPs bands of a "
             f"factor of 2; minus_params and minus_proxy are paired-bootstrap differences with #params (signed to "
             f"agree with the reference) and with {html.escape(_main_low_accuracy(meta))}; cost_vs_high is seconds per "
             f"architecture over one high-fidelity training.</p>\n"
             f"<h2>Reference reliability</h2>\n<p class=\"note\">{html.escape(reference_line(reliable))}</p>\n"
             + html_table(_columns(reliable, RELIABILITY_COLUMNS), "reliability")
             + "<h2>Estimators against the reference</h2>\n"
             + html_table(_columns(summary, SUMMARY_COLUMNS), "correlations") + html_table(spread, "seed-spread"))
    figures = [(PLOT_IDS[0], scatter_figure(low_vs_reference(summary, estimates, reference), reference, acc_label),
                "Low fidelity accuracy versus the reference"),
               (PLOT_IDS[1], bars_figure(correlation_bars(summary), noise_ceiling(reliable), reference),
                "Rank correlation with the reference"),
               (PLOT_IDS[2], cost_figure(cost_table(summary), reference), "Ranking quality against cost")]
    return page_html(f"fatnas fidelity: {run_id}", intro, figures)


def _main_low_accuracy(meta: dict[str, Any]) -> str:
    return f"{DEFAULT_LOW if DEFAULT_LOW in meta['lows'] else meta['lows'][0]}:accuracy"


def low_vs_reference(summary: pd.DataFrame, estimates: pd.DataFrame, reference: Reference) -> pd.DataFrame:
    """Each low fidelity's accuracy of each network beside the reference's (arch, low, tau, low_value, reference)."""
    lows = summary[(summary["kind"] == TRAIN) & (summary["metric"] == "accuracy")] if not summary.empty else summary
    frames = []
    for _, row in lows.iterrows():
        pair = pd.concat([estimates[row["estimator"]], reference.values], axis=1, join="inner").dropna()
        frames.append(pd.DataFrame(dict(arch=list(pair.index), low=row["measure"], tau=row["kendall_tau"],
                                        low_value=pair.iloc[:, 0].to_numpy(), reference=pair.iloc[:, 1].to_numpy())))
    columns = ["arch", "low", "tau", "low_value", "reference"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def scatter_figure(points: pd.DataFrame, reference: Reference, acc_label: str) -> Any:
    """One trace of networks per low fidelity: its accuracy against the reference."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for low, part in points.groupby("low", sort=False):
        figure.add_trace(go.Scatter(x=part["low_value"].tolist(), y=part["reference"].tolist(), mode="markers",
                                    text=part["arch"].tolist(), name=f"{low} (tau {part['tau'].iloc[0]:.2f})",
                                    hovertemplate="%{text}: low %{x:.3f}, reference %{y:.3f}<extra></extra>"))
    return layout(figure, "Low fidelity accuracy versus the reference", f"low fidelity: {acc_label}",
                  f"reference: {reference.name}", legend_title_text="low fidelity", height=520)


BAR_MEASURES = (("kendall_tau", "tau_low", "tau_high", "Kendall tau"),
                ("partial_tau", "partial_low", "partial_high", "tau partialled on size"),
                ("band_tau", None, None, "tau within FLOPs bands"))


def correlation_bars(summary: pd.DataFrame) -> pd.DataFrame:
    """Each estimator's taus with their intervals where measured: estimator, measure, tau, low, high."""
    rows = [dict(estimator=row["estimator"], measure=title, tau=row[column],
                 low=row[low] if low else math.nan, high=row[high] if high else math.nan)
            for column, low, high, title in BAR_MEASURES for _, row in summary.iterrows()]
    return pd.DataFrame(rows, columns=["estimator", "measure", "tau", "low", "high"])


def noise_ceiling(reliable: pd.DataFrame) -> tuple[float, int] | None:
    """The chosen reference's noise ceiling and its seeds, where it is known."""
    row = chosen_reference(reliable)
    return (float(row["ceiling"]), int(row["seeds"])) if row is not None and np.isfinite(row["ceiling"]) else None


def bars_figure(bars: pd.DataFrame, ceiling: tuple[float, int] | None, reference: Reference) -> Any:
    """Grouped bars of every estimator's taus, error bars for their intervals, the noise ceiling dashed."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for measure, part in bars.groupby("measure", sort=False):
        error = None if part["low"].isna().all() else dict(
            type="data", symmetric=False, array=(part["high"] - part["tau"]).tolist(),
            arrayminus=(part["tau"] - part["low"]).tolist())
        figure.add_trace(go.Bar(x=part["estimator"].tolist(), y=part["tau"].tolist(), name=measure, error_y=error))
    if ceiling is not None:
        figure.add_hline(y=ceiling[0], line_dash="dash", annotation_text=f"noise ceiling {ceiling[0]:.2f} "
                                                                         f"({ceiling[1]} seeds)")
    return layout(figure, "Rank correlation with the reference", "estimator",
                  f"rank correlation with {reference.name}", barmode="group", yaxis=dict(range=[-1, 1]))


def cost_table(summary: pd.DataFrame) -> pd.DataFrame:
    """What each estimator costs and how well it ranks: estimator, seconds_per_arch, kendall_tau."""
    columns = ["estimator", "seconds_per_arch", "kendall_tau"]
    return summary[columns].reset_index(drop=True) if not summary.empty else pd.DataFrame(columns=columns)


def cost_figure(costs: pd.DataFrame, reference: Reference) -> Any:
    """Kendall tau against seconds per architecture (log axis), one labelled point per estimator."""
    import plotly.graph_objects as go

    figure = go.Figure(go.Scatter(x=costs["seconds_per_arch"].tolist(), y=costs["kendall_tau"].tolist(),
                                  mode="markers+text", text=costs["estimator"].tolist(), textposition="top center",
                                  hovertemplate="%{text}: %{x:.2f} s per architecture, tau %{y:.2f}<extra></extra>"))
    return layout(figure, "Ranking quality against cost", "seconds per architecture (mean)",
                  f"Kendall tau with {reference.name}", xaxis=log_axis(costs["seconds_per_arch"], min_pad=0.2))


def _columns(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    return frame[[c for c in columns if c in frame]] if not frame.empty else frame


def write_report(run: Run) -> Path:
    """Write fidelity.html in the run folder from run.yaml and the study's tables."""
    from ...runs.store import atomic_write_text

    meta = run.read_meta()
    settings = StudySettings.from_meta(meta)
    table, reliable = read_rows(run), read_study_table(run, "reliability.csv")
    reference = study_reference(table, settings, reliable)
    estimates = estimator_table(table, settings, reference) if not table.empty else pd.DataFrame()
    out = run.path / "fidelity.html"
    atomic_write_text(out, report_html(run.id, meta, read_study_table(run, "correlations.csv"),
                                       read_study_table(run, "seed_spread.csv"), reliable, reference, estimates))
    return out
