"""Proxy fidelity: does a cheap proxy rank architectures the way a reliable reference does?

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
from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import html
import json
import math
import multiprocessing
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from .config import FATConfig
from .cost import Budget, analytic_cost, flop_convention
from .data import DataSplit, check_classes, settings_data
from .errors import FatnasError
from .proxy import ProxyResult, ProxySettings, check_memory, configure_threads, train_proxy
from .rank_stats import (
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
from .report import html_table, layout, log_axis, page_html, proxy_accuracy_label
from .space import SearchSpace, space_from_dict
from .store import Run
from .variants import PUBLISHED, get_config
from .zero_cost import BASELINES, PROXIES, check_proxy, minibatch, score_config

FIDELITY_KEYS = ("res", "train_images", "epochs", "batch_size", "lr", "weight_decay", "label_smoothing",
                 "eval_every", "val_images", "augment", "eval_split")
DEFAULT_LOW = "default"
DEFAULT_HIGH = "train_images=8192,eval_every=1,val_images=2000"
# The reference of issue 14: 32,768 images seen (32x the default proxy), crops and flips, scored on
# all 10,000 official test images (sampling std of accuracy ~0.004). 3 to 6 minutes per network and
# seed on one CPU thread at 56 px; the default proxy costs about 1/30 of that.
REFERENCE = "train_images=16384,epochs=2,eval_every=1,val_images=10000,augment=1,eval_split=test"
PRESETS = {DEFAULT_LOW: "", "reference": REFERENCE}
DEFAULT_ARCHS = 30
DEFAULT_TOP_K = 5
MAX_DRAWS_PER_ARCH = 200
CSV_COLUMNS = ("arch", "kind", "measure", "metric", "seed", "value", "seconds", "params", "flops", "config")
TRAIN, ZERO_COST, BASELINE, PREDICTOR_KIND = "train", "zero-cost", "baseline", "predictor"
TRAIN_METRICS = ("accuracy", "loss", "sotl_e", "slope")  # raw values in fidelity.csv; loss, sotl_e: lower is better
SCORE = "score"  # the one metric of zero-cost and baseline rows
ORIENTED = {"accuracy": "accuracy", "loss": "-loss", "sotl_e": "-sotl_e", "slope": "slope", SCORE: SCORE}
SIGNS = {"accuracy": 1, "loss": -1, "sotl_e": -1, "slope": 1, SCORE: 1}
REFERENCE_METRICS = ("loss", "accuracy", "both")  # auto takes the highest seed-to-seed tau; ties: this order
REFERENCE_CHOICES = ("auto",) + REFERENCE_METRICS
PREDICTOR = "predictor(loo)"
MIN_PREDICTOR_ARCHS = 5
TARGET_SEED_TAU = 0.5  # issue 14: a reference that can rank ...
TARGET_PARAMS_TAU = 0.8  # ... and is no size ranking
_BOOLS = {"1": True, "true": True, "0": False, "false": False}
_FORMS = (f"a preset ({', '.join(PRESETS)}), optionally followed by, or else, KEY=VALUE[,KEY=VALUE...] with keys "
          f"{', '.join(FIDELITY_KEYS)}")


class FidelityError(FatnasError):
    """Bad fidelity-study input: a malformed fidelity, too few architectures, an unknown proxy."""


def parse_fidelity(text: str, base: ProxySettings = ProxySettings()) -> ProxySettings:
    """'res=56,train_images=512' -> `base` with those fields changed.

    A first item 'default' or 'reference' is a preset."""
    items = [item.strip() for item in text.split(",")]
    if items[0] in PRESETS:
        preset = PRESETS[items[0]]
        base, items = _changed(base, preset.split(",") if preset else [], text), items[1:]
    return _changed(base, items, text)


def _changed(base: ProxySettings, items: list[str], text: str) -> ProxySettings:
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in FIDELITY_KEYS or not value:
            raise FidelityError(f"fidelity {text!r}: cannot read {item.strip()!r}; expected {_FORMS}")
        changes[key] = _value(text, key, value, type(getattr(base, key)))
    try:
        return base.replace(**changes)
    except ValueError as exc:
        raise FidelityError(f"fidelity {text!r}: {exc}") from None


def _value(text: str, key: str, value: str, kind: type) -> Any:
    if kind is bool:
        if value.lower() not in _BOOLS:
            raise FidelityError(f"fidelity {text!r}: {key} = {value!r} is not 0, 1, true or false")
        return _BOOLS[value.lower()]
    if kind is str:
        return value
    try:
        return kind(value) if kind is float else int(value)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise FidelityError(f"fidelity {text!r}: {key} = {value!r} is not {what}") from None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
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
    high_seeds: int = 2  # seeds of the high fidelity per network (init and data order); the reference is their mean
    reference_metric: str = "auto"  # the high fidelity's ranking metric: auto, loss, accuracy or both
    classes: tuple[int, ...] = ()  # only these classes of the data set, relabelled 0, 1, ... (empty: all)
    references: bool = True
    seed: int = 0
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    workers: int = 1
    threads: int = 1
    top_k: int = DEFAULT_TOP_K
    device: str = "cpu"  # where every training runs (zero-cost scores stay on the CPU); one study, one device

    def __post_init__(self) -> None:
        if self.archs < 3:
            raise FidelityError(f"--archs {self.archs}: a rank correlation needs at least 3 architectures")
        for name in self.proxies:
            check_proxy(name)
        labels = [self.label(s) for s in self.lows]
        if len(set(labels)) != len(labels) or self.label(self.high) in labels:
            raise FidelityError(f"fidelities must differ: low {labels}, high {self.label(self.high)!r}")
        for field in ("spread_seeds", "high_seeds", "workers", "threads", "top_k", "proxy_batch"):
            if getattr(self, field) < 1:
                raise FidelityError(f"{field} = {getattr(self, field)}: must be a positive whole number (>= 1)")
        if self.reference_metric not in REFERENCE_CHOICES:
            raise FidelityError(f"reference metric {self.reference_metric!r}: expected {', '.join(REFERENCE_CHOICES)}")
        check_classes(self.classes)
        if self.device != "cpu" and self.device != "cuda" and not self.device.startswith("cuda:"):
            raise FidelityError(f"device {self.device!r}: expected cpu, cuda or cuda:N")
        for fidelity in self.fidelities:  # every training fits memory here, known before any starts
            check_memory(self.space, fidelity.res, fidelity.batch_size, self.device, training=True,
                         what=f"fidelity {self.label(fidelity)}: res")

    @staticmethod
    def label(settings: ProxySettings) -> str:
        return fidelity_label(settings)

    @property
    def high_label(self) -> str:
        return self.label(self.high)

    @property
    def fidelities(self) -> tuple[ProxySettings, ...]:
        return (*self.lows, self.high)

    @property
    def reference_seeds(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.high_seeds))

    @property
    def main_low(self) -> str:
        """The low fidelity the predictor uses and others are compared with: 'default' if studied, else the first."""
        labels = [self.label(s) for s in self.lows]
        return DEFAULT_LOW if DEFAULT_LOW in labels else labels[0]

    def fidelity_meta(self) -> dict[str, Any]:
        """Labels of the fidelities and their full settings (labels depend on the defaults of the day)."""
        return dict(lows=[self.label(s) for s in self.lows], high=self.high_label,
                    fidelity_settings=dict(lows=[fidelity_fields(s) for s in self.lows],
                                           high=fidelity_fields(self.high)))

    def to_meta(self) -> dict[str, Any]:
        return dict(space=self.space.to_dict(), space_source=self.space.source, budget=self.budget.to_dict(),
                    budget_text=self.budget.describe(), **self.fidelity_meta(), archs=self.archs,
                    proxies=list(self.proxies), proxy_batch=self.proxy_batch,
                    spread_seeds=self.spread_seeds, high_seeds=self.high_seeds,
                    reference_metric=self.reference_metric, classes=list(self.classes) or None,
                    references=self.references, seeds=dict(study=self.seed),
                    dataset=self.dataset, data_dir=self.data_dir, workers=self.workers, threads=self.threads,
                    top_k=self.top_k, device=self.device)

    @classmethod
    def from_meta(cls, meta: dict[str, Any], **changes: Any) -> "StudySettings":
        """Settings from run.yaml; studies from before high_seeds had one seed ranked by accuracy."""
        full = meta.get("fidelity_settings")
        lows = (tuple(ProxySettings(**f) for f in full["lows"]) if full
                else tuple(parse_fidelity(t) for t in meta["lows"]))
        high = ProxySettings(**full["high"]) if full else parse_fidelity(meta["high"])
        values = dict(space=space_from_dict(meta["space"], source=meta.get("space_source", "run.yaml")),
                      budget=Budget(**meta["budget"]), lows=lows, high=high, archs=meta["archs"],
                      proxies=tuple(meta["proxies"]),
                      proxy_batch=meta["proxy_batch"], spread_seeds=meta["spread_seeds"],
                      high_seeds=meta.get("high_seeds", 1), reference_metric=meta.get("reference_metric", "accuracy"),
                      classes=tuple(meta.get("classes") or ()),
                      references=meta["references"], seed=meta["seeds"]["study"], dataset=meta["dataset"],
                      data_dir=meta.get("data_dir"), workers=meta["workers"], threads=meta["threads"],
                      top_k=meta["top_k"], device=meta.get("device", "cpu"))
        values.update({k: v for k, v in changes.items() if v is not None})
        return cls(**values)


def add_lows(run: Run, settings: StudySettings, added: list[ProxySettings]) -> StudySettings:
    """The study with more low fidelities, recorded in run.yaml under the run's lock; the lows are re-read
    there, so that a process adding others to the same study at the same time keeps them too."""
    with run.lock():
        recorded = StudySettings.from_meta(run.read_meta()).lows
        lows = recorded + tuple(s for s in (*settings.lows, *added) if s not in recorded)
        settings = dataclasses.replace(settings, lows=tuple(dict.fromkeys(lows)))
        run.update_meta(**settings.fidelity_meta())
    return settings


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
    """Per architecture: proxies, low fidelities, the high one with each reference seed; then the seed spread."""
    jobs: dict[tuple[str, str, int], Job] = {}
    for name, cfg in archs.items():
        config = cfg.to_dict()
        for proxy in settings.proxies:
            jobs.setdefault((name, proxy, settings.seed), Job(name, config, kind_of(proxy), proxy, settings.seed))
        pairs = [(low, settings.seed) for low in settings.lows] + [(settings.high, s) for s in settings.reference_seeds]
        for fidelity, seed in pairs:
            job = _training(name, config, settings, fidelity, seed)
            jobs.setdefault(job.key, job)
    spread = spread_architecture(archs)
    for seed in range(settings.seed + 1, settings.seed + settings.spread_seeds):
        for fidelity in settings.fidelities:
            job = _training(spread, archs[spread].to_dict(), settings, fidelity, seed)
            jobs.setdefault(job.key, job)
    return list(jobs.values())


def _training(arch: str, config: dict[str, Any], settings: StudySettings, fidelity: ProxySettings, seed: int) -> Job:
    return Job(arch, config, TRAIN, settings.label(fidelity), seed, fidelity.replace(seed=seed).to_dict())


def training_metrics(result: ProxyResult) -> dict[str, float]:
    """The raw metrics a training job records: final accuracy and loss on its evaluation split, SoTL-E, curve slope."""
    return dict(accuracy=result.accuracy, loss=result.val_loss, sotl_e=result.sotl_e, slope=result.curve_slope)


def run_job(job: Job, data: DataSplit, settings: StudySettings) -> list[dict[str, Any]]:
    """Carry out one job; returns its fidelity.csv rows, one per metric."""
    cfg = FATConfig.from_dict(job.config)
    start = time.perf_counter()
    if job.kind == TRAIN:
        values = training_metrics(train_proxy(cfg, data, ProxySettings(**job.proxy).replace(device=settings.device)))
    else:
        batch = minibatch(data, res=settings.lows[0].res, batch_size=settings.proxy_batch, seed=job.seed)
        values = {SCORE: score_config(job.measure, cfg, batch, num_classes=data.num_classes, seed=job.seed,
                                      cost_res=settings.space.resolution).value}
    seconds = time.perf_counter() - start
    cost = analytic_cost(cfg, settings.space.resolution)
    return [dict(arch=job.arch, kind=job.kind, measure=job.measure, metric=metric, seed=job.seed, value=value,
                 seconds=seconds, params=cost.params, flops=cost.flops, config=json.dumps(job.config))
            for metric, value in values.items()]


_WORKER: dict[str, Any] = {}
_PR_SET_PDEATHSIG = 1


def _end_with_parent() -> None:
    """On Linux, have the kernel end this worker when the study process dies, killed or not.

    Without it a killed study leaves its workers training their current jobs for minutes, rows
    that nobody writes, on cores a resumed study needs.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the worker ends after its current job instead
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the study died while this worker started
        os._exit(1)


def _start_worker(settings: StudySettings) -> None:
    _end_with_parent()
    configure_threads(settings.threads)
    _WORKER["data"] = settings_data(settings)
    _WORKER["settings"] = settings


def _run_in_worker(job: Job) -> list[dict[str, Any]]:
    return run_job(job, _WORKER["data"], _WORKER["settings"])


def execute(jobs: list[Job], settings: StudySettings, data: DataSplit) -> Iterator[list[dict[str, Any]]]:
    """The rows of each job as it finishes: in this process, or in `settings.workers` spawned processes."""
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


def read_study_table(run: Run, name: str) -> pd.DataFrame:
    """One of the study's CSV files; an empty frame if it is missing or empty (no seed spread, say)."""
    try:
        return run.read_table(name)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def read_rows(run: Run) -> pd.DataFrame:
    """fidelity.csv in long format; files from before the metric column get accuracy (trainings) or score."""
    return with_metric(read_study_table(run, "fidelity.csv"))


def finished_networks(table: pd.DataFrame, settings: StudySettings) -> pd.DataFrame:
    """The rows of the networks whose low fidelities and reference seeds have all finished."""
    needed = {(settings.label(low), settings.seed) for low in settings.lows}
    needed |= {(settings.high_label, seed) for seed in settings.reference_seeds}
    trained = table[table["kind"] == TRAIN]
    done = {arch for arch, rows in trained.groupby("arch") if needed <= set(zip(rows["measure"], rows["seed"]))}
    return table[table["arch"].isin(done)]


def with_metric(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame(columns=list(CSV_COLUMNS))
    if "metric" in table:
        return table
    metric = np.where(table["kind"] == TRAIN, "accuracy", SCORE)
    table = table.assign(metric=metric)
    return table[[c for c in CSV_COLUMNS if c in table] + [c for c in table if c not in CSV_COLUMNS]]


def run_study(run: Run, settings: StudySettings, *, data: DataSplit | None = None,
              progress: bool = True) -> pd.DataFrame:
    """Run (or continue) a study in `run`; returns the correlation table (also in correlations.csv)."""
    from tqdm.auto import tqdm

    configure_threads(settings.threads)
    data = data if data is not None else settings_data(settings)
    archs = study_architectures(settings)
    for name, cfg in archs.items():
        if not (run.path / "configs" / f"{name}.yaml").is_file():
            run.write_config(name, cfg, dict(run=run.id, arch=name))
    with run.lock():  # a file from before the metric column, in today's form (rows are appended to it below)
        done = read_rows(run)
        if not done.empty and "metric" not in run.read_table("fidelity.csv"):
            run.write_table("fidelity.csv", done)
    rows = done.to_dict("records")
    finished = {(r["arch"], r["measure"], int(r["seed"])) for r in rows}
    jobs = plan_jobs(settings, archs)
    todo = [job for job in jobs if job.key not in finished]
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=f"fidelity {run.id}", unit="job",
              disable=not progress, dynamic_ncols=True) as bar:
        for job_rows in execute(todo, settings, data):
            # appended under the run's lock: another process resuming this study at once loses no row
            run.append_rows("fidelity.csv", job_rows, list(CSV_COLUMNS), key=["arch", "measure", "seed", "metric"])
            bar.set_postfix_str(f"{job_rows[0]['arch']} {job_rows[0]['measure']}", refresh=False)
            bar.update()
    return analyse(run, settings)


def analyse(run: Run, settings: StudySettings, *, finished_only: bool = False) -> pd.DataFrame:
    """Write reliability.csv, correlations.csv, seed_spread.csv and fidelity.html; returns the correlations.

    `finished_only` analyses a study still running: only the networks with all their trainings done.
    """
    table = read_rows(run)
    if finished_only:
        table = finished_networks(table, settings)
    reliable = reliability(table, settings)
    summary = correlations(table, settings, reliable)
    run.write_table("reliability.csv", reliable)
    run.write_table("correlations.csv", summary)
    run.write_table("seed_spread.csv", seed_spread(table, settings))
    write_report(run)
    return summary


# ---------------------------------------------------------------- analysis

def kind_of(measure: str) -> str:
    if measure in BASELINES:
        return BASELINE
    return ZERO_COST if measure in PROXIES else TRAIN


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
class Estimator:
    """One way to predict the reference: a measure's metric times `sign` (higher = predicted better)."""

    name: str
    measure: str
    metric: str
    kind: str
    sign: int = 1


def estimators(settings: StudySettings) -> list[Estimator]:
    """Each low fidelity's four metrics, the zero-cost proxies, the baselines (the predictor comes last, apart)."""
    specs = [Estimator(f"{settings.label(low)}:{ORIENTED[m]}", settings.label(low), m, TRAIN, SIGNS[m])
             for low in settings.lows for m in TRAIN_METRICS]
    zero = [p for p in settings.proxies if p not in BASELINES] + [p for p in settings.proxies if p in BASELINES]
    return specs + [Estimator(p, p, SCORE, kind_of(p)) for p in zero]


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
        specs.append(Estimator(PREDICTOR, PREDICTOR, SCORE, PREDICTOR_KIND))
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


def _estimator_seconds(spec: Estimator, seconds: pd.Series, settings: StudySettings) -> float:
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
    from .store import atomic_write_text

    meta = run.read_meta()
    settings = StudySettings.from_meta(meta)
    table, reliable = read_rows(run), read_study_table(run, "reliability.csv")
    reference = study_reference(table, settings, reliable)
    estimates = estimator_table(table, settings, reference) if not table.empty else pd.DataFrame()
    out = run.path / "fidelity.html"
    atomic_write_text(out, report_html(run.id, meta, read_study_table(run, "correlations.csv"),
                                       read_study_table(run, "seed_spread.csv"), reliable, reference, estimates))
    return out


__all__ = ["CSV_COLUMNS", "DEFAULT_HIGH", "DEFAULT_LOW", "FIDELITY_KEYS", "PREDICTOR", "REFERENCE", "Estimator",
           "FidelityError", "Job", "Reference", "StudySettings", "analyse", "choose_reference_metric",
           "correlations", "estimator_table", "estimators", "execute", "fidelity_label", "loo_predictions",
           "parse_fidelity", "plan_jobs", "read_rows", "read_study_table", "record_study",
           "reference_line", "reliability", "run_study", "sample_architectures", "seed_spread",
           "study_architectures", "study_reference", "top_k_overlap", "with_metric", "write_report"]
