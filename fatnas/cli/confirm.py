"""`confirm`: retrain a search's band with a stronger recipe on several seeds, as a race within a budget."""
from __future__ import annotations

import argparse
from typing import Any

from .common import Flags, device, threads

CONFIRM_HELP = ("training budget of the confirm stage: 600s, 20m, 1.5h (seconds of training, summed) or "
                "12trainings")


def add_confirm(sub: Any, flags: Flags) -> None:
    p = sub.add_parser("confirm", parents=[flags.resumable_device_threads, flags.quiet],
                       help="retrain a search's band (the networks no other beats with confidence) with a stronger "
                            "recipe on several seeds, racing: confirmed.csv beside the search's files")
    p.add_argument("run", metavar="RUN", help="a search run id (or folder)")
    add_confirm_options(p)
    p.add_argument("--resume", action="store_true",
                   help="continue a confirm stage that was stopped or killed, with its recorded recipe, networks and "
                        "seeds (a different one is refused); only the budget and where it trains may change")
    p.set_defaults(handler=cmd_confirm)


def add_confirm_options(p: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """The confirm stage's flags (`search` takes them as --confirm-recipe, ...)."""
    from ..study.confirm import DEFAULT_BUDGET, DEFAULT_NETWORKS, DEFAULT_RECIPE

    if not prefix:
        p.add_argument("--budget", default=None, help=f"{CONFIRM_HELP} (default {DEFAULT_BUDGET}; on --resume the "
                                                      "recorded one, unless given)")
    p.add_argument(f"--{prefix}recipe", default=None, metavar="FIDELITY",
                   help=f"how each network retrains, in the fidelity syntax: 'reference' (default {DEFAULT_RECIPE!r}, "
                        "the fidelity study's reference), or KEY=VALUE,... changes of the search's proxy, e.g. "
                        "'train_images=4096,epochs=2'")
    p.add_argument(f"--{prefix}networks", type=int, default=None, metavar="N",
                   help=f"band networks to confirm, front first (default {DEFAULT_NETWORKS}); the best published FAT "
                        "under budget is retrained beside them")
    p.add_argument(f"--{prefix}min-seeds", type=int, default=None, metavar="K", help="seeds every network gets (2)")
    p.add_argument(f"--{prefix}max-seeds", type=int, default=None, metavar="K",
                   help="seeds a network in doubt may get (5)")
    if not prefix:
        p.add_argument("--workers", type=int, default=None, metavar="N", help="trainings at once (default 1)")
        p.add_argument("--backend", default=None, help="local (processes here) or ray (default: ray for a search "
                                                       "run on Ray, else local)")
        p.add_argument("--ray-address", default=None, metavar="ADDR", help="ray: join this cluster (auto or HOST:PORT)")


def confirm_values(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The confirm settings the flags give (None: the default)."""
    name = prefix.replace("-", "_")
    return dict(recipe=getattr(args, f"{name}recipe"), networks=getattr(args, f"{name}networks"),
                min_seeds=getattr(args, f"{name}min_seeds"), max_seeds=getattr(args, f"{name}max_seeds"),
                threads=threads(args), device=device(args))


def cmd_confirm(args: argparse.Namespace) -> int:
    from ..study.confirm import confirm_settings, prepare_confirm

    settings = confirm_settings(args.budget, workers=args.workers, executor=args.backend,
                                ray_address=args.ray_address, **confirm_values(args))
    job = prepare_confirm(args.run, settings, resume=args.resume)
    confirm_and_print(job, quiet=args.quiet)
    return 0


def confirm_and_print(job: Any, *, quiet: bool) -> None:
    """Run the stage, a line per training unless `quiet`, then the confirmed networks with their intervals."""
    from ..study.confirm import run_confirm

    if job.finished:
        stage = job.run.read_meta()["confirm"]
        print(f"confirm {job.run.id}: the stage finished ({stage['stop_reason']}) after {stage['trainings']} "
              "trainings; nothing to resume (give a larger --budget to race on)")
        _print_confirmed(job.run, run_confirm(job))
        return
    print(f"confirm {job.run.id}: {len(job.candidates)} networks ({', '.join(job.candidates['network'])}), recipe "
          f"{job.run.read_meta().get('confirm', {}).get('recipe') or job.settings.recipe}, budget "
          f"{job.settings.budget.describe()}, on {job.executor}")
    report = None if quiet else (lambda row: print(f"  {row['network']} seed {row['seed']}: accuracy "
                                                   f"{row['accuracy']:.4f} ({row['seconds']:.0f} s)", flush=True))
    table = run_confirm(job, report=report)
    _print_confirmed(job.run, table)


def _print_confirmed(run: Any, table: Any) -> None:
    from ..runs.noise import CONFIDENCE

    meta = run.read_meta()["confirm"]
    print(f"\nconfirmed ({meta['trainings']} trainings, {meta['seconds']:.0f} s of training, stopped: "
          f"{meta['stop_reason']}; accuracy = mean over seeds with the recipe {meta['recipe']}, "
          f"{CONFIDENCE:.0%} intervals):")
    shown = table[table["seeds"] > 0].copy()
    if shown.empty:
        print("no network trained yet")
        return
    shown["interval"] = [f"{lo:.4f}-{hi:.4f}" if lo == lo else "-" for lo, hi in
                         zip(shown["accuracy_low"], shown["accuracy_high"])]
    shown["on_front"] = shown["on_confirmed_front"].map(lambda v: "yes" if v else "no")
    # the verdict ("better than fat_b0 ...") before the yes/no column, so that no cell reads into the next
    columns = ["network", "seeds", "accuracy", "interval", "latency_ms", "search_accuracy",
               *(["verdict"] if "verdict" in shown else []), "status", "on_front"]
    print(shown[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"files: {run.path / 'confirmed.csv'}, {run.path / 'confirm_rows.csv'}")


COMMANDS = (add_confirm,)
