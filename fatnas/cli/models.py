"""Commands on models: `models`, `show`, `cost`, `latency-profile`."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import FatnasError, check_device
from .common import MAX_BATCH, MAX_REPEATS, Flags, device, int_in, table, threads

SPACE_HELP = "a shipped space (fat, fat_mobile, fat_wide) or a YAML path (default: fat)"


def add_models(sub: Any, flags: Flags) -> None:
    p = sub.add_parser("models", help="list registered variants")
    p.add_argument("--res", type=int, default=224, help="resolution of the FLOP figures (default 224)")
    p.set_defaults(handler=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from ..errors import FatnasError
    from ..estimate.cost import analytic_cost, format_flops
    from ..model.variants import get_config, list_models, variant_metadata
    from ..runs.store import warn

    rows = []
    for name in list_models():
        try:  # one damaged variant file is skipped with a warning; every other variant still lists
            cost, origin = analytic_cost(get_config(name), args.res), _origin(variant_metadata(name))
        except FatnasError as exc:
            warn(f"skipped variant {name!r}: {exc}")
            continue
        rows.append(dict(name=name, params_M=round(cost.params / 1e6, 3), flops=format_flops(cost.flops),
                         origin=origin))
    print(table(rows))
    print(f"FLOPs: fvcore total at {args.res}x{args.res} (1 multiply-add = 1 FLOP).")
    return 0


def _origin(source: dict[str, Any]) -> str:
    if not source:
        return "published"
    if source.get("run"):
        return f"run {source['run']} trial {source.get('trial', '-')}"
    return str(source.get("origin", "exported"))


def add_show(sub: Any, flags: Flags) -> None:
    p = sub.add_parser("show", help="stage table, params and FLOPs of one model")
    p.add_argument("model", help="variant name or CONFIG.yaml")
    p.add_argument("--res", type=int, default=224, help="resolution of the FLOP figures (default 224)")
    p.set_defaults(handler=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    from .. import api
    from ..estimate.cost import format_flops, stage_rows
    from ..model.config import describe
    from ..model.variants import resolve_config

    cfg = resolve_config(args.model)
    cost = api.cost(cfg, args.res)
    print(f"{args.model}: {describe(cfg)}")
    print(f"in_chans={cfg.in_chans} num_classes={cfg.num_classes} drop_path_rate={cfg.drop_path_rate:g}")
    print(table(stage_rows(cfg, args.res)))
    print(f"params: {cost.params:,}")
    print(f"FLOPs:  {format_flops(cost.flops)} ({cost.flops:,}), fvcore total at {args.res}x{args.res}, "
          "1 multiply-add = 1 FLOP")
    return 0


def add_cost(sub: Any, flags: Flags) -> None:
    p = sub.add_parser("cost", parents=[flags.device_threads],
                       help="params, FLOPs by operator, latency and memory")
    p.add_argument("model", nargs="?", help="variant name or CONFIG.yaml")
    p.add_argument("--all", action="store_true", help="compare fat_b0..b3 with the paper's figures")
    p.add_argument("--res", type=int, default=224, help="resolution of the FLOP figures (default 224)")
    p.add_argument("--latency", action="store_true", help="also measure latency and peak memory")
    p.add_argument("--batch-size", type=int_in(1, MAX_BATCH), default=1, help="with --latency: images per pass (1)")
    p.add_argument("--warmup", type=int_in(0, MAX_REPEATS), default=10,
                   help="with --latency: untimed passes first (default 10)")
    p.add_argument("--repeats", type=int_in(1, MAX_REPEATS), default=30, help="with --latency: timed passes (30)")
    p.add_argument("--channels-last", action="store_true", help="with --latency: time in channels-last layout")
    p.add_argument("--fvcore", action="store_true", help="cross-check the analytic FLOPs by tracing with fvcore")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                   help="with --latency: what runs the network")
    p.add_argument("--latency-model", default=None, metavar="TABLE.json",
                   help="price latency from a table of `fatnas latency-profile` (no network built or timed)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(handler=cmd_cost)


def cmd_cost(args: argparse.Namespace) -> int:
    if args.all:
        return _cost_all(args)
    if not args.model:
        raise FatnasError("cost: give a model name or CONFIG.yaml, or --all")
    if args.latency_model and args.latency:
        raise FatnasError("cost: --latency measures and --latency-model prices from a table; give one of them")
    from ..model.variants import resolve_config

    cfg = resolve_config(args.model)
    check_device(device(args))
    threads(args)  # --threads is checked whether or not a latency is measured
    from ..estimate.memory import check_memory

    check_memory(cfg, args.res, args.batch_size, device(args), training=False, what="--res")
    result = cost_result(cfg, args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_cost(result, args)
    return 0


def cost_result(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """What `cost` prints: the analytic cost, and as asked a modelled or measured latency and fvcore's figure."""
    from .. import api
    from ..estimate.cost import FLOP_CONVENTION, fvcore_cost
    from ..model.network import FAT

    cost = api.cost(cfg, args.res)
    result: dict[str, Any] = dict(model=args.model, res=args.res, convention=FLOP_CONVENTION,
                                  params=cost.params, flops=cost.flops, flops_by_operator=cost.flops_by_operator)
    if args.latency_model:
        from ..estimate.latency import load_table

        latency_table = load_table(args.latency_model)
        result["modelled_latency"] = dict(latency_ms=latency_table.predict_ms(cfg, res=args.res, batch=args.batch_size),
                                          **latency_table.describe())
    if args.fvcore:
        ref = fvcore_cost(FAT(cfg), cfg.in_chans, args.res)
        result["fvcore_flops"], result["fvcore_matches"] = ref.flops, ref.flops == cost.flops
    if args.latency:
        result.update(api.measure(cfg, res=args.res, batch_size=args.batch_size, device=device(args),
                                  threads=threads(args), warmup=args.warmup, repeats=args.repeats,
                                  channels_last=args.channels_last, runtime=args.runtime))
    return result


def _print_cost(result: dict[str, Any], args: argparse.Namespace) -> None:
    from ..estimate.cost import FLOP_CONVENTION, format_flops

    print(f"{args.model} at {args.res}x{args.res}, batch 1")
    print(f"params: {result['params']:,}")
    print(table([dict(operator=op, flops=n) for op, n in result["flops_by_operator"].items()]
                + [dict(operator="total", flops=result["flops"])]))
    print(f"FLOPs total: {format_flops(result['flops'])} ({FLOP_CONVENTION})")
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


def _cost_all(args: argparse.Namespace) -> int:
    from ..estimate.cost import paper_comparison

    rows = paper_comparison(args.res)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(table(rows))
    print(f"GFLOPs_total is fatnas's one FLOP figure: fvcore's total at {args.res}x{args.res} "
          "(1 multiply-add = 1 FLOP;\n"
          "convolutions, attention matmuls, norms and head). The paper's FLOPs column counts convolutions only\n"
          "(compare GFLOPs_conv_only at 224), so fat_b2 is 2.15 GFLOPs here and `--budget 2GFLOPs` excludes it.\n"
          "paper_top1_imagenet is the paper's ImageNet-1K accuracy; fatnas never measures ImageNet accuracy.")
    return 0


def add_latency_profile(sub: Any, flags: Flags) -> None:
    p = sub.add_parser("latency-profile", parents=[flags.device_threads, flags.quiet],
                       help="time the parts a space can build on this machine: a latency table for "
                            "cost/search --latency-model")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                   help="what runs the parts: torch (default) or onnxruntime (needs fatnas[onnx])")
    p.add_argument("--batch", type=int_in(1, MAX_BATCH), default=1, help="images per timed pass (default 1)")
    p.add_argument("--res", type=int, default=None, help="input resolution (default: the space's)")
    p.add_argument("--space", default=None, help=SPACE_HELP)
    p.add_argument("--repeats", type=int_in(1, MAX_REPEATS), default=25,
                   help="rounds of (reference pass, part or carrier pass) per part or carrier (default 25)")
    p.add_argument("-o", "--output", required=True, metavar="TABLE.json",
                   help="the latency table to write (for cost/search --latency-model)")
    p.set_defaults(handler=cmd_latency_profile)


def cmd_latency_profile(args: argparse.Namespace) -> int:
    from ..estimate.latency import ProfileSettings, profile_space
    from ..model.space import load_space

    space = load_space(args.space)
    settings = ProfileSettings(device=device(args), runtime=args.runtime, threads=threads(args), batch=args.batch,
                               res=args.res, repeats=args.repeats)
    settings.check()
    _check_profile_target(space, args, settings.device)
    if args.runtime == "onnxruntime":
        from ..model.deploy import require_onnx

        require_onnx()
    print(f"profiling space {space.name} at {args.res or space.resolution} px, batch {args.batch}: {args.runtime} on "
          f"{settings.device}, {settings.threads} threads")
    report = None if args.quiet else _progress_line
    profiled = profile_space(space, settings, progress=report)
    path = profiled.save(args.output)
    if report:
        print()
    info = profiled.describe()
    print(f"{len(profiled.parts)} parts in {profiled.meta['profile_seconds']:.0f} s; "
          f"reference fat_b0 {profiled.reference_ms:.2f} ms; "
          f"calibration factor {profiled.factor:.3f} ({len(profiled.meta['calibration']['networks'])} whole networks)")
    print(f"wrote {path} [{info['table_fingerprint']}]")
    return 0


def _check_profile_target(space: Any, args: argparse.Namespace, on: str) -> None:
    """Before minutes of profiling: the output can be written, and the space's largest network fits in memory."""
    from ..estimate.memory import check_memory
    from ..paths import check_writable

    check_writable(args.output, "-o")
    check_memory(space, args.res or space.resolution, args.batch, on, training=False, what="--res")


def _progress_line(done: int, total: int) -> None:
    if done == total or done % 25 == 0:
        print(f"\r{done}/{total} parts", end="", flush=True)


COMMANDS = (add_models, add_show, add_cost, add_latency_profile)
