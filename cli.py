"""fatnas command line: parses arguments and wires the package's pieces together.

Every FLOP figure printed here is fvcore's total (one multiply-add = one FLOP) at the stated
resolution. Bad input prints one line to stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from fatnas.errors import FatnasError

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
