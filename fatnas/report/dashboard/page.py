"""The dashboard page: the summary table, every figure in a div with a stable id, one self-contained file.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ...paths import check_writable
from ...runs.noise import CONFIDENCE, Z, difference, summary_line, verdict
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
from .tables import (
    STATES,
    RunData,
    accuracy_noise,
    band_table,
    hypervolume_info,
    importance_info,
    load_run_data,
    parcoords_table,
    summary_table,
)

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
        spread = f" +-{Z * r['noise_std']:.4f}"
        best = f"{fmt(r['best_accuracy'])}{spread} (trial {int(r['best_trial'])}, " \
               f"{fmt(r['best_latency_ms'], '{:.1f}')} ms)" if pd.notna(r["best_trial"]) else "-"
        if isinstance(r["best_reference"], str):
            ref = f"{fmt(r['best_reference_accuracy'])}{spread} ({r['best_reference']})"
        else:
            over = r["over_budget_references"]
            ref = f"none (over budget: {over})" if over else "none evaluated"
        diff = _difference_text(r)
        trials = f"{r['trials']}: {states or 'none'}"
        rows.append([r["run"], f"{r['budget']}", trials, str(r["front"]), best, ref, diff])
    return pd.DataFrame(rows, columns=list(SUMMARY_HEADINGS))


def _difference_text(r: pd.Series) -> str:
    """The best trial against the best published FAT, with its interval: never a bare '+0.04'."""
    if not isinstance(r["best_reference"], str) or pd.isna(r["best_accuracy"]):
        return "-"
    std = float(r["noise_std"])
    return verdict(*difference(float(r["best_accuracy"]), std, float(r["best_reference_accuracy"]), std),
                   r["best_reference"])


BAND_HEADINGS = ("trial", "accuracy", f"{CONFIDENCE:.0%} interval", "latency (ms)", "on the front",
                 "against the best published FAT under budget")


def band_display_table(band: pd.DataFrame) -> pd.DataFrame:
    """The band as the page shows it: each accuracy with its interval, each difference in words."""
    rows = [[str(int(r["trial"])), f"{r['accuracy']:.4f}", f"{r['accuracy_low']:.4f} to {r['accuracy_high']:.4f}",
             f"{r['latency_ms']:.2f}", "yes" if r["on_front"] else "no", r["verdict"]] for _, r in band.iterrows()]
    return pd.DataFrame(rows, columns=list(BAND_HEADINGS))


def band_section(data: RunData, index: int) -> str:
    """The run's noise, and its band as a table (id `band-INDEX`)."""
    noise, band = accuracy_noise(data), band_table(data)
    head = (f"<p class=\"note noise\" id=\"noise-{index}\">{html.escape(data.run_id)}: "
            f"{html.escape(noise.describe())}. {html.escape(summary_line(band))}: the networks below are those no "
            f"other network beats with {CONFIDENCE:.0%} confidence (at most as slow and more accurate beyond the "
            f"noise); intervals at {CONFIDENCE:.0%}.</p>\n")
    return head + html_table(band_display_table(band), f"band-{index}") + confirmed_section(data, index)


CONFIRMED_HEADINGS = ("network", "seeds", "confirmed accuracy", f"{CONFIDENCE:.0%} interval", "search accuracy",
                      "latency (ms)", "race", "on the confirmed front", "against the best published FAT")


def confirmed_display_table(confirmed: pd.DataFrame) -> pd.DataFrame:
    """confirmed.csv as the page shows it: each mean with its interval, the race's verdict, the difference in words."""
    done = confirmed[confirmed["seeds"] > 0]
    verdicts = done["verdict"] if "verdict" in done else pd.Series("-", index=done.index)
    rows = [[r["network"], str(int(r["seeds"])), f"{r['accuracy']:.4f}",
             f"{r['accuracy_low']:.4f} to {r['accuracy_high']:.4f}" if pd.notna(r["accuracy_low"]) else "-",
             f"{r['search_accuracy']:.4f}", f"{r['latency_ms']:.2f}", r["status"],
             "yes" if bool(r["on_confirmed_front"]) else "no", v if isinstance(v, str) else "-"]
            for (_, r), v in zip(done.iterrows(), verdicts)]
    return pd.DataFrame(rows, columns=list(CONFIRMED_HEADINGS))


def confirmed_section(data: RunData, index: int) -> str:
    """The confirm stage's figures (table id `confirmed-INDEX`), where the run has them."""
    if data.confirmed is None:
        return ""
    stage = data.meta.get("confirm") or {}
    head = (f"<p class=\"note confirmed\" id=\"confirm-{index}\">{html.escape(data.run_id)}: confirmed by "
            f"retraining with {html.escape(str(stage.get('recipe')))} ({stage.get('trainings')} trainings, "
            f"{float(stage.get('seconds') or 0):.0f} s, stopped: {html.escape(str(stage.get('stop_reason')))}); "
            "accuracy is the mean over seeds, beside the search's own, which it never replaces.</p>\n")
    return head + html_table(confirmed_display_table(data.confirmed), f"confirmed-{index}")


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
                    f"{html.escape(d.trust.describe(error_bars=d.noise is None))}</p>\n" for i, d in enumerate(runs))
    table = html_table(summary_display_table(summary), "summary")
    bands = "".join(band_section(d, i) for i, d in enumerate(runs))
    return page_html(f"fatnas dashboard: {ids}", f"<p class=\"note\">{note}</p>\n{trust}{table}{bands}", figures)


def write_dashboard(runs: Sequence[Run], path: str | Path | None = None) -> Path:
    """Write the dashboard of `runs` to the file `path` (default: dashboard.html in the first run's folder), checked
    before any run is read: a folder there is refused, as every `-o` refuses one."""
    out = check_writable(runs[0].path / "dashboard.html" if path is None else path, "-o")
    datas = [load_run_data(r) for r in runs]
    atomic_write_text(out, dashboard_html(datas))
    return out
