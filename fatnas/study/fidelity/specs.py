"""What a fidelity is: ProxySettings changed by a text such as 'res=56,train_images=512' or a preset
('default', 'reference'), and the vocabulary of fidelity.csv (kinds, metrics, their orientation).
"""
from __future__ import annotations

from typing import Any

from ...errors import FatnasError
from ...estimate.proxy import ProxySettings

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
WEIGHT_SHARING = "weight-sharing"  # scored with trained shared weights, no training per network: `supernet:ID`
SCORER_KINDS = ("supernet",)  # estimator kinds a --low may name instead of a fidelity
SCORER_METRICS = ("accuracy", "loss")
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


def is_scorer(text: str) -> bool:
    """Whether a --low names a weight-sharing estimator (`supernet:ID`) rather than a training fidelity."""
    kind, colon, argument = text.partition(":")
    return bool(colon) and kind in SCORER_KINDS and bool(argument)
