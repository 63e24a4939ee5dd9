"""Proxy fidelity: does a cheap proxy rank architectures the way longer training does?

`run_study` samples architectures from a space within a budget (plus the published FATs that
fit), trains each at one or more low fidelities and at one high fidelity (proxy settings that
differ in images, epochs, resolution, ...), scores each with the zero-cost proxies and the
#params / FLOPs baselines, and trains one network with several seeds, so seed noise shows beside
the spread across networks. Each finished measurement is added to `runs/<id>/fidelity.csv` at
once: a killed study resumes where it stopped. `correlations` turns the table into Kendall tau,
Spearman rho (with bootstrap intervals) and top-k overlap against the high fidelity.

Accuracies are proxy accuracies on a small data set, never ImageNet accuracy; FLOPs are fvcore
totals at the space's resolution (1 multiply-add = 1 FLOP).
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
from scipy import stats

from .config import FATConfig
from .cost import Budget, analytic_cost, flop_convention
from .data import DataSplit, load_dataset
from .errors import FatnasError
from .proxy import ProxySettings, configure_threads, train_proxy
from .space import SearchSpace, space_from_dict
from .store import Run
from .variants import PUBLISHED, get_config
from .zero_cost import BASELINES, PROXIES, check_proxy, minibatch, score_config

FIDELITY_KEYS = ("res", "train_images", "epochs", "batch_size", "lr", "weight_decay", "label_smoothing",
                 "eval_every", "val_images")
DEFAULT_LOW = "default"
DEFAULT_HIGH = "train_images=8192,eval_every=1,val_images=2000"
DEFAULT_ARCHS = 30
DEFAULT_TOP_K = 5
BOOTSTRAP_SAMPLES = 1000
MAX_DRAWS_PER_ARCH = 200
CSV_COLUMNS = ("arch", "kind", "measure", "seed", "value", "seconds", "params", "flops", "config")
TRAIN, ZERO_COST, BASELINE = "train", "zero-cost", "baseline"


class FidelityError(FatnasError):
    """Bad fidelity-study input: a malformed fidelity, too few architectures, an unknown proxy."""


def parse_fidelity(text: str, base: ProxySettings = ProxySettings()) -> ProxySettings:
    """'res=56,train_images=512' -> `base` with those fields changed; 'default' -> `base`."""
    forms = f"'default' or KEY=VALUE[,KEY=VALUE...] with keys {', '.join(FIDELITY_KEYS)}"
    if text.strip() == DEFAULT_LOW:
        return base
    changes: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in FIDELITY_KEYS or not value:
            raise FidelityError(f"fidelity {text!r}: cannot read {item.strip()!r}; expected {forms}")
        kind = type(getattr(base, key))
        try:
            changes[key] = kind(value) if kind is float else int(value)
        except ValueError:
            raise FidelityError(f"fidelity {text!r}: {key} = {value!r} is not a{'n integer' if kind is int else ' number'}") from None
    try:
        return base.replace(**changes)
    except ValueError as exc:
        raise FidelityError(f"fidelity {text!r}: {exc}") from None


def _text(value: int | float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def fidelity_label(settings: ProxySettings, base: ProxySettings = ProxySettings()) -> str:
    """The fields that differ from `base` (the search's default proxy), e.g. 'res=56,train_images=512'."""
    changed = [f"{k}={_text(getattr(settings, k))}" for k in FIDELITY_KEYS if getattr(settings, k) != getattr(base, k)]
    return ",".join(changed) or DEFAULT_LOW


def fidelity_fields(settings: ProxySettings) -> dict[str, Any]:
    """The values of `settings` a fidelity may change."""
    return {k: getattr(settings, k) for k in FIDELITY_KEYS}


@dataclass(frozen=True)
class StudySettings:
    """Everything that defines a fidelity study, recorded in run.yaml."""

    space: SearchSpace
    budget: Budget
    lows: tuple[ProxySettings, ...] = (ProxySettings(),)
    high: ProxySettings = parse_fidelity(DEFAULT_HIGH)
    archs: int = DEFAULT_ARCHS
    proxies: tuple[str, ...] = PROXIES
    proxy_batch: int = 64  # images in the zero-cost proxies' minibatch
    spread_seeds: int = 3  # seeds the spread network trains with at every fidelity
    references: bool = True
    seed: int = 0
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    workers: int = 1
    threads: int = 1
    top_k: int = DEFAULT_TOP_K

    def __post_init__(self) -> None:
        if self.archs < 3:
            raise FidelityError(f"--archs {self.archs}: a rank correlation needs at least 3 architectures")
        for name in self.proxies:
            check_proxy(name)
        labels = [self.label(s) for s in self.lows]
        if len(set(labels)) != len(labels) or self.label(self.high) in labels:
            raise FidelityError(f"fidelities must differ: low {labels}, high {self.label(self.high)!r}")
        for field in ("spread_seeds", "workers", "threads", "top_k", "proxy_batch"):
            if getattr(self, field) < 1:
                raise FidelityError(f"{field} = {getattr(self, field)}: must be >= 1")

    @staticmethod
    def label(settings: ProxySettings) -> str:
        return fidelity_label(settings)

    @property
    def high_label(self) -> str:
        return self.label(self.high)

    @property
    def fidelities(self) -> tuple[ProxySettings, ...]:
        return (*self.lows, self.high)

    def fidelity_meta(self) -> dict[str, Any]:
        """Labels of the fidelities and their full settings (labels depend on the defaults of the day)."""
        return dict(lows=[self.label(s) for s in self.lows], high=self.high_label,
                    fidelity_settings=dict(lows=[fidelity_fields(s) for s in self.lows],
                                           high=fidelity_fields(self.high)))

    def to_meta(self) -> dict[str, Any]:
        return dict(space=self.space.to_dict(), space_source=self.space.source, budget=self.budget.to_dict(),
                    budget_text=self.budget.describe(), **self.fidelity_meta(), archs=self.archs,
                    proxies=list(self.proxies), proxy_batch=self.proxy_batch,
                    spread_seeds=self.spread_seeds, references=self.references, seeds=dict(study=self.seed),
                    dataset=self.dataset, data_dir=self.data_dir, workers=self.workers, threads=self.threads,
                    top_k=self.top_k)

    @classmethod
    def from_meta(cls, meta: dict[str, Any], **changes: Any) -> "StudySettings":
        full = meta.get("fidelity_settings")
        lows = tuple(ProxySettings(**f) for f in full["lows"]) if full else tuple(parse_fidelity(t) for t in meta["lows"])
        high = ProxySettings(**full["high"]) if full else parse_fidelity(meta["high"])
        values = dict(space=space_from_dict(meta["space"], source=meta.get("space_source", "run.yaml")),
                      budget=Budget(**meta["budget"]), lows=lows, high=high, archs=meta["archs"], proxies=tuple(meta["proxies"]),
                      proxy_batch=meta["proxy_batch"], spread_seeds=meta["spread_seeds"],
                      references=meta["references"], seed=meta["seeds"]["study"], dataset=meta["dataset"],
                      data_dir=meta.get("data_dir"), workers=meta["workers"], threads=meta["threads"],
                      top_k=meta["top_k"])
        values.update({k: v for k, v in changes.items() if v is not None})
        return cls(**values)


def record_study(run: Run, settings: StudySettings, argv: list[str] | None = None) -> None:
    """Write run.yaml: command, settings, seeds, versions and hardware."""
    run.record("fidelity", settings.to_meta(), dataset=settings.dataset,
               flop_convention=flop_convention(settings.space.resolution), argv=argv)


# ---------------------------------------------------------------- architectures and jobs

def sample_architectures(space: SearchSpace, budget: Budget, count: int, seed: int) -> dict[str, FATConfig]:
    """`count` distinct configs drawn uniformly from `space` within `budget`, named arch00, arch01, ..."""
    rng, found = random.Random(seed), {}
    seen: set[str] = set()
    for _ in range(MAX_DRAWS_PER_ARCH * count):
        cfg = space.sample(lambda name, choices: rng.choice(list(choices)))
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        if key in seen or not budget.fits(analytic_cost(cfg, space.resolution)):
            continue
        seen.add(key)
        found[f"arch{len(found):02d}"] = cfg
        if len(found) == count:
            return found
    raise FidelityError(f"found only {len(found)} distinct configs of space {space.name!r} within "
                        f"{budget.describe()}; ask for fewer --archs or loosen the budget")


def study_architectures(settings: StudySettings) -> dict[str, FATConfig]:
    """The sampled architectures, then the published FATs that fit the budget."""
    archs = sample_architectures(settings.space, settings.budget, settings.archs, settings.seed)
    if settings.references:
        for name in PUBLISHED:
            cfg = get_config(name).replace(drop_path_rate=settings.space.drop_path_rate)
            if settings.budget.fits(analytic_cost(cfg, settings.space.resolution)):
                archs[name] = cfg
    return archs


def spread_architecture(archs: dict[str, FATConfig]) -> str:
    """The network trained with several seeds: the first published FAT in the study, else the first sampled."""
    return next((name for name in PUBLISHED if name in archs), next(iter(archs)))


@dataclass(frozen=True)
class Job:
    """One measurement: train `arch` at a fidelity with a seed, or score it with one proxy."""

    arch: str
    config: dict[str, Any]
    kind: str
    measure: str
    seed: int
    proxy: dict[str, Any] | None = None  # ProxySettings fields of a training job

    @property
    def key(self) -> tuple[str, str, int]:
        return self.arch, self.measure, self.seed


def plan_jobs(settings: StudySettings, archs: dict[str, FATConfig]) -> list[Job]:
    """Per architecture: proxies, low fidelities, high fidelity; then the seed-spread trainings."""
    jobs = []
    for name, cfg in archs.items():
        config = cfg.to_dict()
        for proxy in settings.proxies:
            jobs.append(Job(name, config, BASELINE if proxy in BASELINES else ZERO_COST, proxy, settings.seed))
        for fidelity in settings.fidelities:
            jobs.append(Job(name, config, TRAIN, settings.label(fidelity), settings.seed,
                            fidelity.replace(seed=settings.seed).to_dict()))
    spread = spread_architecture(archs)
    for seed in range(settings.seed + 1, settings.seed + settings.spread_seeds):
        for fidelity in settings.fidelities:
            jobs.append(Job(spread, archs[spread].to_dict(), TRAIN, settings.label(fidelity), seed,
                            fidelity.replace(seed=seed).to_dict()))
    return jobs


def run_job(job: Job, data: DataSplit, settings: StudySettings) -> dict[str, Any]:
    """Carry out one job; returns its fidelity.csv row."""
    cfg = FATConfig.from_dict(job.config)
    start = time.perf_counter()
    if job.kind == TRAIN:
        value = train_proxy(cfg, data, ProxySettings(**job.proxy)).accuracy
    else:
        batch = minibatch(data, res=settings.lows[0].res, batch_size=settings.proxy_batch, seed=job.seed)
        value = score_config(job.measure, cfg, batch, num_classes=data.num_classes, seed=job.seed,
                             cost_res=settings.space.resolution).value
    cost = analytic_cost(cfg, settings.space.resolution)
    return dict(arch=job.arch, kind=job.kind, measure=job.measure, seed=job.seed, value=value,
                seconds=time.perf_counter() - start, params=cost.params, flops=cost.flops,
                config=json.dumps(job.config))


_WORKER: dict[str, Any] = {}


def _start_worker(settings: StudySettings) -> None:
    configure_threads(settings.threads)
    _WORKER["data"] = load_dataset(settings.dataset, settings.data_dir, seed=settings.seed)
    _WORKER["settings"] = settings


def _run_in_worker(job: Job) -> dict[str, Any]:
    return run_job(job, _WORKER["data"], _WORKER["settings"])


def execute(jobs: list[Job], settings: StudySettings, data: DataSplit) -> Iterator[dict[str, Any]]:
    """Rows of `jobs` as they finish: in this process, or in `settings.workers` spawned processes."""
    if settings.workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(job, data, settings)
        return
    context = multiprocessing.get_context("spawn")  # no forked OpenMP state
    with concurrent.futures.ProcessPoolExecutor(settings.workers, mp_context=context, initializer=_start_worker,
                                                initargs=(settings,)) as pool:
        futures = [pool.submit(_run_in_worker, job) for job in jobs]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def run_study(run: Run, settings: StudySettings, *, data: DataSplit | None = None,
              progress: bool = True) -> pd.DataFrame:
    """Run (or continue) a study in `run`; returns the correlation table (also in correlations.csv)."""
    from tqdm.auto import tqdm

    configure_threads(settings.threads)
    data = data if data is not None else load_dataset(settings.dataset, settings.data_dir, seed=settings.seed)
    archs = study_architectures(settings)
    for name, cfg in archs.items():
        if not (run.path / "configs" / f"{name}.yaml").is_file():
            run.write_config(name, cfg, dict(run=run.id, arch=name))
    done = run.read_table("fidelity.csv")
    rows = done.to_dict("records") if not done.empty else []
    finished = {(r["arch"], r["measure"], int(r["seed"])) for r in rows}
    jobs = plan_jobs(settings, archs)
    todo = [job for job in jobs if job.key not in finished]
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=f"fidelity {run.id}", unit="job",
              disable=not progress, dynamic_ncols=True) as bar:
        for row in execute(todo, settings, data):
            rows.append(row)
            run.write_table("fidelity.csv", pd.DataFrame(rows, columns=list(CSV_COLUMNS)))
            bar.set_postfix_str(f"{row['arch']} {row['measure']}", refresh=False)
            bar.update()
    table = run.read_table("fidelity.csv")
    summary = correlations(table, settings)
    run.write_table("correlations.csv", summary)
    run.write_table("seed_spread.csv", seed_spread(table, settings))
    write_report(run)
    return summary


# ---------------------------------------------------------------- analysis

def measure_order(settings: StudySettings) -> list[str]:
    """Low fidelities, the high one, zero-cost proxies, baselines."""
    zero = [p for p in settings.proxies if p not in BASELINES]
    return [settings.label(s) for s in settings.lows] + [settings.high_label] + zero + \
        [p for p in settings.proxies if p in BASELINES]


def kind_of(measure: str) -> str:
    if measure in BASELINES:
        return BASELINE
    return ZERO_COST if measure in PROXIES else TRAIN


def top_k_overlap(scores: pd.Series, truth: pd.Series, k: int) -> float:
    """Fraction of the truth's k best that are among the scores' k best."""
    k = min(k, len(truth))
    return len(set(scores.nlargest(k).index) & set(truth.nlargest(k).index)) / k


def bootstrap_interval(x: np.ndarray, y: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], float], *,
                       samples: int = BOOTSTRAP_SAMPLES, seed: int = 0, level: float = 0.9) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(x, y)` over resampled architectures."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        idx = rng.integers(0, len(x), len(x))
        value = statistic(x[idx], y[idx])
        if np.isfinite(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def _kendall(x: np.ndarray, y: np.ndarray) -> float:
    return float(stats.kendalltau(x, y).statistic)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(stats.spearmanr(x, y).statistic)


def correlations(table: pd.DataFrame, settings: StudySettings) -> pd.DataFrame:
    """Per measure: Kendall tau (90% bootstrap interval), Spearman rho, top-k overlap vs the high fidelity."""
    main = table[table["seed"] == settings.seed]
    values = main.pivot_table(index="arch", columns="measure", values="value")
    seconds = main.groupby("measure")["seconds"].mean()
    rows = []
    for measure in measure_order(settings):
        if measure not in values or settings.high_label not in values:
            continue
        pair = values[[measure, settings.high_label]].dropna()
        x, y = pair.iloc[:, 0].to_numpy(), pair.iloc[:, -1].to_numpy()
        enough = len(pair) >= 3
        tau_low, tau_high = bootstrap_interval(x, y, _kendall, seed=settings.seed) if enough else (np.nan, np.nan)
        rows.append(dict(measure=measure, kind=kind_of(measure), archs=len(pair),
                         kendall_tau=_kendall(x, y) if enough else np.nan, tau_low=tau_low, tau_high=tau_high,
                         spearman_rho=_spearman(x, y) if enough else np.nan,
                         top_k_overlap=top_k_overlap(pair.iloc[:, 0], pair.iloc[:, -1], settings.top_k),
                         seconds_per_arch=float(seconds.get(measure, np.nan))))
    return pd.DataFrame(rows)


def seed_spread(table: pd.DataFrame, settings: StudySettings) -> pd.DataFrame:
    """Per training fidelity: accuracy std of one network over seeds beside the std across networks."""
    rows = []
    trained = table[table["kind"] == TRAIN]
    for fidelity in settings.fidelities:
        label = settings.label(fidelity)
        at = trained[trained["measure"] == label]
        per_arch_seeds = at.groupby("arch")["seed"].nunique()
        if at.empty or per_arch_seeds.max() < 2:
            continue
        spread = per_arch_seeds.idxmax()
        seeds = at[at["arch"] == spread]["value"]
        networks = at[at["seed"] == settings.seed]["value"]
        rows.append(dict(measure=label, network=spread, seeds=len(seeds), seed_std=float(seeds.std()),
                         seed_range=float(seeds.max() - seeds.min()), archs=len(networks),
                         network_std=float(networks.std()), network_range=float(networks.max() - networks.min())))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- report

PLOT_IDS = ("fidelity-scatter", "fidelity-correlations", "fidelity-cost")


def report_html(run_id: str, meta: dict[str, Any], table: pd.DataFrame, summary: pd.DataFrame,
                spread: pd.DataFrame) -> str:
    """The study's page: low vs high accuracy, correlations with intervals, ranking quality per second."""
    import plotly.graph_objects as go

    from .dashboard import page_html, proxy_accuracy_label

    high, seed = meta["high"], meta["seeds"]["study"]
    main = table[table["seed"] == seed]
    values = main.pivot_table(index="arch", columns="measure", values="value")
    acc_label = proxy_accuracy_label([meta["dataset"]])
    scatter = go.Figure()
    for i, row in summary[summary["kind"] == TRAIN].iterrows():
        if row["measure"] == high:
            continue
        pair = values[[row["measure"], high]].dropna()
        scatter.add_trace(go.Scatter(x=pair[row["measure"]].tolist(), y=pair[high].tolist(), mode="markers",
                                     text=list(pair.index),
                                     name=f"{row['measure']} (tau {row['kendall_tau']:.2f})",
                                     hovertemplate="%{text}: low %{x:.3f}, high %{y:.3f}<extra></extra>"))
    scatter.update_layout(xaxis_title=f"low fidelity: {acc_label}", yaxis_title=f"high fidelity: {acc_label}",
                          legend_title_text="low fidelity", height=520)
    bars = go.Figure()
    measures, tau = summary["measure"].tolist(), summary["kendall_tau"]
    bars.add_trace(go.Bar(x=measures, y=tau.tolist(), name="Kendall tau",
                          error_y=dict(type="data", symmetric=False, array=(summary["tau_high"] - tau).tolist(),
                                       arrayminus=(tau - summary["tau_low"]).tolist())))
    bars.add_trace(go.Bar(x=measures, y=summary["spearman_rho"].tolist(), name="Spearman rho"))
    bars.update_layout(barmode="group", yaxis_title="rank correlation with the high fidelity", yaxis_range=[-1, 1], height=480)
    cost = go.Figure(go.Scatter(x=summary["seconds_per_arch"].tolist(), y=tau.tolist(), mode="markers+text",
                                text=measures, textposition="top center",
                                hovertemplate="%{text}: %{x:.2f} s per architecture, tau %{y:.2f}<extra></extra>"))
    cost.update_layout(xaxis_type="log", xaxis_title="seconds per architecture (mean)",
                       yaxis_title="Kendall tau with the high fidelity", height=480)
    intro = (f"<p class=\"note\">Fidelity study {run_id}: {summary['archs'].max() if not summary.empty else 0} "
             f"architectures from space {meta['space']['name']} within {meta['budget_text']} "
             f"(FLOPs: fvcore total at {meta['space']['resolution']}px), trained on {meta['dataset']}. "
             f"Accuracies are {acc_label}. Correlations are against the high fidelity ({high}); intervals are 90% "
             f"bootstrap intervals over architectures.</p>\n" + _html_table(summary) + _html_table(spread))
    figures = [(PLOT_IDS[0], scatter, "Low versus high fidelity accuracy"),
               (PLOT_IDS[1], bars, "Rank correlation with the high fidelity"),
               (PLOT_IDS[2], cost, "Ranking quality against cost")]
    return page_html(f"fatnas fidelity: {run_id}", intro, figures)


def _html_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return ""
    return frame.to_html(index=False, classes="summary", float_format=lambda v: f"{v:.3g}", border=0)


def write_report(run: Run) -> Path:
    """Write fidelity.html in the run folder from run.yaml and the study's tables."""
    from .store import atomic_write_text

    out = run.path / "fidelity.html"
    atomic_write_text(out, report_html(run.id, run.read_meta(), run.read_table("fidelity.csv"),
                                       run.read_table("correlations.csv"), run.read_table("seed_spread.csv")))
    return out


__all__ = ["DEFAULT_HIGH", "DEFAULT_LOW", "FidelityError", "Job", "StudySettings", "correlations", "execute",
           "fidelity_label", "parse_fidelity", "plan_jobs", "record_study", "run_study", "sample_architectures",
           "seed_spread", "study_architectures", "top_k_overlap", "write_report"]

