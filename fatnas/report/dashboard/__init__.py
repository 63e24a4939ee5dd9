"""HTML dashboards of search runs: plain tables first (`tables`), then plotly figures (`figures`), then one page
(`page`); may import every layer below the CLI.

Data: `load_run_data` reads a run folder into a `RunData`; `summary_table`, `front_table`,
`hypervolume_info`, `importance_info` and `parcoords_table` turn runs into plain pandas tables
(these are what the tests check). Drawing: one `*_figure` function per table. Page:
`write_dashboard(runs, path)` writes one self-contained HTML file (plotly.js inlined once, it
opens offline) where every plot lives in a div with a stable id (`PLOT_IDS`).

Units, stated once: accuracies are *proxy* accuracies on the run's data set (never ImageNet);
FLOPs are fvcore totals at the run's resolution (1 multiply-add = 1 FLOP); latency is the
median forward time (batch 1) at that resolution on the run's device.

Hypervolume (accuracy up, latency down) is measured against the reference point
(accuracy 0, `HV_LATENCY_MARGIN` x the largest latency of any complete trial of the runs shown),
so the curves of runs drawn together are comparable; its unit is accuracy x ms.

Noise: every accuracy carries its 90% interval, from the noise the run measured (run.yaml `noise:`), else a
fidelity study's seed std, else the validation set's sampling error (`accuracy_noise` says which). The band
(`band_table`) lists the networks no other beats with confidence, each with its difference from the best
published FAT under budget in words ("not distinguishable" where the interval holds 0).
"""

from .figures import (
    ALWAYS_DRAWN,
    POINT_COLUMNS,
    POINT_NAMES,
    POINT_UIDS,
    accuracy_points,
    best_accuracy_figure,
    cost_figure,
    hover_text,
    hypervolume_figure,
    importance_figure,
    parcoords_figure,
    pareto_figure,
    points_figure,
    res_text,
)
from .page import (
    BAND_HEADINGS,
    SUMMARY_HEADINGS,
    band_display_table,
    dashboard_html,
    summary_display_table,
    write_dashboard,
)
from .tables import (
    ARCH_COLUMNS,
    HV_LATENCY_MARGIN,
    MIN_TRIALS_FOR_OPTUNA,
    PLOT_IDS,
    STATES,
    TABLE_COLUMNS,
    HypervolumeInfo,
    ImportanceInfo,
    RunData,
    accuracy_noise,
    band_table,
    complete_trials,
    error_bars,
    evaluated_references,
    fits_budget,
    front_table,
    hypervolume_info,
    importance_info,
    latency_origin,
    load_run_data,
    load_study,
    optuna_importances,
    parcoords_table,
    readable_storage,
    spread_importances,
    state_counts,
    summary_table,
)

__all__ = ["ALWAYS_DRAWN", "ARCH_COLUMNS", "BAND_HEADINGS", "accuracy_noise", "band_display_table", "band_table",
           "error_bars", "HV_LATENCY_MARGIN", "HypervolumeInfo", "ImportanceInfo",
           "MIN_TRIALS_FOR_OPTUNA", "PLOT_IDS", "POINT_COLUMNS", "POINT_NAMES", "POINT_UIDS", "RunData",
           "STATES", "SUMMARY_HEADINGS", "TABLE_COLUMNS", "accuracy_points", "best_accuracy_figure",
           "complete_trials", "cost_figure", "dashboard_html", "evaluated_references", "fits_budget",
           "front_table", "hover_text", "hypervolume_figure", "hypervolume_info", "importance_figure",
           "importance_info", "latency_origin", "load_run_data", "load_study", "optuna_importances",
           "parcoords_figure", "parcoords_table", "pareto_figure", "points_figure", "readable_storage",
           "res_text", "spread_importances", "state_counts", "summary_display_table", "summary_table",
           "write_dashboard"]
