"""`fatnas confirm RUN`: retrain a search's band with a stronger recipe on several seeds, as a race, within a budget.

The candidates are the band's networks (band.csv: those no other beats with confidence), front first, then the
most accurate, at most `networks` of them, and the best published FAT under budget as the yardstick. Each
training's row goes to confirm_rows.csv as it ends (a killed stage loses no finished training, and `--resume`
goes on from them); confirmed.csv holds each network's confirmed accuracy, interval, status and difference from
the yardstick, beside the search's own files, which it never changes; run.yaml records the stage (`confirm:`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pandas as pd

from ...errors import MAX_WORKERS, FatnasError, check_device, check_threads
from ...estimate.data import DataSplit, settings_data
from ...estimate.proxy import ProxySettings
from ...runs.noise import BAND_FILE, Z, best_reference, binomial_std, noise_aware_band, with_differences
from ...runs.store import Run, complete_rows, open_run, pareto_mask, run_noise
from ...search.evaluate import SearchSettings
from ...search.record import settings_from_meta
from ..fidelity.specs import fidelity_label, parse_fidelity
from .execute import EXECUTORS, Task, Training, run_local, run_ray
from .race import MAX_SEEDS, MIN_SEEDS, ConfirmBudget, next_seeds, parse_confirm_budget, standings
from .resume import recorded_stage, resumed_settings

CONFIRM_ROWS = "confirm_rows.csv"  # one row per confirm training, written as each ends
CONFIRMED = "confirmed.csv"  # one row per candidate: confirmed accuracy, interval, status
ROW_COLUMNS = ["network", "trial", "seed", "accuracy", "val_loss", "latency_ms", "seconds", "provenance"]
CONFIRM_SEED = 1000  # the first confirm seed: no search (seeds from 0) or noise repeat trained with it
DEFAULT_RECIPE = "reference"  # the fidelity study's reference (study/fidelity/specs.py REFERENCE)
DEFAULT_BUDGET = "1h"
DEFAULT_NETWORKS = 6
MAX_NETWORKS = 64


@dataclass(frozen=True)
class ConfirmSettings:
    """How a confirm stage runs: budget, recipe (fidelity syntax), candidates, seeds, and where it trains."""

    budget: ConfirmBudget
    recipe: str = DEFAULT_RECIPE
    networks: int = DEFAULT_NETWORKS
    min_seeds: int = MIN_SEEDS
    max_seeds: int = MAX_SEEDS
    workers: int = 1
    executor: str | None = None  # local or ray (None: ray for a search run on Ray, else local)
    ray_address: str | None = None
    threads: int = 1
    device: str = "cpu"
    given: frozenset[str] = field(default=frozenset(), compare=False)  # the values set explicitly, not defaults

    def __post_init__(self) -> None:
        check_threads(self.threads)
        check_device(self.device)
        if not 1 <= self.networks <= MAX_NETWORKS:
            raise FatnasError(f"--networks {self.networks}: accepted 1 to {MAX_NETWORKS} networks")
        if not 2 <= self.min_seeds <= self.max_seeds <= 100:
            raise FatnasError(f"--min-seeds {self.min_seeds} --max-seeds {self.max_seeds}: accepted "
                              "2 <= min-seeds <= max-seeds <= 100")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise FatnasError(f"--workers {self.workers}: accepted 1 to {MAX_WORKERS} processes")
        if self.executor is not None and self.executor not in EXECUTORS:
            raise FatnasError(f"confirm --backend {self.executor!r}: accepted {', '.join(EXECUTORS)}")
        if self.ray_address is not None and self.executor == "local":
            raise FatnasError("--ray-address goes with --backend ray")


def confirm_settings(budget: str | None = None, **values: Any) -> ConfirmSettings:
    """Settings from plain values (None: the default, or on resume the recorded value), the budget as text
    ('20m', '12trainings')."""
    given = {k: v for k, v in values.items() if v is not None}
    names = frozenset(given) | ({"budget"} if budget is not None else set())
    return ConfirmSettings(parse_confirm_budget(budget or DEFAULT_BUDGET), **given, given=names)


@dataclass
class Confirm:
    """A confirm stage ready to run: its run, settings, the search's settings, the recipe and the candidates."""

    run: Run
    settings: ConfirmSettings
    search: SearchSettings
    recipe: ProxySettings
    candidates: pd.DataFrame  # network, trial, config, latency_ms, params, flops, search_accuracy
    data: DataSplit
    finished: bool = False  # a finished stage resumed with no new budget: nothing to train or write

    @property
    def executor(self) -> str:
        return self.settings.executor or ("ray" if self.run.read_meta().get("backend") == "ray" else "local")


def prepare_confirm(run_id: str, settings: ConfirmSettings, *, resume: bool | None = False) -> Confirm:
    """Everything checked before anything is written: the run, the recipe, a stage already started, the data.
    `resume` None: continue a stage already started, else start one."""
    run = open_run(run_id)
    meta = run.read_meta()
    if meta.get("kind") != "search":
        raise FatnasError(f"run {run.id!r} is a {meta.get('kind')!r} run; confirm takes a search run")
    started = (run.path / CONFIRM_ROWS).is_file() or bool(meta.get("confirm"))
    resume = started if resume is None else resume
    if started and not resume:
        raise FatnasError(f"run {run.id!r} has a confirm stage already; continue it with `fatnas confirm {run.id} "
                          "--resume`")
    if resume and not started:
        raise FatnasError(f"run {run.id!r} has no confirm stage to resume; start one with `fatnas confirm {run.id}`")
    search = settings_from_meta(meta)
    if resume and meta.get("confirm") is not None:
        return _resumed(run, meta["confirm"], settings, search)
    recipe = parse_fidelity(settings.recipe, search.proxy.replace(device=settings.device))
    candidates = confirm_candidates(run, search, settings.networks)
    return Confirm(run, settings, search, recipe, candidates, settings_data(search))


def _resumed(run: Run, section: Any, settings: ConfirmSettings, search: SearchSettings) -> Confirm:
    """A started stage as run.yaml records it: its recipe, networks and seeds (see `resume`)."""
    stage = recorded_stage(run.id, section)
    if stage.get("trainings") and not (run.path / CONFIRM_ROWS).is_file():
        raise FatnasError(f"run {run.id!r}: run.yaml records {stage['trainings']} confirm trainings but "
                          f"{CONFIRM_ROWS} is missing; restore it from a copy (a resume never starts the race anew)")
    settings, recipe = resumed_settings(run.id, stage, settings, search.proxy)
    pool = confirm_candidates(run, search, MAX_NETWORKS).set_index("network", drop=False)
    missing = [name for name in stage["networks"] if name not in pool.index]
    if missing:
        raise FatnasError(f"run {run.id!r}: the confirm stage's networks {', '.join(missing)} are no longer in "
                          "the search's band or references; the stage cannot resume")
    candidates = pool.loc[stage["networks"]].reset_index(drop=True)
    finished = stage["state"] == "done" and "budget" not in settings.given
    return Confirm(run, settings, search, recipe, candidates, settings_data(search), finished=finished)


def confirm_candidates(run: Run, search: SearchSettings, count: int) -> pd.DataFrame:
    """The band's networks (front first, then the most accurate), at most `count`, and the best published FAT
    under budget; a run with no complete trial is an error."""
    band = run.read_table(BAND_FILE)
    if band.empty:
        band = _band_of(run, search)
    if band.empty:
        raise FatnasError(f"run {run.id!r} has no complete trial to confirm yet")
    band = band.sort_values(["on_front", "accuracy"], ascending=False, kind="stable").head(count)
    rows = [_candidate(f"trial_{int(r['trial'])}", int(r["trial"]), r) for _, r in band.iterrows()]
    reference = best_reference(run.references())
    if reference is not None:
        rows.append(_candidate(str(reference["name"]), -1, reference))
    return pd.DataFrame(rows)


def _band_of(run: Run, search: SearchSettings) -> pd.DataFrame:
    """The band of a run that wrote no band.csv (made before noise was measured, or with --noise-seeds 1)."""
    done = complete_rows(run.trials())
    if done.empty:
        return done
    noise = run_noise(run)
    std = noise.std if noise is not None else binomial_std(float(done["accuracy"].mean()), search.proxy.val_images)
    return noise_aware_band(done, pareto_mask(done), run.references(), std)


def _candidate(network: str, trial: int, row: pd.Series) -> dict[str, Any]:
    return dict(network=network, trial=trial, config=row["config"], latency_ms=float(row["latency_ms"]),
                params=int(row["params"]), flops=int(row["flops"]), search_accuracy=float(row["accuracy"]))


def run_confirm(job: Confirm, *, report: Callable[[dict[str, Any]], None] | None = None) -> pd.DataFrame:
    """Race until no candidate is in doubt (or none can gain a seed) or the budget is spent; returns confirmed.csv.
    `report(row)` hears of each training as it ends."""
    run = job.run
    if job.finished:
        return run.read_table(CONFIRMED)
    record_stage(job, state="running")
    while True:
        rows = run.read_table(CONFIRM_ROWS)
        table = publish_confirmed(job, rows)
        reason = stop_reason(job, rows, table)
        if reason is not None:
            record_stage(job, state="done", stop_reason=reason, rows=rows)
            return table
        for row in train_next(job, rows, table):
            run.append_rows(CONFIRM_ROWS, [row], ROW_COLUMNS, key=["network", "seed"])
            if report is not None:
                report(row)


def stop_reason(job: Confirm, rows: pd.DataFrame, table: pd.DataFrame) -> str | None:
    """Why the race ends now ('decided', 'max seeds', 'budget'), or None."""
    if not next_seeds(table, job.settings.min_seeds, job.settings.max_seeds):
        in_doubt = (table["status"] == "in doubt").any()
        return "max seeds" if in_doubt else "decided"
    seconds = float(rows["seconds"].sum()) if not rows.empty else 0.0
    return "budget" if job.settings.budget.spent(seconds, len(rows)) else None


def train_next(job: Confirm, rows: pd.DataFrame, table: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """The next trainings, at most one per worker (fewest seeds first), each row as it ends."""
    names = next_seeds(table, job.settings.min_seeds, job.settings.max_seeds)
    names = sorted(names, key=lambda n: int(table.loc[table["network"] == n, "seeds"].iloc[0]))
    names = names[:_parallel(job, len(rows))]
    trainings = [_training(job, name, rows) for name in names]
    task = Task(job.search.dataset, job.search.data_dir, job.search.seed, job.search.classes, job.settings.threads)
    res = job.search.space.resolution
    if job.executor == "ray":
        return run_ray(trainings, task, res, job.settings.ray_address, job.settings.workers)
    return run_local(trainings, task, job.data, res, job.settings.workers)


def _parallel(job: Confirm, done: int) -> int:
    """Trainings at once: the workers, and no more than a training budget has left."""
    budget = job.settings.budget
    left = budget.trainings - done if budget.trainings is not None else job.settings.workers
    return max(1, min(job.settings.workers, left))


def _training(job: Confirm, network: str, rows: pd.DataFrame) -> Training:
    """The network's next training: the lowest confirm seed it has not trained with."""
    used = set(rows.loc[rows["network"] == network, "seed"]) if not rows.empty else set()
    seed = next(s for s in range(CONFIRM_SEED, CONFIRM_SEED + 10_000) if s not in used)
    row = job.candidates[job.candidates["network"] == network].iloc[0]
    recipe = dict(job.recipe.to_dict(), device=job.settings.device)
    return Training(network, int(row["trial"]), str(row["config"]), float(row["latency_ms"]), seed, recipe)


def publish_confirmed(job: Confirm, rows: pd.DataFrame) -> pd.DataFrame:
    """confirmed.csv from the trainings so far: standings, and each network's difference from the yardstick."""
    table = standings(rows, job.candidates.drop(columns=["config"]), job.settings.max_seeds)
    yardstick = table[(table["trial"] < 0) & (table["seeds"] > 0)]
    reference = yardstick.iloc[0].rename({"network": "name"}) if not yardstick.empty else None
    ref_std = float(reference["accuracy_std"]) if reference is not None else 0.0
    trained = table[table["seeds"] > 0]
    waiting = reference is None and (table["trial"] < 0).any()  # the yardstick has not trained yet
    if not waiting and not trained.empty and trained["accuracy_std"].notna().all():
        table = table.join(with_differences(trained, reference, ref_std)[
            ["reference", "vs_reference", "vs_reference_low", "vs_reference_high", "verdict"]])
        table.loc[table["trial"] < 0, "verdict"] = "published FAT: the yardstick"
    table["recipe"] = fidelity_label(job.recipe)
    table["config"] = job.candidates["config"]
    job.run.write_table(CONFIRMED, table)
    return table


def record_stage(job: Confirm, *, state: str, stop_reason: str | None = None,
                 rows: pd.DataFrame | None = None) -> None:
    """run.yaml's `confirm:`: recipe, budget, candidates, seeds, where it trains, and how it ended."""
    done = rows if rows is not None else pd.DataFrame()
    s = job.settings
    job.run.update_meta(confirm=dict(
        state=state, stop_reason=stop_reason, recipe=fidelity_label(job.recipe),
        recipe_settings=job.recipe.to_dict(), budget=s.budget.describe(), networks=list(job.candidates["network"]),
        min_seeds=s.min_seeds, max_seeds=s.max_seeds, first_seed=CONFIRM_SEED, executor=job.executor,
        workers=s.workers, threads=s.threads, trainings=len(done), confidence_z=Z,
        seconds=float(done["seconds"].sum()) if not done.empty else 0.0))


def confirmed_front(run: Run) -> pd.DataFrame:
    """The confirmed front's searched networks (confirmed.csv rows on it with a trial), fastest first."""
    table = run.read_table(CONFIRMED)
    if table.empty:
        raise FatnasError(f"run {run.id!r} has no confirmed.csv; run `fatnas confirm {run.id}` first")
    front = table[table["on_confirmed_front"].astype(bool) & (table["trial"] >= 0)]
    return front.sort_values("latency_ms").reset_index(drop=True)


__all__ = ["CONFIRMED", "CONFIRM_ROWS", "CONFIRM_SEED", "DEFAULT_BUDGET", "DEFAULT_NETWORKS", "DEFAULT_RECIPE",
           "Confirm", "ConfirmSettings", "confirm_candidates", "confirm_settings", "confirmed_front",
           "prepare_confirm", "publish_confirmed", "run_confirm"]
