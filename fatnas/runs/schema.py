"""What each file of a run folder holds, field by field: run.yaml's fields (by run kind) and each CSV table's
columns, with their types and ranges. `check_meta` and `check_table` run on every read (`Run.read_meta`,
`Run.read_table`), so code that reads a run can trust the types it gets; a file that breaks its schema is one
error naming the file, the field and what it holds (cut short, see `errors.shown`).

A field set to null, or absent, is "not recorded" unless its kind lists it as required; unknown fields are
kept (newer versions may add some), except inside the closed mappings that settings classes are rebuilt from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import pandas as pd

from ..documents import load_json
from ..errors import FatnasError, shown


@dataclass(frozen=True)
class Number:
    """A finite number (not a bool) in [low, high]; `whole`: an integer; `positive`: above 0 as well."""

    low: float = -math.inf
    high: float = math.inf
    whole: bool = False
    positive: bool = False

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "not a number"
        if self.whole and not float(value).is_integer():
            return "not a whole number"
        if self.positive and not value > 0:
            return "not a positive number"
        return None if self.low <= value <= self.high else f"not in [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Fields:
    """A mapping whose listed fields have these specs; `closed`: no other field is allowed; `required`: these are
    there and not null."""

    specs: dict[str, Spec]
    closed: bool = False
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class Items:
    """A list whose every item has this spec."""

    spec: Spec


@dataclass(frozen=True)
class Kind:
    """run.yaml of one run kind: the fields it must hold (not null) beside the common ones."""

    required: tuple[str, ...] = ()
    specs: dict[str, Spec] = field(default_factory=dict)


Spec = Union[type, Number, Fields, Items]
COUNT = Number(0, 2**63 - 1, whole=True)
POSITIVE = Number(1, 2**63 - 1, whole=True)
SEED = Number(0, 2**32 - 1, whole=True)
REAL = Number()
CHOICES = Items(Items(REAL))  # a space's per-stage choices
TEXT = str

PROXY = Fields(dict(res=POSITIVE, train_images=POSITIVE, epochs=POSITIVE, batch_size=POSITIVE, lr=REAL,
                    weight_decay=REAL, label_smoothing=REAL, eval_every=POSITIVE, val_images=POSITIVE, seed=SEED,
                    device=TEXT, amp=bool, channels_last=bool, augment=bool, eval_split=TEXT), closed=True)
ABOVE_ZERO = Number(positive=True)
BUDGET = Fields(dict(max_flops=ABOVE_ZERO, max_params=ABOVE_ZERO, max_latency_ms=ABOVE_ZERO, res=POSITIVE),
                closed=True)
SPACE = Fields(dict(name=TEXT, resolution=POSITIVE, depths=CHOICES, widths=CHOICES, head_dims=CHOICES,
                    kernels=CHOICES, windows=CHOICES, ffn_ratios=CHOICES, ffn_kernels=CHOICES))
COMMON: dict[str, Spec] = dict(
    id=TEXT, kind=TEXT, command=TEXT, backend=TEXT, storage=TEXT, dataset=TEXT, data_dir=TEXT, classes=Items(COUNT),
    trials=COUNT, timeout_s=Number(0), archs=COUNT, threads=POSITIVE, workers=POSITIVE, validation_images=COUNT,
    budget=BUDGET, budget_text=TEXT, flop_convention=TEXT, accuracy_note=TEXT, versions=dict, hardware=dict,
    space=SPACE, space_source=TEXT, proxy=PROXY, device=TEXT)
KINDS = {
    "search": Kind(required=("backend", "space", "budget", "proxy", "trials", "sampler", "seeds", "dataset",
                             "latency"),
                   specs=dict(objectives=Fields(dict(accuracy=TEXT, latency_ms=TEXT)), sampler=TEXT,
                              seeds=Fields(dict(sampler=SEED, proxy=SEED, data_split=SEED), closed=True,
                                           required=("sampler",)),
                              latency=Fields(dict(warmup=COUNT, repeats=POSITIVE, model=TEXT, source=TEXT,
                                                  threads=POSITIVE, batch_size=POSITIVE, resolution=POSITIVE)),
                              references=bool, early_stopping=bool, collapse_inert=bool,
                              prescreen=Fields(dict(proxy=TEXT, keep=Number(0, 1))),
                              heartbeat=Fields(dict(interval_s=POSITIVE, grace_s=POSITIVE), closed=True),
                              liveness=dict, estimator=TEXT, estimator_provenance=TEXT,
                              noise=Fields(dict(std=Number(0), source=TEXT, note=TEXT, networks=COUNT,
                                                evaluations=COUNT)),
                              confirm=dict)),  # checked field by field where a stage resumes (study/confirm/resume)
    "fidelity": Kind(required=("lows", "high", "dataset", "space", "budget", "archs", "proxies", "proxy_batch",
                               "spread_seeds", "references", "seeds", "workers", "threads", "top_k"),
                     specs=dict(lows=Items(TEXT), high=TEXT, scorers=Items(TEXT), proxies=Items(TEXT),
                                fidelity_settings=Fields(dict(lows=Items(PROXY), high=PROXY)),
                                proxy_batch=POSITIVE, spread_seeds=COUNT, high_seeds=POSITIVE, references=bool,
                                seeds=Fields(dict(study=SEED), required=("study",)), top_k=COUNT,
                                reference_metric=TEXT)),
    "supernet": Kind(specs=dict(task=dict, train=dict, state=TEXT, weights_sha256=TEXT)),
    "scaling": Kind(specs=dict(base=TEXT, base_config=dict, base_resolution=POSITIVE)),
}



@dataclass(frozen=True)
class Table:
    """A CSV file of a run: the columns every row fills, the columns it has (filled or not), each column's spec."""

    filled: tuple[str, ...]
    columns: tuple[str, ...]
    specs: dict[str, Spec]


NUMBERS = dict(trial=Number(-1, 2**63 - 1, whole=True), accuracy=REAL, latency_ms=REAL, params=REAL, flops=REAL,
               latency_ratio=Number(positive=True), latency_reference_ms=Number(positive=True))
RESULT = ("state", "accuracy", "latency_ms", "params", "flops", "config")  # what every row of a trial table says
TABLES = {
    "trials.csv": Table(("trial", "state"), RESULT, dict(NUMBERS, state=TEXT, config=dict)),
    "pareto.csv": Table(("trial", *RESULT), RESULT, dict(NUMBERS, state=TEXT, config=dict)),
    "references.csv": Table(("name",), RESULT, dict(NUMBERS, name=TEXT, state=TEXT, config=dict)),
    "seed_spread.csv": Table((), (), dict(measure=TEXT, network=TEXT, seed_std=REAL, seeds=COUNT)),
    "correlations.csv": Table((), (), dict(kendall_tau=REAL, tau_low=REAL, tau_high=REAL, archs=COUNT)),
    "reliability.csv": Table((), (), dict(seed_tau=REAL, chosen=bool)),
    "scaling.csv": Table((), (), dict(NUMBERS, config=dict)),
}


def check_meta(meta: Any, damaged: Callable[[str], Exception]) -> dict[str, Any]:
    """run.yaml's mapping, every field checked against COMMON and its kind's specs; `damaged(what)` is the error."""
    if not isinstance(meta, dict):
        raise damaged(f"holds {'nothing' if meta is None else f'a {type(meta).__name__}'}, "
                      "not a mapping of fields (damaged?)")
    kind = meta.get("kind")
    rules = KINDS.get(kind, Kind()) if isinstance(kind, str) else Kind()  # a kind of a newer version: common fields
    missing = [name for name in rules.required if meta.get(name) is None]
    if missing:
        raise damaged(f"lacks {', '.join(missing)}, which a {kind} run records (damaged?)")
    problem = _problem(meta, Fields({**COMMON, **rules.specs}), "")
    if problem:
        raise damaged(f"has {problem} (damaged?)")
    return meta


def check_table(name: str, table: pd.DataFrame, damaged: Callable[[str], Exception]) -> pd.DataFrame:
    """A CSV table of a run, its required columns filled and each known column of its kind; JSON cells parsed
    only to check them (the table keeps the text)."""
    rules = TABLES.get(name, Table((), (), {}))
    absent = [c for c in rules.columns if c not in table.columns]
    if absent:
        raise damaged(f"lacks the column(s) {absent} (damaged?)")
    missing = [c for c in rules.filled if c not in table.columns or table[c].isna().any()]
    if missing:
        raise damaged(f"lacks values in column(s) {missing} (damaged or truncated?)")
    for column, spec in rules.specs.items():
        if column in table.columns:
            _check_column(table[column], column, spec, damaged)
    return table


def _check_column(values: pd.Series, column: str, spec: Spec, damaged: Callable[[str], Exception]) -> None:
    for row, value in values.items():
        problem = _cell_problem(value, spec, f"{column} in row {row}")
        if problem:
            raise damaged(f"has {problem} (damaged?)")


def _cell_problem(value: Any, spec: Spec, where: str) -> str | None:
    """What is wrong with one cell: a number column's text, a bool column's other text, a config that is not a
    JSON mapping."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()  # numpy scalars
    if spec is dict:
        try:
            value = load_json(value, where)
        except FatnasError as exc:
            return str(exc)
        return None if isinstance(value, dict) else f"{where}: {shown(value)}, not a JSON mapping"
    if spec is bool and value in ("True", "False"):
        return None
    return _problem(value, spec, where)


def _problem(value: Any, spec: Spec, where: str) -> str | None:
    """What is wrong with `value` against `spec` ("where: what it holds, what it should"), or None."""
    if value is None:
        return None
    if isinstance(spec, Number):
        reason = spec.problem(value)
        return None if reason is None else f"{where}: {shown(value)}, {reason}"
    if isinstance(spec, Items):
        if not isinstance(value, list):
            return f"{where}: {shown(value)}, not a list"
        return next((p for i, item in enumerate(value) if (p := _problem(item, spec.spec, f"{where}[{i}]"))), None)
    if isinstance(spec, Fields):
        if not isinstance(value, dict):
            return f"{where or 'the file'}: {shown(value)}, not a mapping"
        unknown = sorted(set(value) - set(spec.specs)) if spec.closed else []
        if unknown:
            return f"{where}: unknown field {shown(unknown[0])}; accepted: {', '.join(spec.specs)}"
        missing = [key for key in spec.required if value.get(key) is None]
        if missing:
            return f"{where}: lacks {missing[0]}"
        return next((p for key, sub in spec.specs.items()
                     if key in value and (p := _problem(value[key], sub, f"{where}.{key}".lstrip(".")))), None)
    if spec is bool:
        return None if isinstance(value, bool) else f"{where}: {shown(value)}, not true or false"
    if not isinstance(value, spec) or isinstance(value, bool) and spec is not bool:
        return f"{where}: {shown(value)}, not {'text' if spec is str else f'a {spec.__name__}'}"
    return None


__all__ = ["KINDS", "TABLES", "check_meta", "check_table"]
