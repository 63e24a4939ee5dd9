"""CLI layer: the `fatnas` command line (`python cli.py ...` in a checkout), one module per command group, each
command's arguments beside its handler; shared flags from `common`'s parent parsers; may import every layer.

Every FLOP figure printed here is fvcore's total (one multiply-add = one FLOP) at the stated
resolution. Bad input prints one line to stderr and exits with status 2. A new command: a module
(or a group's module) with `add_NAME(sub, flags)` that declares its arguments and sets
`handler=cmd_NAME`, listed in `GROUPS`.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

# OpenMP threads that spin while waiting stall badly when other processes share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .._version import __version__  # noqa: E402
from ..errors import FatnasError, redact  # noqa: E402
from . import confirm, export, fidelity, models, scale, search, supernet  # noqa: E402
from .common import ArgumentParser, Flags  # noqa: E402

# in the order `fatnas --help` lists their commands
GROUPS = (models, search, confirm, supernet, export, fidelity, scale)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="fatnas", description="neural architecture search and scaling explorer for FAT")
    parser.add_argument("--version", action="version", version=f"fatnas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    flags = Flags.make()
    for group in GROUPS:
        for add in group.COMMANDS:
            add(sub, flags)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..estimate.proxy import retain_freed_memory

    retain_freed_memory()
    try:
        args = build_parser().parse_args(_negative_values(sys.argv[1:] if argv is None else argv))
        _check_resolution(args)
        return args.handler(args)
    except FatnasError as exc:
        print(f"error: {redact(' '.join(str(exc).splitlines()))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: what had finished is kept (a stopped search continues with search --resume ID)",
              file=sys.stderr)
        return 130


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


__all__ = ["GROUPS", "build_parser", "main", "run"]
