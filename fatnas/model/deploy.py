"""Deployment formats of a FAT: ONNX (checked under ONNX Runtime) and torch.export programs (.pt2).

Every file is checked after it is written: the deployed model and PyTorch get the same random
input, and their outputs must lie within `TOLERANCE` (max absolute difference). The batch
dimension is dynamic; height and width are fixed at the exported resolution. Needs only
torch, plus `onnx`, `onnxscript` and `onnxruntime` for ONNX (`pip install fatnas[onnx]`).
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..errors import FatnasError
from ..paths import atomic_write_bytes, check_writable

FORMATS = ("onnx", "pt2")
TOLERANCE = 1e-4
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class DeployError(FatnasError):
    """A format that is unknown or cannot be written here (a missing package), or a file that fails its check."""


class Deployed(NamedTuple):
    path: Path
    format: str
    res: int
    max_abs_diff: float  # against PyTorch on the same random input


def require_onnx() -> Any:
    """The onnxruntime module; a one-line error naming the extra when onnx or onnxruntime is missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError as exc:
        raise DeployError(f"ONNX needs the onnx extra ({exc.name} is missing): pip install 'fatnas[onnx]'") from None
    return onnxruntime


def onnx_bytes(model: nn.Module, example: torch.Tensor, *, fast: bool = False) -> bytes:
    """The model as ONNX (torch.export-based exporter), its batch dimension dynamic.

    `fast`: the TorchScript-based exporter with the example's fixed shape, several times
    quicker, for the many small graphs that latency profiling times (never written to a file).
    """
    require_onnx()
    model = model.eval()
    if fast:
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # it is deprecated, and warns of traced Python values
            torch.onnx.export(model, (example,), buffer, dynamo=False, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=17)
        return buffer.getvalue()
    if example.shape[0] < 2:  # a batch of 1 would be specialised into the graph
        example = example.expand(2, *example.shape[1:]).contiguous()
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        program = torch.onnx.export(model, (example,), None, dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                    verbose=False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        program.save(str(path))
        return path.read_bytes()


def onnx_session(model_bytes: bytes, threads: int | None = None, device: str = "cpu") -> Any:
    """An ONNX Runtime session (CPU, or CUDA when asked), with `threads` intra-op threads if given."""
    ort = require_onnx()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    return ort.InferenceSession(model_bytes, sess_options=options, providers=providers)


def _reference(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(x).numpy()


def _check(diff: float, path: Path, what: str) -> float:
    if not diff <= TOLERANCE:
        raise DeployError(f"{path}: {what} differs from PyTorch by {diff:.2e} (tolerance {TOLERANCE:g})")
    return diff


def write_onnx(model: nn.Module, path: Path, *, res: int = 224, in_chans: int = 3) -> Deployed:
    """Write `model` as ONNX and check it under ONNX Runtime; nothing is left behind when the check fails."""
    example = torch.randn(2, in_chans, res, res, generator=torch.Generator().manual_seed(0))
    data = onnx_bytes(model, example)
    out = onnx_session(data).run(None, {INPUT_NAME: example.numpy()})[0]
    diff = _check(float(np.abs(out - _reference(model, example)).max()), path, "ONNX Runtime's output")
    atomic_write_bytes(path, data)
    return Deployed(path, "onnx", res, diff)


def write_pt2(model: nn.Module, path: Path, *, res: int = 224, in_chans: int = 3) -> Deployed:
    """Write `model` as a torch.export program (`torch.export.load` reads it) and check the reloaded program."""
    example = torch.randn(2, in_chans, res, res, generator=torch.Generator().manual_seed(0))
    program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder) / "model.pt2"
        torch.export.save(program, str(tmp))
        with torch.no_grad():
            out = torch.export.load(str(tmp)).module()(example).numpy()
        diff = _check(float(np.abs(out - _reference(model, example)).max()), path, "the reloaded program")
        atomic_write_bytes(path, tmp.read_bytes())
    return Deployed(path, "pt2", res, diff)


def write_deployed(model: nn.Module, path: Path, fmt: str, *, res: int = 224, in_chans: int = 3) -> Deployed:
    """Write `model` in format `fmt` (onnx or pt2) to `path`, checked against PyTorch."""
    if fmt not in FORMATS:
        raise DeployError(f"unknown format {fmt!r}; accepted: {', '.join(FORMATS)}")
    writer = write_onnx if fmt == "onnx" else write_pt2
    return writer(model, check_writable(path, "-o"), res=res, in_chans=in_chans)


__all__ = ["FORMATS", "TOLERANCE", "DeployError", "Deployed", "onnx_bytes", "onnx_session", "require_onnx",
           "write_deployed", "write_onnx", "write_pt2"]
