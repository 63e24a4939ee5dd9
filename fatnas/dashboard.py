"""HTML dashboards of search runs: plain tables first, then plotly figures, then one page.

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
"""
from __future__ import annotations

import html
import json
import math
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import pandas as pd

from .config import NUM_STAGES, STAGE_FIELDS, FATConfig, describe
from .cost import Budget, format_flops
from .paths import check_writable
from .report import html_table, layout, log_axis, page_html, palette_color, proxy_accuracy_label
from .store import Run, atomic_write_text, hypervolume, pareto_front
from .trust import ProxyTrust, find_proxy_trust

PLOT_IDS = ("pareto", "acc-flops", "acc-params", "hypervolume", "best-accuracy", "importance", "parcoords")
HV_LATENCY_MARGIN = 1.1
MIN_TRIALS_FOR_OPTUNA = 20  # below this many complete trials, importance falls back to the spread
STATES = ("COMPLETE", "PRUNED", "INFEASIBLE", "SCREENED_OUT", "FAIL", "RUNNING")
ARCH_COLUMNS = tuple(f"{name}_{s}" for name in STAGE_FIELDS for s in range(NUM_STAGES))
TABLE_COLUMNS = ("trial", "state", "accuracy", "latency_ms", "params", "flops", *ARCH_COLUMNS, "config")


# ---------------------------------------------------------------- data

class RunData(NamedTuple):
    """What the dashboard reads from one run folder."""

    run_id: str
    path: Path
    meta: dict[str, Any]
    trials: pd.DataFrame
    front: pd.DataFrame
    references: pd.DataFrame
    budget: Budget
    dataset: str
    res: int
    device: str
    trust: ProxyTrust


def load_run_data(run: Run) -> RunData:
    """Read run.yaml, trials.csv, pareto.csv and references.csv of one run."""
    meta = run.read_meta()
    trials = _with_columns(run.trials())
    front = _with_columns(run.pareto() if (run.path / "pareto.csv").is_file() else pareto_front(trials))
    budget = Budget(**meta["budget"]) if meta.get("budget") else Budget()
    res = int((meta.get("space") or {}).get("resolution") or budget.res)
    device = latency_origin(meta)
    return RunData(run.id, run.path, meta, trials, front, _with_columns(run.references(), ("name",)), budget,
                   str(meta.get("dataset", "unknown data set")), res, str(device),
                   find_proxy_trust(meta.get("proxy") or {}, dataset=str(meta.get("dataset", ""))))


def latency_origin(meta: dict) -> str:
    """Where a run's latency comes from: `cpu, measured (torch, 1 threads)` or `cuda, modelled from T.json [hash]`."""
    latency = meta.get("latency") or {}
    device = latency.get("device") or (meta.get("proxy") or {}).get("device") or "cpu"
    if latency.get("source") == "modelled":
        return (f"{device}, modelled from {Path(str(latency.get('table'))).name} [{latency.get('table_fingerprint')}]"
                f" ({latency.get('runtime')}, {latency.get('threads')} threads, batch {latency.get('batch_size')})")
    if latency.get("source") == "measured":
        return f"{device}, measured ({latency.get('runtime')}, {latency.get('threads')} threads)"
    return str(device)


def _with_columns(table: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """A table with at least the trials.csv columns the dashboard reads (a run with no trial yet has none)."""
    needed = [*extra, *TABLE_COLUMNS]
    missing = [c for c in needed if c not in table.columns]
    return table.reindex(columns=[*table.columns, *missing]) if missing else table


def fits_budget(table: pd.DataFrame, budget: Budget) -> pd.Series:
    """Rows within every limit of the budget (FLOPs, params, latency)."""
    mask = pd.Series(True, index=table.index)
    for column, limit in (("flops", budget.max_flops), ("params", budget.max_params),
                          ("latency_ms", budget.max_latency_ms)):
        if limit is not None and column in table:
            mask &= table[column] <= limit
    return mask


def complete_trials(data: RunData) -> pd.DataFrame:
    """Trials that trained to the end: their accuracy and latency are final."""
    t = data.trials
    if t.empty or "state" not in t:
        return t
    return t[(t["state"] == "COMPLETE") & t["accuracy"].notna() & t["latency_ms"].notna()]


def evaluated_references(data: RunData) -> pd.DataFrame:
    """The published FATs the run proxy-evaluated (those within its budget)."""
    r = data.references
    if r.empty or "state" not in r:
        return r
    return r[(r["state"] == "REFERENCE") & r["accuracy"].notna()]


def state_counts(data: RunData) -> dict[str, int]:
    counts = data.trials["state"].value_counts().to_dict() if not data.trials.empty else {}
    return {s: int(counts.get(s, 0)) for s in STATES}


def summary_table(runs: Sequence[RunData]) -> pd.DataFrame:
    """One row per run: budget, trial counts by state, front size, best accuracy vs best reference."""
    rows = []
    for data in runs:
        counts = state_counts(data)
        done = complete_trials(data)
        done = done[fits_budget(done, data.budget)]
        best = done.loc[done["accuracy"].idxmax()] if not done.empty else None
        refs = evaluated_references(data)
        refs = refs[fits_budget(refs, data.budget)] if not refs.empty else refs
        ref = refs.loc[refs["accuracy"].idxmax()] if not refs.empty else None
        rows.append(dict(
            run=data.run_id, dataset=data.dataset, res=data.res, budget=data.budget.describe(),
            sampler=data.meta.get("sampler", "-"), trials=len(data.trials), **counts, front=len(data.front),
            best_accuracy=float(best["accuracy"]) if best is not None else math.nan,
            best_trial=int(best["trial"]) if best is not None else None,
            best_latency_ms=float(best["latency_ms"]) if best is not None else math.nan,
            best_reference=str(ref["name"]) if ref is not None else None,
            best_reference_accuracy=float(ref["accuracy"]) if ref is not None else math.nan,
            over_budget_references=", ".join(data.references.loc[data.references["state"] == "OVER_BUDGET", "name"])
            if not data.references.empty and "state" in data.references else "",
        ))
    return pd.DataFrame(rows)


def front_table(data: RunData) -> pd.DataFrame:
    """The run's accuracy-latency Pareto front (pareto.csv), fastest first."""
    return data.front.sort_values("latency_ms").reset_index(drop=True) if not data.front.empty else data.front


class HypervolumeInfo(NamedTuple):
    """Hypervolume and best accuracy under budget after each trial, one row per (run, trial)."""

    table: pd.DataFrame  # run, trial, state, hypervolume, best_accuracy
    ref_accuracy: float
    ref_latency_ms: float


def hypervolume_info(runs: Sequence[RunData]) -> HypervolumeInfo:
    """Running hypervolume of complete trials (common reference point) and best accuracy under budget."""
    latencies = [lat for d in runs for lat in complete_trials(d)["latency_ms"]] if runs else []
    ref_latency = HV_LATENCY_MARGIN * max(latencies) if latencies else 1.0
    rows = []
    for data in runs:
        points: list[tuple[float, float]] = []
        best = math.nan
        if data.trials.empty:
            continue
        done_ids = set(complete_trials(data)["trial"])
        fits = fits_budget(data.trials, data.budget)
        for idx, row in data.trials.sort_values("trial").iterrows():
            if row["trial"] in done_ids:
                points.append((float(row["accuracy"]), float(row["latency_ms"])))
                if fits[idx] and (math.isnan(best) or row["accuracy"] > best):
                    best = float(row["accuracy"])
            rows.append(dict(run=data.run_id, trial=int(row["trial"]), state=row["state"],
                             hypervolume=hypervolume(points, ref_latency), best_accuracy=best))
    return HypervolumeInfo(pd.DataFrame(rows, columns=["run", "trial", "state", "hypervolume", "best_accuracy"]),
                           0.0, ref_latency)


class ImportanceInfo(NamedTuple):
    """How much each architecture choice matters for proxy accuracy, largest first."""

    table: pd.DataFrame  # param, importance (sums to 1 unless all are 0)
    method: str


def spread_importances(trials: pd.DataFrame) -> pd.DataFrame:
    """Per architecture column: the spread (max - min) of mean accuracy across its values, normalized."""
    done = trials[trials["state"] == "COMPLETE"].dropna(subset=["accuracy"]) if not trials.empty else trials
    rows = []
    for column in ARCH_COLUMNS:
        if column not in done or done[column].nunique() < 2:
            continue  # a fixed choice cannot matter
        means = done.groupby(column)["accuracy"].mean()
        rows.append(dict(param=column, importance=float(means.max() - means.min())))
    table = pd.DataFrame(rows, columns=["param", "importance"])
    total = table["importance"].sum()
    if total > 0:
        table["importance"] = table["importance"] / total
    return table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


def optuna_importances(study: Any) -> pd.DataFrame:
    """Optuna's importances of the sampled choices for accuracy (objective 0, maximized).

    Optuna's default evaluator (PED-ANOVA) ranks what it takes to reach *low* target values,
    so the target is minus the accuracy. Choices with a single option are left out.
    """
    import optuna

    varying = sorted({name for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                      for name, dist in t.distributions.items() if not dist.single()})
    if not varying:
        return pd.DataFrame(columns=["param", "importance"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the evaluator's note on target direction, handled above
        values = optuna.importance.get_param_importances(study, params=varying, target=lambda t: -t.values[0])
    table = pd.DataFrame([dict(param=k, importance=float(v)) for k, v in values.items()],
                         columns=["param", "importance"])
    return table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


def readable_storage(data: RunData) -> str | None:
    """A storage holding the run's study that is a file on this machine: run.yaml's `storage` when it is a
    SQLite or journal file found here, else study.db when present. Database servers are not contacted."""
    from .search.storage import journal_path

    recorded = data.meta.get("storage") or ""
    journal = journal_path(recorded)
    if journal is not None and journal.is_file():
        return recorded
    if recorded.startswith("sqlite:///") and Path(recorded.split(":///", 1)[1]).is_file():
        return recorded
    db = data.path / "study.db"
    return f"sqlite:///{db.resolve()}" if db.is_file() else None


def load_study(data: RunData) -> Any | None:
    """The run's Optuna study (named after the run) from `readable_storage`, or None when there is none."""
    url = readable_storage(data)
    if url is None:
        return None
    import optuna

    from .search.optuna_backend import study_names
    from .search.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url, None)
    names = study_names(storage)
    if not names:
        return None
    return optuna.load_study(study_name=data.run_id if data.run_id in names else names[0], storage=storage)


def importance_info(data: RunData, *, min_trials: int = MIN_TRIALS_FOR_OPTUNA) -> ImportanceInfo:
    """Optuna's importances when the study has `min_trials` complete trials, else the simple spread."""
    n_done = len(complete_trials(data))
    study = load_study(data) if n_done >= min_trials else None
    if study is not None:
        try:
            return ImportanceInfo(optuna_importances(study),
                                  f"Optuna get_param_importances (PED-ANOVA) on {n_done} complete trials")
        except (ValueError, RuntimeError) as exc:  # a study Optuna cannot evaluate: fall back
            reason = f"Optuna's importance failed ({exc})"
    else:
        reason = f"{n_done} complete trials, fewer than the {min_trials} Optuna's importance needs"
    return ImportanceInfo(spread_importances(data.trials),
                          f"spread of mean proxy accuracy across each choice's values ({reason})")


def parcoords_table(runs: Sequence[RunData]) -> pd.DataFrame:
    """Complete trials of all runs: run, trial, the architecture columns that vary, costs, accuracy."""
    frames = [complete_trials(d).assign(run=d.run_id) for d in runs]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=["run", "trial", "params", "flops", "latency_ms", "accuracy"])
    table = pd.concat(frames, ignore_index=True)
    varying = [c for c in ARCH_COLUMNS if c in table and table[c].nunique() > 1]
    return table[["run", "trial", *varying, "params", "flops", "latency_ms", "accuracy"]].reset_index(drop=True)


# ---------------------------------------------------------------- drawing

def _accuracy_label(runs: Sequence[RunData]) -> str:
    return proxy_accuracy_label(d.dataset for d in runs)


def _res_text(runs: Sequence[RunData]) -> str:
    res = sorted({d.res for d in runs})
    return f"{res[0]} px" if len(res) == 1 else "each run's resolution"


def hover_text(row: pd.Series, data: RunData) -> str:
    """Trial, accuracy, latency, params, FLOPs (with their convention) and the config, for one point."""
    head = f"<b>{html.escape(str(row['name']))}</b> (published FAT)" if "name" in row and isinstance(row["name"], str) \
        else f"<b>{html.escape(data.run_id)} trial {int(row['trial'])}</b> ({row['state']})"
    lines = [head]
    if pd.notna(row.get("accuracy")):
        lines.append(f"proxy accuracy ({html.escape(data.dataset)}): {row['accuracy']:.4f}")
    if pd.notna(row.get("latency_ms")):
        lines.append(f"latency: {row['latency_ms']:.2f} ms ({html.escape(data.device)}, {data.res} px)")
    if pd.notna(row.get("params")):
        lines.append(f"params: {int(row['params']):,} ({row['params'] / 1e6:.3f} M)")
    if pd.notna(row.get("flops")):
        lines.append(f"FLOPs: {format_flops(row['flops'])}, fvcore total at {data.res} px")
    try:
        cfg = FATConfig.from_dict(json.loads(row["config"]))
        lines.append(f"config: {describe(cfg)}")
    except (KeyError, TypeError, ValueError):
        pass
    return "<br>".join(lines)


def _hovers(table: pd.DataFrame, data: RunData) -> list[str]:
    return [hover_text(row, data) for _, row in table.iterrows()]


POINT_COLUMNS = ("run", "run_index", "group", "x", "accuracy", "error", "label", "hover")
# what each group of points is, how its trace is named and drawn; trials and front get a trace even when empty
POINT_NAMES = {"trials": "trials", "stopped": "stopped early", "published": "published FAT", "front": "Pareto front"}
POINT_UIDS = {"trials": "trials", "stopped": "stopped", "published": "refs", "front": "front"}
POINT_STYLES: dict[str, dict[str, Any]] = {
    "trials": dict(mode="markers", marker=dict(size=8, opacity=0.75)),
    "stopped": dict(mode="markers", marker=dict(size=7, symbol="circle-open", opacity=0.6)),
    "published": dict(mode="markers+text", textposition="top center",
                      marker=dict(size=15, symbol="star", line=dict(width=1, color="black"))),
    "front": dict(mode="lines+markers", marker=dict(size=11, symbol="diamond", line=dict(width=1, color="black"))),
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
    return [("trials", complete_trials(data)), ("stopped", stopped), ("published", evaluated_references(data)),
            ("front", front_table(data))]


def _point_rows(table: pd.DataFrame, data: RunData, run_index: int, group: str, x: str) -> pd.DataFrame:
    val_images = int((data.meta.get("proxy") or {}).get("val_images") or 0)
    return pd.DataFrame(dict(run=data.run_id, run_index=run_index, group=group, x=table[x].astype(float).to_numpy(),
                             accuracy=table["accuracy"].astype(float).to_numpy(),
                             error=data.trust.error_bars(table["accuracy"], val_images),
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
            name = f"{data.run_id}: {POINT_NAMES[group]}" + (f" ({len(part)})" if group == "front" else "")
            fig.add_trace(go.Scatter(x=part["x"].tolist(), y=part["accuracy"].tolist(), name=name,
                                     uid=f"{POINT_UIDS[group]}-{i}", legendgroup=data.run_id,
                                     text=part["label"].tolist() if group == "published" else None,
                                     hovertext=part["hover"].tolist(), hoverinfo="text",
                                     error_y=dict(type="data", array=part["error"].tolist(), thickness=1, width=3,
                                                  color=color), **style))
    return fig


def pareto_figure(runs: Sequence[RunData]) -> Any:
    """Every trial as a point, each run's front as a staircase line, published FATs as stars."""
    groups = ("trials", "stopped", "published", "front")
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
                  f"latency (ms, median at batch 1 on {devices}, {_res_text(runs)})", _accuracy_label(runs),
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
        title, x_title = "Accuracy vs FLOPs", f"FLOPs (fvcore total at {_res_text(runs)}, 1 multiply-add = 1 FLOP)"
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
        label = {"params": "params (M)", "flops": f"MFLOPs (fvcore, {_res_text(runs)})", "latency_ms": "latency (ms)",
                 "accuracy": "proxy accuracy"}.get(column, column)
        scale = 1e6 if column in ("params", "flops") else 1.0
        dims.append(dict(label=label, values=(values / scale).tolist()))
    line = dict(color=table["accuracy"].astype(float).tolist(), colorscale="Viridis", showscale=True,
                colorbar=dict(title="proxy<br>accuracy")) if not table.empty else {}
    fig = go.Figure(go.Parcoords(dimensions=dims, line=line, uid="parcoords-0"))
    return layout(fig, f"Complete trials across architecture choices (color: {_accuracy_label(runs)})", "", "",
                   margin=dict(l=80, r=80, t=90, b=40))


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
            f"never ImageNet accuracy. FLOPs are fvcore totals at {_res_text(runs)} (1 multiply-add = 1 FLOP; "
            "convolutions, attention matmuls, norms and head). Latency is the median batch-1 forward time on the "
            "run's device. Published FATs (stars) appear where the run evaluated them, i.e. within its budget.")
    trust = "".join(f"<p class=\"note trust\" id=\"trust-{i}\">{html.escape(d.run_id)}: "
                    f"{html.escape(d.trust.describe())}</p>\n" for i, d in enumerate(runs))
    table = html_table(summary_display_table(summary), "summary")
    return page_html(f"fatnas dashboard: {ids}", f"<p class=\"note\">{note}</p>\n{trust}{table}", figures)


def write_dashboard(runs: Sequence[Run], path: str | Path | None = None) -> Path:
    """Write the dashboard of `runs` to `path` (default: dashboard.html in the first run's folder)."""
    datas = [load_run_data(r) for r in runs]
    out = check_writable(path, "-o") if path is not None else runs[0].path / "dashboard.html"
    if out.is_dir():
        out = out / "dashboard.html"
    atomic_write_text(out, dashboard_html(datas))
    return out


__all__ = ["PLOT_IDS", "POINT_COLUMNS", "HypervolumeInfo", "ImportanceInfo", "RunData", "accuracy_points",
           "dashboard_html", "front_table", "hypervolume_info", "importance_info", "load_run_data",
           "optuna_importances", "parcoords_table", "points_figure", "spread_importances", "summary_display_table",
           "summary_table", "write_dashboard"]
