"""A search measures its own estimator's noise on its own task: it evaluates the best published FAT under budget
(after its first evaluation) and the most accurate front networks (after the trials) again with other seeds,
keeps every evaluation in noise.csv, and records the pooled seed std, its networks and its share of the run's
training time in run.yaml (`noise:`), from where every trial gets its accuracy interval (`runs.noise`).

An estimator that gives the same score whatever the seed (a supernet's inherited weights) has no seed noise to
measure; its run records the validation set's sampling error instead, a lower bound, and says so.
"""
from __future__ import annotations

import dataclasses
import json
import statistics

import pandas as pd

from ..estimate.data import DataSplit
from ..model.config import FATConfig
from ..runs.noise import NOISE_COLUMNS, NOISE_FILE, Noise, best_reference, binomial_std, pooled_std
from ..runs.store import Run, complete_rows, pareto_mask, publish_trials, run_noise
from .evaluate import SearchSettings, price, train_candidate

NOISE_FRONT = 2  # front networks (the most accurate) evaluated again after the trials
DEFAULT_NOISE_SEEDS = 2  # evaluations per measured network, its first included


def reseeded(settings: SearchSettings, seed: int) -> SearchSettings:
    """The settings with another training seed; the data split stays the search's."""
    return dataclasses.replace(settings, proxy=settings.proxy.replace(seed=seed))


def reference_candidates(run: Run) -> list[dict]:
    """The best published FAT the run evaluated within its budget (every difference is taken from it), as a noise
    candidate; the others are left alone, to keep the repeats' share of the run small (fat_b1's took 98 s of a
    default search's 980)."""
    r = best_reference(run.references())
    if r is None:
        return []
    return [dict(network=str(r["name"]), trial=-1, config=r["config"], accuracy=float(r["accuracy"]),
                 latency_ms=float(r["latency_ms"]), train_seconds=float(r.get("train_seconds") or 0))]


def front_candidates(run: Run, count: int = NOISE_FRONT) -> list[dict]:
    """The `count` most accurate networks of the run's front (where it holds fewer, the most accurate other
    complete trials), as noise candidates."""
    trials = run.trials()
    done = complete_rows(trials)
    if done.empty:
        return []
    done = done.assign(on_front=pareto_mask(done))
    top = done.sort_values(["on_front", "accuracy"], ascending=False, kind="stable").head(count)
    return [dict(network=f"trial_{int(r['trial'])}", trial=int(r["trial"]), config=r["config"],
                 accuracy=float(r["accuracy"]), latency_ms=float(r["latency_ms"]),
                 train_seconds=float(r.get("train_seconds") or 0)) for _, r in top.iterrows()]


def evaluate_again(candidate: dict, seed: int, settings: SearchSettings, data: DataSplit) -> dict:
    """One more evaluation of a candidate with training seed `seed`: its noise.csv row."""
    ev = price(FATConfig.from_dict(json.loads(candidate["config"])), settings)
    ev.latency_ms = candidate["latency_ms"]
    train_candidate(ev, data, reseeded(settings, seed))
    return dict(network=candidate["network"], trial=candidate["trial"], seed=seed, accuracy=ev.accuracy,
                latency_ms=ev.latency_ms, train_seconds=ev.train_seconds)


def repeat_candidates(run: Run, candidates: list[dict], settings: SearchSettings, data: DataSplit) -> pd.DataFrame:
    """Evaluate each candidate with `noise_seeds` seeds in all (its search evaluation is the first); each row is
    in noise.csv as it ends, and rows already there (a resumed run) are not done again."""
    first = settings.proxy.seed
    table = run.append_rows(NOISE_FILE, [dict(c, seed=first) for c in candidates], NOISE_COLUMNS,
                            key=["network", "seed"])
    for candidate in candidates:
        for seed in range(first + 1, first + settings.noise_seeds):
            done = table[(table["network"] == candidate["network"]) & (table["seed"] == seed)] \
                if not table.empty else table
            if done.empty:
                row = evaluate_again(candidate, seed, settings, data)
                table = run.append_rows(NOISE_FILE, [row], NOISE_COLUMNS, key=["network", "seed"])
    return table


def training_seconds(run: Run) -> float:
    """What the run's trials and references spent training (seconds)."""
    tables = [run.trials(), run.references()]
    return float(sum(t["train_seconds"].fillna(0).sum() for t in tables if "train_seconds" in t))


def measured_noise(run: Run, table: pd.DataFrame, first_seed: int, images: int) -> dict | None:
    """run.yaml's `noise` record from noise.csv: the pooled seed std, at least the sampling error of `images`
    validation images at the mean accuracy (a few repeats can agree by chance); None where no network repeats, or
    every repeat agreed exactly (the caller falls back to the sampling error)."""
    std, networks, evaluations = pooled_std(table)
    if not std:
        return None
    floor = binomial_std(float(table["accuracy"].mean()), images)
    extra = float(table.loc[table["seed"] != first_seed, "train_seconds"].sum())
    share = extra / max(extra + training_seconds(run), 1e-9)
    names = ", ".join(sorted(set(table["network"])))
    note = (f"pooled seed std {std:.4f} of {networks} networks ({names}), {evaluations} evaluations in this run"
            f"{f', raised to the sampling error {floor:.4f} of {images} validation images' if floor > std else ''}; "
            f"the repeats took {extra:.0f} s, {share:.1%} of the run's training time")
    return dict(Noise(max(std, floor), "measured", note, networks, evaluations).to_dict(), seconds=extra,
                share=share, pooled_std=std)


def sampling_noise(run: Run, validation_images: int, why: str) -> dict | None:
    """run.yaml's `noise` record where seeds show no noise (`why`): the binomial std at the mean accuracy."""
    trials = run.trials()
    if trials.empty or "accuracy" not in trials or trials["accuracy"].dropna().empty:
        return None
    mean = statistics.fmean(trials["accuracy"].dropna().astype(float))
    note = f"{why}; binomial std of {validation_images} validation images at accuracy {mean:.3f}, a lower bound"
    return Noise(binomial_std(mean, validation_images), "binomial", note).to_dict()


def measure_noise(run: Run, settings: SearchSettings, data: DataSplit, *, front: bool,
                  storage_url: str | None = None) -> None:
    """Evaluate the references (`front` False) or the front's best networks (True) again, record the noise (also in
    the study at `storage_url`, whose copy of run.yaml `sync` rebuilds from) and publish every trial's interval
    (nothing where `noise_seeds` is 1, or in a bare folder with no run.yaml to record it in)."""
    if settings.noise_seeds < 2 or not (run.path / "run.yaml").is_file():
        return
    images = run.read_meta().get("validation_images") or settings.proxy.val_images
    if settings.estimator != "proxy":
        if front:
            record_noise(run, sampling_noise(run, images, f"{settings.estimator} scores a network the same "
                                                          "whatever the seed: it has no seed noise to measure"),
                         storage_url)
        return
    candidates = front_candidates(run) if front else reference_candidates(run)
    if not candidates:
        return
    table = repeat_candidates(run, candidates, settings, data)
    noise = measured_noise(run, table, settings.proxy.seed, images)
    if noise is None and front and run_noise(run) is None:
        noise = sampling_noise(run, images, "every network evaluated again scored the same on each seed")
    record_noise(run, noise, storage_url)


def record_noise(run: Run, noise: dict | None, storage_url: str | None = None) -> None:
    """Write run.yaml's `noise` (and the study's copy of run.yaml at `storage_url`), and republish trials.csv,
    pareto.csv and band.csv with intervals."""
    if noise is None:
        return
    with run.lock():
        run.update_meta(noise=noise)
        if storage_url is not None:
            from .optuna_backend import RUN_META_ATTR, load_study
            from .storage import open_storage

            load_study(open_storage(storage_url, None), run.id).set_user_attr(RUN_META_ATTR, run.read_meta())
        trials = run.trials()
        if not trials.empty:
            publish_trials(run, trials.to_dict("records"))


__all__ = ["DEFAULT_NOISE_SEEDS", "NOISE_FRONT", "measure_noise", "record_noise", "reseeded"]
