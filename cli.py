"""fatnas command line: parses arguments and wires the package's pieces together.

Every FLOP figure printed here is fvcore's total (one multiply-add = one FLOP) at the stated
resolution. Bad input prints one line to stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Any, Callable

# OpenMP threads that spin while waiting stall badly when other processes share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fatnas.errors import FatnasError  # noqa: E402

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable:
    def register(fn: Callable[[argparse.Namespace], int]) -> Callable:
        COMMANDS[name] = fn
        return fn
    return register


class ArgumentParser(argparse.ArgumentParser):
    """argparse with our one-line error and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise FatnasError(f"{self.prog}: {message}")


def _table(rows: list[dict[str, Any]]) -> str:
    import pandas as pd

    return pd.DataFrame(rows).to_string(index=False)


def _model_spec_cost_lines(spec: str, res: int) -> tuple[Any, Any]:
    from fatnas.cost import analytic_cost
    from fatnas.variants import resolve_config

    cfg = resolve_config(spec)
    return cfg, analytic_cost(cfg, res)


# ---------------------------------------------------------------- models, show, cost

@command("models")
def cmd_models(args: argparse.Namespace) -> int:
    from fatnas.cost import analytic_cost, format_flops
    from fatnas.variants import get_config, list_models, variant_metadata

    rows = []
    for name in list_models():
        cost = analytic_cost(get_config(name), args.res)
        source = variant_metadata(name)
        rows.append(dict(name=name, params_M=round(cost.params / 1e6, 3), flops=format_flops(cost.flops),
                         origin=f"run {source['run']} trial {source.get('trial', '-')}" if source else "published"))
    print(_table(rows))
    print(f"FLOPs: fvcore total at {args.res}x{args.res} (1 multiply-add = 1 FLOP).")
    return 0


@command("show")
def cmd_show(args: argparse.Namespace) -> int:
    from fatnas.config import describe
    from fatnas.cost import format_flops, stage_rows

    cfg, cost = _model_spec_cost_lines(args.model, args.res)
    print(f"{args.model}: {describe(cfg)}")
    print(f"in_chans={cfg.in_chans} num_classes={cfg.num_classes} drop_path_rate={cfg.drop_path_rate:g}")
    print(_table(stage_rows(cfg, args.res)))
    print(f"params: {cost.params:,}")
    print(f"FLOPs:  {format_flops(cost.flops)} ({cost.flops:,}), fvcore total at {args.res}x{args.res}, "
          "1 multiply-add = 1 FLOP")
    return 0


@command("cost")
def cmd_cost(args: argparse.Namespace) -> int:
    if args.all:
        return _cost_all(args)
    if not args.model:
        raise FatnasError("cost: give a model name or CONFIG.yaml, or --all")
    from fatnas.cost import FLOP_CONVENTION, format_flops, fvcore_cost, measure_latency, peak_memory_bytes
    from fatnas.model import FAT

    cfg, cost = _model_spec_cost_lines(args.model, args.res)
    _check_device(args.device)
    result: dict[str, Any] = dict(model=args.model, res=args.res, convention=FLOP_CONVENTION,
                                  params=cost.params, flops=cost.flops, flops_by_operator=cost.flops_by_operator)
    if args.fvcore:
        ref = fvcore_cost(FAT(cfg), cfg.in_chans, args.res)
        result["fvcore_flops"], result["fvcore_matches"] = ref.flops, ref.flops == cost.flops
    if args.latency:
        model = FAT(cfg)
        stats = measure_latency(model, res=args.res, in_chans=cfg.in_chans, batch_size=args.batch_size,
                                device=args.device, threads=args.threads, warmup=args.warmup,
                                repeats=args.repeats, channels_last=args.channels_last)
        memory, how = peak_memory_bytes(model, res=args.res, in_chans=cfg.in_chans,
                                        batch_size=args.batch_size, device=args.device)
        result["latency"] = stats.to_dict()
        result["peak_memory_bytes"], result["memory_method"] = memory, how
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.model} at {args.res}x{args.res}, batch 1")
    print(f"params: {cost.params:,}")
    print(_table([dict(operator=op, flops=n) for op, n in cost.flops_by_operator.items()]
                 + [dict(operator="total", flops=cost.flops)]))
    print(f"FLOPs total: {format_flops(cost.flops)} ({FLOP_CONVENTION})")
    if args.fvcore:
        print(f"fvcore trace: {result['fvcore_flops']:,} FLOPs ({'matches' if result['fvcore_matches'] else 'DIFFERS'})")
    if args.latency:
        s = result["latency"]
        print(f"latency on {s['device']} (batch {s['batch_size']}, {s['threads']} threads, {s['repeats']} runs): "
              f"median {s['median_ms']:.2f} ms, p10 {s['p10_ms']:.2f}, p90 {s['p90_ms']:.2f}, CV {100 * s['cv']:.1f}%")
        print(f"peak memory: {result['peak_memory_bytes'] / 2**20:.1f} MiB, {result['memory_method']}")
    return 0


def _cost_all(args: argparse.Namespace) -> int:
    from fatnas.cost import analytic_cost
    from fatnas.variants import PAPER_FIGURES, get_config

    rows = []
    for name, paper in PAPER_FIGURES.items():
        cost = analytic_cost(get_config(name), args.res)
        rows.append(dict(name=name, params_M=round(cost.params / 1e6, 2), paper_params_M=paper["params_m"],
                         GFLOPs_total=round(cost.flops / 1e9, 3), GFLOPs_conv_only=round(cost.flops_by_operator["conv"] / 1e9, 3),
                         paper_GFLOPs=paper["flops_g"], paper_top1_imagenet=paper["top1"]))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(_table(rows))
    print(f"GFLOPs_total is fatnas's one FLOP figure: fvcore's total at {args.res}x{args.res} (1 multiply-add = 1 FLOP;\n"
          "convolutions, attention matmuls, norms and head). The paper's FLOPs column counts convolutions only\n"
          "(compare GFLOPs_conv_only at 224), so fat_b2 is 2.15 GFLOPs here and `--budget 2GFLOPs` excludes it.\n"
          "paper_top1_imagenet is the paper's ImageNet-1K accuracy; fatnas never measures ImageNet accuracy.")
    return 0


# ---------------------------------------------------------------- search, runs

@command("search")
def cmd_search(args: argparse.Namespace) -> int:
    from fatnas.search import run_search
    from fatnas.store import create_run, open_run

    if args.resume:
        run = open_run(args.resume)
        settings = _resume_settings(run, args)
        data = _load_data(settings)
    else:
        settings = _search_settings(args)
        data = _load_data(settings)  # a missing data set fails before any run folder exists
        run = _create_search_run(args, settings, create_run)
    print(f"run {run.id}: {run.path}")
    print(f"budget: {settings.budget.describe()}; space {settings.space.name} "
          f"({settings.space.size():.3g} points); sampler {settings.sampler}; seed {settings.seed}")
    print(f"proxy: {settings.dataset} at {settings.proxy.res}px, {settings.proxy.images_per_trial} images per trial "
          f"on {settings.device} (proxy accuracy, not ImageNet accuracy)")
    front = run_search(run, settings, backend=args.backend, data=data, progress=not args.quiet,
                       **_backend_options(args))
    _print_front(run, front, settings)
    return 0


def _search_settings(args: argparse.Namespace):
    from fatnas.cost import parse_budget
    from fatnas.proxy import ProxySettings
    from fatnas.search import SearchSettings
    from fatnas.search.optuna_backend import SAMPLERS
    from fatnas.space import load_space

    space = load_space(args.space)
    budget = parse_budget(args.budget or [], res=space.resolution)
    if args.sampler not in SAMPLERS:
        raise FatnasError(f"unknown sampler {args.sampler!r}; accepted: {', '.join(SAMPLERS)}")
    _check_device(args.device)
    _check_positive(trials=args.trials, proxy_res=args.proxy_res, proxy_images=args.proxy_images,
                    proxy_epochs=args.proxy_epochs, batch_size=args.batch_size, timeout=args.timeout,
                    threads=args.threads)
    proxy_values = dict(res=args.proxy_res, train_images=args.proxy_images, epochs=args.proxy_epochs,
                        batch_size=args.batch_size)
    proxy = ProxySettings(seed=args.seed, device=args.device,
                          **{k: v for k, v in proxy_values.items() if v is not None})
    return SearchSettings(space=space, budget=budget, proxy=proxy, trials=args.trials or 20,
                          timeout_s=args.timeout, sampler=args.sampler, seed=args.seed, dataset=args.dataset,
                          data_dir=args.data_dir, references=not args.no_references,
                          early_stopping=not args.no_early_stopping, threads=args.threads)


def _resume_settings(run, args: argparse.Namespace):
    from fatnas.search import settings_from_meta

    meta = run.read_meta()
    if meta.get("kind") != "search":
        raise FatnasError(f"run {run.id!r} is not a search run; --resume takes a search run id")
    if meta.get("backend", "optuna") != args.backend:
        raise FatnasError(f"run {run.id!r} used backend {meta.get('backend')!r}; resume it with --backend {meta.get('backend')}")
    _check_positive(trials=args.trials, timeout=args.timeout)
    return settings_from_meta(meta, trials=args.trials, timeout_s=args.timeout)


def _create_search_run(args: argparse.Namespace, settings, create_run):
    from fatnas.search import record_run
    from fatnas.store import new_run_id

    run = create_run(args.run_id or new_run_id())
    try:
        record_run(run, settings, args.backend)
    except BaseException:
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    return run


def _load_data(settings):
    from fatnas.data import DataError, load_dataset

    try:
        return load_dataset(settings.dataset, settings.data_dir, seed=settings.seed)
    except DataError as exc:
        raise FatnasError(str(exc)) from None


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    return {}


def _print_front(run, front, settings) -> None:
    from fatnas.cost import format_flops

    columns = ["trial", "accuracy", "latency_ms", "params", "flops"]
    print(f"\nPareto front ({len(front)} trials; accuracy = proxy accuracy on {settings.dataset}, "
          f"latency on {settings.device} at {settings.space.resolution}px, FLOPs = fvcore total at "
          f"{settings.space.resolution}px):")
    table = front[columns].copy() if not front.empty else front
    refs = run.references()
    if not refs.empty:
        refs = refs[refs["state"] == "REFERENCE"].assign(trial=lambda d: d["name"])[columns]
        table = pd_concat(table, refs)
    if not table.empty:
        table["flops"] = table["flops"].map(format_flops)
        table["params"] = table["params"].map(lambda p: f"{p / 1e6:.2f}M")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    trials = run.trials()
    counts = trials["state"].value_counts().to_dict() if not trials.empty else {}
    print(f"trials: {counts}; files in {run.path}")


def pd_concat(*frames):
    import pandas as pd

    return pd.concat([f for f in frames if not f.empty], ignore_index=True)


@command("runs")
def cmd_runs(args: argparse.Namespace) -> int:
    from fatnas.store import list_runs

    rows = []
    for run in list_runs():
        meta, trials = run.read_meta(), run.trials()
        counts = trials["state"].value_counts().to_dict() if not trials.empty else {}
        rows.append(dict(run=run.id, kind=meta.get("kind", "?"), backend=meta.get("backend", "-"),
                         budget=meta.get("budget_text", "-"), complete=counts.get("COMPLETE", 0),
                         stopped=counts.get("PRUNED", 0), failed=counts.get("FAIL", 0),
                         infeasible=counts.get("INFEASIBLE", 0), front=len(run.pareto())))
    if not rows:
        print("no runs yet; start one with: python cli.py search --budget 2GFLOPs")
        return 0
    print(_table(rows))
    return 0


# ---------------------------------------------------------------- dashboard, export

@command("dashboard")
def cmd_dashboard(args: argparse.Namespace) -> int:
    from fatnas.dashboard import write_dashboard
    from fatnas.store import open_run

    runs = [open_run(r) for r in args.runs]
    path = write_dashboard(runs, args.output)
    print(f"dashboard of {', '.join(r.id for r in runs)}: {path}")
    return 0


@command("export")
def cmd_export(args: argparse.Namespace) -> int:
    from fatnas.export import export_pareto, export_trial
    from fatnas.store import open_run

    if args.pareto == (args.trial is not None):
        raise FatnasError("export: give --trial N --name NAME, or --pareto [--prefix P]")
    if args.pareto and args.name:
        raise FatnasError("export --pareto names variants PREFIX<trial> (--prefix); --name goes with --trial")
    if args.trial is not None and (not args.name or args.prefix):
        raise FatnasError("export --trial N needs --name NAME (and takes no --prefix)")
    run = open_run(args.run)
    done = (export_pareto(run, prefix=args.prefix, force=args.force) if args.pareto
            else [export_trial(run, args.trial, args.name, force=args.force)])
    for e in done:
        print(f"{e.name}: run {e.source['run']} trial {e.source['trial']}, proxy accuracy "
              f"{e.source['proxy_accuracy']:.4f}, {e.source['params'] / 1e6:.3f}M params -> {e.path}")
    return 0


def _check_positive(**values: Any) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise FatnasError(f"--{name.replace('_', '-')} {value}: must be a positive number")


def _check_device(device: str) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise FatnasError("--device cuda: no CUDA device is available here; use --device cpu")


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="cli.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    p = sub.add_parser("models", help="list registered variants")
    p.add_argument("--res", type=int, default=224, help="resolution of the FLOP figures (default 224)")

    p = sub.add_parser("show", help="stage table, params and FLOPs of one model")
    p.add_argument("model", help="variant name or CONFIG.yaml")
    p.add_argument("--res", type=int, default=224)

    p = sub.add_parser("cost", help="params, FLOPs by operator, latency and memory")
    p.add_argument("model", nargs="?", help="variant name or CONFIG.yaml")
    p.add_argument("--all", action="store_true", help="compare fat_b0..b3 with the paper's figures")
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--latency", action="store_true", help="also measure latency and peak memory")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--fvcore", action="store_true", help="cross-check the analytic FLOPs by tracing with fvcore")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("search", help="search the space for accuracy-latency Pareto fronts under a budget")
    p.add_argument("--budget", action="append", metavar="B",
                   help="hard limit, repeatable: 2GFLOPs (fvcore total at the space's resolution), 5Mparams, 20ms")
    p.add_argument("--space", default=None, help="space name in search_spaces/ or a YAML path (default: fat)")
    p.add_argument("--trials", type=int, default=None, help="trained trials to reach (default 20)")
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    p.add_argument("--sampler", default="tpe", help="tpe (default), nsga2, gp or random")
    p.add_argument("--backend", choices=("optuna", "ray"), default="optuna")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-id", default=None)
    p.add_argument("--resume", default=None, metavar="ID", help="continue an interrupted run")
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default), cifar10 or imagefolder")
    p.add_argument("--data-dir", default=None, help="folder of the data set (CIFAR-10 or ImageFolder)")
    p.add_argument("--proxy-res", type=int, default=None, help="proxy training resolution")
    p.add_argument("--proxy-images", type=int, default=None, help="distinct training images per trial")
    p.add_argument("--proxy-epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--no-references", action="store_true", help="skip evaluating fat_b0..b3")
    p.add_argument("--no-early-stopping", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch threads per trial, for timing and training (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser("runs", help="list runs with budget, trial counts and front size")

    p = sub.add_parser("dashboard", help="one self-contained HTML page of runs' fronts, costs and trials")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run ids (or folders); several are overlaid")
    p.add_argument("-o", "--output", default=None, help="HTML file (default: runs/<first run>/dashboard.html)")

    p = sub.add_parser("export", help="write searched configs as named variants (create_model, show, cost)")
    p.add_argument("run", metavar="RUN", help="run id (or folder)")
    p.add_argument("--trial", type=int, default=None, help="a COMPLETE trial number; needs --name")
    p.add_argument("--name", default=None, help="variant name: lowercase letters, digits, '_'")
    p.add_argument("--pareto", action="store_true", help="export every Pareto-front trial as PREFIX<trial>")
    p.add_argument("--prefix", default=None, help="name prefix for --pareto (default: <run id>_t)")
    p.add_argument("--force", action="store_true", help="overwrite an existing exported variant")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        _check_resolution(args)
        return COMMANDS[args.command](args)
    except FatnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _check_resolution(args: argparse.Namespace) -> None:
    res = getattr(args, "res", None)
    if res is not None and res < 1:
        raise FatnasError(f"--res {res}: the resolution must be a positive integer number of pixels")


if __name__ == "__main__":
    sys.exit(main())
