"""fatnas command line (`fatnas ...`, or `python cli.py ...` in a checkout): parses arguments and wires the pieces.

Every FLOP figure printed here is fvcore's total (one multiply-add = one FLOP) at the stated
resolution. Bad input prints one line to stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Callable

# OpenMP threads that spin while waiting stall badly when other processes share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fatnas import __version__  # noqa: E402
from fatnas.errors import FatnasError, check_positive, redact  # noqa: E402

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
                         origin=_origin(source)))
    print(_table(rows))
    print(f"FLOPs: fvcore total at {args.res}x{args.res} (1 multiply-add = 1 FLOP).")
    return 0


def _origin(source: dict[str, Any]) -> str:
    if not source:
        return "published"
    if source.get("run"):
        return f"run {source['run']} trial {source.get('trial', '-')}"
    return str(source.get("origin", "exported"))


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
    if args.latency_model and args.latency:
        raise FatnasError("cost: --latency measures and --latency-model prices from a table; give one of them")
    result: dict[str, Any] = dict(model=args.model, res=args.res, convention=FLOP_CONVENTION,
                                  params=cost.params, flops=cost.flops, flops_by_operator=cost.flops_by_operator)
    if args.latency_model:
        result["modelled_latency"] = _modelled_latency(cfg, args)
    if args.fvcore:
        ref = fvcore_cost(FAT(cfg), cfg.in_chans, args.res)
        result["fvcore_flops"], result["fvcore_matches"] = ref.flops, ref.flops == cost.flops
    if args.latency:
        model = FAT(cfg)
        stats = measure_latency(model, res=args.res, in_chans=cfg.in_chans, batch_size=args.batch_size,
                                device=args.device, threads=args.threads, warmup=args.warmup,
                                repeats=args.repeats, channels_last=args.channels_last, runtime=args.runtime)
        memory, how = peak_memory_bytes(model, res=args.res, in_chans=cfg.in_chans,
                                        batch_size=args.batch_size, device=args.device)
        result["latency"] = dict(stats.to_dict(), runtime=args.runtime)
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
        verdict = "matches" if result["fvcore_matches"] else "DIFFERS"
        print(f"fvcore trace: {result['fvcore_flops']:,} FLOPs ({verdict})")
    if args.latency_model:
        m = result["modelled_latency"]
        print(f"latency {m['latency_ms']:.2f} ms, modelled (no network timed) from {m['table']} "
              f"[{m['table_fingerprint']}]: {m['runtime']} on {m['device']} ({m['device_name']}), "
              f"{m['threads']} threads, batch {m['batch_size']}, {m['resolution']} px")
    if args.latency:
        s = result["latency"]
        print(f"latency on {s['device']} ({s['runtime']}, batch {s['batch_size']}, {s['threads']} threads, "
              f"{s['repeats']} runs): "
              f"median {s['median_ms']:.2f} ms, p10 {s['p10_ms']:.2f}, p90 {s['p90_ms']:.2f}, CV {100 * s['cv']:.1f}%")
        print(f"peak memory: {result['peak_memory_bytes'] / 2**20:.1f} MiB, {result['memory_method']}")
    return 0


def _modelled_latency(cfg, args: argparse.Namespace) -> dict[str, Any]:
    from fatnas.latency import load_table

    table = load_table(args.latency_model)
    return dict(latency_ms=table.predict_ms(cfg, res=args.res, batch=args.batch_size), **table.describe())


@command("latency-profile")
def cmd_latency_profile(args: argparse.Namespace) -> int:
    from fatnas.latency import ProfileSettings, profile_space
    from fatnas.space import load_space

    space = load_space(args.space)
    settings = ProfileSettings(device=args.device, runtime=args.runtime, threads=args.threads, batch=args.batch,
                               res=args.res, repeats=args.repeats)
    settings.check()
    if args.runtime == "onnxruntime":
        from fatnas.deploy import require_onnx

        require_onnx()
    print(f"profiling space {space.name} at {args.res or space.resolution} px, batch {args.batch}: {args.runtime} on "
          f"{args.device}, {args.threads} threads")
    report = None if args.quiet else _progress_line
    table = profile_space(space, settings, progress=report)
    path = table.save(args.output)
    if report:
        print()
    info = table.describe()
    print(f"{len(table.parts)} parts in {table.meta['profile_seconds']:.0f} s; "
          f"reference fat_b0 {table.reference_ms:.2f} ms; "
          f"calibration factor {table.factor:.3f} ({len(table.meta['calibration']['networks'])} whole networks)")
    print(f"wrote {path} [{info['table_fingerprint']}]")
    return 0


def _progress_line(done: int, total: int) -> None:
    if done == total or done % 25 == 0:
        print(f"\r{done}/{total} parts", end="", flush=True)


def _cost_all(args: argparse.Namespace) -> int:
    from fatnas.cost import analytic_cost
    from fatnas.variants import PAPER_FIGURES, get_config

    rows = []
    for name, paper in PAPER_FIGURES.items():
        cost = analytic_cost(get_config(name), args.res)
        rows.append(dict(name=name, params_M=round(cost.params / 1e6, 2), paper_params_M=paper["params_m"],
                         GFLOPs_total=round(cost.flops / 1e9, 3),
                         GFLOPs_conv_only=round(cost.flops_by_operator["conv"] / 1e9, 3),
                         paper_GFLOPs=paper["flops_g"], paper_top1_imagenet=paper["top1"]))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(_table(rows))
    print(f"GFLOPs_total is fatnas's one FLOP figure: fvcore's total at {args.res}x{args.res} "
          "(1 multiply-add = 1 FLOP;\n"
          "convolutions, attention matmuls, norms and head). The paper's FLOPs column counts convolutions only\n"
          "(compare GFLOPs_conv_only at 224), so fat_b2 is 2.15 GFLOPs here and `--budget 2GFLOPs` excludes it.\n"
          "paper_top1_imagenet is the paper's ImageNet-1K accuracy; fatnas never measures ImageNet accuracy.")
    return 0


# ---------------------------------------------------------------- search, runs

@command("search")
def cmd_search(args: argparse.Namespace) -> int:
    from fatnas.data import settings_data
    from fatnas.search import check_storage, record_run, run_search, storage_of
    from fatnas.store import new_run, open_run

    backend_options = _backend_options(args)  # checked before any run folder exists
    _check_workers(args)
    if args.resume or args.join:
        run = open_run(args.resume or args.join)
        settings = _resume_settings(run, args)
        storage = storage_of(run, args.storage)
        data = settings_data(settings)
    else:
        settings = _search_settings(args)
        storage = check_storage(args.storage, args.backend, settings.heartbeat)
        data = settings_data(settings)  # a missing data set fails before any run folder exists
        run = new_run(args.run_id, "search", lambda r: record_run(r, settings, args.backend, storage=storage))
    print(f"run {run.id}: {run.path}")
    print(f"budget: {settings.budget.describe()}; space {settings.space.name} "
          f"({settings.space.size():.3g} points); sampler {settings.sampler}; seed {settings.seed}")
    classes = f" (classes {','.join(map(str, settings.classes))})" if settings.classes else ""
    print(f"proxy: {settings.dataset}{classes} at {settings.proxy.res}px, "
          f"{settings.proxy.images_per_trial} images per trial "
          f"on {settings.device} (proxy accuracy, not ImageNet accuracy)")
    print(_liveness_line(settings))
    print(_latency_line(run.read_meta().get("latency") or {}))
    if (args.workers or 1) > 1:
        print(f"workers: this process and {args.workers - 1} more (search --join {run.id})")
    front = run_search(run, settings, backend=args.backend, data=data, progress=not args.quiet,
                       storage=storage, joining=bool(args.join), workers=args.workers or 1,
                       **backend_options)
    _print_front(run, front, settings)
    return 0


def _latency_line(latency: dict[str, Any]) -> str:
    if latency.get("source") == "modelled":
        return (f"latency: modelled from {latency['table']} [{latency['table_fingerprint']}] ({latency['runtime']} on "
                f"{latency['device']}, {latency['device_name']}, {latency['threads']} threads, "
                f"batch {latency['batch_size']})")
    return f"latency: measured here on {latency.get('device')} ({latency.get('method', 'median of timed passes')})"


def _check_workers(args: argparse.Namespace) -> None:
    if args.join and args.resume:
        raise FatnasError("--join and --resume: give one (--join adds a worker, --resume continues alone)")
    if args.workers is not None and args.workers < 1:
        raise FatnasError(f"--workers {args.workers}: must be a positive number of processes")
    if (args.workers or args.join) and args.backend != "optuna":
        raise FatnasError("--workers and --join work with the optuna backend; Ray schedules its own workers")


@command("sync")
def cmd_sync(args: argparse.Namespace) -> int:
    from fatnas.search import sync_run

    run = sync_run(args.run, args.storage)
    trials = run.trials()
    counts = trials["state"].value_counts().to_dict() if not trials.empty else {}
    print(f"run {run.id} rebuilt from its study in {run.storage_url}: trials {counts}; "
          f"{len(run.pareto())} on the front; files in {run.path}")
    return 0


def _liveness_line(settings) -> str:
    """What the proxy can tell apart at its resolution, and whether trials draw one value per class."""
    from fatnas.liveness import space_liveness

    lv = space_liveness(settings.space, settings.proxy.res)
    if not lv.inert_dimensions():
        return lv.summary()
    sampling = ("trials draw one value per class" if settings.collapse_inert
                else "trials draw every value (--keep-inert)")
    return f"{lv.summary()}; {sampling}"


def _search_settings(args: argparse.Namespace):
    from fatnas.cost import parse_budget
    from fatnas.data import parse_classes
    from fatnas.proxy import ProxySettings
    from fatnas.search import SearchSettings, check_backend
    from fatnas.search.storage import Heartbeat
    from fatnas.space import load_space

    space = load_space(args.space)
    budget = parse_budget(args.budget or [], res=space.resolution)
    if args.prescreen_keep is not None and args.prescreen is None:
        raise FatnasError("--prescreen-keep goes with --prescreen PROXY")
    device, threads = args.device or "cpu", args.threads or 1
    _check_device(device)
    check_positive(trials=args.trials, proxy_res=args.proxy_res, proxy_images=args.proxy_images,
                    proxy_epochs=args.proxy_epochs, batch_size=args.batch_size, threads=args.threads)
    proxy = ProxySettings(seed=args.seed, device=device,
                          **_given(res=args.proxy_res, train_images=args.proxy_images, epochs=args.proxy_epochs,
                                   batch_size=args.batch_size))
    heartbeat = Heartbeat(**_given(interval_s=args.heartbeat_interval, grace_s=args.grace_period))
    settings = SearchSettings(space=space, budget=budget, proxy=proxy, trials=args.trials or 20,
                              timeout_s=args.timeout, sampler=args.sampler, seed=args.seed, dataset=args.dataset,
                              data_dir=args.data_dir, references=not args.no_references,
                              early_stopping=not args.no_early_stopping, threads=threads,
                              prescreen=args.prescreen, collapse_inert=not args.keep_inert, heartbeat=heartbeat,
                              latency_model=_search_latency_model(args.latency_model, space),
                              classes=parse_classes(args.classes) if args.classes else (),
                              **({} if args.prescreen_keep is None else dict(prescreen_keep=args.prescreen_keep)))
    check_backend(settings, args.backend)
    return settings


def _search_latency_model(path: str | None, space) -> str | None:
    """The table's absolute path (Ray workers may run elsewhere), once it is known to fit the space."""
    if path is None:
        return None
    from pathlib import Path

    from fatnas.latency import load_table

    load_table(path).check_fits(res=space.resolution, batch=1, space=space)
    return str(Path(path).resolve())


def _resume_settings(run, args: argparse.Namespace):
    from fatnas.search import resume_settings

    if args.device is not None:
        _check_device(args.device)
    return resume_settings(run, args.backend, trials=args.trials, timeout_s=args.timeout, device=args.device,
                           threads=args.threads)


RAY_OPTIONS = ("cpus_per_trial", "gpus_per_trial", "max_concurrent", "ray_address")


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """The backend's own options that were given; ray's are validated here, others refuse them."""
    given = {name: getattr(args, name) for name in RAY_OPTIONS if getattr(args, name) is not None}
    if args.backend != "ray":
        if given:
            flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
            raise FatnasError(f"{flags}: only valid with --backend ray")
        return {}
    from fatnas.search.ray_backend import check_ray_options

    check_ray_options(device=None if args.resume else (args.device or "cpu"), **given)
    return given


def _print_front(run, front, settings) -> None:
    from fatnas.cost import format_flops

    columns = ["trial", "accuracy", "latency_ms", "params", "flops"]
    latency = (f"latency modelled from {settings.latency_model}" if settings.latency_model
               else f"latency measured on {settings.device}")
    print(f"\nPareto front ({len(front)} trials; accuracy = proxy accuracy on {settings.dataset}, "
          f"{latency} at {settings.space.resolution}px, FLOPs = fvcore total at "
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


@command("space")
def cmd_space(args: argparse.Namespace) -> int:
    from fatnas.liveness import check_res, percent, space_liveness
    from fatnas.proxy import ProxySettings
    from fatnas.space import load_space

    resolutions = [check_res(text) for text in args.resolutions or [ProxySettings().res]]
    space = load_space(args.name)
    results = [space_liveness(space, res) for res in resolutions]
    for i, lv in enumerate(results):
        if i:
            print()
        _print_liveness(space, lv)
    if len(results) > 1:
        print()
        print(_table([dict(res=lv.res, points=f"{lv.points:,}", distinct=f"{lv.distinct:,}",
                           fraction=percent(lv.fraction)) for lv in results]))
    return 0


def _print_liveness(space, lv) -> None:
    from fatnas.liveness import percent, table_rows

    maps = ", ".join(f"{side}x{side}" for side in lv.stage_maps)
    print(f"space {space.name} (costs at {space.resolution} px), proxy at {lv.res} px: stage maps {maps}")
    print(_left_table(table_rows(lv)))
    print(f"{{a,b}}->k: choices that build the same network at {lv.res} px, trained as k (a search draws only "
          "the smallest); [1 key: wN]: with window N the stage has one attention key, so its heads are inert "
          "(trained as 1 head)")
    print(f"points: {lv.points:,}; distinct proxy networks at {lv.res} px: {lv.distinct:,} "
          f"({percent(lv.fraction)} of the space)")


def _left_table(rows: list[dict[str, str]]) -> str:
    """Rows of text as left-aligned columns (headers from the first row's keys)."""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = [[c.ljust(widths[c]) for c in columns]] + [[r[c].ljust(widths[c]) for c in columns] for r in rows]
    return "\n".join("  ".join(line).rstrip() for line in lines)


@command("runs")
def cmd_runs(args: argparse.Namespace) -> int:
    from fatnas.store import readable_runs

    rows = []
    for run, (meta, trials, front) in readable_runs(check=lambda r: (r.read_meta(), r.trials(), r.pareto())):
        counts = trials["state"].value_counts().to_dict() if not trials.empty else {}
        rows.append(dict(run=run.id, kind=meta.get("kind", "?"), backend=meta.get("backend", "-"),
                         budget=meta.get("budget_text", "-"), complete=counts.get("COMPLETE", 0),
                         stopped=counts.get("PRUNED", 0), failed=counts.get("FAIL", 0),
                         infeasible=counts.get("INFEASIBLE", 0), front=len(front)))
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
    from fatnas.export import export_deployed, export_pareto, export_trial
    from fatnas.store import open_run

    if args.format not in ("yaml", "onnx", "pt2"):
        raise FatnasError(f"export --format {args.format!r}: accepted yaml (a variant), onnx or pt2")
    if args.model is not None:
        return _export_model(args)
    if args.output or args.res:
        raise FatnasError("export: -o and --res go with --model NAME (a trial's files go beside its variant)")
    if args.run is None:
        raise FatnasError("export: give RUN --trial N --name NAME, RUN --pareto [--prefix P], "
                          "or --model NAME --format onnx|pt2")
    if args.pareto == (args.trial is not None):
        raise FatnasError("export: give --trial N --name NAME, or --pareto [--prefix P]")
    if args.pareto and args.name:
        raise FatnasError("export --pareto names variants PREFIX<trial> (--prefix); --name goes with --trial")
    if args.trial is not None and (not args.name or args.prefix):
        raise FatnasError("export --trial N needs --name NAME (and takes no --prefix)")
    if args.format == "onnx":
        from fatnas.deploy import require_onnx

        require_onnx()  # before any variant is written
    run = open_run(args.run)
    done = (export_pareto(run, prefix=args.prefix, force=args.force) if args.pareto
            else [export_trial(run, args.trial, args.name, force=args.force)])
    for e in done:
        print(f"{e.name}: run {e.source['run']} trial {e.source['trial']}, proxy accuracy "
              f"{e.source['proxy_accuracy']:.4f}, {e.source['params'] / 1e6:.3f}M params -> {e.path}")
        if args.format != "yaml":
            _print_deployed(e.name, export_deployed(e.name, args.format))
    return 0


def _given(**values: Any) -> dict[str, Any]:
    """The options that were given (not None), for settings classes to take with their own defaults."""
    return {name: value for name, value in values.items() if value is not None}


def _export_model(args: argparse.Namespace) -> int:
    from fatnas.export import export_deployed

    if args.run or args.trial is not None or args.pareto or args.name or args.prefix:
        raise FatnasError("export --model NAME takes no RUN, --trial, --pareto, --name or --prefix")
    if args.format == "yaml":
        raise FatnasError("export --model NAME needs --format onnx or pt2 (a registered variant is already YAML)")
    check_positive(res=args.res)
    _print_deployed(args.model, export_deployed(args.model, args.format, args.output, args.res))
    return 0


def _print_deployed(name: str, done) -> None:
    from fatnas.export import DEPLOY_SEED

    checker = "ONNX Runtime" if done.format == "onnx" else "the reloaded program"
    print(f"{name}: {done.format} at {done.res}x{done.res} (batch dynamic) -> {done.path}; {checker} matches "
          f"PyTorch within {done.max_abs_diff:.1e} (max abs difference, tolerance 1e-4); untrained weights "
          f"initialised with torch.manual_seed({DEPLOY_SEED})")


def _check_device(device: str) -> None:
    if device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", device):
        raise FatnasError(f"--device {device!r}: accepted forms: cpu, cuda, cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise FatnasError("--device cuda: no CUDA device is available here; use --device cpu")


# ---------------------------------------------------------------- fidelity

@command("fidelity")
def cmd_fidelity(args: argparse.Namespace) -> int:
    from fatnas.data import settings_data
    from fatnas.fidelity import record_study, run_study
    from fatnas.store import new_run, open_run

    if args.resume:
        run = open_run(args.resume)
        settings = _resume_study_settings(run, args)
    else:
        settings = _study_settings(args)
    _check_device(settings.device)
    data = settings_data(settings)  # a missing data set fails before any run folder exists
    if not args.resume:
        run = new_run(args.run_id, "fidelity", lambda r: record_study(r, settings))
    print(f"run {run.id}: {run.path}")
    classes = f" (classes {','.join(map(str, settings.classes))})" if settings.classes else ""
    print(f"{settings.archs} architectures from space {settings.space.name} within {settings.budget.describe()} "
          f"(+ published FATs that fit); low: {', '.join(settings.label(s) for s in settings.lows)}; "
          f"high: {settings.high_label} x {settings.high_seeds} seed(s), reference metric {settings.reference_metric}; "
          f"{settings.dataset}{classes}; {settings.workers} worker(s) on {settings.device}")
    summary = run_study(run, settings, data=data, progress=not args.quiet)
    _print_study(run, summary, settings)
    return 0


def _study_settings(args: argparse.Namespace):
    from fatnas.cost import parse_budget
    from fatnas.data import parse_classes
    from fatnas.fidelity import DEFAULT_HIGH, DEFAULT_LOW, StudySettings, parse_fidelity
    from fatnas.proxy import ProxySettings
    from fatnas.space import load_space
    from fatnas.zero_cost import PROXIES

    space = load_space(args.space)
    budget = parse_budget(args.budget or ["2GFLOPs"], res=space.resolution)
    base = ProxySettings()
    lows = tuple(parse_fidelity(t, base) for t in args.low or [DEFAULT_LOW])
    return StudySettings(space=space, budget=budget, lows=lows,
                         high=parse_fidelity(args.high or DEFAULT_HIGH, base), archs=args.archs,
                         proxies=tuple(args.proxies if args.proxies is not None else PROXIES),
                         spread_seeds=args.spread_seeds, **_given(high_seeds=args.high_seeds, workers=args.workers),
                         reference_metric=args.reference_metric or "auto",
                         classes=parse_classes(args.classes) if args.classes else (),
                         references=not args.no_references, seed=args.seed,
                         dataset=args.dataset, data_dir=args.data_dir, threads=args.threads,
                         top_k=args.top_k, device=args.device or "cpu")


def _resume_study_settings(run, args: argparse.Namespace):
    """The recorded settings; `--low` adds low fidelities; `--high-seeds`, `--reference-metric`, `--workers` change."""
    from fatnas.fidelity import StudySettings, add_lows, parse_fidelity

    meta = run.read_meta()
    if meta.get("kind") != "fidelity":
        raise FatnasError(f"run {run.id!r} is not a fidelity run; --resume takes a fidelity run id")
    if args.device and args.device != meta.get("device", "cpu"):
        raise FatnasError(f"--device {args.device}: study {run.id!r} trains on {meta.get('device', 'cpu')}; "
                          f"a study keeps one device (leave --device out, or start a new study)")
    settings = StudySettings.from_meta(meta, workers=args.workers, high_seeds=args.high_seeds,
                                       reference_metric=args.reference_metric)
    added = [parse_fidelity(text) for text in args.low or []]
    added = [s for s in added if s not in settings.lows]
    if added:  # a finished study takes more low fidelities; its other measurements are kept
        settings = add_lows(run, settings, added)
    recorded = (meta.get("high_seeds", 1), meta.get("reference_metric", "accuracy"))
    if (settings.high_seeds, settings.reference_metric) != recorded:
        run.update_meta(high_seeds=settings.high_seeds, reference_metric=settings.reference_metric)
    return settings


def _print_study(run, summary, settings) -> None:
    from fatnas.fidelity import read_study_table, reference_line

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


# ---------------------------------------------------------------- scale

# options that only a grid run takes (all default to None/False): --to prices analytically only
_GRID_ONLY = ("widths", "depths", "resolutions", "compound", "gamma", "budget", "train", "latency", "run_id",
              "proxy_res", "proxy_images", "proxy_epochs", "batch_size", "val_images", "dataset", "data_dir")


@command("scale")
def cmd_scale(args: argparse.Namespace) -> int:
    from fatnas.scaling import Compound
    from fatnas.variants import resolve_config

    base = resolve_config(args.base)
    coeffs = Compound(**_given(alpha=args.alpha, beta=args.beta, gamma=args.gamma))
    if args.to:
        return _scale_to(args, base, coeffs)
    if args.export or args.force:
        raise FatnasError("scale: --export NAME and --force go with --to BUDGET")
    from fatnas.data import settings_data
    from fatnas.scaling import accuracy_fits, best_direction, cost_fits, explore, record_scaling_run
    from fatnas.store import new_run

    settings = _scale_settings(args, coeffs)
    data = settings_data(settings) if settings.train else None  # a missing data set fails before any run folder
    run = new_run(args.run_id, "scale", lambda r: record_scaling_run(r, args.base, base, settings))
    print(f"run {run.id}: {run.path}")
    print(f"base {args.base}; budget: {settings.budget.describe()}; "
          f"{settings.train} proxy-trained points per direction" +
          (f" on {settings.dataset} at round({settings.proxy.res} * res / 224) px, {settings.proxy.images_per_trial} "
           "images each (proxy accuracy, not ImageNet accuracy)" if settings.train else ""))
    table = explore(run, base, settings, data=data, log=None if args.quiet else print)
    _print_scaling(table, cost_fits(table), accuracy_fits(table))
    print(best_direction(accuracy_fits(table), settings.dataset))
    print(f"files: {run.path / 'scaling.csv'}, {run.path / 'run.yaml'}, report {run.path / 'scaling.html'}")
    return 0


def _scale_settings(args: argparse.Namespace, coeffs):
    from fatnas.cost import parse_budget
    from fatnas.proxy import ProxySettings
    from fatnas.scaling import DEFAULT_TRAIN, ScalingGrid, ScalingSettings

    budget = parse_budget(args.budget or [], res=224)
    _check_device(args.device)
    grid_values = _given(widths=args.widths, depths=args.depths, resolutions=args.resolutions, phis=args.compound)
    grid = ScalingGrid(compound=coeffs, **{k: tuple(v) for k, v in grid_values.items()})
    proxy = ProxySettings(seed=args.seed, device=args.device,
                          **_given(res=args.proxy_res, train_images=args.proxy_images, epochs=args.proxy_epochs,
                                   batch_size=args.batch_size, val_images=args.val_images))
    return ScalingSettings(grid=grid, budget=budget, proxy=proxy,
                           train=DEFAULT_TRAIN if args.train is None else args.train, latency=args.latency,
                           dataset=args.dataset or "fashion-mnist", data_dir=args.data_dir, seed=args.seed,
                           threads=args.threads)


def _print_scaling(table, fits, acc) -> None:
    from fatnas.config import FATConfig, describe
    from fatnas.cost import format_flops

    rows = [dict(direction=r["direction"], multiplier=f"{'phi=' if r['direction'] == 'compound' else 'x'}"
                 f"{r['multiplier']:g}", res=int(r["res"]),
                 arch=describe(FATConfig.from_dict(json.loads(r["config"])), ("widths", "depths")),
                 params_M=round(r["params"] / 1e6, 3), flops=format_flops(r["flops"]),
                 latency_ms="-" if r["latency_ms"] != r["latency_ms"] else round(r["latency_ms"], 2),
                 proxy_accuracy="-" if r["accuracy"] != r["accuracy"] else round(r["accuracy"], 4),
                 over_budget=r["over_budget"] if isinstance(r["over_budget"], str) else "")
            for _, r in table.iterrows()]
    print(_table(rows))
    print("FLOPs: fvcore total at each point's resolution (column res), 1 multiply-add = 1 FLOP.")
    print("\npower-law fits, cost = c * x^exponent (x: the multiplier; resolution / 224; 2^phi for compound):")
    if not fits.empty:
        print(_table([dict(direction=f["direction"], metric=f["metric"], exponent=round(f["exponent"], 3),
                           r2=round(f["r2"], 5), max_rel_error=f"{f['max_rel_error']:.2%}", points=f["points"])
                      for _, f in fits.iterrows()]))
    if not acc.empty:
        print("\nproxy accuracy = intercept + slope * log2(FLOPs), per direction:")
        print(_table([dict(direction=a["direction"], slope_per_doubling=round(a["slope_per_doubling"], 4),
                           intercept=round(a["intercept"], 4), points=a["points"]) for _, a in acc.iterrows()]))


def _scale_to(args: argparse.Namespace, base, coeffs) -> int:
    from fatnas.config import describe
    from fatnas.cost import format_flops, parse_budget
    from fatnas.scaling import export_budget_fit, fit_budget

    extra = [f"--{name.replace('_', '-')}" for name in _GRID_ONLY if getattr(args, name) not in (None, False)]
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


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="fatnas", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fatnas {__version__}")
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
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                   help="with --latency: what runs the network")
    p.add_argument("--latency-model", default=None, metavar="TABLE.json",
                   help="price latency from a table of `fatnas latency-profile` (no network built or timed)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("latency-profile", help="time the parts a space can build on this machine: a latency table "
                                               "for cost/search --latency-model")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of the target runtime (default 1)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--res", type=int, default=None, help="input resolution (default: the space's)")
    p.add_argument("--space", default=None,
                   help="a shipped space (fat, fat_mobile, fat_wide) or a YAML path (default: fat)")
    p.add_argument("--repeats", type=int, default=25,
                   help="rounds of (reference pass, part or carrier pass) per part or carrier (default 25)")
    p.add_argument("-o", "--output", required=True, metavar="TABLE.json")
    p.add_argument("--quiet", action="store_true", help="no progress line")

    p = sub.add_parser("search", help="search the space for accuracy-latency Pareto fronts under a budget")
    p.add_argument("--budget", action="append", metavar="B",
                   help="hard limit, repeatable: 2GFLOPs (fvcore total at the space's resolution), 5Mparams, 20ms")
    p.add_argument("--space", default=None,
                   help="a shipped space (fat, fat_mobile, fat_wide) or a YAML path (default: fat)")
    p.add_argument("--trials", type=int, default=None, help="trained trials to reach (default 20)")
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    p.add_argument("--sampler", default="tpe", help="tpe (default), nsga2, gp or random")
    p.add_argument("--backend", choices=("optuna", "ray"), default="optuna")
    p.add_argument("--device", default=None, help="this worker's device: cpu (default), cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-id", default=None)
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
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default), cifar10 or imagefolder")
    p.add_argument("--data-dir", default=None, help="folder of the data set (CIFAR-10 or ImageFolder)")
    p.add_argument("--proxy-res", type=int, default=None, help="proxy training resolution")
    p.add_argument("--proxy-images", type=int, default=None, help="distinct training images per trial")
    p.add_argument("--proxy-epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--no-references", action="store_true", help="skip evaluating fat_b0..b3")
    p.add_argument("--no-early-stopping", action="store_true")
    p.add_argument("--prescreen", default=None, metavar="PROXY",
                   help="score candidates at initialization and train only the best: synflow, grad_norm, snip, "
                        "naswot, params or flops")
    p.add_argument("--prescreen-keep", type=float, default=None, metavar="FRACTION",
                   help="with --prescreen: fraction of scored candidates that train (default 0.25: best of 4)")
    p.add_argument("--threads", type=int, default=None,
                   help="this worker's torch threads per trial, for timing and training (default 1)")
    p.add_argument("--latency-model", default=None, metavar="TABLE.json",
                   help="price latency from a table of `fatnas latency-profile` (made on the target device) instead of "
                        "measuring it here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--classes", default=None, metavar="C,C,...",
                   help="train the proxy on these classes only, e.g. 0,2,4,6 (Fashion-MNIST's upper-body classes, "
                        "the task of the fidelity study's reference)")
    p.add_argument("--keep-inert", action="store_true",
                   help="draw every value, also those that build the same network at the proxy resolution")
    p.add_argument("--cpus-per-trial", type=float, default=None,
                   help="ray: CPUs (and torch threads) per trial (default: --threads)")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="ray: GPUs per trial, fractions share one (default 0)")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="ray: trials at once (default: cluster CPUs // cpus per trial)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="ray: join a cluster (auto or HOST:PORT); default: start a local Ray runtime")

    p = sub.add_parser("sync", help="rebuild runs/<id>/ (trials, front, configs) from the study in its storage")
    p.add_argument("run", metavar="RUN", help="run id (or folder)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="the study's storage (default: the one run.yaml names; needed where the run folder is missing)")

    sub.add_parser("runs", help="list runs with budget, trial counts and front size")

    p = sub.add_parser("space", help="which choices of a space a proxy can tell apart, and its distinct networks")
    p.add_argument("name", metavar="SPACE", help="a shipped space (fat, fat_mobile, fat_wide) or a YAML path")
    p.add_argument("--res", dest="resolutions", action="extend", nargs="+", metavar="PX",
                   help="proxy resolution(s), repeatable (default: the proxy default)")

    p = sub.add_parser("dashboard", help="one self-contained HTML page of runs' fronts, costs and trials")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run ids (or folders); several are overlaid")
    p.add_argument("-o", "--output", default=None, help="HTML file (default: runs/<first run>/dashboard.html)")

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
    p.add_argument("--force", action="store_true", help="overwrite an existing exported variant")

    p = sub.add_parser("fidelity", help="how well cheap proxies rank architectures against longer training")
    p.add_argument("--space", default=None,
                   help="a shipped space (fat, fat_mobile, fat_wide) or a YAML path (default: fat)")
    p.add_argument("--budget", action="append", metavar="B",
                   help="sample within it, repeatable (default 2GFLOPs: fvcore total at the space's resolution)")
    p.add_argument("--archs", type=int, default=30, help="architectures sampled from the space (default 30)")
    p.add_argument("--low", action="append", metavar="F",
                   help="low fidelity, repeatable: 'default' (the search's proxy) or KEY=VALUE,... over res, "
                        "train_images, epochs, batch_size, lr, weight_decay, label_smoothing, eval_every, val_images, "
                        "augment (0/1), eval_split (val/test); a preset (default, reference) may come first")
    p.add_argument("--high", default=None, metavar="F",
                   help="high fidelity, same form (default: train_images=8192,eval_every=1,val_images=2000); "
                        "'reference': train_images=16384,epochs=2,eval_every=1,val_images=10000,augment=1,"
                        "eval_split=test")
    p.add_argument("--high-seeds", type=int, default=None, metavar="N",
                   help="seeds of the high fidelity per network, each changing init and data order (default 2); "
                        "the reference is their mean")
    p.add_argument("--reference-metric", choices=("auto", "loss", "accuracy", "both"), default=None,
                   help="the high fidelity's ranking metric (default auto: the highest seed-to-seed tau)")
    p.add_argument("--classes", default=None, metavar="C,C,...",
                   help="only these classes, e.g. 0,2,4,6 (Fashion-MNIST's T-shirt, pullover, coat, shirt)")
    p.add_argument("--proxies", nargs="*", default=None, metavar="P",
                   help="zero-cost proxies and baselines (default all: synflow grad_norm snip naswot params flops)")
    p.add_argument("--spread-seeds", type=int, default=3, help="seeds for the seed-noise network (default 3)")
    p.add_argument("--top-k", type=int, default=5, help="k of the top-k overlap (default 5)")
    p.add_argument("--workers", type=int, default=None, help="processes training at once (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where the trainings run (default cpu; a resumed study keeps its own)")
    p.add_argument("--no-references", action="store_true", help="leave out the published FATs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-id", default=None)
    p.add_argument("--resume", default=None, metavar="ID",
                   help="continue an interrupted study; with --low, add low fidelities to it")
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default), cifar10 or imagefolder")
    p.add_argument("--data-dir", default=None, help="folder of the data set (CIFAR-10 or ImageFolder)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("scale", help="scale a model's width, depth, resolution (and compound); fit cost and accuracy")
    p.add_argument("base", metavar="BASE", help="variant name or CONFIG.yaml")
    p.add_argument("--widths", type=float, nargs="*", default=None, metavar="M",
                   help="width multipliers (default 0.5 0.75 1 1.25 1.5; none given: skip)")
    p.add_argument("--depths", type=float, nargs="*", default=None, metavar="M",
                   help="depth multipliers (default 0.5 1 1.5 2; none given: skip)")
    p.add_argument("--resolutions", type=int, nargs="*", default=None, metavar="PX",
                   help="input resolutions (default 160 192 224 256; none given: skip)")
    p.add_argument("--compound", type=float, nargs="*", default=None, metavar="PHI",
                   help="compound phis: depth alpha^phi, width beta^phi, resolution gamma^phi (default -1 0 1 2)")
    p.add_argument("--alpha", type=float, default=None, help="compound depth base (default 1.2)")
    p.add_argument("--beta", type=float, default=None, help="compound width base (default 1.1)")
    p.add_argument("--gamma", type=float, default=None, help="compound resolution base (default 1.15)")
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
    p.add_argument("--run-id", default=None)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", default=None, help="fashion-mnist (default), cifar10 or imagefolder")
    p.add_argument("--data-dir", default=None, help="folder of the data set (CIFAR-10 or ImageFolder)")
    p.add_argument("--proxy-res", type=int, default=None,
                   help="proxy resolution for a 224 px network (default: the search proxy's, 56)")
    p.add_argument("--proxy-images", type=int, default=None, help="distinct training images per trained point")
    p.add_argument("--proxy-epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--val-images", type=int, default=None, help="validation images (default 1000)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for timing and training (default 1)")
    p.add_argument("--quiet", action="store_true", help="no line per timed or trained point")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(_negative_values(sys.argv[1:] if argv is None else argv))
        _check_resolution(args)
        return COMMANDS[args.command](args)
    except FatnasError as exc:
        print(f"error: {redact(' '.join(str(exc).splitlines()))}", file=sys.stderr)
        return 2


def _negative_values(argv: list[str]) -> list[str]:
    """`--budget -5Mparams` as `--budget=-5Mparams`: argparse takes a value that starts with `-` and is not
    a plain number for an option, and would say "expected one argument" instead of what is wrong with it."""
    out: list[str] = []
    for word in argv:
        option = out[-1] if out else ""
        if option.startswith("--") and option != "--" and "=" not in option and re.match(r"^-\.?\d", word) \
                and not re.fullmatch(r"-\d+|-\d*\.\d+", word):
            out[-1] = f"{out[-1]}={word}"
        else:
            out.append(word)
    return out


def _check_resolution(args: argparse.Namespace) -> None:
    res = getattr(args, "res", None)
    if res is not None and res < 1:
        raise FatnasError(f"--res {res}: the resolution must be a positive integer number of pixels")


def run() -> None:
    """Entry point of the `fatnas` console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
