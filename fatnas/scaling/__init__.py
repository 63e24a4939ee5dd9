"""Scaling layer: how FAT's cost and proxy accuracy grow when one network is made wider, deeper or sharper;
imports model, estimate, runs and the page shell.

From a base config, `grid_points` scales width (a channel multiplier), depth (a per-stage block
multiplier), input resolution, and all three at once the EfficientNet way (depth alpha^phi, width
beta^phi, resolution gamma^phi). `explore` prices every point analytically (params; FLOPs at the
point's own resolution), optionally times it, proxy-trains a few points per direction and writes
`runs/<id>/scaling.csv`; `cost_fits` and `accuracy_fits` turn that table into power laws and
accuracy-per-doubling slopes, and `write_report` draws them as `runs/<id>/scaling.html`.
`fit_budget` finds the largest compound scaling (depth and width, resolution fixed) within a budget.

One module per job: `transforms` (scaling one config, the grid), `explore` (pricing, timing and
training the grid), `fits` (power laws, accuracy slopes, the budget fit) and `report` (the page).

Units, stated once: FLOPs are fvcore totals (1 multiply-add = 1 FLOP) at each point's resolution;
accuracies are proxy accuracies on a small data set, never ImageNet accuracy; the proxy trains at
`proxy.res * res / 224` px, so resolution scaling shows in the proxy too. A budget given to a grid
run limits each point's own FLOPs (at its resolution), params and latency.
"""
from .explore import (
    CSV_COLUMNS,
    DEFAULT_TRAIN,
    ScalingSettings,
    check_points_fit,
    explore,
    price_points,
    record_scaling_run,
    training_rows,
)
from .fits import (
    COST_METRICS,
    BudgetFit,
    PowerLaw,
    accuracy_fits,
    best_direction,
    cost_fits,
    export_budget_fit,
    fit_budget,
    fit_power_law,
)
from .report import PLOT_IDS, report_html, write_report
from .transforms import (
    BASE_RES,
    DIRECTIONS,
    X_LABELS,
    Compound,
    Point,
    ScalingError,
    ScalingGrid,
    compound_scale,
    fit_x,
    grid_points,
    scale_depth,
    scale_width,
)

__all__ = ["BASE_RES", "COST_METRICS", "CSV_COLUMNS", "DEFAULT_TRAIN", "DIRECTIONS", "PLOT_IDS", "X_LABELS",
           "BudgetFit", "Compound", "Point", "PowerLaw", "ScalingError", "ScalingGrid", "ScalingSettings",
           "accuracy_fits", "best_direction", "check_points_fit", "compound_scale", "cost_fits", "explore",
           "export_budget_fit",
           "fit_budget", "fit_power_law", "fit_x", "grid_points", "price_points", "record_scaling_run", "report_html",
           "scale_depth", "scale_width", "training_rows", "write_report"]
