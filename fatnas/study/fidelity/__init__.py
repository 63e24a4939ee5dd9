"""Proxy fidelity: does a cheap estimator rank architectures the way a reliable reference does? (`specs`, `settings`,
`jobs`, `analysis`, `report`, `study`; imports model, estimate, runs and the page shell.)

`run_study` samples architectures from a space within a budget (plus the published FATs that
fit), trains each at one or more low fidelities and, with `high_seeds` seeds, at one high
fidelity (the reference; the `reference` preset trains with augmentation and scores on the
official test split), scores each with the zero-cost proxies and the #params / FLOPs baselines,
and trains one network with extra seeds at every fidelity. Each finished job adds its rows to
`runs/<id>/fidelity.csv` at once, in long format (one row per architecture, measure, seed and
metric): a killed study resumes where it stopped.

The analysis orients every estimator so that higher = predicted better (a low fidelity's
accuracy, -loss, -SoTL-E and curve slope; the zero-cost scores; the baselines; a leave-one-out
ridge predictor over these) and ranks them against the reference: the seed mean of the high
fidelity's most reliable metric. `reliability` says how far the reference itself can be trusted
(seed-to-seed tau, ICC, the tau a noise-free proxy could reach); `correlations` gives each
estimator's Kendall tau with a bootstrap interval, Spearman rho, top-k overlap, tau within FLOPs
bands, tau partialled on size, and paired-bootstrap differences with #params and the default proxy.

Accuracies are proxy accuracies on a small data set, never ImageNet accuracy; FLOPs are fvcore
totals at the space's resolution (1 multiply-add = 1 FLOP).
"""

from .analysis import (
    Estimator,
    EstimatorColumn,
    Reference,
    arch_sizes,
    choose_reference_metric,
    correlations,
    estimator_table,
    estimators,
    job_seconds,
    loo_predictions,
    predictor_features,
    rank_statistics,
    reference_name,
    reference_seeds_table,
    reliability,
    seed_spread,
    study_reference,
    top_k_overlap,
)
from .jobs import (
    Job,
    execute,
    finished_networks,
    kind_of,
    plan_jobs,
    read_rows,
    read_study_table,
    run_job,
    sample_architectures,
    spread_architecture,
    study_architectures,
    with_metric,
)
from .report import (
    BAR_MEASURES,
    PLOT_IDS,
    RELIABILITY_COLUMNS,
    SUMMARY_COLUMNS,
    bars_figure,
    chosen_reference,
    correlation_bars,
    cost_figure,
    cost_table,
    low_vs_reference,
    noise_ceiling,
    reference_line,
    report_html,
    scatter_figure,
    write_report,
)
from .settings import (
    StudySettings,
    add_lows,
    record_study,
    resume_study_settings,
)
from .specs import (
    CSV_COLUMNS,
    DEFAULT_ARCHS,
    DEFAULT_HIGH,
    DEFAULT_LOW,
    DEFAULT_TOP_K,
    FIDELITY_KEYS,
    MAX_DRAWS_PER_ARCH,
    MIN_PREDICTOR_ARCHS,
    ORIENTED,
    PREDICTOR,
    PRESETS,
    REFERENCE,
    REFERENCE_CHOICES,
    REFERENCE_METRICS,
    SCORE,
    SIGNS,
    TARGET_PARAMS_TAU,
    TARGET_SEED_TAU,
    TRAIN_METRICS,
    FidelityError,
    fidelity_fields,
    fidelity_label,
    parse_fidelity,
)
from .study import (
    analyse,
    run_study,
)

__all__ = ["BAR_MEASURES", "CSV_COLUMNS", "DEFAULT_ARCHS", "DEFAULT_HIGH", "DEFAULT_LOW", "DEFAULT_TOP_K", "Estimator",
           "EstimatorColumn", "FIDELITY_KEYS", "FidelityError", "Job", "MAX_DRAWS_PER_ARCH",
           "MIN_PREDICTOR_ARCHS", "ORIENTED", "PLOT_IDS", "PREDICTOR", "PRESETS", "REFERENCE",
           "REFERENCE_CHOICES", "REFERENCE_METRICS", "RELIABILITY_COLUMNS", "Reference", "SCORE", "SIGNS",
           "SUMMARY_COLUMNS", "StudySettings", "TARGET_PARAMS_TAU", "TARGET_SEED_TAU", "TRAIN_METRICS",
           "add_lows", "analyse", "arch_sizes", "bars_figure", "choose_reference_metric", "chosen_reference",
           "correlation_bars", "correlations", "cost_figure", "cost_table", "estimator_table", "estimators",
           "execute", "fidelity_fields", "fidelity_label", "finished_networks", "job_seconds", "kind_of",
           "loo_predictions", "low_vs_reference", "noise_ceiling", "parse_fidelity", "plan_jobs",
           "predictor_features", "rank_statistics", "read_rows", "read_study_table", "record_study",
           "resume_study_settings", "reference_line", "reference_name", "reference_seeds_table",
           "reliability", "report_html", "run_job", "run_study", "sample_architectures", "scatter_figure",
           "seed_spread", "spread_architecture", "study_architectures", "study_reference", "top_k_overlap",
           "with_metric", "write_report"]
