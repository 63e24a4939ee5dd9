"""The `supernet` command: train a weight-sharing supernet of a space once (or resume it), to score its
configs in seconds with `search --supernet ID` and `fidelity --low supernet:ID`."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import check_positive, check_threads
from .common import DEFAULT_DATASET, Flags, dataset, device, finite_float, given, task_classes


def add_supernet(sub: Any, flags: Flags) -> None:
    p = sub.add_parser("supernet", parents=[flags.resumable_device_threads, flags.data, flags.seed, flags.quiet,
                                            flags.classes],
                       help="train a weight-sharing supernet of a space once, to score its configs in seconds "
                            "(search --supernet ID)")
    p.add_argument("action", choices=("train",), help="train a new supernet, or go on with one (--resume ID)")
    p.add_argument("--space", default=None, help="a shipped space (fat, fat_mobile, fat_wide) or a YAML path")
    p.add_argument("--budget", action="append", metavar="B",
                   help="with --budget-only: draw random sub-networks inside B (2GFLOPs: fvcore total at the space's "
                        "resolution, 5Mparams)")
    p.add_argument("--budget-only", action="store_true", help="random sub-networks only inside --budget")
    p.add_argument("--res", type=int, default=None, help="training resolution (default 56, the proxy's)")
    p.add_argument("--epochs", type=finite_float, default=None, help="passes over the training images (default 1)")
    p.add_argument("--train-images", type=int, default=None, help="train on this many of the images (default all)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default 64)")
    p.add_argument("--sampling", default=None, help="sandwich (default: largest, smallest, 2 random) or uniform")
    p.add_argument("--random-subnets", type=int, default=None,
                   help="random sub-networks per step (default 2; with uniform sampling, all of them)")
    p.add_argument("--distill", action="store_true",
                   help="sandwich only: the others learn from the largest's predictions (default: all from the labels)")
    p.add_argument("--kernel-transform", action="store_true",
                   help="OFA's kernel transformation: a smaller kernel is the larger one's centre times a learned "
                        "matrix (default: the plain centre crop)")
    p.add_argument("--init-from", default=None, metavar="ID",
                   help="start from the inherited weights of trained supernet ID (few-shot: a sub-space's supernet "
                        "split from a whole space's)")
    p.add_argument("--recal-images", type=int, default=None,
                   help="BatchNorm recalibration images per scored sub-network (default 512)")
    p.add_argument("--checkpoint-minutes", type=finite_float, default=None,
                   help="minutes between checkpoints (default 3)")
    p.add_argument("--run-id", default=None, help="the run's folder name under runs/ (default supernet-DATE-TIME)")
    p.add_argument("--resume", default=None, metavar="ID", help="go on with an interrupted training")
    p.set_defaults(handler=cmd_supernet)


def cmd_supernet(args: argparse.Namespace) -> int:
    from ..supernet import TrainSettings, resume_supernet, train_supernet

    check_positive(epochs=args.epochs)
    check_threads(args.threads)
    if args.resume:
        run = resume_supernet(args.resume, threads=args.threads, progress=not args.quiet)
    else:
        task = _task(args)
        settings = TrainSettings(**_recipe(args))
        task.data()  # a missing data set fails before any run folder exists
        run = train_supernet(task, settings, run_id=args.run_id, threads=args.threads, progress=not args.quiet)
    meta = run.read_meta()
    print(f"supernet {run.id}: {run.path} ({meta.get('state')}, weights sha256 {meta.get('weights_sha256', '')[:12]})")
    return 0


def _task(args: argparse.Namespace) -> Any:
    from ..estimate.cost import parse_budget
    from ..model.space import load_space
    from ..supernet import SupernetTask

    space = load_space(args.space)
    budget = parse_budget(args.budget, space.resolution) if args.budget else None
    return SupernetTask(space=space, dataset=dataset(args) or DEFAULT_DATASET, data_dir=args.data_dir,
                        classes=task_classes(args), budget=budget,
                        data_seed=args.seed)


def _recipe(args: argparse.Namespace) -> dict[str, Any]:
    return given(res=args.res, epochs=args.epochs, train_images=args.train_images, batch_size=args.batch_size,
                 sampling=args.sampling, random_subnets=args.random_subnets, distill=True if args.distill else None,
                 budget_only=True if args.budget_only else None,
                 kernel_transform=True if args.kernel_transform else None, init_from=args.init_from,
                 recal_images=args.recal_images, seed=args.seed, device=device(args),
                 checkpoint_minutes=args.checkpoint_minutes)


COMMANDS = (add_supernet,)
