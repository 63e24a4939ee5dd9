"""A confirm stage resumed from what run.yaml's `confirm:` records, never from defaults.

The science of a stage (its recipe, networks and seeds) is what it recorded; a flag given on resume that
differs from it is refused. What may change on resume: the budget (given, it replaces the recorded one, so
a stage can race on; not given, the recorded one holds) and where it trains (workers, backend, Ray address,
threads, device). A finished stage resumed with no new budget is a no-op that says so.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

from ...errors import FatnasError
from ...estimate.proxy import ProxySettings
from ..fidelity.specs import fidelity_label, parse_fidelity
from .race import BUDGET_FORMS, ConfirmBudget, parse_confirm_budget

STATES = ("running", "done")
SCIENCE = ("recipe", "networks", "min_seeds", "max_seeds")  # recorded; a different value on resume is refused
MAY_CHANGE = ("budget", "workers", "executor", "ray_address", "threads", "device")  # documented in the CLI help
MAX_RECORDED_NETWORKS = 64


def _damaged(run_id: str, what: str) -> FatnasError:
    return FatnasError(f"run {run_id!r}: run.yaml's confirm section is damaged: {what}")


def recorded_budget(run_id: str, text: Any) -> ConfirmBudget:
    """The budget run.yaml records ('5 trainings', '600 s of training', or any form `--budget` takes)."""
    seconds = re.fullmatch(r"(\d+(?:\.\d+)?) s of training", str(text).strip())
    try:
        return parse_confirm_budget(f"{seconds.group(1)}s" if seconds else str(text))
    except FatnasError:
        raise _damaged(run_id, f"budget {str(text)[:40]!r} is not {BUDGET_FORMS}") from None


def recorded_stage(run_id: str, section: Any) -> dict[str, Any]:
    """run.yaml's `confirm:` checked field by field: state, budget, networks, seeds, recipe."""
    if not isinstance(section, dict):
        raise _damaged(run_id, f"expected a mapping, found {type(section).__name__}")
    if section.get("state") not in STATES:
        raise _damaged(run_id, f"state {str(section.get('state'))[:40]!r} is not one of {', '.join(STATES)}")
    networks = section.get("networks")
    if (not isinstance(networks, list) or not 1 <= len(networks) <= MAX_RECORDED_NETWORKS
            or not all(isinstance(n, str) and n for n in networks)):
        raise _damaged(run_id, f"networks must list 1 to {MAX_RECORDED_NETWORKS} network names")
    for name in ("min_seeds", "max_seeds"):
        value = section.get(name)
        if type(value) is not int or not 2 <= value <= 100:
            raise _damaged(run_id, f"{name} {str(value)[:40]!r} is not an integer from 2 to 100")
    if section["min_seeds"] > section["max_seeds"]:
        raise _damaged(run_id, "min_seeds exceeds max_seeds")
    if not isinstance(section.get("recipe"), str) or not isinstance(section.get("recipe_settings", {}), dict):
        raise _damaged(run_id, "recipe must be a fidelity text and recipe_settings a mapping")
    return dict(section, budget=recorded_budget(run_id, section.get("budget")))


def recorded_recipe(run_id: str, stage: dict[str, Any], proxy: ProxySettings) -> ProxySettings:
    """The recipe the stage trained with: its full recorded settings (older runs: its fidelity text)."""
    settings = stage.get("recipe_settings")
    try:
        return ProxySettings(**settings) if settings else parse_fidelity(stage["recipe"], proxy)
    except (TypeError, ValueError, FatnasError) as exc:
        raise _damaged(run_id, f"recipe: {str(exc)[:120]}") from None


def resumed_settings(run_id: str, stage: dict[str, Any], settings: Any, proxy: ProxySettings
                     ) -> tuple[Any, ProxySettings]:
    """(settings, recipe) of a resumed stage: the recorded science, this call's budget (if given) and executor.

    `settings` is a ConfirmSettings whose `given` names the values set explicitly; a given science value
    unlike the recorded one is refused in one line."""
    recipe = recorded_recipe(run_id, stage, proxy)
    recorded = dict(networks=len(stage["networks"]), min_seeds=stage["min_seeds"], max_seeds=stage["max_seeds"])
    for name in ("networks", "min_seeds", "max_seeds"):
        if name in settings.given and getattr(settings, name) != recorded[name]:
            raise _refused(run_id, name, getattr(settings, name), recorded[name])
    if "recipe" in settings.given:
        asked = parse_fidelity(settings.recipe, proxy)
        if asked.replace(device=recipe.device, seed=recipe.seed) != recipe:
            raise _refused(run_id, "recipe", fidelity_label(asked), fidelity_label(recipe))
    budget = settings.budget if "budget" in settings.given else stage["budget"]
    return dataclasses.replace(settings, budget=budget, recipe=stage["recipe"], **recorded), \
        recipe.replace(device=settings.device)


def _refused(run_id: str, name: str, given: Any, recorded: Any) -> FatnasError:
    flag = "--" + name.replace("_", "-")
    return FatnasError(f"confirm {run_id} --resume keeps the stage's recorded {name} ({recorded}), not {flag} "
                       f"{given}; leave {flag} out (on resume only {', '.join(MAY_CHANGE)} may change)")


__all__ = ["MAY_CHANGE", "SCIENCE", "recorded_budget", "recorded_recipe", "recorded_stage", "resumed_settings"]
