"""Export configs found by a search as named variants, and (optionally) register variants with timm.

An exported variant is one YAML file `variants_dir()/NAME.yaml`:

    config: {...}      # FATConfig.to_dict() of the trial, exactly as searched
    source: {run, trial, proxy_accuracy, flops, flop_convention, params, latency_ms, exported_at, ...}

The registry reads that folder on every lookup, so `create_model(NAME)`, `cli.py show NAME` and
`cli.py cost NAME` work at once, in any process. Files are written whole or not at all. A
published name (fat_b0..fat_b3) is never overwritten; another existing name only with `force`.
"""
from __future__ import annotations

import json
import re
import sys
import types
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import yaml

from ..errors import FatnasError
from ..estimate.base import make_estimator
from ..estimate.cost import flop_convention
from ..estimate.memory import check_memory
from ..model.config import FATConfig
from ..model.variants import (
    NAME_PATTERN,
    PUBLISHED,
    create_model,
    list_models,
    resolve_config,
    variant_metadata,
    variants_dir,
    weights_path,
)
from ..paths import atomic_write_bytes, torch_bytes
from .store import Run, atomic_write_text, trial_config

NAME_RULE = "lowercase letters, digits and '_', starting with a letter, at most 64 characters"
TIMM_MODULE = "fatnas.timm_models"  # the module timm files the registered entry points under
DEPLOY_SEED = 0  # the weights of an exported ONNX / pt2 file: variants have no trained weights


class ExportError(FatnasError):
    """A malformed or taken variant name, an unknown trial, or a trial that cannot be exported."""


class Exported(NamedTuple):
    name: str
    path: Path
    source: dict[str, Any]


def check_name(name: str, *, force: bool = False) -> Path:
    """The file a new variant `name` goes to; malformed, published or (without force) taken names fail."""
    if not NAME_PATTERN.fullmatch(name or ""):
        raise ExportError(f"malformed variant name {name!r}; use {NAME_RULE}")
    if name in PUBLISHED:
        raise ExportError(f"{name!r} is a published FAT variant and is never overwritten; pick another name")
    path = variants_dir() / f"{name}.yaml"
    if path.exists() and not force:
        raise ExportError(f"variant {name!r} already exists ({path}); pass --force to overwrite it")
    return path


def default_prefix(run_id: str) -> str:
    """Names for --pareto: the run id made a valid name, then `_t`, e.g. `search_20250101_120000_t`."""
    base = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", run_id.lower())).strip("_")
    if not base or not base[0].isalpha():
        base = f"run_{base}".rstrip("_")
    return f"{base[:50].rstrip('_')}_t"


def _trial_row(run: Run, trial: int) -> pd.Series:
    trials = run.trials()
    if trials.empty:
        raise ExportError(f"run {run.id!r} has no trials yet")
    rows = trials[trials["trial"] == trial]
    complete = ", ".join(str(t) for t in trials.loc[trials["state"] == "COMPLETE", "trial"]) or "none"
    if rows.empty:
        raise ExportError(f"run {run.id!r} has no trial {trial}; complete trials: {complete}")
    row = rows.iloc[0]
    if row["state"] != "COMPLETE":
        raise ExportError(f"trial {trial} of run {run.id!r} is {row['state']}, not COMPLETE; "
                          f"only complete trials are exported (complete trials: {complete})")
    return row


def _source(run: Run, row: pd.Series, meta: dict[str, Any]) -> dict[str, Any]:
    res = (meta.get("space") or {}).get("resolution") or (meta.get("budget") or {}).get("res") or 224
    return dict(run=run.id, trial=int(row["trial"]), proxy_accuracy=float(row["accuracy"]),
                dataset=meta.get("dataset"), flops=int(row["flops"]),
                flop_convention=meta.get("flop_convention") or flop_convention(res),
                resolution=int(res), params=int(row["params"]), latency_ms=float(row["latency_ms"]),
                latency_device=(meta.get("latency") or {}).get("device"),
                exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _write(path: Path, cfg: FATConfig, source: dict[str, Any], *, force: bool) -> None:
    """The variant file; without `force` only where none is, also when another export makes it at this moment."""
    text = yaml.safe_dump({"config": cfg.to_dict(), "source": source}, sort_keys=False)
    try:
        atomic_write_text(path, text, replace=force)
    except FileExistsError:
        raise ExportError(f"variant {path.stem!r} already exists ({path}), made by another export just now; "
                          "pass --force to overwrite it") from None


def export_trial(run: Run, trial: int, name: str, *, force: bool = False, with_weights: bool = False) -> Exported:
    """Write one complete trial of `run` as variant `name` (`with_weights`: and the weights it was scored with)."""
    path = check_name(name, force=force)
    row = _trial_row(run, trial)
    meta = run.read_meta()
    source = _source(run, row, meta)
    cfg = trial_config(row)
    weights = _inherited_weights(run, meta, cfg) if with_weights else None
    if weights is not None:
        source["weights"] = weights["provenance"]
        atomic_write_bytes(weights_path(name), torch_bytes(weights))
    _write(path, cfg, source, force=force)
    return Exported(name, path, source)


def _inherited_weights(run: Run, meta: dict[str, Any], cfg: FATConfig) -> dict[str, Any]:
    """The trial's weights as its estimator scored it (a supernet's, recalibrated); refused for trained proxies."""
    spec = meta.get("estimator", "proxy")
    estimator = make_estimator(spec, device="cpu", data=None)  # a supernet scorer loads its task's data itself
    network = getattr(estimator, "network", None)
    if network is None:
        raise ExportError(f"run {run.id!r} scored its trials with {spec!r}, which keeps no weights; --with-weights "
                          f"needs a supernet search (fatnas search --supernet ID)")
    model = network(cfg)
    return dict(state_dict={k: v.contiguous() for k, v in model.state_dict().items()},
                in_chans=model.cfg.in_chans, num_classes=model.cfg.num_classes,
                provenance=getattr(estimator, "provenance", spec))


def export_config(cfg: FATConfig, name: str, source: dict[str, Any], *, force: bool = False) -> Exported:
    """Write any config (a scaled network, say) as variant `name`, with the same name rules as trials.

    `source` says where the config came from; `run` (None when there is no run) and the export
    time are added when missing.
    """
    path = check_name(name, force=force)
    source = dict(dict(run=None), **source)
    source.setdefault("exported_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _write(path, cfg, source, force=force)
    return Exported(name, path, source)


def export_pareto(run: Run, *, prefix: str | None = None, force: bool = False,
                  confirmed: pd.DataFrame | None = None) -> list[Exported]:
    """Write every trial on the run's Pareto front as `PREFIX<trial>`; all names are checked first. `confirmed`:
    the confirmed front instead (`fatnas.study.confirm.confirmed_front`), each source with its confirmed figures."""
    front = run.pareto() if confirmed is None else confirmed
    if front.empty:
        what = "Pareto front yet (no complete trial)" if confirmed is None else "searched network on its confirmed front"
        raise ExportError(f"run {run.id!r} has no {what}")
    prefix = default_prefix(run.id) if prefix is None else prefix
    planned = [(f"{prefix}{int(t)}", int(t)) for t in front["trial"]]
    paths = {name: check_name(name, force=force) for name, _ in planned}  # nothing written if one fails
    meta = run.read_meta()
    out = []
    for name, trial in planned:
        row = _trial_row(run, trial)
        source = _source(run, row, meta)
        if confirmed is not None:
            source.update(_confirmed_source(confirmed[confirmed["trial"] == trial].iloc[0]))
        _write(paths[name], trial_config(row), source, force=force)
        out.append(Exported(name, paths[name], source))
    return out


def _confirmed_source(row: pd.Series) -> dict[str, Any]:
    """What the confirm stage measured of a network: mean accuracy over its seeds, the interval, the recipe."""
    return dict(confirmed_accuracy=float(row["accuracy"]), confirmed_seeds=int(row["seeds"]),
                confirmed_interval=[float(row["accuracy_low"]), float(row["accuracy_high"])],
                confirm_recipe=str(row["recipe"]))


# ---------------------------------------------------------------- deployment formats

def export_deployed(spec: str, fmt: str, path: str | Path | None = None, res: int | None = None):
    """Write a variant (name or YAML path) as ONNX or a torch.export program, checked against PyTorch.

    The file goes to `path`, by default `variants_dir()/NAME.<fmt>`; the resolution defaults to
    the one the variant was searched at (224 for the published family). Variants carry no trained
    weights: the network is initialised under `torch.manual_seed(DEPLOY_SEED)`, so the same seed
    rebuilds the same weights in PyTorch. Returns `deploy.Deployed`.
    """
    import torch

    from ..model.deploy import write_deployed

    cfg = resolve_config(spec)
    stem = Path(str(spec)).stem
    res = res or int(variant_metadata(stem).get("resolution") or 224)
    target = Path(path) if path is not None else variants_dir() / f"{stem}.{fmt}"
    check_memory(cfg, res, 1, "cpu", training=False, what="--res")  # parameters and activations, before building
    with torch.random.fork_rng():
        torch.manual_seed(DEPLOY_SEED)
        model = create_model(cfg)
    return write_deployed(model, target, fmt, res=res, in_chans=cfg.in_chans)


# ---------------------------------------------------------------- timm

def _timm_entrypoint(name: str):
    def entrypoint(pretrained: bool = False, pretrained_cfg: Any = None, pretrained_cfg_overlay: Any = None,
                   cache_dir: Any = None, features_only: bool = False, out_indices: Any = 4,
                   **overrides: Any):  # timm's own arguments; the rest are config overrides
        model = create_model(name, pretrained=pretrained, **overrides)  # unknown keyword arguments are a ConfigError, never dropped
        if not features_only:
            return model
        from timm.models._features import FeatureGetterNet

        # one map per tapped stage, from FAT.forward_intermediates (strides 4, 8, 16, 32)
        return FeatureGetterNet(model, out_indices=out_indices)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = TIMM_MODULE
    entrypoint.__doc__ = f"fatnas variant {name} (pretrained=True: the weights exported with it, if any)."
    return entrypoint


def register_timm_models() -> list[str]:
    """Register every fatnas variant (published and exported) with timm, so `timm.create_model(name)` works.

    Returns the names newly registered; [] when timm is not installed. Entry points look the
    variant up when called, so a re-exported variant needs no new registration.
    """
    try:
        from timm.models import register_model
    except ImportError:
        return []
    module = sys.modules.setdefault(TIMM_MODULE, types.ModuleType(TIMM_MODULE, "fatnas variants as timm models"))
    if not hasattr(module, "__all__"):
        module.__all__ = []
    added = []
    for name in list_models():
        if name in module.__all__:
            continue
        fn = _timm_entrypoint(name)
        setattr(module, name, fn)
        register_model(fn)  # timm appends the name to module.__all__
        added.append(name)
    return added


__all__ = ["ExportError", "Exported", "check_name", "default_prefix", "export_config", "export_deployed",
           "export_pareto", "export_trial", "register_timm_models"]
