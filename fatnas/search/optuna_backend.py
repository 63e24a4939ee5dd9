"""Search with Optuna: multi-objective (accuracy up, latency down), ask-and-tell, SQLite storage.

Optuna's pruners refuse multi-objective studies, so early stopping is our MedianStopper,
and stopped trials are told as PRUNED (samplers count them among the poor ones). Budget
violations are found analytically before training and told as PRUNED too, with the reason
kept in the trial's `infeasible` attribute. With a pre-screen, each trained trial is the best of
round(1 / keep) feasible draws by a zero-cost proxy; the others are told as PRUNED with their
score and shown as SCREENED_OUT.
"""
from __future__ import annotations

import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from ..data import DataSplit
from ..errors import FatnasError
from ..store import Run, publish_trials
from ..zero_cost import minibatch, score_config
from .evaluate import Evaluation, MedianStopper, SearchSettings, price, time_candidate, train_candidate, trial_row

SAMPLERS = ("tpe", "nsga2", "gp", "random")
DIRECTIONS = ("maximize", "minimize")  # accuracy, latency_ms
MAX_INFEASIBLE_DRAWS = 5000
MAX_CONSECUTIVE_FAILURES = 5


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


def open_study(run: Run, settings: SearchSettings) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """Create or load the run's study; on resume the sampler seed moves on past the trials made."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(run.storage_url)
    existing = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    made = 0
    if run.id in existing:
        made = len(optuna.load_study(study_name=run.id, storage=storage).trials)
    study = optuna.create_study(storage=storage, study_name=run.id, directions=list(DIRECTIONS),
                                sampler=make_sampler(settings.sampler, settings.seed + made),
                                load_if_exists=True)
    return study, storage


def fail_interrupted(study: optuna.Study, storage: optuna.storages.RDBStorage) -> int:
    """Mark trials left RUNNING by a killed process as FAIL; returns how many."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in stale:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "error", "interrupted: the search process stopped during this trial")
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    return len(stale)


def trained(t: FrozenTrial) -> bool:
    """A trial that finished training (complete, or stopped early), not an infeasible or screened-out draw."""
    return t.state == TrialState.COMPLETE or (t.state == TrialState.PRUNED and state_name(t) == "PRUNED")


def state_name(t: FrozenTrial) -> str:
    if t.state == TrialState.PRUNED and t.user_attrs.get("infeasible"):
        return "INFEASIBLE"
    if t.state == TrialState.PRUNED and t.user_attrs.get("screened_out"):
        return "SCREENED_OUT"
    return t.state.name


def study_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """trials.csv rows of every trial in the study."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        values = t.values if t.state == TrialState.COMPLETE else None
        accuracy = values[0] if values else (t.user_attrs.get("curve") or [[None, None]])[-1][1]
        rows.append(trial_row(t.number, state_name(t), t.user_attrs, accuracy,
                              values[1] if values else t.user_attrs.get("latency_ms"), t.user_attrs.get("error", "")))
    return rows


class OptunaSearch:
    """One search run driven by Optuna's ask-and-tell interface."""

    def __init__(self, run: Run, settings: SearchSettings, data: DataSplit, *, progress: bool = True) -> None:
        self.run, self.settings, self.data, self.progress = run, settings, data, progress
        self.space = settings.sampled_space
        self.study, self.storage = open_study(run, settings)
        self.interrupted = fail_interrupted(self.study, self.storage)
        self.stopper = MedianStopper() if settings.early_stopping else None
        self.screen_batch = minibatch(data, res=settings.proxy.res, seed=settings.seed) if settings.prescreen else None

    def finished_count(self) -> int:
        return sum(trained(t) for t in self.study.get_trials(deepcopy=False))

    def optimize(self) -> None:
        """Run trials until `settings.trials` have trained, or the timeout passes."""
        target, start = self.settings.trials, time.monotonic()
        bar = tqdm(total=target, initial=min(self.finished_count(), target), desc=f"search {self.run.id}",
                   unit="trial", disable=not self.progress, dynamic_ncols=True)
        failures = 0
        try:
            while self.finished_count() < target:
                if self.settings.timeout_s is not None and time.monotonic() - start > self.settings.timeout_s:
                    break
                ok = self.run_one_trial()
                failures = 0 if ok else failures + 1
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    raise RuntimeError(f"{failures} trials in a row failed; see the `error` column of trials.csv")
                self.publish()
                bar.n = min(self.finished_count(), target)
                bar.set_postfix_str(self.best_text(), refresh=True)
        finally:
            bar.close()
            self.publish()

    def run_one_trial(self) -> bool:
        """Sample a feasible candidate, time it, train it and tell the study; False if it raised."""
        trial, ev = self.prescreened() if self.settings.prescreen else self.sample_feasible()
        for key, value in ev.attrs().items():
            trial.set_user_attr(key, value)
        try:
            time_candidate(ev, self.settings)
            trial.set_user_attr("latency_ms", ev.latency_ms)
            if ev.infeasible:  # a latency budget, known only once timed
                trial.set_user_attr("infeasible", "; ".join(ev.infeasible))
                self.study.tell(trial, state=TrialState.PRUNED)
                return True
            train_candidate(ev, self.data, self.settings, self.reporter(ev.cost.flops))
        except Exception as exc:  # out of memory and the like: record, go on
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            self.study.tell(trial, state=TrialState.FAIL)
            return False
        for key, value in ev.attrs().items():
            trial.set_user_attr(key, value)
        if ev.stopped_early:
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, [ev.accuracy, ev.latency_ms])
        return True

    def sample_feasible(self) -> tuple[optuna.Trial, Evaluation]:
        """Ask until a candidate fits the analytic budget; infeasible draws are told as PRUNED."""
        for _ in range(MAX_INFEASIBLE_DRAWS):
            trial = self.study.ask()
            ev = price(self.space.sample(trial.suggest_categorical), self.settings)
            if not ev.infeasible:
                return trial, ev
            for key, value in ev.attrs().items():
                trial.set_user_attr(key, value)
            self.study.tell(trial, state=TrialState.PRUNED)
        raise FatnasError(f"no candidate out of {MAX_INFEASIBLE_DRAWS} draws from space "
                          f"{self.settings.space.name!r} fits the budget ({self.settings.budget.describe()})")

    def prescreened(self) -> tuple[optuna.Trial, Evaluation]:
        """The best of `prescreen_draws` feasible candidates by the pre-screen proxy; the rest are told PRUNED."""
        drawn = [self.sample_feasible() for _ in range(self.settings.prescreen_draws)]
        scores = [score_config(self.settings.prescreen, ev.config, self.screen_batch, num_classes=self.data.num_classes,
                               seed=self.settings.seed, cost_res=self.settings.space.resolution).value
                  for _, ev in drawn]
        best = max(range(len(drawn)), key=scores.__getitem__)
        for i, ((trial, ev), score) in enumerate(zip(drawn, scores)):
            trial.set_user_attr("prescreen_score", score)
            if i != best:
                for key, value in ev.attrs().items():
                    trial.set_user_attr(key, value)
                trial.set_user_attr("screened_out", f"{self.settings.prescreen} {score:.6g} < {scores[best]:.6g}")
                self.study.tell(trial, state=TrialState.PRUNED)
        return drawn[best]

    def reporter(self, flops: int):
        """The early-stopping callback handed to the proxy trainer."""
        if self.stopper is None:
            return None
        peers = [(t.user_attrs["flops"], t.user_attrs.get("curve") or [])
                 for t in self.study.get_trials(deepcopy=False) if trained(t)]
        checkpoints = len(self.settings.proxy.checkpoint_images(len(self.data.train_x)))
        return lambda checkpoint, acc: self.stopper.should_stop(flops, checkpoint, acc, peers, checkpoints)

    def publish(self) -> None:
        publish_trials(self.run, study_rows(self.study))

    def best_text(self) -> str:
        done = [t for t in self.study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if not done:
            return "no complete trial yet"
        best = max(done, key=lambda t: t.values[0])
        return f"best acc {best.values[0]:.3f} at {best.values[1]:.1f} ms, front {len(self.study.best_trials)}"
