"""A latency model of a target device: a table of part latencies, profiled once there, that prices any config.

A config's latency is factor x (sum of its parts) x the reference's median in milliseconds, with no
network built or timed. The table records device, runtime, threads, batch, resolution, library
versions and the space, and refuses configs it does not fit. `profile.py` writes tables.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ...documents import read_json
from ...errors import FatnasError, shown
from ...model.config import NUM_STAGES, BlockPlan, FATConfig, plan, stage_output_sizes
from ...model.network import FATBlock, Head, Stem
from ...model.space import SearchSpace, snap_heads, stage_value
from ...paths import atomic_write_text, check_writable, portable_path
from .measure import MEASURED_METHOD, REFERENCE_CONFIG, RUNTIMES, device_name

TABLE_FORMAT = "fatnas-latency-table/1"


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


def stage_options(space: SearchSpace, key: str, stage: int) -> tuple[Any, ...]:
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
        nexts = stage_options(space, "widths", s + 1) if s < NUM_STAGES - 1 else (None,)
        for c in stage_options(space, "widths", s):
            heads = sorted({snap_heads(head_key, c, v) for v in stage_options(space, head_key, s)})
            for h in heads:
                for k in stage_options(space, "kernels", s):
                    for w in stage_options(space, "windows", s):
                        for r in stage_options(space, "ffn_ratios", s):
                            for m in stage_options(space, "ffn_kernels", s):
                                for c_next in nexts:
                                    add(probe_config(s, c, c_next, h, k, w, r, m))
    return list(parts.values())


def probe_config(stage: int, c: int, c_next: int | None, heads: int, kernel: int, window: int, ratio: float,
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
                f"latency table {self.where}: no entry for {shown(missing[0])}"
                f"{f' (and {len(missing) - 1} more parts)' if len(missing) > 1 else ''}; it was profiled for "
                f"space {shown(self.space.get('name'))} with in_chans {self.in_chans} and {self.num_classes} classes: "
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
            raise LatencyModelError(f"latency table {self.where} was profiled for space "
                                    f"{shown(self.space.get('name'))}, not for space {space.name!r} (its choices "
                                    f"differ); profile it with --space {space.name}")

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
    data = read_json(path, f"latency table {path}", LatencyModelError)
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
        raise LatencyModelError(f"latency table {path}: runtime {shown(data['runtime'])} / device "
                                f"{shown(data['device'])} unknown (runtimes: {', '.join(RUNTIMES)}; "
                                "devices: cpu, cuda)")
    return LatencyTable(device=data["device"], runtime=data["runtime"], threads=int(data["threads"]),
                        batch=int(data["batch"]), res=int(data["res"]), in_chans=int(data["in_chans"]),
                        num_classes=int(data["num_classes"]), space=dict(data["space"]),
                        reference_ms=float(data["reference_ms"]), factor=float(data["factor"]),
                        parts={str(k): float(v) for k, v in parts.items()}, meta=dict(data.get("meta") or {}),
                        path=path)




_TABLES: dict[tuple[str, float], LatencyTable] = {}


def checked_table_path(path: str | Path | None, space: SearchSpace) -> str | None:
    """The table's absolute path (Ray workers may run elsewhere), once it is known to fit the space (None: none)."""
    if path is None:
        return None
    load_table(path).check_fits(res=space.resolution, batch=1, space=space)
    return str(Path(path).resolve())


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
