"""Ctrl-C in a search: held back while the study is read or written, raised at once inside long computations.

An interrupt that lands inside SQLAlchemy or SQLite can leave a half-read cursor (its lock blocks every later
write for the storage's whole timeout), a half-made trial (created, not yet marked as this worker's, so no
cleanup finds it) or a session broken mid-commit. So a search runs its loop under `ctrl_c_held`, which turns
Ctrl-C into a pending flag, and opens `ctrl_c_allowed` around the work that touches no storage (timing,
training, scoring, waiting), where a Ctrl-C raises KeyboardInterrupt at once, a pending one included.
Both act in the main thread of a process whose SIGINT handler is Python's default, and are no-ops elsewhere.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator


class _Gate:
    open = True  # a Ctrl-C raises now (True) or waits until the held block ends (False)
    pending = False


def _on_sigint(signum: int, frame: Any) -> None:
    if _Gate.open:
        raise KeyboardInterrupt
    _Gate.pending = True


def _in_charge() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Within the block, a Ctrl-C waits; it is raised as KeyboardInterrupt when the outermost held block ends."""
    if not _in_charge():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    ours = previous is _on_sigint
    if not ours and previous is not signal.default_int_handler:  # someone else decides what Ctrl-C does
        yield
        return
    if not ours:
        signal.signal(signal.SIGINT, _on_sigint)
    was_open, _Gate.open = _Gate.open, False
    pending = False
    try:
        yield
    finally:
        _Gate.open = was_open
        if was_open:  # the outermost block: a Ctrl-C that waited is raised now (or is moot, if one already is)
            pending, _Gate.pending = _Gate.pending, False
        if not ours:
            signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


@contextlib.contextmanager
def ctrl_c_allowed() -> Iterator[None]:
    """Within a held block: a Ctrl-C (a pending one first) raises at once. Outside one: no effect."""
    if not _in_charge() or signal.getsignal(signal.SIGINT) is not _on_sigint:
        yield
        return
    was_open, _Gate.open = _Gate.open, True
    try:
        if _Gate.pending:
            _Gate.pending = False
            raise KeyboardInterrupt
        yield
    finally:
        _Gate.open = was_open
