"""Search with Optuna: multi-objective (accuracy up, latency down), ask-and-tell, one or many workers.

Optuna's pruners refuse multi-objective studies, so early stopping is our MedianStopper,
and stopped trials are told as PRUNED (samplers count them among the poor ones). Budget
violations are found analytically before training: such a draw is told PRUNED with its excess
over each limit as Optuna constraints (`Trial.set_constraint`), so samplers that read
constraints (TPE) rank it below every feasible trial and learn where the budget edge is; the
reason stays in the trial's `infeasible` attribute. With a pre-screen, each trained trial is the
best of round(1 / keep) feasible draws by a zero-cost proxy; the others are told as PRUNED with
their score and shown as SCREENED_OUT.

Workers: any number of processes, on any machines, may work on one study (`search --join`).
They share the target: a drawn group may train only while the trained trials plus the
running trials numbered below it stay under the target (counting running ones that may yet
fail errs on the safe side), so the study never holds more trained trials than the target; a
group that comes too late is told FAIL as `surplus`. Each running trial beats a heartbeat; one
silent for the grace period is failed by the next worker that looks (its worker died).
"""
from __future__ import annotations

import contextlib
import gc
import os
import time
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..errors import FatnasError
from ..estimate.base import make_estimator
from ..estimate.data import DataSplit
from ..runs.store import OBJECTIVES, Run, publish_trials
from .backend import SearchJob
from .core import (
    BLIND_DRAWS,
    MAX_INFEASIBLE_DRAWS,
    MedianStopper,
    StopRule,
    feasible_params,
    progress_bar,
    show_progress,
)
from .evaluate import (
    SAMPLERS,
    Evaluation,
    SearchSettings,
    budget_excess,
    price,
    time_candidate,
    train_candidate,
    trial_row,
)
from .interrupts import ctrl_c_allowed, ctrl_c_held
from .record import storage_of
from .storage import HeartbeatThread, fail_stale_trials, is_lost, open_storage, worker_name
from .workers import start_workers, stop_workers, wait_workers

DIRECTIONS = ("maximize", "minimize")  # accuracy, latency_ms
METRIC_NAMES = tuple(name for name, _ in OBJECTIVES)  # accuracy, latency_ms
RUN_META_ATTR = "fatnas_run"  # the study's copy of run.yaml, so any machine can rebuild the run folder
REFERENCES_ATTR = "fatnas_references"  # the study's copy of references.csv
SURPLUS = "surplus: the target was reached or claimed by other workers; not trained"
LOST = "interrupted: its worker stopped (no heartbeat within the grace period)"
UNCLAIMED = "interrupted: its worker stopped before claiming it (or ran without heartbeats)"


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """A seeded multi-objective sampler by name."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)  # heads are conditional
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise FatnasError(f"unknown sampler {name!r}; accepted: {', '.join(SAMPLERS)}")


def create_study(storage: optuna.storages.BaseStorage, run_id: str, run_meta: dict[str, Any]) -> optuna.Study:
    """A new study for a new run, holding a copy of its run.yaml; a name taken in the storage is an error."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if run_id in study_names(storage):
        raise FatnasError(f"the storage already holds a study named {run_id!r}; "
                          f"add a worker with --join {run_id} or pick another --run-id")
    study = optuna.create_study(storage=storage, study_name=run_id, directions=list(DIRECTIONS))
    name_metrics(study)
    study.set_user_attr(RUN_META_ATTR, run_meta)
    return study


def name_metrics(study: optuna.Study) -> None:
    """Name the study's objectives (optuna-dashboard and Optuna's plots show these names, not "0" and "1")."""
    if study.metric_names != list(METRIC_NAMES):
        with warnings.catch_warnings():  # set_metric_names is experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(METRIC_NAMES))


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def load_study(storage: optuna.storages.BaseStorage, run_id: str, sampler: optuna.samplers.BaseSampler | None = None
               ) -> optuna.Study:
    """The run's study in the storage; a missing one lists the studies there."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = study_names(storage)
    if run_id not in names:
        raise FatnasError(f"no study named {run_id!r} in the storage; it holds: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=run_id, storage=storage, sampler=sampler)


def open_study(run_id: str, settings: SearchSettings, storage: optuna.storages.BaseStorage, *,
               joining: bool = False) -> optuna.Study:
    """Create or load the run's study; the sampler seed moves on past the trials made (and, for a
    joining worker, by its process id, so that workers do not draw the same candidates)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    made = len(load_study(storage, run_id).trials) if run_id in study_names(storage) else 0
    seed = settings.seed + made + (os.getpid() if joining else 0)
    study = optuna.create_study(storage=storage, study_name=run_id, directions=list(DIRECTIONS),
                                sampler=make_sampler(settings.sampler, seed), load_if_exists=True)
    name_metrics(study)  # also in studies made before the names were set
    return study


def fail_unclaimed_running(study: optuna.Study, storage: optuna.storages.BaseStorage, grace_s: int) -> int:
    """FAIL running trials older than the grace period that no worker claimed (a worker beats a trial's heartbeat,
    then sets its `worker` attribute): killed in between, or left by a search process without heartbeats."""
    study_id = storage.get_study_id_from_name(study.study_name)
    now, count = time.time(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = t.datetime_start.timestamp() if t.datetime_start else now
        if "worker" not in t.user_attrs and now - started > grace_s:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            storage.set_trial_user_attr(trial_id, "error", UNCLAIMED)
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
            count += 1
    return count


def trained(t: FrozenTrial) -> bool:
    """A trial that finished training (complete, or stopped early), not an infeasible or screened-out draw."""
    return t.state == TrialState.COMPLETE or (t.state == TrialState.PRUNED and state_name(t) == "PRUNED")


def state_name(t: FrozenTrial) -> str:
    if t.state == TrialState.PRUNED and t.user_attrs.get("infeasible"):
        return "INFEASIBLE"
    if t.state == TrialState.PRUNED and t.user_attrs.get("screened_out"):
        return "SCREENED_OUT"
    return t.state.name


def error_of(t: FrozenTrial) -> str:
    return t.user_attrs.get("error") or (LOST if is_lost(t) else "")


def study_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """trials.csv rows of every trial in the study."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        values = t.values if t.state == TrialState.COMPLETE else None
        accuracy = values[0] if values else (t.user_attrs.get("curve") or [[None, None]])[-1][1]
        rows.append(trial_row(t.number, state_name(t), t.user_attrs, accuracy,
                              values[1] if values else t.user_attrs.get("latency_ms"), error_of(t)))
    return rows


def publish_study(run: Run, study: optuna.Study) -> list[dict[str, Any]]:
    """Rebuild the run's CSV files and configs from the study, one process at a time; returns the rows."""
    with run.lock():
        rows = study_rows(study)
        publish_trials(run, rows)
    return rows


class OptunaSearch:
    """One worker of a search driven by Optuna's ask-and-tell interface."""

    teach_budget = True  # infeasible draws carry Optuna constraints (False: as before them, for bench/sampler_bench.py)

    def __init__(self, run: Run, settings: SearchSettings, data: DataSplit, *, progress: bool = True,
                 storage_url: str | None = None, joining: bool = False) -> None:
        self.run, self.settings, self.data, self.progress = run, settings, data, progress
        self.space = settings.sampled_space
        self.storage = open_storage(storage_url or run.storage_url, settings.heartbeat)
        self.study = open_study(run.id, settings, self.storage, joining=joining)
        self.study_id = self.storage.get_study_id_from_name(run.id)
        self.worker = worker_name()
        self.stopper = MedianStopper() if settings.early_stopping else None
        self.screener = None if not settings.prescreen else make_estimator(
            f"zero-cost:{settings.prescreen}", data=data, res=settings.proxy.res, seed=settings.seed,
            cost_res=settings.space.resolution)
        self.heartbeats = contextlib.ExitStack()

    def trials(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    def finished_count(self) -> int:
        return sum(trained(t) for t in self.trials())

    def optimize(self) -> None:
        """Run trials until `settings.trials` have trained in the whole study, or the timeout passes."""
        rule = StopRule(self.settings)
        bar = progress_bar(self.run.id, self.settings, enabled=self.progress, done=self.finished_count())
        interrupted, reason = False, None
        try:
            with ctrl_c_held():  # a Ctrl-C raises only inside the computations that touch no storage
                reason = self.trial_loop(rule, bar)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if interrupted:  # past the except block the interrupted frames are garbage: collect them, and with them
                gc.collect()  # any open SQLite cursor, whose lock would block every write below for minutes
            with ctrl_c_held():
                self.stop(bar, error="interrupted (Ctrl-C)" if interrupted else None)
        if interrupted:
            raise KeyboardInterrupt
        rule.raise_for(reason)

    def trial_loop(self, rule: StopRule, bar: Any) -> str:
        """Run trials until the stop rule gives its reason."""
        target, failures = self.settings.trials, 0
        while True:
            fail_stale_trials(self.study, self.storage, self.settings.heartbeat)
            fail_unclaimed_running(self.study, self.storage, self.settings.heartbeat.grace_s)
            trials = self.trials()
            done, running = sum(trained(t) for t in trials), sum(t.state == TrialState.RUNNING for t in trials)
            reason = rule.reason(done, failures)
            if reason is not None:
                return reason
            if done + running >= target:  # the others' last trials: wait for them (or for their heartbeats to stop)
                with ctrl_c_allowed():
                    time.sleep(min(1.0, self.settings.heartbeat.interval_s / 2))
                continue
            outcome = self.run_one_trial()
            failures = 0 if outcome is not False else failures + 1
            if outcome is not None:
                show_progress(bar, self.publish(), target)

    def stop(self, bar: Any, error: str | None = None) -> None:
        """FAIL this worker's running trials with `error` (if given), stop its heartbeats, publish the rows."""
        try:
            if error:
                self.fail_own_running(error)
        finally:
            self.heartbeats.close()
            bar.close()
            self.publish()

    def run_one_trial(self) -> bool | None:
        """Draw, time, train and tell one trial: True when told, False if it raised, None when surplus."""
        drawn = self.prescreened() if self.settings.prescreen else [self.sample_feasible()]
        if self.surplus([trial for trial, _ in drawn]):
            for trial, _ in drawn:
                self.tell(trial, state=TrialState.FAIL, error=SURPLUS)
            return None
        trial, ev = self.screen_out(drawn) if self.settings.prescreen else drawn[0]
        try:
            with ctrl_c_allowed():
                time_candidate(ev, self.settings)
            trial.set_user_attr("latency_ms", ev.latency_ms)
            if ev.infeasible:  # a latency budget, known only once timed
                trial.set_user_attr("infeasible", "; ".join(ev.infeasible))
                self.tell(trial, state=TrialState.PRUNED)
                return True
            reporter = self.reporter(ev.cost.flops)
            with ctrl_c_allowed():
                train_candidate(ev, self.data, self.settings, reporter)
        except Exception as exc:  # out of memory and the like: record, go on
            self.tell(trial, state=TrialState.FAIL, error=f"{type(exc).__name__}: {exc}"[:500])
            return False
        set_attrs(trial, ev.attrs())
        if ev.stopped_early:
            self.tell(trial, state=TrialState.PRUNED)
        else:
            self.tell(trial, values=[ev.accuracy, ev.latency_ms])
        return True

    def ask(self) -> optuna.Trial:
        """A new trial of this worker, beating its heartbeat until it is told."""
        with warnings.catch_warnings():  # Optuna expects heartbeats from optimize(); HeartbeatThread beats ours
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
            trial = self.study.ask()
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
        self.heartbeats.enter_context(HeartbeatThread(self.storage, trial_id, self.settings.heartbeat))
        trial.set_user_attr("worker", self.worker)  # claimed once it beats: a claimed trial is watched by heartbeat
        return trial

    def tell(self, trial: optuna.Trial, *, values: list[float] | None = None, state: TrialState | None = None,
             error: str | None = None) -> None:
        if error:
            trial.set_user_attr("error", error)
        self.study.tell(trial, values, state=state)
        if not self.running_here():
            self.heartbeats.close()
            self.heartbeats = contextlib.ExitStack()

    def fail_own_running(self, error: str) -> None:
        """Tell this worker's running trials FAIL (a stopped search leaves none RUNNING for a resume to wait on)."""
        for t in self.trials():
            if t.state == TrialState.RUNNING and t.user_attrs.get("worker") == self.worker:
                trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, t.number)
                self.storage.set_trial_user_attr(trial_id, "error", error)
                self.study.tell(t.number, state=TrialState.FAIL)

    def running_here(self) -> bool:
        return any(t.state == TrialState.RUNNING and t.user_attrs.get("worker") == self.worker for t in self.trials())

    def surplus(self, group: list[optuna.Trial]) -> bool:
        """Whether the group comes too late: trained plus running trials numbered below it reach the target."""
        mine, last = {t.number for t in group}, max(t.number for t in group)
        ahead = sum(trained(t) or t.state == TrialState.RUNNING
                    for t in self.trials() if t.number < last and t.number not in mine)
        return ahead >= self.settings.trials

    def sample_feasible(self) -> tuple[optuna.Trial, Evaluation]:
        """Ask until a candidate fits the analytic budget; infeasible draws are told PRUNED with their constraints."""
        for drawn in range(1, MAX_INFEASIBLE_DRAWS + 1):
            trial = self.ask()
            ev = price(self.space.sample(trial.suggest_categorical), self.settings)
            if self.teach_budget:
                for key, excess in budget_excess(ev, self.settings.budget).items():
                    trial.set_constraint(key, excess)
            set_attrs(trial, ev.attrs())
            if not ev.infeasible:
                return trial, ev
            self.tell(trial, state=TrialState.PRUNED)
            if drawn == BLIND_DRAWS and all(state_name(t) == "INFEASIBLE" for t in self.trials()):
                self.study.enqueue_trial(feasible_params(self.settings, self.settings.seed + trial.number))
        raise StopRule(self.settings).error("infeasible")

    def prescreened(self) -> list[tuple[optuna.Trial, Evaluation]]:
        """`prescreen_draws` feasible candidates, each with its pre-screen proxy score."""
        drawn = [self.sample_feasible() for _ in range(self.settings.prescreen_draws)]
        for trial, ev in drawn:
            trial.set_user_attr("prescreen_score", self.score(ev))
        return drawn

    def score(self, ev: Evaluation) -> float:
        with ctrl_c_allowed():
            return self.screener.estimate(ev.config).score

    def screen_out(self, drawn: list[tuple[optuna.Trial, Evaluation]]) -> tuple[optuna.Trial, Evaluation]:
        """The best scored of the drawn candidates; the others are told PRUNED as screened out."""
        scores = [trial.user_attrs["prescreen_score"] for trial, _ in drawn]
        best = max(range(len(drawn)), key=scores.__getitem__)
        for i, ((trial, _), score) in enumerate(zip(drawn, scores)):
            if i != best:
                trial.set_user_attr("screened_out", f"{self.settings.prescreen} {score:.6g} < {scores[best]:.6g}")
                self.tell(trial, state=TrialState.PRUNED)
        return drawn[best]

    def reporter(self, flops: int):
        """The early-stopping callback handed to the proxy trainer."""
        if self.stopper is None:
            return None
        peers = [(t.user_attrs["flops"], t.user_attrs.get("curve") or []) for t in self.trials() if trained(t)]
        checkpoints = len(self.settings.proxy.checkpoint_images(len(self.data.train_x)))
        return lambda checkpoint, acc: self.stopper.should_stop(flops, checkpoint, acc, peers, checkpoints)

    def publish(self) -> list[dict[str, Any]]:
        return publish_study(self.run, self.study)


def set_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


class OptunaBackend:
    """The `optuna` search backend: ask-and-tell on one study that any number of workers share through its storage
    (more processes here with `workers`, or `fatnas search --join` anywhere)."""

    name = "optuna"
    option_names: tuple[str, ...] = ()

    def make_options(self, device: str | None, **values: Any) -> None:
        return None

    def check(self, settings: SearchSettings | None = None, *, storage: str | None = None, workers: int = 1,
              joining: bool = False) -> None:
        return None  # it carries out every setting, storage and worker count

    def run(self, job: SearchJob, options: None) -> None:
        run, settings = job.run, job.settings
        search = OptunaSearch(run, settings, job.data, progress=job.progress, storage_url=storage_of(run, job.storage),
                              joining=job.joining)
        if not job.joining and not run.references().empty:
            search.study.set_user_attr(REFERENCES_ATTR, run.references().to_dict("records"))
        others = start_workers(run, job.workers - 1, settings, job.storage)
        try:
            search.optimize()
            wait_workers(others)
        finally:
            stop_workers(others)
