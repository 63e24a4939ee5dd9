"""A latency model of a target device: a table of part latencies, profiled once there, that prices any config.

`profile_space` (run on the target: `fatnas latency-profile`) times every part the space can
build: the stem, the first half of a block (positional DW, norm and FASA, by width, kernel,
heads and window), the second half (norm and ConvFFN, plus the downsampling shortcut in a
stage's last block, by width, FFN width and kernel, stride and next width) and the head, at the
map size the part sees at the table's resolution. With torch the parts are timed in context,
inside carrier networks that together hold them all; with ONNX Runtime each part is its own
graph. Every pass follows a pass of a fixed reference network (fat_b0) and parts are stored in
units of it, so host drift during profiling cancels out. A few whole networks calibrate one
factor for what the parts miss. A config's latency is then

    factor x (sum of its parts) x the reference's median in milliseconds

with no network built or timed. The table records device, runtime, threads, batch, resolution,
library versions and the space, and refuses configs it does not fit.

Importing this module needs only torch, numpy and pyyaml (no optuna, ray, plotly or fvcore).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import random
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import __version__
from .config import NUM_STAGES, BlockPlan, FATConfig, plan, stage_output_sizes
from .cost import RUNTIMES, ReferenceClock, torch_threads
from .errors import FatnasError
from .model import FAT, FATBlock, Head, Stem
from .paths import atomic_write_text, check_writable, portable_path
from .space import SearchSpace, snap_heads, stage_value

TABLE_FORMAT = "fatnas-latency-table/1"
REFERENCE_CONFIG = dict(widths=[32, 80, 160, 256], depths=[2, 2, 6, 2], heads=[2, 5, 10, 16],
                        kernels=[3, 5, 7, 9], windows=[8, 4, 2, 1], ffn_ratios=4.0, ffn_kernels=5)  # fat_b0
CALIBRATION_SEED = 90_001  # calibration networks; benchmarks draw theirs from other seeds
CALIBRATION_NETWORKS = 10
REQUIRED_KEYS = ("format", "device", "runtime", "threads", "batch", "res", "in_chans", "num_classes", "space",
                 "reference_ms", "factor", "parts")


class LatencyModelError(FatnasError):
    """A latency table that is missing, malformed, or does not fit the config, space, resolution or batch."""


# ---------------------------------------------------------------- parts of a config

@dataclass(frozen=True)
class Part:
    """One separately timed piece of a network: its key in the table, its module and its input shape."""

    key: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # without the batch dimension
    stage: int  # -1 for the stem, NUM_STAGES for the head


class _BlockHalf(nn.Module):
    """The first (mixer) or second (FFN) half of a FAT block, alone."""

    def __init__(self, p: BlockPlan, half: str) -> None:
        super().__init__()
        self.block, self.half = FATBlock(p), half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block.forward_mixer(x) if self.half == "mixer" else self.block.forward_ffn(x)


def mixer_key(p: BlockPlan, side: int) -> str:
    return f"mixer c={p.c_in} k={p.kernel} h={p.heads} w={p.window} side={side}"


def ffn_key(p: BlockPlan, side: int) -> str:
    return f"ffn c={p.c_in} out={p.c_out} s={p.stride} hid={p.ffn_hidden} m={p.ffn_kernel} side={side}"


def config_parts(cfg: FATConfig, res: int) -> list[Part]:
    """Every part of `cfg` at a res x res input, in order (stem, two per block, head)."""
    sizes = stage_output_sizes(res, res)
    c0, c_last = cfg.widths[0], cfg.widths[-1]
    parts = [Part(f"stem in={cfg.in_chans} c={c0} res={res}", lambda: Stem(cfg.in_chans, c0),
                  (cfg.in_chans, res, res), -1)]
    for p in plan(cfg):
        side = sizes[p.stage][0]
        shape = (p.c_in, side, side)
        parts.append(Part(mixer_key(p, side), lambda p=p: _BlockHalf(p, "mixer"), shape, p.stage))
        parts.append(Part(ffn_key(p, side), lambda p=p: _BlockHalf(p, "ffn"), shape, p.stage))
    side = sizes[-1][0]
    parts.append(Part(f"head c={c_last} n={cfg.num_classes} side={side}", lambda: Head(c_last, cfg.num_classes),
                      (c_last, side, side), NUM_STAGES))
    return parts


def _stage_options(space: SearchSpace, key: str, stage: int) -> tuple[Any, ...]:
    if key in space.choices:
        return space.choices[key][stage]
    return (stage_value({}, key, stage),)


def space_parts(space: SearchSpace, res: int | None = None, in_chans: int = 3, num_classes: int = 1000) -> list[Part]:
    """Every distinct part any config of `space` can contain, at `res` (default: the space's resolution)."""
    res = res or space.resolution
    head_key = "head_dims" if "head_dims" in space.choices else "heads"
    parts: dict[str, Part] = {}

    def add(cfg: FATConfig) -> None:
        for part in config_parts(cfg.replace(in_chans=in_chans, num_classes=num_classes), res):
            if part.stage == s or (s == 0 and part.stage == -1) or (s == NUM_STAGES - 1 and part.stage == NUM_STAGES):
                parts.setdefault(part.key, part)

    for s in range(NUM_STAGES):
        nexts = _stage_options(space, "widths", s + 1) if s < NUM_STAGES - 1 else (None,)
        for c in _stage_options(space, "widths", s):
            heads = sorted({snap_heads(head_key, c, v) for v in _stage_options(space, head_key, s)})
            for h in heads:
                for k in _stage_options(space, "kernels", s):
                    for w in _stage_options(space, "windows", s):
                        for r in _stage_options(space, "ffn_ratios", s):
                            for m in _stage_options(space, "ffn_kernels", s):
                                for c_next in nexts:
                                    add(_probe_config(s, c, c_next, h, k, w, r, m))
    return list(parts.values())


def _probe_config(stage: int, c: int, c_next: int | None, heads: int, kernel: int, window: int, ratio: float,
                  ffn_kernel: int) -> FATConfig:
    """A config whose stage `stage` has the given values (others at fat_b0's): a carrier of that stage's parts."""
    fields = {k: list(v) if isinstance(v, list) else [v] * NUM_STAGES for k, v in REFERENCE_CONFIG.items()}
    # a stage of depth 2 holds both a stride-1 and (before the last) a stride-2 block
    fields["depths"] = [2] * NUM_STAGES
    for name, value in (("widths", c), ("heads", heads), ("kernels", kernel), ("windows", window),
                        ("ffn_ratios", ratio), ("ffn_kernels", ffn_kernel)):
        fields[name][stage] = value
    if c_next is not None:
        fields["widths"][stage + 1] = c_next
        fields["heads"][stage + 1] = 1
    if stage > 0:  # the previous stage must be valid with this width: one head always divides
        fields["heads"][stage - 1] = 1
    fields["heads"] = [h if w % h == 0 else 1 for w, h in zip(fields["widths"], fields["heads"])]
    return FATConfig.from_dict(fields)


def space_fingerprint(space: SearchSpace) -> str:
    """A short hash of the space's choices and resolution (its name aside)."""
    data = {k: v for k, v in space.to_dict().items() if k != "name"}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def file_fingerprint(path: str | Path) -> str:
    """The first 16 hex digits of the file's SHA-256: names the exact table a run priced with."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


# ---------------------------------------------------------------- the table

@dataclass
class LatencyTable:
    """Part latencies of one device, runtime, thread count, batch and resolution, in reference units."""

    device: str
    runtime: str
    threads: int
    batch: int
    res: int
    in_chans: int
    num_classes: int
    space: dict[str, Any]  # name, fingerprint
    reference_ms: float  # the reference network's median while profiling
    factor: float  # calibration: whole network / sum of its parts
    parts: dict[str, float]  # part key -> latency / reference latency
    meta: dict[str, Any] = field(default_factory=dict)  # versions, device name, timings, calibration
    path: Path | None = None

    def predict_ms(self, cfg: FATConfig, res: int | None = None, batch: int | None = None) -> float:
        """The modelled latency of `cfg`; a config, resolution or batch the table does not fit is an error."""
        self.check_fits(res=res, batch=batch)
        missing, total = [], 0.0
        for part in config_parts(cfg, self.res):
            if part.key in self.parts:
                total += self.parts[part.key]
            else:
                missing.append(part.key)
        if missing:
            raise LatencyModelError(
                f"latency table {self.where}: no entry for {missing[0]!r}"
                f"{f' (and {len(missing) - 1} more parts)' if len(missing) > 1 else ''}; it was profiled for "
                f"space {self.space.get('name')!r} with in_chans {self.in_chans} and {self.num_classes} classes: "
                f"profile the network's space with `fatnas latency-profile --space ...`")
        return self.factor * total * self.reference_ms

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "<in memory>"

    def check_fits(self, *, res: int | None = None, batch: int | None = None, space: SearchSpace | None = None,
                   device: str | None = None) -> None:
        """One clear error when the table was profiled for another resolution, batch, space or device."""
        if res is not None and res != self.res:
            raise LatencyModelError(f"latency table {self.where} was profiled at {self.res} px, not {res} px; "
                                    f"profile again with --res {res}")
        if batch is not None and batch != self.batch:
            raise LatencyModelError(f"latency table {self.where} was profiled at batch {self.batch}, not {batch}; "
                                    f"profile again with --batch {batch}")
        if space is not None and space_fingerprint(space) != self.space.get("fingerprint"):
            raise LatencyModelError(f"latency table {self.where} was profiled for space {self.space.get('name')!r}, "
                                    f"not for space {space.name!r} (its choices differ); profile it with "
                                    f"--space {space.name}")

    def to_dict(self) -> dict[str, Any]:
        return dict(format=TABLE_FORMAT, device=self.device, runtime=self.runtime, threads=self.threads,
                    batch=self.batch, res=self.res, in_chans=self.in_chans, num_classes=self.num_classes,
                    space=self.space, reference_ms=self.reference_ms, factor=self.factor, meta=self.meta,
                    parts=self.parts)

    def save(self, path: str | Path) -> Path:
        path = check_writable(path, "-o")
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))  # a unique temporary file, then rename
        self.path = path
        return path

    def describe(self) -> dict[str, Any]:
        """Where modelled latency comes from, as run.yaml records it."""
        return dict(source="modelled", device=self.device, device_name=self.meta.get("device_name"),
                    runtime=self.runtime, threads=self.threads, batch_size=self.batch, resolution=self.res,
                    table=portable_path(self.path) if self.path else None,
                    table_fingerprint=file_fingerprint(self.path) if self.path else None)


def load_table(path: str | Path) -> LatencyTable:
    """Read a table written by `LatencyTable.save`; a missing or malformed file is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise LatencyModelError(f"latency table {path} not found; write one with `fatnas latency-profile -o {path}`")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LatencyModelError(f"latency table {path} is not valid JSON ({exc.__class__.__name__}); "
                                "write it again with `fatnas latency-profile`") from None
    if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
        raise LatencyModelError(f"{path} is not a fatnas latency table (expected format {TABLE_FORMAT!r})")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise LatencyModelError(f"latency table {path} is missing {missing}; "
                                f"write it again with `fatnas latency-profile`")
    parts = data["parts"]
    if not isinstance(parts, dict) or not parts or not all(
            isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in parts.values()):
        raise LatencyModelError(f"latency table {path}: 'parts' must map part names to positive numbers")
    numbers = {k: data[k] for k in ("reference_ms", "factor")}
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in numbers.values()):
        raise LatencyModelError(f"latency table {path}: reference_ms and factor must be positive numbers, "
                                f"got {numbers}")
    if data["runtime"] not in RUNTIMES or data["device"] not in ("cpu", "cuda"):
        raise LatencyModelError(f"latency table {path}: runtime {data['runtime']!r} / device {data['device']!r} "
                                f"unknown (runtimes: {', '.join(RUNTIMES)}; devices: cpu, cuda)")
    return LatencyTable(device=data["device"], runtime=data["runtime"], threads=int(data["threads"]),
                        batch=int(data["batch"]), res=int(data["res"]), in_chans=int(data["in_chans"]),
                        num_classes=int(data["num_classes"]), space=dict(data["space"]),
                        reference_ms=float(data["reference_ms"]), factor=float(data["factor"]),
                        parts={str(k): float(v) for k, v in parts.items()}, meta=dict(data.get("meta") or {}),
                        path=path)


# ---------------------------------------------------------------- profiling on the target

@dataclass(frozen=True)
class ProfileSettings:
    """Where and how a table is measured."""

    device: str = "cpu"
    runtime: str = "torch"
    threads: int = 1
    batch: int = 1
    res: int | None = None  # default: the space's resolution
    warmup: int = 2  # untimed passes of each part
    repeats: int = 25  # rounds of (reference pass, part or carrier pass)
    calibration_repeats: int = 15  # rounds per whole calibration network

    def check(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise LatencyModelError(f"--device {self.device!r}: accepted cpu or cuda")
        if self.runtime not in RUNTIMES:
            raise LatencyModelError(f"--runtime {self.runtime!r}: accepted {', '.join(RUNTIMES)}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise LatencyModelError("--device cuda: no CUDA device is visible to torch here; "
                                    "profile on the target machine")
        for name in ("threads", "batch", "repeats"):
            if getattr(self, name) < 1:
                raise LatencyModelError(f"--{name} {getattr(self, name)}: must be an integer >= 1")


def reference_network(in_chans: int = 3) -> FAT:
    """The network every latency here is timed against: fat_b0 with seed-0 weights (the global RNG untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return FAT(FATConfig.from_dict(dict(REFERENCE_CONFIG, in_chans=in_chans)))


class RelativeTimer:
    """Times pieces in rounds alternating with the reference network (fat_b0), in units of it.

    The reference pass between two passes of a part stands in for the rest of a network: it
    evicts the part's weights from the caches as a whole network would, and host drift hits
    both alike. The reference and its passes are a `ReferenceClock`'s: `samples` keeps every one,
    `reference_ms` is their median. torch passes run on the settings' threads, whatever torch's are outside.
    """

    def __init__(self, settings: ProfileSettings, res: int, in_chans: int) -> None:
        self.settings = settings
        self.clock = ReferenceClock(reference_network(in_chans), res=res, in_chans=in_chans,
                                    batch_size=settings.batch, device=settings.device, threads=settings.threads,
                                    warmup=settings.warmup, repeats=settings.repeats, runtime=settings.runtime)
        self.reference = self.clock.reference
        with torch_threads(settings.threads), torch.inference_mode():
            for _ in range(settings.warmup):
                self.reference()

    @property
    def samples(self) -> list[float]:
        """Every reference pass so far, in ms."""
        return self.clock.reference_samples

    @property
    def reference_ms(self) -> float:
        return self.clock.reference_ms

    def ratio(self, module: nn.Module, shape: tuple[int, ...], repeats: int | None = None,
              typical: Callable[[list[float]], float] = statistics.median) -> float:
        """`typical` (the median) over rounds of (module's pass / the reference's pass just before it)."""
        one_pass = self.clock.timer(module, torch.randn(self.settings.batch, *shape))
        ratios = []
        with torch_threads(self.settings.threads), torch.inference_mode():
            for _ in range(self.settings.warmup):
                one_pass()
            for _ in range(repeats or self.settings.repeats):
                ref = self.reference()
                ratios.append(one_pass() / ref)
                self.samples.append(ref)
        return typical(ratios)


def sample_configs(space: SearchSpace, n: int, seed: int) -> list[FATConfig]:
    """`n` configs of the space drawn uniformly with a seeded generator."""
    rng = random.Random(seed)
    return [space.sample(lambda name, options: rng.choice(list(options))) for _ in range(n)]


def profile_space(space: SearchSpace, settings: ProfileSettings, *, in_chans: int = 3, num_classes: int = 1000,
                  progress: Callable[[int, int], None] | None = None) -> LatencyTable:
    """Time every part of `space` on this machine, then calibrate on a few whole networks.

    torch: parts are timed in context, inside carrier networks that together hold every part
    (`carrier_configs`), one pass of a carrier after each reference pass. onnxruntime: each part
    is its own small graph and session, timed alone in rounds with the reference.
    """
    settings.check()
    res = settings.res or space.resolution
    start = time.perf_counter()
    with torch_threads(settings.threads):
        timer = RelativeTimer(settings, res, in_chans)
        if settings.runtime == "torch":
            table = _profile_in_context(space, timer, res, in_chans, num_classes, progress)
        else:
            table = _profile_alone(space, timer, res, in_chans, num_classes, progress)
        calibration = _calibrate(space, timer, table, res, in_chans, num_classes)
    factor = statistics.median(c["measured"] / c["summed"] for c in calibration)
    meta = dict(versions=library_versions(settings.runtime), device_name=device_name(settings.device),
                created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                profile_seconds=round(time.perf_counter() - start, 1), warmup=settings.warmup,
                repeats=settings.repeats, reference="fat_b0 (seed 0 weights)",
                method="in context, in carrier networks" if settings.runtime == "torch" else "each part alone",
                calibration=dict(seed=CALIBRATION_SEED, networks=calibration),
                units="parts: a part's pass over the reference's (mean less the top quarter); "
                      "ms = factor x sum x reference_ms")
    return LatencyTable(device=settings.device, runtime=settings.runtime, threads=settings.threads,
                        batch=settings.batch, res=res, in_chans=in_chans, num_classes=num_classes,
                        space=dict(name=space.name, fingerprint=space_fingerprint(space)),
                        reference_ms=timer.reference_ms, factor=factor, parts=table, meta=meta)


def _profile_alone(space: SearchSpace, timer: RelativeTimer, res: int, in_chans: int, num_classes: int,
                   progress: Callable[[int, int], None] | None) -> dict[str, float]:
    parts = space_parts(space, res, in_chans, num_classes)
    table: dict[str, float] = {}
    for i, part in enumerate(parts):
        torch.manual_seed(0)
        table[part.key] = timer.ratio(part.build(), part.input_shape, typical=typical_share)
        if progress:
            progress(i + 1, len(parts))
    return table


def _profile_in_context(space: SearchSpace, timer: RelativeTimer, res: int, in_chans: int, num_classes: int,
                        progress: Callable[[int, int], None] | None) -> dict[str, float]:
    """Each part's median, over every pass of every carrier holding it, of its time over the reference pass before."""
    s = timer.settings
    dev = torch.device(s.device)
    carriers = carrier_configs(space, res, in_chans, num_classes)
    seen: dict[str, list[float]] = {}
    for i, cfg in enumerate(carriers):
        torch.manual_seed(0)
        model = FAT(cfg).eval().to(dev)
        keys = [p.key for p in config_parts(cfg, res)]
        x = torch.randn(s.batch, in_chans, res, res, device=dev)
        with torch.inference_mode():
            for _ in range(s.warmup):
                timed_parts(model, x)
            for _ in range(s.repeats):
                ref = timer.reference()
                timer.samples.append(ref)
                for key, ms in zip(keys, timed_parts(model, x)):
                    seen.setdefault(key, []).append(ms / ref)
        if progress:
            progress(i + 1, len(carriers))
    return {key: typical_share(values) for key, values in seen.items()}


def typical_share(ratios: list[float], trim: float = 0.25) -> float:
    """The mean of a part's ratios less the highest `trim` of them.

    Means add up where medians do not: on a shared host a pass is now and then preempted, and a
    whole network's pass collects those stalls over all its parts, which per-part medians drop.
    The longest stalls (the top quarter) are left out, as the whole network's median leaves them out.
    """
    kept = sorted(ratios)[:max(1, math.ceil(len(ratios) * (1 - trim)))]
    return statistics.fmean(kept)


def timed_parts(model: FAT, x: torch.Tensor) -> list[float]:
    """One forward pass, part by part (as `config_parts` lists them), with each part's milliseconds.

    CUDA: an event between parts, one synchronisation at the end; CPU: perf_counter.
    """
    calls: list[Callable[[torch.Tensor], torch.Tensor]] = [model.stem]
    for stage in model.stages:
        for block in stage:
            calls += [block.forward_mixer, block.forward_ffn]
    calls.append(model.head)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(len(calls) + 1)]
        events[0].record()
        for call, event in zip(calls, events[1:]):
            x = call(x)
            event.record()
        events[-1].synchronize()
        return [a.elapsed_time(b) for a, b in zip(events, events[1:])]
    times = []
    for call in calls:
        t0 = time.perf_counter()
        x = call(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _stage_combos(space: SearchSpace, s: int) -> list[dict[str, Any]]:
    """Every choice of one stage's values (with the next stage's width, which its last block projects to)."""
    head_key = "head_dims" if "head_dims" in space.choices else "heads"
    nexts = _stage_options(space, "widths", s + 1) if s < NUM_STAGES - 1 else (None,)
    return [dict(c=c, heads=h, kernel=k, window=w, ratio=r, ffn_kernel=m, c_next=n)
            for c in _stage_options(space, "widths", s)
            for h in sorted({snap_heads(head_key, c, v) for v in _stage_options(space, head_key, s)})
            for k in _stage_options(space, "kernels", s) for w in _stage_options(space, "windows", s)
            for r in _stage_options(space, "ffn_ratios", s) for m in _stage_options(space, "ffn_kernels", s)
            for n in nexts]


def _combo_keys(s: int, combo: dict[str, Any], side: int) -> set[str]:
    c, hidden = combo["c"], int(combo["c"] * combo["ratio"])
    block = BlockPlan(s, 0, c, c, 1, combo["kernel"], combo["heads"], combo["window"], hidden, combo["ffn_kernel"], 0.0)
    keys = {mixer_key(block, side), ffn_key(block, side)}
    if combo["c_next"] is not None:
        keys.add(ffn_key(block._replace(c_out=combo["c_next"], stride=2), side))
    return keys


def carrier_configs(space: SearchSpace, res: int | None = None, in_chans: int = 3,
                    num_classes: int = 1000) -> list[FATConfig]:
    """Networks of depth 2 per stage that together hold every part of the space, picked greedily (few of them)."""
    res = res or space.resolution
    sizes = stage_output_sizes(res, res)
    needed = {p.key for p in space_parts(space, res, in_chans, num_classes)}
    combos = [[(cb, _combo_keys(s, cb, sizes[s][0])) for cb in _stage_combos(space, s)] for s in range(NUM_STAGES)]
    io_keys = {p.key: p.stage for p in space_parts(space, res, in_chans, num_classes) if p.stage in (-1, NUM_STAGES)}
    carriers = []
    while needed:
        # backwards: the most new parts stages s.. can add when stage s has width c; then pick forwards
        best: list[dict[Any, tuple[int, dict[str, Any] | None]]] = [{} for _ in range(NUM_STAGES + 1)]
        best[NUM_STAGES] = {None: (0, None)}
        for s in reversed(range(NUM_STAGES)):
            for cb, keys in combos[s]:
                gain = len(keys & needed) + best[s + 1].get(cb["c_next"], (0, None))[0]
                gain += sum(1 for k, st in io_keys.items() if k in needed and (
                    (st == -1 and s == 0 and f" c={cb['c']} " in k) or
                    (st == NUM_STAGES and s == NUM_STAGES - 1 and k.startswith(f"head c={cb['c']} "))))
                if gain > best[s].get(cb["c"], (-1, None))[0]:
                    best[s][cb["c"]] = (gain, cb)
        picked = [max(best[0].values(), key=lambda g: g[0])[1]]
        for s in range(1, NUM_STAGES):
            picked.append(best[s][picked[-1]["c_next"]][1])
        cfg = FATConfig(widths=[cb["c"] for cb in picked], depths=[2] * NUM_STAGES,
                        heads=[cb["heads"] for cb in picked], kernels=[cb["kernel"] for cb in picked],
                        windows=[cb["window"] for cb in picked], ffn_ratios=[cb["ratio"] for cb in picked],
                        ffn_kernels=[cb["ffn_kernel"] for cb in picked], in_chans=in_chans, num_classes=num_classes)
        keys = {p.key for p in config_parts(cfg, res)}
        if not keys & needed:
            raise RuntimeError(f"carrier_configs: parts no carrier holds: {sorted(needed)[:3]}")
        needed -= keys
        carriers.append(cfg)
    return carriers


def _calibrate(space: SearchSpace, timer: RelativeTimer, table: dict[str, float], res: int, in_chans: int,
               num_classes: int) -> list[dict[str, Any]]:
    """Whole networks (seeded draws from the space) measured against the sum of their parts."""
    rows = []
    for cfg in sample_configs(space, CALIBRATION_NETWORKS, CALIBRATION_SEED):
        cfg = cfg.replace(in_chans=in_chans, num_classes=num_classes)
        summed = sum(table[p.key] for p in config_parts(cfg, res))
        torch.manual_seed(0)
        measured = timer.ratio(FAT(cfg), (in_chans, res, res), timer.settings.calibration_repeats)
        rows.append(dict(config=cfg.to_dict(), summed=summed, measured=measured))
    return rows


def library_versions(runtime: str) -> dict[str, str]:
    versions = dict(fatnas=__version__, torch=torch.__version__, python=platform.python_version())
    if runtime == "onnxruntime":
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    if torch.version.cuda:
        versions["cuda"] = torch.version.cuda
    return versions


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's model and logical core count."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} logical cores)"


# ---------------------------------------------------------------- latency of search candidates

MEASURED_METHOD = "interleaved with fat_b0 in the same process; ms = median ratio x fat_b0's median over the run"
_CLOCKS: dict[tuple, ReferenceClock] = {}
_TABLES: dict[tuple[str, float], LatencyTable] = {}


def measured_latency_ms(cfg: FATConfig, *, res: int, device: str = "cpu", threads: int | None = None,
                        warmup: int = 5, repeats: int = 9) -> float:
    """A candidate timed against this process's reference clock (fat_b0 at the same settings): ms on this host."""
    key = (res, cfg.in_chans, device, threads, warmup, repeats)
    if key not in _CLOCKS:
        _CLOCKS[key] = ReferenceClock(reference_network(cfg.in_chans), res=res, in_chans=cfg.in_chans, device=device,
                                      threads=threads, warmup=warmup, repeats=repeats)
    return _CLOCKS[key].measure(FAT(cfg)).latency_ms


def cached_table(path: str | Path) -> LatencyTable:
    """`load_table`, read once per process and file version."""
    path = Path(path)
    key = (str(path.resolve()), path.stat().st_mtime if path.is_file() else 0.0)
    if key not in _TABLES:
        _TABLES[key] = load_table(path)
    return _TABLES[key]


def latency_source(*, latency_model: str | None, device: str, threads: int | None, res: int,
                   batch_size: int = 1) -> dict[str, Any]:
    """Where a search's latency comes from, as run.yaml and the dashboard name it."""
    if latency_model:
        return cached_table(latency_model).describe()
    return dict(source="measured", method=MEASURED_METHOD, device=device, device_name=device_name(device),
                runtime="torch", threads=threads, batch_size=batch_size, resolution=res)


__all__ = ["LatencyModelError", "LatencyTable", "ProfileSettings", "REFERENCE_CONFIG", "RelativeTimer", "cached_table",
           "config_parts", "file_fingerprint", "latency_source", "load_table", "measured_latency_ms", "profile_space",
           "sample_configs", "space_fingerprint", "space_parts"]
