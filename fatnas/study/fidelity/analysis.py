"""How well each estimator ranks: the reference and its reliability, estimators oriented so that higher =
predicted better, the leave-one-out predictor, rank correlations with intervals, the seed spread.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ...estimate.zero_cost import BASELINES
from ..rank_stats import (
    band_tau,
    bootstrap_indices,
    icc1,
    interval,
    kendall_tau,
    loo_ridge,
    paired_difference,
    partial_interval,
    partial_tau,
    seed_tau,
    spearman_brown,
    spearman_rho,
    tau_ceiling,
    tau_interval,
    tau_to_r,
)
from .jobs import kind_of, with_metric
from .settings import StudySettings
from .specs import (
    MIN_PREDICTOR_ARCHS,
    ORIENTED,
    PREDICTOR,
    PREDICTOR_KIND,
    REFERENCE_METRICS,
    SCORE,
    SCORER_METRICS,
    SIGNS,
    TARGET_PARAMS_TAU,
    TARGET_SEED_TAU,
    TRAIN,
    TRAIN_METRICS,
    WEIGHT_SHARING,
)


def top_k_overlap(scores: pd.Series, truth: pd.Series, k: int) -> float:
    """Fraction of the truth's k best that are among the scores' k best."""
    k = min(k, len(truth))
    return len(set(scores.nlargest(k).index) & set(truth.nlargest(k).index)) / k


@dataclass(frozen=True)
class Reference:
    """The ranking every estimator is measured against: a high-fidelity metric, oriented, averaged over seeds."""

    metric: str  # loss, accuracy or both (the mean of their per-seed ranks)
    name: str  # e.g. '-test loss (2-seed mean)', shown wherever a tau is
    values: pd.Series  # per architecture; higher = better


def reference_name(metric: str, settings: StudySettings) -> str:
    split = "test" if settings.high.eval_split == "test" else "validation"
    text = {"accuracy": f"{split} accuracy", "loss": f"-{split} loss", "both": f"{split} accuracy & -loss rank"}[metric]
    return f"{text} ({settings.high_seeds}-seed mean)" if settings.high_seeds > 1 else f"{text} (one seed)"


def reference_seeds_table(table: pd.DataFrame, settings: StudySettings, metric: str) -> pd.DataFrame:
    """Architectures x reference seeds of the high fidelity's `metric`, oriented (higher = better)."""
    if metric == "both":  # each seed's networks ranked by accuracy and by -loss, the two ranks averaged
        acc, loss = (reference_seeds_table(table, settings, m) for m in ("accuracy", "loss"))
        return (acc.rank() + loss.rank()) / 2
    high = table[(table["measure"] == settings.high_label) & (table["metric"] == metric)
                 & table["seed"].isin(settings.reference_seeds)].dropna(subset=["value"])
    seeds = list(settings.reference_seeds)
    if high.empty:
        return pd.DataFrame(columns=seeds, dtype=float)
    values = high.pivot_table(index="arch", columns="seed", values="value").reindex(columns=seeds)
    return SIGNS[metric] * values


def arch_sizes(table: pd.DataFrame) -> pd.DataFrame:
    """params and flops per architecture."""
    return table.groupby("arch")[["params", "flops"]].first().astype(float)


def job_seconds(table: pd.DataFrame) -> pd.Series:
    """Mean seconds of one job per measure (a training's metrics share its seconds)."""
    return table.drop_duplicates(["arch", "measure", "seed"]).groupby("measure")["seconds"].mean()


def reliability(table: pd.DataFrame, settings: StudySettings) -> pd.DataFrame:
    """Per reference metric: seed-to-seed tau (interval), ICC(1), Spearman-Brown reliability, ceilings, size taus."""
    table, rows = with_metric(table), []
    sizes = arch_sizes(table) if not table.empty else pd.DataFrame(columns=["params", "flops"])
    for metric in REFERENCE_METRICS:
        seeds = reference_seeds_table(table, settings, metric)
        mean = seeds.mean(axis=1).dropna()
        if mean.empty:
            continue
        rows.append(dict(metric=metric, reference=reference_name(metric, settings), **_seed_agreement(seeds, settings),
                         params_tau=_size_tau(mean, sizes["params"]), flops_tau=_size_tau(mean, sizes["flops"]),
                         seconds_per_training=float(job_seconds(table).get(settings.high_label, np.nan))))
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame.insert(2, "chosen", frame["metric"] == choose_reference_metric(frame, settings.reference_metric))
    frame["meets_targets"] = (frame["seed_tau"] >= TARGET_SEED_TAU) & (frame["params_tau"].abs() <= TARGET_PARAMS_TAU)
    return frame


def _seed_agreement(seeds: pd.DataFrame, settings: StudySettings) -> dict[str, Any]:
    """Seed-to-seed tau with its interval, ICC(1), ICC(1,k), r = sin(pi tau / 2), R_k and ceilings (k = 1, 2, seeds)."""
    complete = seeds.dropna().to_numpy(dtype=float)
    k, n = settings.high_seeds, len(complete)
    tau, low, high = (float("nan"),) * 3
    if k >= 2 and n >= 3:
        tau = seed_tau(complete)
        low, high = interval(seed_tau(complete[bootstrap_indices(n, seed=settings.seed)]))
    icc, icc_mean = icc1(complete) if k >= 2 else (float("nan"), float("nan"))
    r1 = max(0.0, tau_to_r(tau)) if np.isfinite(tau) else float("nan")  # seeds that disagree: no reliability
    return dict(seeds=k, archs=n, seed_tau=tau, seed_tau_low=low, seed_tau_high=high, icc1=icc, icc1_mean=icc_mean,
                r_1=r1, r_2=spearman_brown(r1, 2), ceiling_1=tau_ceiling(tau, 1), ceiling_2=tau_ceiling(tau, 2),
                ceiling=tau_ceiling(tau, k))


def _size_tau(values: pd.Series, size: pd.Series) -> float:
    pair = pd.concat([values, size], axis=1, join="inner").dropna()
    return kendall_tau(pair.iloc[:, 0], pair.iloc[:, 1]) if len(pair) >= 3 else float("nan")


def choose_reference_metric(reliable: pd.DataFrame, requested: str = "auto") -> str:
    """`requested`, or for auto the metric with the highest seed-to-seed tau (accuracy when no tau is known)."""
    if requested != "auto":
        return requested
    known = reliable[np.isfinite(reliable["seed_tau"].astype(float))] if not reliable.empty else reliable
    if known.empty:
        return "accuracy"
    return str(known.loc[known["seed_tau"].astype(float).idxmax(), "metric"])


def study_reference(table: pd.DataFrame, settings: StudySettings, reliable: pd.DataFrame | None = None) -> Reference:
    """The reference of the study: the chosen metric's seed mean."""
    reliable = reliability(table, settings) if reliable is None else reliable
    metric = choose_reference_metric(reliable, settings.reference_metric)
    values = reference_seeds_table(with_metric(table), settings, metric).mean(axis=1).dropna()
    return Reference(metric, reference_name(metric, settings), values)


@dataclass(frozen=True)
class EstimatorColumn:
    """One way to predict the reference: a measure's metric times `sign` (higher = predicted better)."""

    name: str
    measure: str
    metric: str
    kind: str
    sign: int = 1


Estimator = EstimatorColumn  # its name before `fatnas.estimate.Estimator`, the interface every estimator implements


def estimators(settings: StudySettings) -> list[EstimatorColumn]:
    """Each low fidelity's four metrics, the zero-cost proxies, the baselines (the predictor comes last, apart)."""
    specs = [EstimatorColumn(f"{settings.label(low)}:{ORIENTED[m]}", settings.label(low), m, TRAIN, SIGNS[m])
             for low in settings.lows for m in TRAIN_METRICS]
    specs += [EstimatorColumn(f"{scorer}:{ORIENTED[m]}", scorer, m, WEIGHT_SHARING, SIGNS[m])
              for scorer in settings.scorers for m in SCORER_METRICS]
    zero = [p for p in settings.proxies if p not in BASELINES] + [p for p in settings.proxies if p in BASELINES]
    return specs + [EstimatorColumn(p, p, SCORE, kind_of(p)) for p in zero]


def estimator_table(table: pd.DataFrame, settings: StudySettings, reference: Reference) -> pd.DataFrame:
    """Architectures x estimators at the study seed, oriented; the leave-one-out predictor of `reference` last."""
    main = table[table["seed"] == settings.seed].dropna(subset=["value"])
    if main.empty:
        return pd.DataFrame()
    values = main.pivot_table(index=["measure", "metric"], columns="arch", values="value")
    columns = {e.name: e.sign * values.loc[(e.measure, e.metric)] for e in estimators(settings)
               if (e.measure, e.metric) in values.index}
    frame = pd.DataFrame(columns)
    features = predictor_features(frame, arch_sizes(main), settings)
    frame[PREDICTOR] = loo_predictions(features, reference.values)
    return frame


def predictor_features(frame: pd.DataFrame, sizes: pd.DataFrame, settings: StudySettings) -> pd.DataFrame:
    """The main low's four metrics, log params, log FLOPs and the zero-cost scores (logs where all are positive)."""
    low = [f"{settings.main_low}:{ORIENTED[m]}" for m in TRAIN_METRICS]
    columns = {name: frame[name] for name in low if name in frame}
    columns.update({"log params": np.log(sizes["params"]), "log flops": np.log(sizes["flops"])})
    for proxy in (p for p in settings.proxies if p not in BASELINES and p in frame):
        score = frame[proxy]
        columns[proxy] = np.log(score) if (score.dropna() > 0).all() else score
    features = pd.DataFrame(columns)
    return features.loc[:, features.notna().any() & (features.nunique() > 1)]


def loo_predictions(features: pd.DataFrame, target: pd.Series) -> pd.Series:
    """Each architecture's ridge prediction of `target` from a fit without it (NaN with too few architectures)."""
    data = features.join(target.rename("_target"), how="inner").dropna()
    if len(data) < MIN_PREDICTOR_ARCHS or features.shape[1] == 0:
        return pd.Series(np.nan, index=features.index)
    predicted = loo_ridge(data[features.columns].to_numpy(), data["_target"].to_numpy())
    return pd.Series(predicted, index=data.index).reindex(features.index)


def correlations(table: pd.DataFrame, settings: StudySettings, reliable: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per estimator against the reference: tau (90% interval), rho, top-k, band and partial taus, differences, cost."""
    table = with_metric(table)
    if table.empty:
        return pd.DataFrame()
    reference = study_reference(table, settings, reliable)
    frame, sizes, seconds = estimator_table(table, settings, reference), arch_sizes(table), job_seconds(table)
    specs = [e for e in estimators(settings) if e.name in frame]
    if PREDICTOR in frame and frame[PREDICTOR].notna().any():
        specs.append(EstimatorColumn(PREDICTOR, PREDICTOR, SCORE, PREDICTOR_KIND))
    others = _comparisons(frame, reference, sizes, settings)
    rows = []
    for spec in specs:
        row = dict(estimator=spec.name, measure=spec.measure, metric=ORIENTED[spec.metric], kind=spec.kind,
                   reference=reference.name)
        row.update(rank_statistics(frame[spec.name], reference.values, sizes, others, settings))
        cost = _estimator_seconds(spec, seconds, settings)
        row.update(seconds_per_arch=cost, cost_vs_high=cost / seconds.get(settings.high_label, np.nan))
        rows.append(row)
    return pd.DataFrame(rows)


def _comparisons(frame: pd.DataFrame, reference: Reference, sizes: pd.DataFrame,
                 settings: StudySettings) -> dict[str, pd.Series]:
    """What every estimator is paired with: params (signed to agree with the reference), the main low's accuracy."""
    others = {}
    tau = _size_tau(reference.values, sizes["params"])
    others["params"] = (-1.0 if tau < 0 else 1.0) * sizes["params"]
    proxy = f"{settings.main_low}:accuracy"
    if proxy in frame:
        others["proxy"] = frame[proxy]
    return others


def rank_statistics(scores: pd.Series, truth: pd.Series, sizes: pd.DataFrame, others: dict[str, pd.Series],
                    settings: StudySettings) -> dict[str, Any]:
    """Kendall tau and its interval, Spearman rho, top-k overlap, band and partial tau, minus_<other> differences."""
    pair = pd.concat([scores.rename("x"), truth.rename("y"), sizes], axis=1, join="inner").dropna()
    x, y, seed = pair["x"].to_numpy(), pair["y"].to_numpy(), settings.seed
    out: dict[str, Any] = dict(archs=len(pair))
    names = ["kendall_tau", "tau_low", "tau_high", "spearman_rho", "top_k_overlap", "band_tau", "band_archs",
             "partial_tau", "partial_low", "partial_high"]
    names += [f"minus_{o}{end}" for o in ("params", "proxy") for end in ("", "_low", "_high")]
    out.update(dict.fromkeys(names, float("nan")))
    if len(pair) < 3:
        return out
    size = np.log(pair[["params", "flops"]].to_numpy())
    out.update(kendall_tau=kendall_tau(x, y), spearman_rho=spearman_rho(x, y),
               top_k_overlap=top_k_overlap(pair["x"], pair["y"], settings.top_k), partial_tau=partial_tau(x, y, size))
    out["tau_low"], out["tau_high"] = tau_interval(x, y, seed=seed)
    out["band_tau"], out["band_archs"] = band_tau(x, y, pair["flops"].to_numpy())
    out["partial_low"], out["partial_high"] = partial_interval(x, y, size, seed=seed)
    for name, other in others.items():
        both = pd.concat([pair[["x", "y"]], other.rename("o")], axis=1, join="inner").dropna()
        if len(both) >= 3:
            diff = paired_difference(both["x"].to_numpy(), both["o"].to_numpy(), both["y"].to_numpy(), seed=seed)
            out.update(zip((f"minus_{name}", f"minus_{name}_low", f"minus_{name}_high"), diff))
    return out


def _estimator_seconds(spec: EstimatorColumn, seconds: pd.Series, settings: StudySettings) -> float:
    """Seconds per architecture; the predictor costs the main low's training plus every proxy it read."""
    if spec.kind != PREDICTOR_KIND:
        return float(seconds.get(spec.measure, np.nan))
    return float(seconds.get(settings.main_low, np.nan) + sum(seconds.get(p, 0.0) for p in settings.proxies))


def seed_spread(table: pd.DataFrame, settings: StudySettings) -> pd.DataFrame:
    """Per training fidelity: accuracy std of one network over seeds, pooled over networks, and across networks."""
    rows = []
    table = with_metric(table)
    trained = table[(table["kind"] == TRAIN) & (table["metric"] == "accuracy")]
    for fidelity in settings.fidelities:
        label = settings.label(fidelity)
        at = trained[trained["measure"] == label]
        per_arch_seeds = at.groupby("arch")["seed"].nunique()
        if at.empty or per_arch_seeds.max() < 2:
            continue
        spread = per_arch_seeds.idxmax()
        seeds = at[at["arch"] == spread]["value"]
        networks = at[at["seed"] == settings.seed]["value"]
        several = at[at["arch"].isin(per_arch_seeds[per_arch_seeds >= 2].index)]
        pooled = float(np.sqrt(several.groupby("arch")["value"].var(ddof=1).mean()))
        rows.append(dict(measure=label, network=spread, seeds=len(seeds), seed_std=float(seeds.std()),
                         seed_range=float(seeds.max() - seeds.min()), pooled_seed_std=pooled,
                         pooled_archs=int((per_arch_seeds >= 2).sum()), archs=len(networks),
                         network_std=float(networks.std()), network_range=float(networks.max() - networks.min())))
    return pd.DataFrame(rows)
