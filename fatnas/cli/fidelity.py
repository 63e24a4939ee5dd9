"""The `fidelity` command: how well cheap estimators rank architectures against longer training."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import FatnasError, check_device
from .common import Flags, dataset, device, given, task_classes, threads
from .models import SPACE_HELP


def add_fidelity(sub: Any, flags: Flags) -> None:
    p = sub.add_parser("fidelity", parents=[flags.resumable_device_threads, flags.data, flags.seed, flags.quiet,
                                            flags.classes],
                       help="how well cheap proxies rank architectures against longer training")
    p.add_argument("--space", default=None, help=SPACE_HELP)
    p.add_argument("--budget", action="append", metavar="B",
                   help="sample within it, repeatable (default 2GFLOPs: fvcore total at the space's resolution)")
    p.add_argument("--archs", type=int, default=30, help="architectures sampled from the space (default 30)")
    p.add_argument("--low", action="append", metavar="F",
                   help="low fidelity, repeatable: 'default' (the search's proxy) or KEY=VALUE,... over res, "
                        "train_images, epochs, batch_size, lr, weight_decay, label_smoothing, eval_every, val_images, "
                        "augment (0/1), eval_split (val/test); a preset (default, reference) may come first; or "
                        "supernet:ID, scoring every network with a trained supernet (fatnas supernet train)")
    p.add_argument("--high", default=None, metavar="F",
                   help="high fidelity, same form (default: train_images=8192,eval_every=1,val_images=2000); "
                        "'reference': train_images=16384,epochs=2,eval_every=1,val_images=10000,augment=1,"
                        "eval_split=test")
    p.add_argument("--high-seeds", type=int, default=None, metavar="N",
                   help="seeds of the high fidelity per network, each changing init and data order (default 2); "
                        "the reference is their mean")
    p.add_argument("--reference-metric", choices=("auto", "loss", "accuracy", "both"), default=None,
                   help="the high fidelity's ranking metric (default auto: the highest seed-to-seed tau)")
    p.add_argument("--proxies", nargs="*", default=None, metavar="P",
                   help="zero-cost proxies and baselines (default all: synflow grad_norm snip naswot params flops)")
    p.add_argument("--spread-seeds", type=int, default=3, help="seeds for the seed-noise network (default 3)")
    p.add_argument("--top-k", type=int, default=5, help="k of the top-k overlap (default 5)")
    p.add_argument("--workers", type=int, default=None, help="processes training at once (default 1)")
    p.add_argument("--no-references", action="store_true", help="leave out the published FATs")
    p.add_argument("--run-id", default=None, help="the study's folder name under runs/ (default fidelity-DATE-TIME)")
    p.add_argument("--resume", default=None, metavar="ID",
                   help="continue an interrupted study; with --low, add low fidelities to it (it takes only "
                        "--low, --device, --workers, --high-seeds, --reference-metric and --quiet)")
    p.set_defaults(handler=cmd_fidelity)
    _DEFAULTS.update(vars(p.parse_args([])))


_DEFAULTS: dict[str, Any] = {}  # every flag's default, to tell which flags a --resume was given
RESUME_FLAGS = ("resume", "low", "device", "workers", "high_seeds", "reference_metric", "quiet")


def _check_resume_flags(args: argparse.Namespace) -> None:
    """Refuse a flag that --resume would ignore (--task, --archs, --budget, ...), rather than silently keep the
    recorded value."""
    ignored = [f"--{name.replace('_', '-')}" for name, value in vars(args).items()
               if name not in (*RESUME_FLAGS, "command", "handler") and name in _DEFAULTS and value != _DEFAULTS[name]]
    if ignored:
        takes = ", ".join(f"--{name.replace('_', '-')}" for name in RESUME_FLAGS[1:])
        raise FatnasError(f"fidelity --resume keeps the study's recorded settings, so {', '.join(ignored)} would be "
                          f"ignored; it takes {takes}; start a new study for others")


def cmd_fidelity(args: argparse.Namespace) -> int:
    from ..estimate.data import settings_data
    from ..runs.store import new_run, open_run
    from ..study.fidelity import record_study, resume_study_settings, run_study
    from ..study.fidelity.settings import check_scorers

    if args.resume:
        _check_resume_flags(args)
        run = open_run(args.resume)
        settings = resume_study_settings(run, lows=args.low or [], device=args.device, workers=args.workers,
                                         high_seeds=args.high_seeds, reference_metric=args.reference_metric)
    else:
        settings = _study_settings(args)
    check_device(settings.device)
    check_scorers(settings)
    data = settings_data(settings)  # a missing data set fails before any run folder exists
    if not args.resume:
        run = new_run(args.run_id, "fidelity", lambda r: record_study(r, settings))
    print(f"run {run.id}: {run.path}")
    classes = f" (classes {','.join(map(str, settings.classes))})" if settings.classes else ""
    lows = [settings.label(s) for s in settings.lows] + list(settings.scorers)
    print(f"{settings.archs} architectures from space {settings.space.name} within {settings.budget.describe()} "
          f"(+ published FATs that fit); low: {', '.join(lows)}; "
          f"high: {settings.high_label} x {settings.high_seeds} seed(s), reference metric {settings.reference_metric}; "
          f"{settings.dataset}{classes}; {settings.workers} worker(s) on {settings.device}")
    summary = run_study(run, settings, data=data, progress=not args.quiet)
    _print_study(run, summary, settings)
    return 0


def _study_settings(args: argparse.Namespace) -> Any:
    from ..estimate.cost import parse_budget
    from ..estimate.proxy import ProxySettings
    from ..estimate.zero_cost import PROXIES
    from ..model.space import load_space
    from ..study.fidelity import DEFAULT_HIGH, DEFAULT_LOW, StudySettings, parse_fidelity
    from ..study.fidelity.specs import is_scorer

    space = load_space(args.space)
    budget = parse_budget(args.budget or ["2GFLOPs"], res=space.resolution)
    base = ProxySettings()
    texts = args.low or [DEFAULT_LOW]
    lows = tuple(parse_fidelity(t, base) for t in texts if not is_scorer(t)) or (parse_fidelity(DEFAULT_LOW, base),)
    return StudySettings(space=space, budget=budget, lows=lows, scorers=tuple(t for t in texts if is_scorer(t)),
                         high=parse_fidelity(args.high or DEFAULT_HIGH, base), archs=args.archs,
                         proxies=tuple(args.proxies if args.proxies is not None else PROXIES),
                         spread_seeds=args.spread_seeds, **given(high_seeds=args.high_seeds, workers=args.workers),
                         reference_metric=args.reference_metric or "auto",
                         classes=task_classes(args),
                         references=not args.no_references, seed=args.seed,
                         dataset=dataset(args), data_dir=args.data_dir, threads=threads(args),
                         top_k=args.top_k, device=device(args))


def _print_study(run: Any, summary: Any, settings: Any) -> None:
    from ..study.fidelity import read_study_table, reference_line

    reliable = read_study_table(run, "reliability.csv")
    print(f"\n{reference_line(reliable)}")
    if not reliable.empty:
        columns = ["metric", "chosen", "seeds", "archs", "seed_tau", "icc1", "ceiling", "params_tau", "meets_targets"]
        print(reliable[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    name = summary["reference"].iloc[0] if not summary.empty else "none yet"
    print(f"\nrank correlation with the reference ({name}) of the high fidelity ({settings.high_label}); accuracy = "
          f"proxy accuracy on {settings.dataset}, not ImageNet accuracy; flops = fvcore total at "
          f"{settings.space.resolution}px; all columns in correlations.csv:")
    shown = ["estimator", "kendall_tau", "tau_low", "tau_high", "partial_tau", "band_tau", "minus_params",
             "minus_proxy", "seconds_per_arch", "cost_vs_high"]
    if not summary.empty:
        print(summary[[c for c in shown if c in summary]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    spread = read_study_table(run, "seed_spread.csv")
    if not spread.empty:
        print("\nseed noise of one network beside the spread across networks (accuracy std):")
        print(spread.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"files: {run.path / 'fidelity.csv'}, {run.path / 'correlations.csv'}, {run.path / 'reliability.csv'}, "
          f"report {run.path / 'fidelity.html'}")


COMMANDS = (add_fidelity,)
