"""The one way fatnas reads YAML and JSON (run files, configs, spaces, latency tables, variants, CSV cells).

Every read is bounded before it can cost much: the file's size (MAX_BYTES, and only a regular file, never a FIFO
that would block), the nesting depth (MAX_DEPTH) and YAML aliases (refused: no file fatnas writes has one, and
they are how a 2 KB file expands to gigabytes). Mapping keys are text. Whatever goes wrong is one `FatnasError`
(or the `error` class a caller passes) naming the file, and no message shows more than `shown` of a value.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from .errors import FatnasError, shown

MAX_BYTES = 32 * 2**20  # the largest file fatnas writes (a latency table of a big space) is a few MB
MAX_DEPTH = 32  # configs and run.yaml nest 4 levels; a latency table 5
MAX_INT_DIGITS = 100  # no count or seed fatnas writes comes near; Python refuses to parse past 4,300 digits


class _Refused(FatnasError):
    """What the bounded YAML loader refuses (an alias, too deep a nesting)."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses aliases and counts nesting while it composes (before any recursion)."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _Refused("holds a YAML alias (*name); fatnas files have none")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(f"nests deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_yaml_int(self, node: Any) -> Any:
        digits = sum(ch.isalnum() for ch in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise _Refused(f"holds an integer of {digits:,} digits; at most {MAX_INT_DIGITS} are read")
        return super().construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def read_bytes(path: str | Path, what: str = "", error: type[FatnasError] = FatnasError) -> bytes:
    """The bytes of a regular file of at most MAX_BYTES (`what` names it in errors, default its path)."""
    label = what or str(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{label} is not a regular file (a folder, FIFO or device); accepted: a file")
        if info.st_size > MAX_BYTES:
            raise error(f"{label} is {info.st_size:,} bytes; at most {MAX_BYTES:,} are read")
        with open(path, "rb") as handle:
            return handle.read(MAX_BYTES + 1)[:MAX_BYTES]
    except OSError as exc:
        raise error(f"{label} cannot be read ({exc.strerror or exc})") from None


def read_text(path: str | Path, what: str = "", error: type[FatnasError] = FatnasError) -> str:
    """A UTF-8 text file as `read_bytes` bounds it; binary content is an error."""
    return load_text(read_bytes(path, what, error), what or str(path), error)


def read_yaml(path: str | Path, what: str = "", error: type[FatnasError] = FatnasError) -> Any:
    """A YAML file, bounded (see the module's docstring)."""
    return load_yaml(read_bytes(path, what, error), what or str(path), error)


def read_json(path: str | Path, what: str = "", error: type[FatnasError] = FatnasError) -> Any:
    """A JSON file, bounded (see the module's docstring)."""
    return load_json(read_bytes(path, what, error), what or str(path), error)


def load_yaml(data: str | bytes, what: str, error: type[FatnasError] = FatnasError) -> Any:
    """YAML text (a file's content, `what` names it), with no alias, at most MAX_DEPTH deep, text keys."""
    text = load_text(data, what, error) if isinstance(data, bytes) else data
    _check_size(text, what, error)
    try:
        value = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506  # a SafeLoader, bounded
    except _Refused as exc:
        raise error(f"{what} {exc} (damaged?)") from None
    except yaml.YAMLError as exc:
        raise error(f"{what} is not valid YAML: {' '.join(str(exc).split())[:200]}") from None
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:  # any other loader failure
        raise error(f"{what} cannot be read as YAML ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
                    ) from None
    _check_keys(value, what, error)
    return value


def load_json(data: str | bytes, what: str, error: type[FatnasError] = FatnasError) -> Any:
    """JSON text (a file, or a cell of a CSV table; `what` names it), at most MAX_DEPTH deep."""
    text = load_text(data, what, error) if isinstance(data, bytes) else data
    if not isinstance(text, str):
        raise error(f"{what} holds {shown(text)}, not JSON text")
    _check_size(text, what, error)
    try:
        value = json.loads(text)
    except RecursionError:
        raise error(f"{what} nests deeper than {MAX_DEPTH} levels (damaged?)") from None
    except ValueError as exc:
        raise error(f"{what} is not valid JSON: {' '.join(str(exc).split())[:200]}") from None
    _check_keys(value, what, error)
    return value


def load_text(data: bytes, what: str, error: type[FatnasError] = FatnasError) -> str:
    """UTF-8 text with no NUL byte (binary content is an error naming `what`)."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        raise error(f"{what} is not text (binary or damaged)")
    return text


def _check_size(text: str, what: str, error: type[FatnasError]) -> None:
    if len(text) > MAX_BYTES:
        raise error(f"{what} is {len(text):,} characters; at most {MAX_BYTES:,} are read")


def _check_keys(value: Any, what: str, error: type[FatnasError]) -> None:
    """At most MAX_DEPTH levels and text keys only, walked without recursion (JSON has no depth limit of its own)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise error(f"{what} nests deeper than {MAX_DEPTH} levels (damaged?)")
        if isinstance(item, dict):
            bad = [k for k in item if not isinstance(k, str)]
            if bad:
                raise error(f"{what} has the key {shown(bad[0])}, not text (damaged?)")
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


__all__ = ["MAX_BYTES", "MAX_DEPTH", "load_json", "load_text", "load_yaml", "read_bytes", "read_json", "read_text",
           "read_yaml"]
