"""The Ray backend's driver: the runtime, the study as searcher, scheduler, stopper, Tuner, trials.csv rows.

The same candidates, objectives (accuracy up, latency_ms down), budget check, proxy training
and trials.csv rows as the Optuna backend, run as Tune trials (`trainable.run_trial`) on a local
Ray runtime or a cluster. Tune's own results (experiment state, per-trial result.json) live in
`runs/<id>/ray/`.

- Sampling: `StudySearcher` asks the run's Optuna study (study.db) and calls
  `sampled_space.sample(suggest_categorical)`, so parameter names (`widths_0`, ...), the conditional
  heads and the seeded samplers are the Optuna backend's.
- Budget: the trainable prices its config analytically first; a config over budget reports one
  final result flagged `infeasible` and never trains. The searcher tells Optuna such trials as
  PRUNED, as the Optuna backend does; trials.csv records them as INFEASIBLE.
- Early stopping: the Optuna backend's rule (`core.MedianStopper`: below the median of the
  same FLOPs band's earlier trained trials at a checkpoint) on the intermediate accuracy (`MedianScheduler`).
- Stopping the search: a `tune.Stopper` asks the session's `StopRule` (target, failures, timeout).
- Search control: Tune pickles its searcher, scheduler and callbacks into the experiment folder
  and brings those copies back on restore. What must follow the current invocation (trial
  target, deadline, concurrency, progress bar) therefore lives in a driver-side `_Session`,
  looked up by run id, never in the pickles.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import ray
from optuna.trial import TrialState
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import Searcher

from ...errors import FatnasError
from ...estimate.data import DataSplit, settings_data
from ...model.space import SearchSpace
from ...runs.store import Run, publish_trials
from ..core import TRAINED, MedianStopper, StopRule, feasible_params, progress_bar, show_progress
from ..evaluate import SearchSettings, price, trial_row
from ..optuna_backend import open_study
from ..storage import open_storage
from .options import RayOptions, RayOptionsError, check_reachable, local_cpus
from .trainable import TIME_ATTR, SharedData, config_of, outcome, result_attrs, run_trial

RAY_DIR = "ray"  # Tune's experiment folder inside the run
TRIAL_RETRIES = 1  # a trial lost with its node (or that raised) runs once more before it counts as FAIL
METRICS, MODES = ["accuracy", "latency_ms"], ["max", "min"]
# Tune settings read from the environment when a Tuner runs; users' own values win.
TUNE_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",  # the classic reporter, which honours verbose=0
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",  # failed trials are recorded in trials.csv
    "TUNE_GLOBAL_CHECKPOINT_S": "1",  # experiment state at most 1 s behind trials.csv
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "3600",  # no nagging about that 1 s
}


def fatnas_runtime_env() -> dict[str, Any]:
    """Ray's runtime_env that ships this fatnas package to every node: nodes need only the same Python packages."""
    return {"py_modules": [str(Path(__file__).resolve().parents[2])]}



def suggest_config(space: SearchSpace, trial: optuna.Trial) -> dict[str, Any]:
    """A Tune config from an Optuna trial: the space's own sampling by name, and the trial number."""
    space.sample(trial.suggest_categorical)
    return dict(trial.params, trial=trial.number)


class StudySearcher(Searcher):
    """Tune searcher over the run's Optuna study (study.db): asks the study for each trial's config and
    tells it the outcome, as the Optuna backend does (infeasible and stopped trials PRUNED, failed FAIL).

    Only Optuna's public ask-and-tell is used, so parameter names (`widths_0`, ...), the conditional
    heads and the seeded samplers are the Optuna backend's, and optuna-dashboard opens a Ray run's
    study. Its own state (Tune trial id -> Optuna trial number) is saved with the experiment.
    """

    def __init__(self, run_id: str, settings: SearchSettings, storage_url: str) -> None:
        super().__init__(metric="accuracy", mode="max")
        self.run_id, self.settings, self.storage_url = run_id, settings, storage_url
        self.numbers: dict[str, int] = {}
        self.study: optuna.Study | None = None

    def open_study(self) -> optuna.Study:
        if self.study is None:
            # no heartbeats: Tune finds lost trials itself
            self.study = open_study(self.run_id, self.settings, open_storage(self.storage_url, None))
        return self.study

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        session = _SESSIONS[self.run_id]
        if not session.may_start():
            return None  # wait for running trials; the SessionStopper ends the experiment
        trial = self.open_study().ask()
        self.numbers[trial_id] = trial.number
        session.live += 1
        return suggest_config(self.settings.sampled_space, trial)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        number = self.numbers.pop(trial_id, None)
        if number is None:
            return
        state = outcome(result, error)
        try:
            if state == "COMPLETE":
                self.open_study().tell(number, [result["accuracy"], result["latency_ms"]])
            else:
                self.open_study().tell(number, state=TrialState.FAIL if state == "FAIL" else TrialState.PRUNED)
        except (ValueError, RuntimeError) as exc:  # e.g. told already before a restore; the sampler goes on
            logging.getLogger(__name__).warning("trial %s: Optuna refused its result: %s", trial_id, exc)

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps(self.numbers))

    def restore(self, checkpoint_path: str) -> None:
        self.numbers = json.loads(Path(checkpoint_path).read_text())

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "study": None}  # reopened from the storage after a restore


class SessionStopper(tune.Stopper):
    """Ends the experiment when the session's StopRule says so and no trial is running."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        session = _SESSIONS[self.run_id]
        if session.finished():
            session.stopped = session.reason()
            return True
        return False


class MedianScheduler(FIFOScheduler):
    """Early stopping by the Optuna backend's rule (`core.MedianStopper`, peers in one FLOPs band):
    a trial reporting an intermediate accuracy below the median of its band's earlier trained trials
    at that checkpoint stops. Its peers are the session's trained rows; nothing else is kept."""

    def __init__(self, run_id: str, checkpoints: int) -> None:
        super().__init__()
        self.run_id, self.checkpoints, self.stopper = run_id, checkpoints, MedianStopper()

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        if result.get("final") or TIME_ATTR not in result or result.get("accuracy") is None:
            return self.CONTINUE
        peers = _SESSIONS[self.run_id].peers()
        stop = self.stopper.should_stop(result["flops"], result[TIME_ATTR] - 1, result["accuracy"], peers,
                                        self.checkpoints)
        return self.STOP if stop else self.CONTINUE


class RunRecorder(tune.Callback):
    """Driver-side: turns finished Tune trials into trials.csv rows (published at once)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        _SESSIONS[self.run_id].observe(trials)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        session = _SESSIONS[self.run_id]
        session.finish(trial, error=False)
        session.observe(trials)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        session = _SESSIONS[self.run_id]
        session.finish(trial, error=True)
        session.observe(trials)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        _SESSIONS[self.run_id].observe(trials)


def trial_dirname(trial: Trial) -> str:
    return f"trial_{trial.config['trial']}_{trial.trial_id}"


def trial_name(trial: Trial) -> str:
    return f"trial_{trial.config['trial']}"


class _Session:
    """This invocation's view of the search: target, deadline, concurrency, rows, progress."""

    def __init__(self, run: Run, settings: SearchSettings, max_concurrent: int, progress: bool) -> None:
        self.run, self.settings, self.max_concurrent = run, settings, max_concurrent
        self.rule = StopRule(settings)
        # trial number -> trials.csv row: the run's earlier rows (earlier Tune experiments too), then this one's
        earlier = run.trials()
        self.rows: dict[int, dict[str, Any]] = {int(row["trial"]): row for row in earlier.to_dict("records")}
        self.done: set[str] = set()  # Tune trial ids recorded by this session
        self.live = 0  # trials started and not finished
        self.failures = 0  # consecutive failed trials
        self.infeasible_streak = 0  # consecutive infeasible draws
        self.adopted = False  # trials restored from an earlier run recorded
        self.retried: set[str] = set()  # trials that failed once (e.g. lost with their node) and ran again
        self.stopped: str | None = None  # why the searcher finished; None after an interrupt
        self.bar = progress_bar(run.id, settings, enabled=progress)

    def trained(self) -> int:
        return sum(row["state"] in TRAINED for row in self.rows.values())

    def reason(self) -> str | None:
        """Why no further trial may start, if so."""
        return self.rule.reason(self.trained(), self.failures, self.infeasible_streak)

    def may_start(self) -> bool:
        # never more trials in flight than could still be needed (infeasible ones end at once)
        return (self.reason() is None and self.live < self.max_concurrent
                and self.trained() + self.live < self.settings.trials)

    def finished(self) -> bool:
        return self.reason() is not None and self.live == 0

    def finish(self, trial: Trial, error: bool) -> None:
        """Record a trial that just finished (Tune still shows it RUNNING during on_trial_complete)."""
        if trial.trial_id in self.done:
            return
        self.done.add(trial.trial_id)
        if trial.num_failures:
            self.retried.add(trial.trial_id)
        result = trial.last_result or {}
        state = outcome(result, error)
        if "arch" in result:
            attrs = result_attrs(result)
        else:  # failed before its first report: the analytic facts are known anyway
            attrs = price(config_of(self.settings.sampled_space, trial.config), self.settings).attrs()
        curve = attrs["curve"]
        accuracy = result.get("accuracy") if state == "COMPLETE" else (curve[-1][1] if curve else None)
        number = int(trial.config["trial"])
        self.rows[number] = trial_row(number, state, attrs, accuracy, attrs["latency_ms"],
                                      error_text(trial) if state == "FAIL" else "")
        if state in TRAINED:
            self.failures = self.infeasible_streak = 0
        elif state == "INFEASIBLE":
            self.infeasible_streak += 1
        else:
            self.failures += 1
        self.publish()

    def observe(self, trials: list[Trial]) -> None:
        """Count live trials. The first call also records the trials an earlier run finished (restore);
        later ones finish only through `finish`, so trials Tune stops on an interrupt are not recorded."""
        live = 0
        for t in trials:
            if t.trial_id in self.done:
                continue
            if t.status not in (Trial.TERMINATED, Trial.ERROR):
                live += 1
            elif not self.adopted:
                self.finish(t, error=t.status == Trial.ERROR)
        self.live, self.adopted = live, True

    def peers(self) -> list[tuple[int, list[list[float]]]]:
        """(FLOPs, curve) of the trained trials: the early-stopping rule's peers."""
        return [(row["flops"], json.loads(row["curve"])) for row in self.rows.values() if row["state"] in TRAINED]

    def publish(self) -> None:
        rows = [self.rows[number] for number in sorted(self.rows)]
        publish_trials(self.run, rows)
        show_progress(self.bar, rows, self.settings.trials)


_SESSIONS: dict[str, _Session] = {}


def error_text(trial: Trial) -> str:
    """`Type: message` of the exception a trial raised: the last line of Tune's text error file.

    Tune also keeps the exception pickled (error.pkl) in the run folder; it is never read, since
    unpickling a file of a run folder (which may come from someone else) runs the code in it.
    Tune writes the error into the trial's driver-side folder first and syncs it to the
    experiment folder later, so both places are tried.
    """
    text = ""
    with contextlib.suppress(Exception):
        text = Path(trial.error_file).read_text(errors="replace") if trial.error_file else ""
    if not text.strip():
        with contextlib.suppress(Exception):
            text = trial.get_error() or ""
    lines = [line for line in str(text).splitlines() if line.strip()]
    return (lines[-1].strip() if lines else "the trial's Ray actor failed")[:500]


def maker() -> dict[str, Any]:
    """Who runs this search, as run.yaml records it: the machine and the user."""
    return dict(host=os.uname().nodename, uid=os.getuid())


def check_own_experiment(run: Run, ray_dir: Path, meta: dict[str, Any]) -> None:
    """Refuse to restore a Tune experiment made on another machine or by another user: Tune's restore unpickles
    its files (searcher, trials), and unpickling a file runs the code it names."""
    made = meta.get("made_by")
    here = maker()
    foreign = [p for p in ray_dir.rglob("*.pkl") if p.stat().st_uid != here["uid"] or p.stat().st_mode & 0o022]
    if (made is not None and made != here) or foreign:
        by = f"on {made.get('host')} by user {made.get('uid')}" if made and made != here else \
            f"with files of another user or writable by others ({foreign[0].relative_to(ray_dir)})"
        raise FatnasError(f"run {run.id!r}: its Ray experiment ({ray_dir.name}/) was made {by}; restoring it would "
                          f"unpickle its files, which runs their code, so fatnas restores only experiments made on "
                          f"this machine by this user (start a new run, or `sync` an Optuna run)")


# ---------------------------------------------------------------- the search

class RaySearch:
    """One search run as a Ray Tune experiment in `runs/<id>/ray/` (resumed when it exists)."""

    def __init__(self, run: Run, settings: SearchSettings, data: DataSplit | None = None, *,
                 progress: bool = True, options: RayOptions = RayOptions()) -> None:
        self.run, self.settings, self.progress = run, settings, progress
        self.options = options.resolve(settings.threads)
        self.options.check_device(settings.device)  # (resolve re-validates: the CPUs must fit this machine)
        self.data = data
        self.init_seconds = 0.0
        self.reason: str | None = None

    @property
    def ray_dir(self) -> Path:
        return self.run.path.resolve() / RAY_DIR

    def optimize(self) -> None:
        """Run Tune trials until `settings.trials` have trained, the timeout passes, or too many fail."""
        meta = self.run.read_meta().get("ray") or {}
        restoring = self.ray_dir.is_dir() and tune.Tuner.can_restore(str(self.ray_dir))
        if restoring:
            check_own_experiment(self.run, self.ray_dir, meta)
        if restoring and meta.get("finished"):
            if self._target_reached():
                return  # nothing to add
            # a larger --trials or a new --timeout: Tune keeps an ended experiment ended (its search
            # algorithm stays finished), so the search goes on in a new one, its rows kept by the session
            self._set_aside_experiment()
            restoring = False
        if not restoring:
            feasible_params(self.settings, self.settings.seed)  # a budget no network meets ends here, before Ray
        data = self.data if self.data is not None else settings_data(self.settings)
        started = self._start_ray()
        session: _Session | None = None
        try:
            max_concurrent = self.options.max_concurrent or self._default_concurrency()
            self._record(max_concurrent, finished=None)
            trainable = tune.with_resources(
                tune.with_parameters(run_trial, data=SharedData(ray.put(data)),
                                     settings=dataclasses.replace(self.settings, threads=self.options.threads)),
                {"cpu": self.options.cpus_per_trial, "gpu": self.options.gpus_per_trial})
            session = _SESSIONS[self.run.id] = _Session(self.run, self.settings, max_concurrent, self.progress)
            checkpoints = len(self.settings.proxy.checkpoint_images(len(data.train_x)))
            with _quiet_tune():
                tuner = (tune.Tuner.restore(str(self.ray_dir), trainable=trainable, resume_unfinished=True,
                                            resume_errored=False, restart_errored=False)
                         if restoring else self._new_tuner(trainable, max_concurrent, checkpoints))
                tuner.fit()
            session.publish()
            self.reason = session.stopped
            self._record(max_concurrent, finished=self.reason, retried=len(session.retried))
        finally:
            if session is not None:
                session.bar.close()
            _SESSIONS.pop(self.run.id, None)
            if started:
                ray.shutdown()
        self._raise_for(self.reason)

    def _set_aside_experiment(self) -> Path:
        """Move the ended Tune experiment to `ray.N` (the first free N), where its results stay readable."""
        n = 1
        while self.ray_dir.with_name(f"{RAY_DIR}.{n}").exists():
            n += 1
        return self.ray_dir.rename(self.ray_dir.with_name(f"{RAY_DIR}.{n}"))

    def _new_tuner(self, trainable: Any, max_concurrent: int, checkpoints: int) -> tune.Tuner:
        scheduler = MedianScheduler(self.run.id, checkpoints) if self.settings.early_stopping else FIFOScheduler()
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=StudySearcher(self.run.id, self.settings, self.run.default_storage),
                                        scheduler=scheduler, num_samples=-1, max_concurrent_trials=max_concurrent,
                                        reuse_actors=True, trial_name_creator=trial_name,
                                        trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(name=RAY_DIR, storage_path=str(self.ray_dir.parent), verbose=0,
                                      callbacks=[RunRecorder(self.run.id)], stop=SessionStopper(self.run.id),
                                      failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES, fail_fast=False)))

    def _start_ray(self) -> bool:
        """Join the given cluster, or start a local runtime sized to this machine; True if started here."""
        start = time.perf_counter()
        if ray.is_initialized():
            started = False
        elif self.options.address is None:
            ray.init(num_cpus=local_cpus(), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
            started = True
        else:
            check_reachable(self.options.address)
            try:
                ray.init(address=self.options.address, log_to_driver=False, logging_level=logging.ERROR,
                         runtime_env=fatnas_runtime_env())
            except (ConnectionError, RuntimeError) as exc:
                raise RayOptionsError(f"--ray-address {self.options.address}: cannot join a Ray cluster there "
                                      f"({str(exc).splitlines()[0]}); start one with `ray start --head`, and where "
                                      "it uses token authentication (Ray's default) set RAY_AUTH_MODE=token and "
                                      "RAY_AUTH_TOKEN to its ~/.ray/auth_token") from None
            started = True
        self.init_seconds = time.perf_counter() - start
        try:
            self._check_cluster()
        except BaseException:
            if started:
                ray.shutdown()
            raise
        return started

    def _check_cluster(self) -> None:
        """Every trial must fit on one node, or Tune would wait for it forever."""
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        cpus = max((n.get("CPU", 0) for n in nodes), default=0)
        gpus = max((n.get("GPU", 0) for n in nodes), default=0)
        if self.options.cpus_per_trial > cpus:
            raise RayOptionsError(f"--cpus-per-trial {self.options.cpus_per_trial:g}: the largest Ray node has "
                                  f"{cpus:g} CPUs")
        if self.options.gpus_per_trial > gpus:
            raise RayOptionsError(f"--gpus-per-trial {self.options.gpus_per_trial:g}: the largest Ray node has "
                                  f"{gpus:g} GPUs")

    def _default_concurrency(self) -> int:
        total = ray.cluster_resources()
        slots = int(total.get("CPU", 1) // self.options.cpus_per_trial)
        if self.options.gpus_per_trial:
            slots = min(slots, int(total.get("GPU", 0) // self.options.gpus_per_trial))
        return max(1, slots)

    def _record(self, max_concurrent: int, finished: str | None, retried: int = 0) -> None:
        """The Ray section of run.yaml: options, cluster, start-up time, whether the search finished, and how
        many of this session's trials failed once (a node lost, an exception) and ran again."""
        total = ray.cluster_resources()
        self.run.update_meta(ray=dict(
            version=ray.__version__, address=self.options.address or "local", made_by=maker(),
            cpus_per_trial=self.options.cpus_per_trial, gpus_per_trial=self.options.gpus_per_trial,
            max_concurrent=max_concurrent, torch_threads_per_trial=self.options.threads,
            cluster=dict(nodes=sum(bool(n.get("Alive")) for n in ray.nodes()), cpus=total.get("CPU", 0),
                         gpus=total.get("GPU", 0),
                         node_addresses=sorted({n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")})),
            init_seconds=round(self.init_seconds, 3), results=f"{RAY_DIR}/", finished=finished, retried_trials=retried,
            latency_note="latency is timed inside each trial with its torch threads, while other trials may run"))

    def _target_reached(self) -> bool:
        trials = self.run.trials()
        return not trials.empty and int(trials["state"].isin(TRAINED).sum()) >= self.settings.trials

    def _raise_for(self, reason: str | None) -> None:
        if reason is None:
            print(f"search {self.run.id} interrupted; continue it with: python cli.py search --resume {self.run.id} "
                  "--backend ray", file=sys.stderr)
            raise KeyboardInterrupt
        StopRule(self.settings).raise_for(reason)


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Tune's settings for a quiet, promptly checkpointed run, and its end-of-run error line muted."""
    saved_env = {k: os.environ.get(k) for k in TUNE_ENV}
    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    tune_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        tune_logger.setLevel(level)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


__all__ = ["RaySearch", "StudySearcher", "fatnas_runtime_env", "suggest_config"]
