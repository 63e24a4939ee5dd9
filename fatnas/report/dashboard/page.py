"""The dashboard page: the summary table, every figure in a div with a stable id, one self-contained file.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ...paths import check_writable
from ...runs.store import Run, atomic_write_text
from ..page import html_table, page_html
from .figures import (
    best_accuracy_figure,
    cost_figure,
    hypervolume_figure,
    importance_figure,
    parcoords_figure,
    pareto_figure,
    res_text,
)
from .tables import STATES, RunData, hypervolume_info, importance_info, load_run_data, parcoords_table, summary_table

# ---------------------------------------------------------------- page

SUMMARY_HEADINGS = ("run", "budget", "trials", "front", "best proxy accuracy under budget",
                    "best published FAT under budget", "difference")


def summary_display_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as the page shows it: one text cell per heading in SUMMARY_HEADINGS."""
    def fmt(value: Any, pattern: str = "{:.4f}") -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)

    rows = []
    for _, r in summary.iterrows():
        states = ", ".join(f"{r[s]} {s.lower()}" for s in STATES if r[s])
        best = f"{fmt(r['best_accuracy'])} (trial {int(r['best_trial'])}, {fmt(r['best_latency_ms'], '{:.1f}')} ms)" \
            if pd.notna(r["best_trial"]) else "-"
        if isinstance(r["best_reference"], str):
            ref = f"{fmt(r['best_reference_accuracy'])} ({r['best_reference']})"
        else:
            over = r["over_budget_references"]
            ref = f"none (over budget: {over})" if over else "none evaluated"
        diff = fmt(r["best_accuracy"] - r["best_reference_accuracy"], "{:+.4f}")
        trials = f"{r['trials']}: {states or 'none'}"
        rows.append([r["run"], f"{r['budget']}", trials, str(r["front"]), best, ref, diff])
    return pd.DataFrame(rows, columns=list(SUMMARY_HEADINGS))


def dashboard_html(runs: Sequence[RunData]) -> str:
    """The whole page: summary table, then one div per plot (ids in PLOT_IDS), plotly.js inlined once."""
    summary = summary_table(runs)
    hv = hypervolume_info(runs)
    figures = [
        ("pareto", pareto_figure(runs), "Accuracy-latency Pareto front"),
        ("acc-flops", cost_figure(runs, "flops"), "Accuracy vs FLOPs"),
        ("acc-params", cost_figure(runs, "params"), "Accuracy vs parameters"),
        ("hypervolume", hypervolume_figure(hv), "Hypervolume by trial"),
        ("best-accuracy", best_accuracy_figure(hv, summary, runs), "Best accuracy under budget by trial"),
        ("importance", importance_figure([(d.run_id, importance_info(d)) for d in runs]), "Architecture choices"),
        ("parcoords", parcoords_figure(parcoords_table(runs), runs), "Parallel coordinates"),
    ]
    ids = ", ".join(d.run_id for d in runs)
    datasets = html.escape(" / ".join(sorted({d.dataset for d in runs})))
    note = (f"Accuracies are proxy accuracies after short training on {datasets}, "
            f"never ImageNet accuracy. FLOPs are fvcore totals at {res_text(runs)} (1 multiply-add = 1 FLOP; "
            "convolutions, attention matmuls, norms and head). Latency is the median batch-1 forward time on the "
            "run's device. Published FATs (stars) appear where the run evaluated them, i.e. within its budget.")
    trust = "".join(f"<p class=\"note trust\" id=\"trust-{i}\">{html.escape(d.run_id)}: "
                    f"{html.escape(d.trust.describe())}</p>\n" for i, d in enumerate(runs))
    table = html_table(summary_display_table(summary), "summary")
    return page_html(f"fatnas dashboard: {ids}", f"<p class=\"note\">{note}</p>\n{trust}{table}", figures)


def write_dashboard(runs: Sequence[Run], path: str | Path | None = None) -> Path:
    """Write the dashboard of `runs` to `path` (a file, or a folder to hold dashboard.html; default: the first run's
    folder), checked before any run is read."""
    folder = Path(path) if path is not None and Path(path).is_dir() else runs[0].path if path is None else None
    out = check_writable(folder / "dashboard.html" if folder is not None else path, "-o")
    datas = [load_run_data(r) for r in runs]
    atomic_write_text(out, dashboard_html(datas))
    return out
