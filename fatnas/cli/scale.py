"""The `scale` command: scale a model's width, depth and resolution (and compound), fit cost and accuracy;
or with --to, the largest compound scaling within a budget."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import FatnasError, check_device
from .common import Flags, dataset, device, finite_float, given, table, threads

# options that only a grid run takes (all default to None/False): --to prices analytically only
GRID_ONLY = ("widths", "depths", "resolutions", "compound", "gamma", "budget", "train", "latency", "run_id",
             "proxy_res", "proxy_images", "proxy_epochs", "batch_size", "val_images", "dataset", "data_dir")


def add_scale(sub: Any, flags: Flags) -> None:
    p = sub.add_parser("scale", parents=[flags.device_threads, flags.data, flags.seed, flags.quiet],
                       help="scale a model's width, depth, resolution (and compound); fit cost and accuracy")
    p.add_argument("base", metavar="BASE", help="variant name or CONFIG.yaml")
    p.add_argument("--widths", type=finite_float, nargs="*", default=None, metavar="M",
                   help="width multipliers (default 0.5 0.75 1 1.25 1.5; none given: skip)")
    p.add_argument("--depths", type=finite_float, nargs="*", default=None, metavar="M",
                   help="depth multipliers (default 0.5 1 1.5 2; none given: skip)")
    p.add_argument("--resolutions", type=int, nargs="*", default=None, metavar="PX",
                   help="input resolutions (default 160 192 224 256; none given: skip)")
    p.add_argument("--compound", type=finite_float, nargs="*", default=None, metavar="PHI",
                   help="compound phis: depth alpha^phi, width beta^phi, resolution gamma^phi (default -1 0 1 2)")
    p.add_argument("--alpha", type=finite_float, default=None, help="compound depth base (default 1.2)")
    p.add_argument("--beta", type=finite_float, default=None, help="compound width base (default 1.1)")
    p.add_argument("--gamma", type=finite_float, default=None, help="compound resolution base (default 1.15)")
    p.add_argument("--budget", action="append", metavar="B",
                   help="mark points over it and train none of them: 2GFLOPs (at the point's resolution), 5Mparams, "
                        "20ms")
    p.add_argument("--train", type=int, default=None, metavar="N",
                   help="proxy-train N points spread along each direction (default 2; 0: none)")
    p.add_argument("--latency", action="store_true", help="also measure every point's latency at its resolution")
    p.add_argument("--to", action="append", metavar="B",
                   help="instead of a grid: the largest depth+width compound scaling within B (e.g. 2GFLOPs) at 224 px")
    p.add_argument("--export", default=None, metavar="NAME", help="with --to: write the result as variant NAME")
    p.add_argument("--force", action="store_true", help="with --export: overwrite an existing exported variant")
    p.add_argument("--run-id", default=None, help="the run's folder name under runs/ (default scale-DATE-TIME)")
    p.add_argument("--proxy-res", type=int, default=None,
                   help="proxy resolution for a 224 px network (default: the search proxy's, 56)")
    p.add_argument("--proxy-images", type=int, default=None, help="distinct training images per trained point")
    p.add_argument("--proxy-epochs", type=int, default=None, help="passes over a point's images (default 1)")
    p.add_argument("--batch-size", type=int, default=None, help="proxy training batch (default 64)")
    p.add_argument("--val-images", type=int, default=None, help="validation images (default 1000)")
    p.set_defaults(handler=cmd_scale)


def cmd_scale(args: argparse.Namespace) -> int:
    from ..model.variants import resolve_config
    from ..scaling import Compound

    base = resolve_config(args.base)
    coeffs = Compound(**given(alpha=args.alpha, beta=args.beta, gamma=args.gamma))
    if args.to:
        return _scale_to(args, base, coeffs)
    if args.export or args.force:
        raise FatnasError("scale: --export NAME and --force go with --to BUDGET")
    from ..estimate.data import settings_data
    from ..runs.store import new_run
    from ..scaling import (
        accuracy_fits,
        best_direction,
        check_points_fit,
        cost_fits,
        explore,
        grid_points,
        price_points,
        record_scaling_run,
    )

    settings = _scale_settings(args, coeffs)
    check_points_fit(price_points(grid_points(base, settings.grid), settings), settings)  # before any run folder
    data = settings_data(settings) if settings.train else None  # a missing data set fails before any run folder
    run = new_run(args.run_id, "scale", lambda r: record_scaling_run(r, args.base, base, settings))
    print(f"run {run.id}: {run.path}")
    print(f"base {args.base}; budget: {settings.budget.describe()}; "
          f"{settings.train} proxy-trained points per direction" +
          (f" on {settings.dataset} at round({settings.proxy.res} * res / 224) px, {settings.proxy.images_per_trial} "
           "images each (proxy accuracy, not ImageNet accuracy)" if settings.train else ""))
    explored = explore(run, base, settings, data=data, log=None if args.quiet else print)
    _print_scaling(explored, cost_fits(explored), accuracy_fits(explored))
    print(best_direction(accuracy_fits(explored), settings.dataset))
    print(f"files: {run.path / 'scaling.csv'}, {run.path / 'run.yaml'}, report {run.path / 'scaling.html'}")
    return 0


def _scale_settings(args: argparse.Namespace, coeffs: Any) -> Any:
    from ..estimate.cost import parse_budget
    from ..estimate.proxy import ProxySettings
    from ..scaling import DEFAULT_TRAIN, ScalingGrid, ScalingSettings

    budget = parse_budget(args.budget or [], res=224)
    check_device(device(args))
    grid_values = given(widths=args.widths, depths=args.depths, resolutions=args.resolutions, phis=args.compound)
    grid = ScalingGrid(compound=coeffs, **{k: tuple(v) for k, v in grid_values.items()})
    proxy = ProxySettings(seed=args.seed, device=device(args),
                          **given(res=args.proxy_res, train_images=args.proxy_images, epochs=args.proxy_epochs,
                                  batch_size=args.batch_size, val_images=args.val_images))
    return ScalingSettings(grid=grid, budget=budget, proxy=proxy,
                           train=DEFAULT_TRAIN if args.train is None else args.train, latency=args.latency,
                           dataset=dataset(args), data_dir=args.data_dir, seed=args.seed, threads=threads(args))


def _print_scaling(explored: Any, fits: Any, acc: Any) -> None:
    from ..estimate.cost import format_flops
    from ..model.config import describe
    from ..runs.store import trial_config

    rows = [dict(direction=r["direction"], multiplier=f"{'phi=' if r['direction'] == 'compound' else 'x'}"
                 f"{r['multiplier']:g}", res=int(r["res"]),
                 arch=describe(trial_config(r), ("widths", "depths")),
                 params_M=round(r["params"] / 1e6, 3), flops=format_flops(r["flops"]),
                 latency_ms="-" if r["latency_ms"] != r["latency_ms"] else round(r["latency_ms"], 2),
                 proxy_accuracy="-" if r["accuracy"] != r["accuracy"] else round(r["accuracy"], 4),
                 over_budget=r["over_budget"] if isinstance(r["over_budget"], str) else "")
            for _, r in explored.iterrows()]
    print(table(rows))
    print("FLOPs: fvcore total at each point's resolution (column res), 1 multiply-add = 1 FLOP.")
    print("\npower-law fits, cost = c * x^exponent (x: the multiplier; resolution / 224; 2^phi for compound):")
    if not fits.empty:
        print(table([dict(direction=f["direction"], metric=f["metric"], exponent=round(f["exponent"], 3),
                          r2=round(f["r2"], 5), max_rel_error=f"{f['max_rel_error']:.2%}", points=f["points"])
                     for _, f in fits.iterrows()]))
    if not acc.empty:
        print("\nproxy accuracy = intercept + slope * log2(FLOPs), per direction:")
        print(table([dict(direction=a["direction"], slope_per_doubling=round(a["slope_per_doubling"], 4),
                          intercept=round(a["intercept"], 4), points=a["points"]) for _, a in acc.iterrows()]))


def _scale_to(args: argparse.Namespace, base: Any, coeffs: Any) -> int:
    from ..estimate.cost import format_flops, parse_budget
    from ..model.config import describe
    from ..scaling import export_budget_fit, fit_budget

    extra = [f"--{name.replace('_', '-')}" for name in GRID_ONLY if getattr(args, name) not in (None, False)]
    if extra:
        raise FatnasError(f"scale --to prices depth and width scalings analytically at 224 px and takes no "
                          f"grid-run options: {', '.join(extra)}")
    if args.force and not args.export:
        raise FatnasError("scale --to: --force goes with --export NAME")
    budget = parse_budget(args.to, res=224)
    fit = fit_budget(base, budget, coeffs)
    cost = fit.cost
    print(f"largest compound scaling of {args.base} within {budget.describe()}:")
    print(f"phi = {fit.phi:g}: depth x{fit.depth_mult:.3f} ({coeffs.alpha:g}^phi), width x{fit.width_mult:.3f} "
          f"({coeffs.beta:g}^phi); resolution fixed at 224 px (budgets are priced at 224, so --to scales depth "
          "and width only)")
    print(describe(fit.config))
    print(f"params: {cost.params:,} ({cost.params / 1e6:.2f}M)")
    print(f"FLOPs:  {format_flops(cost.flops)} ({cost.flops:,}), fvcore total at 224x224, 1 multiply-add = 1 FLOP"
          + (f"; {cost.flops / budget.max_flops:.1%} of the budget" if budget.max_flops else ""))
    if args.export:
        exported = export_budget_fit(fit, args.base, args.export, coeffs, force=args.force)
        print(f"exported as variant {exported.name} -> {exported.path}")
    return 0


COMMANDS = (add_scale,)
