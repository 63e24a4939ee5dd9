"""Commands on searches: `search`, `sync`, `runs`, `space` (what a search's proxy can see)."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import MAX_TRIALS, FatnasError
from .common import Flags, dataset, device, finite_float, int_in, left_table, table, task_classes, threads
from .confirm import CONFIRM_HELP, add_confirm_options, confirm_and_print, confirm_values
from .models import SPACE_HELP

RAY_FLAGS = ("cpus_per_trial", "gpus_per_trial", "max_concurrent", "ray_address")


def add_search(sub: Any, flags: Flags) -> None:
    p = sub.add_parser("search", parents=[flags.resumable_device_threads, flags.data, flags.seed, flags.quiet,
                                          flags.classes],
                       help="search the space for accuracy-latency Pareto fronts under a budget")
    p.add_argument("--budget", action="append", metavar="B",
                   help="hard limit, repeatable: 2GFLOPs (fvcore total at the space's resolution), 5Mparams, 20ms")
    p.add_argument("--space", default=None, help=SPACE_HELP)
    p.add_argument("--trials", type=int_in(1, MAX_TRIALS), default=None,
                   help="trained (or, with --supernet, scored) trials to reach (default 20; with --supernet 300)")
    p.add_argument("--timeout", type=finite_float, default=None, help="stop starting trials after this many seconds")
    p.add_argument("--sampler", default=None, help="tpe (default), nsga2, gp or random")
    p.add_argument("--backend", default="optuna", help="optuna (default) or ray")
    p.add_argument("--run-id", default=None, help="the run's folder name under runs/ (default search-DATE-TIME)")
    p.add_argument("--resume", default=None, metavar="ID", help="continue an interrupted run")
    p.add_argument("--join", default=None, metavar="ID",
                   help="add a worker to a running or stopped search (optuna; with --storage on another machine)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes on this machine sharing the search's target (default 1)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="where the study lives (default runs/<id>/study.db): sqlite:///PATH, "
                        "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB, mysql://..., journal:///PATH.log")
    p.add_argument("--heartbeat-interval", type=int, default=None, metavar="S",
                   help="seconds between a running trial's heartbeats (default 10)")
    p.add_argument("--grace-period", type=int, default=None, metavar="S",
                   help="seconds without heartbeat after which a trial's worker counts as dead (default 30)")
    p.add_argument("--proxy-res", type=int, default=None, help="proxy training resolution")
    p.add_argument("--proxy-images", type=int, default=None, help="distinct training images per trial")
    p.add_argument("--proxy-epochs", type=int, default=None, help="passes over a trial's images (default 1)")
    p.add_argument("--batch-size", type=int, default=None, help="proxy training batch (default 64)")
    p.add_argument("--val-images", type=int, default=None,
                   help="validation images each candidate's accuracy is measured on (default 1000)")
    p.add_argument("--no-references", action="store_true", help="skip evaluating fat_b0..b3")
    p.add_argument("--no-early-stopping", action="store_true",
                   help="train every trial to its end (default: stop a trial at a checkpoint where it is below the "
                        "median of trials of similar FLOPs)")
    p.add_argument("--prescreen", default=None, metavar="PROXY",
                   help="score candidates at initialization and train only the best: synflow, grad_norm, snip, "
                        "naswot, params or flops")
    p.add_argument("--prescreen-keep", type=finite_float, default=None, metavar="FRACTION",
                   help="with --prescreen: fraction of scored candidates that train (default 0.25: best of 4)")
    p.add_argument("--supernet", default=None, metavar="ID",
                   help="score candidates with this trained supernet (fatnas supernet train) instead of training each")
    p.add_argument("--latency-model", default=None, metavar="TABLE.json",
                   help="price latency from a table of `fatnas latency-profile` (made on the target device) instead of "
                        "measuring it here")
    p.add_argument("--noise-seeds", type=int, default=None, metavar="N",
                   help="evaluations of the best published FAT under budget and of the 2 most accurate front networks, "
                        "from which the run measures its accuracy noise and every accuracy's interval (default 2; "
                        "1: measure none)")
    p.add_argument("--keep-inert", action="store_true",
                   help="draw every value, also those that build the same network at the proxy resolution")
    p.add_argument("--confirm", default=None, metavar="BUDGET",
                   help=f"after the search, confirm its band (as `fatnas confirm RUN`) within: {CONFIRM_HELP}")
    add_confirm_options(p, prefix="confirm-")
    add_ray_flags(p)
    p.set_defaults(handler=cmd_search)


def add_ray_flags(p: argparse.ArgumentParser) -> None:
    """The Ray backend's flags (RAY_FLAGS)."""
    p.add_argument("--cpus-per-trial", type=finite_float, default=None,
                   help="ray: CPUs (and torch threads) per trial (default: --threads)")
    p.add_argument("--gpus-per-trial", type=finite_float, default=None,
                   help="ray: GPUs per trial, fractions share one (default 0)")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="ray: trials at once (default: cluster CPUs // cpus per trial)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="ray: join a cluster (auto or HOST:PORT); default: start a local Ray runtime")


def cmd_search(args: argparse.Namespace) -> int:
    from ..search import api, backend_options

    if args.join and args.resume:
        raise FatnasError("--join and --resume: give one (--join adds a worker, --resume continues alone)")
    if args.resume or args.join:
        _check_resume_flags(args)
    options = backend_options(args.backend, None if args.resume else device(args),  # before any run folder exists
                              **{name: getattr(args, name) for name in RAY_FLAGS})
    api.check_workers(args.backend, args.workers, bool(args.join))
    confirm = _confirm_settings(args)
    if args.resume or args.join:
        job = api.resume_search(args.resume or args.join, join=bool(args.join), backend=args.backend, options=options,
                                storage=args.storage, workers=args.workers, trials=args.trials,
                                timeout=args.timeout, device=args.device, threads=args.threads)
    else:
        job = api.new_search(_search_settings(args), run_id=args.run_id, backend=args.backend, options=options,
                             storage=args.storage, workers=args.workers)
    _print_header(job)
    front = job.run_to_end(progress=not args.quiet)
    _print_front(job.run, front, job.settings)
    if confirm is not None and not args.join:
        from ..study.confirm import prepare_confirm

        print()
        confirm_and_print(prepare_confirm(str(job.run.path), confirm, resume=None), quiet=args.quiet)
    return 0


# what --resume and --join take; every other flag would be ignored (the run keeps what run.yaml records)
RESUME_FLAGS = ("resume", "join", "trials", "timeout", "device", "threads", "storage", "workers", "backend", "quiet",
                *RAY_FLAGS)
# what --resume takes besides: a confirm stage after the resumed search (a --join worker runs none)
CONFIRM_FLAGS = ("confirm", "confirm_recipe", "confirm_networks", "confirm_min_seeds", "confirm_max_seeds")


def _check_resume_flags(args: argparse.Namespace) -> None:
    """Refuse a flag that --resume or --join would ignore (--budget, --space, --classes, ...), rather than
    silently keep the recorded value."""
    taken = (*RESUME_FLAGS, *(CONFIRM_FLAGS if args.resume else ()))
    ignored = [f"--{name.replace('_', '-')}" for name, value in vars(args).items()
               if name not in (*taken, "command", "handler") and value not in (None, False, [])]
    if ignored:
        takes = ", ".join(f"--{name.replace('_', '-')}" for name in taken[2:] if name in vars(args))
        raise FatnasError(f"search --{'resume' if args.resume else 'join'} keeps the run's recorded settings, so "
                          f"{', '.join(ignored)} would be ignored; it takes {takes}; start a new run for others")


def _confirm_settings(args: argparse.Namespace) -> Any:
    """The settings of `--confirm BUDGET` (None: no confirm stage), checked before the search starts."""
    from ..study.confirm import confirm_settings

    values = confirm_values(args, "confirm-")
    if args.confirm is None:
        if any(v is not None for k, v in values.items() if k not in ("threads", "device")):
            raise FatnasError("--confirm-recipe, --confirm-networks, --confirm-min-seeds and --confirm-max-seeds go "
                              "with --confirm BUDGET")
        return None
    ray = args.backend == "ray"
    return confirm_settings(args.confirm, workers=args.workers, executor="ray" if ray else "local",
                            ray_address=args.ray_address if ray else None, **values)


def _search_settings(args: argparse.Namespace) -> Any:
    from ..search.api import search_settings

    return search_settings(budget=args.budget or [], space=args.space, trials=args.trials, timeout=args.timeout,
                           sampler=args.sampler, seed=args.seed, device=device(args), threads=threads(args),
                           dataset=dataset(args), data_dir=args.data_dir, classes=task_classes(args),
                           proxy_res=args.proxy_res, proxy_images=args.proxy_images, proxy_epochs=args.proxy_epochs,
                           batch_size=args.batch_size, val_images=args.val_images, references=not args.no_references,
                           early_stopping=not args.no_early_stopping, prescreen=args.prescreen,
                           prescreen_keep=args.prescreen_keep, collapse_inert=not args.keep_inert,
                           heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
                           latency_model=args.latency_model, supernet=args.supernet, noise_seeds=args.noise_seeds)


def _print_header(job: Any) -> None:
    from ..estimate.liveness import liveness_line

    run, settings = job.run, job.settings
    print(f"run {run.id}: {run.path}")
    print(f"budget: {settings.budget.describe()}; space {settings.space.name} "
          f"({settings.space.size():.3g} points); sampler {settings.sampler}; seed {settings.seed}")
    classes = f" (classes {','.join(map(str, settings.classes))})" if settings.classes else ""
    meta = run.read_meta()
    how = (f"{settings.proxy.images_per_trial} images per trial" if settings.estimator == "proxy" else
           f"scored by {meta.get('estimator_provenance', settings.estimator)}, no training per candidate")
    print(f"proxy: {settings.dataset}{classes} at {settings.proxy.res}px, {how} "
          f"on {settings.device} (proxy accuracy, not ImageNet accuracy)")
    print(liveness_line(settings.space, settings.proxy.res, settings.collapse_inert))
    print(_latency_line(meta.get("latency") or {}))
    if job.workers > 1:
        print(f"workers: this process and {job.workers - 1} more (search --join {run.id})")


def _latency_line(latency: dict[str, Any]) -> str:
    if latency.get("source") == "modelled":
        return (f"latency: modelled from {latency['table']} [{latency['table_fingerprint']}] ({latency['runtime']} on "
                f"{latency['device']}, {latency['device_name']}, {latency['threads']} threads, "
                f"batch {latency['batch_size']})")
    return f"latency: measured here on {latency.get('device')} ({latency.get('method', 'median of timed passes')})"


def _print_front(run: Any, front: Any, settings: Any) -> None:
    from ..estimate.cost import format_flops
    from ..runs.noise import BAND_FILE, CONFIDENCE, summary_line
    from ..runs.store import run_noise

    latency = (f"latency modelled from {settings.latency_model}" if settings.latency_model
               else f"latency measured on {settings.device}")
    noise, band = run_noise(run), run.read_table(BAND_FILE)
    banded = noise is not None and not band.empty
    what = f"Pareto front ({len(front)} trials)" + (f" in its band ({len(band)} networks no other beats with "
                                                     f"{CONFIDENCE:.0%} confidence)" if banded else "")
    print(f"\n{what}; accuracy = proxy accuracy on {settings.dataset}, {latency} at {settings.space.resolution}px, "
          f"FLOPs = fvcore total at {settings.space.resolution}px:")
    shown = _front_rows(run, band if banded else front, noise)
    if not shown.empty:
        shown["flops"] = shown["flops"].map(format_flops)
        shown["params"] = shown["params"].map(lambda p: f"{p / 1e6:.2f}M")
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if noise is not None:
        print(f"{noise.describe()}; intervals at {CONFIDENCE:.0%}")
        print(f"{summary_line(band)} (on the front: on_front yes; files band.csv, noise.csv)")
    print(f"trials: {run.state_counts()}; files in {run.path}")


def _front_rows(run: Any, table: Any, noise: Any) -> Any:
    """The front (or band) with the published FATs under budget, each accuracy with its interval where known."""
    import pandas as pd

    from ..runs.noise import with_intervals

    columns = ["trial", "accuracy", "latency_ms", "params", "flops"]
    extra = [c for c in ("accuracy_low", "accuracy_high", "on_front", "verdict") if c in table]
    shown = table[columns + extra].copy() if not table.empty else table
    refs = run.references()
    if not refs.empty:
        refs = refs[refs["state"] == "REFERENCE"].assign(trial=lambda d: d["name"])
        refs = with_intervals(refs, noise.std) if noise is not None and not refs.empty else refs
        refs = refs[columns + [c for c in ("accuracy_low", "accuracy_high") if c in extra and c in refs]]
        shown = pd.concat([f for f in (shown, refs) if not f.empty], ignore_index=True)
    if "accuracy_low" in shown:
        shown.insert(2, "interval", [f"{lo:.3f}-{hi:.3f}" if pd.notna(lo) else "-"
                                     for lo, hi in zip(shown.pop("accuracy_low"), shown.pop("accuracy_high"))])
    if "on_front" in shown:
        shown["on_front"] = shown["on_front"].map(lambda v: "yes" if v is True else ("no" if v is False else "-"))
    if "verdict" in shown:
        shown["verdict"] = shown["verdict"].fillna("published FAT")
    return shown


def add_sync(sub: Any, flags: Flags) -> None:
    p = sub.add_parser("sync", help="rebuild runs/<id>/ (trials, front, configs) from the study in its storage")
    p.add_argument("run", metavar="RUN", help="run id (or folder)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="the study's storage (default: the one run.yaml names; needed where the run folder is missing)")
    p.set_defaults(handler=cmd_sync)


def cmd_sync(args: argparse.Namespace) -> int:
    from ..search import sync_run

    run = sync_run(args.run, args.storage)
    print(f"run {run.id} rebuilt from its study in {run.storage_url}: trials {run.state_counts()}; "
          f"{len(run.pareto())} on the front; files in {run.path}")
    return 0


def add_runs(sub: Any, flags: Flags) -> None:
    p = sub.add_parser("runs", help="list runs with budget, trial counts and front size")
    p.set_defaults(handler=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    from ..runs.store import readable_runs, state_counts

    rows = []
    for run, (meta, trials, front) in readable_runs(check=lambda r: (r.read_meta(), r.trials(), r.pareto())):
        counts = state_counts(trials)
        rows.append(dict(run=run.id, kind=meta.get("kind", "?"), backend=meta.get("backend", "-"),
                         budget=meta.get("budget_text", "-"), complete=counts.get("COMPLETE", 0),
                         stopped=counts.get("PRUNED", 0), failed=counts.get("FAIL", 0),
                         infeasible=counts.get("INFEASIBLE", 0), front=len(front)))
    if not rows:
        print("no runs yet; start one with: python cli.py search --budget 2GFLOPs")
        return 0
    print(table(rows))
    return 0


def add_space(sub: Any, flags: Flags) -> None:
    p = sub.add_parser("space", help="which choices of a space a proxy can tell apart, and its distinct networks")
    p.add_argument("name", metavar="SPACE", help="a shipped space (fat, fat_mobile, fat_wide) or a YAML path")
    p.add_argument("--res", dest="resolutions", action="extend", nargs="+", metavar="PX",
                   help="proxy resolution(s), repeatable (default: the proxy default)")
    p.set_defaults(handler=cmd_space)


def cmd_space(args: argparse.Namespace) -> int:
    from ..estimate.liveness import check_res, percent, space_liveness
    from ..estimate.proxy import ProxySettings
    from ..model.space import load_space

    resolutions = [check_res(text) for text in args.resolutions or [ProxySettings().res]]
    space = load_space(args.name)
    results = [space_liveness(space, res) for res in resolutions]
    for i, lv in enumerate(results):
        if i:
            print()
        _print_liveness(space, lv)
    if len(results) > 1:
        print()
        print(table([dict(res=lv.res, points=f"{lv.points:,}", distinct=f"{lv.distinct:,}",
                          fraction=percent(lv.fraction)) for lv in results]))
    return 0


def _print_liveness(space: Any, lv: Any) -> None:
    from ..estimate.liveness import percent, table_rows

    maps = ", ".join(f"{side}x{side}" for side in lv.stage_maps)
    print(f"space {space.name} (costs at {space.resolution} px), proxy at {lv.res} px: stage maps {maps}")
    print(left_table(table_rows(lv)))
    print(f"{{a,b}}->k: choices that build the same network at {lv.res} px, trained as k (a search draws only "
          "the smallest); [1 key: wN]: with window N the stage has one attention key, so its heads are inert "
          "(trained as 1 head)")
    print(f"points: {lv.points:,}; distinct proxy networks at {lv.res} px: {lv.distinct:,} "
          f"({percent(lv.fraction)} of the space)")


COMMANDS = (add_search, add_sync, add_runs, add_space)
