"""Commands that write what a run found: `dashboard` (one HTML page) and `export` (variants, ONNX, torch.export)."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import FatnasError, check_positive
from .common import Flags


def add_dashboard(sub: Any, flags: Flags) -> None:
    p = sub.add_parser("dashboard", help="one self-contained HTML page of runs' fronts, costs and trials")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run ids (or folders); several are overlaid")
    p.add_argument("-o", "--output", default=None, help="HTML file (default: runs/<first run>/dashboard.html)")
    p.set_defaults(handler=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from ..report.dashboard import write_dashboard
    from ..runs.store import open_run

    runs = [open_run(r) for r in args.runs]
    path = write_dashboard(runs, args.output)
    print(f"dashboard of {', '.join(r.id for r in runs)}: {path}")
    return 0


def add_export(sub: Any, flags: Flags) -> None:
    p = sub.add_parser("export", help="write searched configs as named variants (create_model, show, cost), "
                                      "and any variant or trial as ONNX or a torch.export program")
    p.add_argument("run", metavar="RUN", nargs="?", help="run id (or folder)")
    p.add_argument("--model", default=None, metavar="NAME", help="instead of a run: a variant name or CONFIG.yaml")
    p.add_argument("--format", default="yaml",
                   help="yaml (a named variant, default), onnx (checked under ONNX Runtime) or pt2 (torch.export); "
                        "with a run, onnx/pt2 files go beside the variant YAML")
    p.add_argument("-o", "--output", default=None, help="with --model: the file (default: variants/NAME.FORMAT)")
    p.add_argument("--res", type=int, default=None,
                   help="with --model: input resolution (default: the variant's, else 224)")
    p.add_argument("--trial", type=int, default=None, help="a COMPLETE trial number; needs --name")
    p.add_argument("--name", default=None, help="variant name: lowercase letters, digits, '_'")
    p.add_argument("--pareto", action="store_true", help="export every Pareto-front trial as PREFIX<trial>")
    p.add_argument("--prefix", default=None, help="name prefix for --pareto (default: <run id>_t)")
    p.add_argument("--confirmed", action="store_true",
                   help="export the confirmed front (fatnas confirm RUN) as PREFIX<trial>, with its confirmed accuracy")
    p.add_argument("--force", action="store_true", help="overwrite an existing exported variant")
    p.add_argument("--with-weights", action="store_true",
                   help="with --trial of a supernet search: also write the weights it inherited (variants/NAME.pt), "
                        "for create_model(NAME, pretrained=True)")
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..runs.export import export_deployed, export_pareto, export_trial
    from ..runs.store import open_run

    if args.format not in ("yaml", "onnx", "pt2"):
        raise FatnasError(f"export --format {args.format!r}: accepted yaml (a variant), onnx or pt2")
    if args.model is not None:
        return _export_model(args)
    _check_run_export(args)
    if args.format == "onnx":
        from ..model.deploy import require_onnx

        require_onnx()  # before any variant is written
    run = open_run(args.run)
    confirmed = _confirmed_front(run) if args.confirmed else None
    if args.pareto or args.confirmed:
        done = export_pareto(run, prefix=args.prefix, force=args.force, confirmed=confirmed)
    else:
        done = [export_trial(run, args.trial, args.name, force=args.force, with_weights=args.with_weights)]
    for e in done:
        s = e.source
        low, high = s.get("confirmed_interval") or (None, None)
        confirmed = (f", confirmed accuracy {s['confirmed_accuracy']:.4f} (90% interval {low:.4f} to {high:.4f}, "
                     f"{s['confirmed_seeds']} seeds of {s['confirm_recipe']})"
                     if "confirmed_accuracy" in s else "")
        print(f"{e.name}: run {s['run']} trial {s['trial']}, proxy accuracy {s['proxy_accuracy']:.4f}{confirmed}, "
              f"{s['params'] / 1e6:.3f}M params -> {e.path}")
        if args.format != "yaml":
            _print_deployed(e.name, export_deployed(e.name, args.format))
    return 0


def _confirmed_front(run: Any) -> Any:
    from ..study.confirm import confirmed_front

    return confirmed_front(run)


def _check_run_export(args: argparse.Namespace) -> None:
    if args.output or args.res:
        raise FatnasError("export: -o and --res go with --model NAME (a trial's files go beside its variant)")
    if args.run is None:
        raise FatnasError("export: give RUN --trial N --name NAME, RUN --pareto [--prefix P], RUN --confirmed "
                          "[--prefix P], or --model NAME --format onnx|pt2")
    if args.confirmed and (args.pareto or args.trial is not None):
        raise FatnasError("export --confirmed exports the confirmed front; it takes no --pareto or --trial")
    if not args.confirmed and args.pareto == (args.trial is not None):
        raise FatnasError("export: give --trial N --name NAME, or --pareto [--prefix P], or --confirmed [--prefix P]")
    if (args.pareto or args.confirmed) and args.name:
        raise FatnasError("export --pareto names variants PREFIX<trial> (--prefix); --name goes with --trial")
    if args.trial is not None and (not args.name or args.prefix):
        raise FatnasError("export --trial N needs --name NAME (and takes no --prefix)")


def _export_model(args: argparse.Namespace) -> int:
    from ..runs.export import export_deployed

    if args.run or args.trial is not None or args.pareto or args.name or args.prefix:
        raise FatnasError("export --model NAME takes no RUN, --trial, --pareto, --name or --prefix")
    if args.format == "yaml":
        raise FatnasError("export --model NAME needs --format onnx or pt2 (a registered variant is already YAML)")
    check_positive(res=args.res)
    _print_deployed(args.model, export_deployed(args.model, args.format, args.output, args.res))
    return 0


def _print_deployed(name: str, done: Any) -> None:
    from ..runs.export import DEPLOY_SEED

    checker = "ONNX Runtime" if done.format == "onnx" else "the reloaded program"
    print(f"{name}: {done.format} at {done.res}x{done.res} (batch dynamic) -> {done.path}; {checker} matches "
          f"PyTorch within {done.max_abs_diff:.1e} (max abs difference, tolerance 1e-4); untrained weights "
          f"initialised with torch.manual_seed({DEPLOY_SEED})")


COMMANDS = (add_dashboard, add_export)
