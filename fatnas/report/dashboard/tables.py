"""The dashboard's data: a run folder read into a `RunData`, then plain pandas tables (summary, front,
hypervolume, importance, parallel coordinates) that the tests check before anything is drawn.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import pandas as pd

from ...estimate.cost import Budget
from ...model.config import NUM_STAGES, STAGE_FIELDS
from ...runs.noise import Noise, Z, binomial_std, noise_aware_band
from ...runs.store import Run, hypervolume, pareto_front, pareto_mask
from ...runs.store import state_counts as count_states
from ...study.trust import OBJECTIVE, ProxyTrust, find_proxy_trust

PLOT_IDS = ("pareto", "acc-flops", "acc-params", "hypervolume", "best-accuracy", "importance", "parcoords")
HV_LATENCY_MARGIN = 1.1
MIN_TRIALS_FOR_OPTUNA = 20  # below this many complete trials, importance falls back to the spread
STATES = ("COMPLETE", "PRUNED", "INFEASIBLE", "SCREENED_OUT", "FAIL", "RUNNING")
ARCH_COLUMNS = tuple(f"{name}_{s}" for name in STAGE_FIELDS for s in range(NUM_STAGES))
CONFIRMED_FILE = "confirmed.csv"  # `fatnas confirm`'s figures, beside the search's
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
    noise: Noise | None = None  # what run.yaml records (None: older runs, or none measured)
    confirmed: pd.DataFrame | None = None  # confirmed.csv of `fatnas confirm` (None: not confirmed)


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
                   find_proxy_trust(meta.get("proxy") or {}, dataset=str(meta.get("dataset", "")),
                                    classes=tuple(meta.get("classes") or ()), estimator=meta.get("estimator", "proxy"),
                                    objective=(meta.get("objectives") or {}).get("accuracy", OBJECTIVE),
                                    val_images=validation_images(meta)),
                   Noise.from_dict(meta.get("noise")), _confirmed(run))


def _confirmed(run: Run) -> pd.DataFrame | None:
    """confirmed.csv of the run, or None where it has none."""
    table = run.read_table(CONFIRMED_FILE)
    return None if table.empty else table


def validation_images(meta: dict) -> int:
    """The validation images a run's accuracies are measured on (older runs recorded only the proxy's count)."""
    return int(meta.get("validation_images") or (meta.get("proxy") or {}).get("val_images") or 0)


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
    """Trials by state, every state of `STATES` present (0 where none)."""
    counts = count_states(data.trials)
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
            noise_std=accuracy_noise(data).std,
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
    from ...search.storage import storage_file

    recorded = data.meta.get("storage") or ""
    path = storage_file(recorded)
    if path is not None and path.is_file():
        return recorded
    db = data.path / "study.db"
    return f"sqlite:///{db.resolve()}" if db.is_file() else None


def load_study(data: RunData) -> Any | None:
    """The run's Optuna study (named after the run) from `readable_storage`, or None when there is none."""
    url = readable_storage(data)
    if url is None:
        return None
    import optuna

    from ...search.optuna_backend import study_names
    from ...search.storage import open_storage

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


# ---------------------------------------------------------------- noise

def accuracy_noise(data: RunData) -> Noise:
    """The noise of one of the run's accuracies: measured in the run, else a fidelity study's seed std, else the
    validation set's sampling error at the mean accuracy (a lower bound)."""
    if data.noise is not None:
        return data.noise
    if data.trust.seed_std is not None:
        return Noise(data.trust.seed_std, "fidelity study", data.trust.seed_note)
    done = complete_trials(data)
    mean = float(done["accuracy"].mean()) if not done.empty else 0.5
    images = validation_images(data.meta)
    return Noise(binomial_std(mean, images), "binomial",
                 f"binomial std of {images} validation images at accuracy {mean:.3f}, a lower bound")


def error_bars(data: RunData, accuracy: pd.Series) -> list[float]:
    """Half-widths of the CONFIDENCE intervals of `accuracy` (single evaluations): Z x the run's noise, else Z x
    the trust's per-point error (a fidelity study's seed std, or each point's binomial std)."""
    if data.noise is not None:
        return [Z * data.noise.std] * len(accuracy)
    return [Z * e for e in data.trust.error_bars(accuracy, validation_images(data.meta))]


def band_table(data: RunData) -> pd.DataFrame:
    """The band (`runs.noise.noise_aware_band`) of the run's complete trials under `accuracy_noise`, as in band.csv."""
    done = complete_trials(data)
    mask = pareto_mask(done) if not done.empty else pd.Series(dtype=bool)
    return noise_aware_band(done, mask, data.references, accuracy_noise(data).std)
