"""Confirm stage (`fatnas confirm RUN`, `search --confirm BUDGET`): a search's band retrained with a stronger
recipe on several seeds, as a race within a budget; `race` (plain tables: standings, who trains next), `execute`
(here, spawned workers or Ray tasks), `stage` (candidates, the loop, confirmed.csv and run.yaml)."""
from .race import BUDGET_FORMS, DOUBT, IN, OUT, ConfirmBudget, next_seeds, parse_confirm_budget, standings
from .stage import (
    CONFIRM_ROWS,
    CONFIRM_SEED,
    CONFIRMED,
    DEFAULT_BUDGET,
    DEFAULT_NETWORKS,
    DEFAULT_RECIPE,
    Confirm,
    ConfirmSettings,
    confirm_candidates,
    confirm_settings,
    confirmed_front,
    prepare_confirm,
    publish_confirmed,
    run_confirm,
)

__all__ = ["BUDGET_FORMS", "CONFIRMED", "CONFIRM_ROWS", "CONFIRM_SEED", "DEFAULT_BUDGET", "DEFAULT_NETWORKS",
           "DEFAULT_RECIPE", "DOUBT", "IN", "OUT", "Confirm", "ConfirmBudget", "ConfirmSettings", "confirm_candidates",
           "confirm_settings", "confirmed_front", "next_seeds", "parse_confirm_budget", "prepare_confirm",
           "publish_confirmed", "run_confirm", "standings"]
