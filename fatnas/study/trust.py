"""How far a search's accuracies can be trusted, read from the fidelity studies of its estimator on its task.

A fidelity study (`cli.py fidelity`, bench/fidelity_bench.py) that trained the search's proxy as one of its low
fidelities (or scored with its supernet) measured two things about it: the accuracy spread of one network over
seeds, and the Kendall tau of its ranking against the study's reference. `find_proxy_trust` looks for such a study
under the runs folder and `bench/results/` of the fatnas home (the working directory or $FATNAS_HOME: a source
checkout keeps its studies there). A study is quoted only for the same task (data set and classes) and estimator,
and its tau only where its reference repeats (seed-to-seed tau of at least REPEATS_SEED_TAU): otherwise no
ranking reference exists for the task, and the error bars fall back to the validation set's sampling error alone,
a lower bound.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..errors import FatnasError
from ..paths import home_dir
from ..runs.store import Run, readable_runs, runs_root, warn
from ..search.evaluate import OBJECTIVES
from .fidelity import FIDELITY_KEYS, read_study_table

OBJECTIVE = OBJECTIVES["accuracy"]
# a reference whose seeds agree less than this ranks nothing (Fashion-MNIST's 10 classes: 0.23; upper body: 0.45)
REPEATS_SEED_TAU = 0.3
PROXY = "proxy"


@dataclass(frozen=True)
class ProxyTrust:
    """A proxy's seed noise and ranking quality; `study` is None where no study of the proxy exists."""

    seed_std: float | None  # accuracy std of one network over seeds (None: not measured)
    seed_note: str
    study: str | None = None
    tau: float | None = None  # Kendall tau of the proxy's accuracy against the study's reference
    tau_low: float | None = None
    tau_high: float | None = None
    reference: str | None = None
    reference_seed_tau: float | None = None  # the reference's own reliability: tau between two of its seeds
    archs: int = 0
    objective: str = OBJECTIVE  # what the search's accuracy axis is (run.yaml's objectives)
    task: str = ""  # e.g. 'fashion-mnist, classes 0,2,4,6, estimator proxy'

    def error_bars(self, accuracy: pd.Series, val_images: int) -> list[float]:
        """Per point: the measured seed std, else the binomial std of a validation set of `val_images`."""
        if self.seed_std is not None:
            return [self.seed_std] * len(accuracy)
        return [math.sqrt(max(a * (1 - a), 0.0) / max(val_images, 1)) for a in accuracy.astype(float)]

    def describe(self, error_bars: bool = True) -> str:
        """One sentence for a page or a terminal; `error_bars=False` where the run states its own measured noise."""
        std = (f"+-{self.seed_std:.4f}, the proxy's accuracy std over seeds ({self.seed_note})"
               if self.seed_std is not None else self.seed_note)
        noise = f"error bars: 90% intervals from {std}"
        noise = f"; {noise}" if error_bars else ""
        if self.tau is None:
            return (f"Accuracy objective: {self.objective}{noise}. No ranking reference exists for this task "
                    f"({self.task}): no fidelity study of this estimator on it has a reference whose seeds agree "
                    f"(seed-to-seed tau >= {REPEATS_SEED_TAU}), so how well it ranks networks is not known.")
        interval = "" if self.tau_low is None else f" (90% interval {self.tau_low:.2f} to {self.tau_high:.2f})"
        reliability = "" if self.reference_seed_tau is None else \
            f"; the reference's own seed-to-seed tau is {self.reference_seed_tau:.2f}"
        return (f"Accuracy objective: {self.objective}{noise}. Its Kendall tau against the reference "
                f"({self.reference}) is {self.tau:.2f}{interval} over {self.archs} networks in fidelity "
                f"study {self.study}{reliability}.")


def find_proxy_trust(proxy: dict[str, Any], roots: Sequence[Path] | None = None, *, dataset: str = "fashion-mnist",
                     classes: Sequence[int] = (), estimator: str = PROXY, objective: str = OBJECTIVE,
                     val_images: int | None = None) -> ProxyTrust:
    """The best fidelity study of the search's estimator on its task: `proxy` (ProxySettings fields) trained as a
    low fidelity, or the weight-sharing `estimator` (supernet:ID) as a scorer, on `dataset` and `classes`.
    `objective` names the search's accuracy axis; `val_images` is the count it is measured on (None: the proxy's)."""
    val_images = int(val_images or proxy.get("val_images") or 0)
    task = _task_text(dataset, classes, estimator)
    fallback = ProxyTrust(None, f"binomial std of {val_images} validation images only, a lower bound", task=task,
                          objective=objective)
    found = [trust for run in _fidelity_runs(roots)
             if (trust := _checked_trust(run, proxy, (dataset, tuple(classes), estimator))) is not None]
    found = [dataclasses.replace(t, task=task, objective=objective,
                                 seed_note=t.seed_note if t.seed_std is not None else fallback.seed_note)
             for t in found]
    if not found:
        return fallback
    return max(found, key=lambda t: (t.tau is not None, t.archs))


def _task_text(dataset: str, classes: Sequence[int], estimator: str) -> str:
    """'fashion-mnist, classes 0,2,4,6, estimator proxy': the task a trust sentence names."""
    which = f"classes {','.join(map(str, classes))}" if classes else "all classes"
    return f"{dataset}, {which}, estimator {estimator}"


def bench_results() -> Path:
    """`bench/results/` of the fatnas home, where a checkout keeps its benchmark studies."""
    return home_dir() / "bench" / "results"


def _fidelity_runs(roots: Sequence[Path] | None) -> list[Run]:
    """The fidelity studies under `roots`; a damaged run is skipped with a one-line warning."""
    roots = [runs_root(), bench_results()] if roots is None else roots
    return [run for root in roots for run, meta in readable_runs(root) if meta.get("kind") == "fidelity"]


Task = tuple[str, tuple[int, ...], str]  # data set, classes (empty: all), estimator


def _checked_trust(run: Run, proxy: dict[str, Any], task: Task) -> ProxyTrust | None:
    """`_trust_from`, or None with a one-line warning where a file of the study is damaged (its files are checked
    against runs/schema.py on read, so a damaged one is a FatnasError), so one study never breaks a dashboard."""
    try:
        return _trust_from(run, proxy, task)
    except FatnasError as exc:
        warn(f"skipped {exc}")
        return None


def _trust_from(run: Run, proxy: dict[str, Any], task: Task) -> ProxyTrust | None:
    """What `run` measured of the estimator on the same task, or None if it did not measure it there."""
    meta = run.read_meta()
    dataset, classes, estimator = task
    if meta.get("dataset") != dataset or tuple(meta.get("classes") or ()) != classes:  # other networks win there
        return None
    label = _proxy_label(meta, proxy) if estimator == PROXY else \
        (estimator if estimator in (meta.get("scorers") or []) else None)
    if label is None:
        return None
    seed_std, seed_note = _seed_spread(run, label)
    tau_row = _tau_row(run, label)
    seed_tau = _reference_seed_tau(run)
    if tau_row is None or seed_tau is None or seed_tau < REPEATS_SEED_TAU:  # no tau, or a reference that repeats not
        return ProxyTrust(seed_std, seed_note, study=run.id, reference_seed_tau=seed_tau) \
            if seed_std is not None else None
    reference = tau_row.get("reference") if isinstance(tau_row.get("reference"), str) else \
        f"{meta.get('high')}, one seed, accuracy"
    return ProxyTrust(seed_std, seed_note, study=run.id, tau=float(tau_row["kendall_tau"]),
                      tau_low=_number(tau_row.get("tau_low")), tau_high=_number(tau_row.get("tau_high")),
                      reference=reference, reference_seed_tau=seed_tau, archs=int(tau_row["archs"]))


def _proxy_label(meta: dict[str, Any], proxy: dict[str, Any]) -> str | None:
    """The study's label of its low fidelity that is `proxy`, if one is."""
    lows = (meta.get("fidelity_settings") or {}).get("lows") or []
    return next((label for label, low in zip(meta["lows"], lows) if _same_proxy(low, proxy)), None)


def _reference_seed_tau(run: Run) -> float | None:
    """Seed-to-seed tau of the reference metric the study ranked by (reliability.csv), if it has one."""
    table = read_study_table(run, "reliability.csv")
    if table.empty or "chosen" not in table:
        return None
    chosen = table[table["chosen"].astype(bool)]
    return None if chosen.empty else _number(chosen.iloc[0]["seed_tau"])


def _same_proxy(low: dict[str, Any], proxy: dict[str, Any]) -> bool:
    """Equal on every fidelity key the study recorded (older studies recorded fewer)."""
    keys = [k for k in FIDELITY_KEYS if k in low]
    return bool(keys) and all(low[k] == proxy.get(k) for k in keys)


def _seed_spread(run: Run, label: str) -> tuple[float | None, str]:
    table = read_study_table(run, "seed_spread.csv")
    rows = table[table["measure"] == label] if "measure" in table else table.iloc[0:0]
    if rows.empty or not math.isfinite(float(rows.iloc[0]["seed_std"])):
        return None, ""
    row = rows.iloc[0]
    return float(row["seed_std"]), f"{row['network']} over {int(row['seeds'])} seeds in fidelity study {run.id}"


def _tau_row(run: Run, label: str) -> dict[str, Any] | None:
    """The correlations.csv row of the proxy's accuracy (estimator `label:accuracy`, or `label` in older studies)."""
    table = read_study_table(run, "correlations.csv")
    if table.empty:
        return None
    rows = (table[table["estimator"] == f"{label}:accuracy"] if "estimator" in table
            else table[table["measure"] == label])
    rows = rows[rows["kendall_tau"].notna()]
    return None if rows.empty else rows.iloc[0].to_dict()


def _number(value: Any) -> float | None:
    return float(value) if value is not None and not pd.isna(value) else None


__all__ = ["OBJECTIVE", "REPEATS_SEED_TAU", "ProxyTrust", "find_proxy_trust"]
