"""The one base class for bad user input; the CLI turns it into a one-line error and exit 2.

Also the one redaction of secrets (`redact`): every place that writes or shows a storage URL or a
command line (run.yaml, study attributes, errors, progress lines) passes the text through it.
"""
from __future__ import annotations

import re

MASK = "***"
# scheme://USER:PASSWORD@ : the password runs to the last `@` of its word, so a raw `@` in it is masked too
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):(?P<password>\S*)@")
_USERINFO_WORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):(?P<password>.*)@", re.DOTALL)
# ?password=..., &sslpassword=..., ;pwd=... (query strings and connection options)
_QUERY = re.compile(r"(?P<head>[?&;\s]['\"]?[A-Za-z_]*(?:password|passwd|pwd|secret|token)['\"]?=)"
                    r"(?P<password>[^&\s'\"]*)", re.IGNORECASE)


class FatnasError(ValueError):
    """Bad input: a malformed budget, an unknown model, an invalid config or space, a missing run."""


SHOWN_CHARS = 60  # the most of one value an error message shows


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """`value` as a message shows it: a repr that walks at most a few levels and items (so a huge or deeply
    nested value costs nothing), cut to `limit` characters."""
    import reprlib

    brief = reprlib.Repr()  # Python 3.11 takes no keyword arguments here
    brief.maxlevel, brief.maxstring, brief.maxother = 3, limit, limit
    text = brief.repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


DEVICE_FORMS = "cpu, cuda, cuda:N"


def check_device(device: str, *, available: bool = True) -> str:
    """A device of the form cpu, cuda or cuda:N; with `available`, one that torch can use here."""
    import re

    if device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", device):
        raise FatnasError(f"--device {device!r}: accepted forms: {DEVICE_FORMS}")
    if available and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise FatnasError("--device cuda: no CUDA device is available here; use --device cpu")
    return device


MAX_WORKERS = 1024  # processes of one search or study on this machine
MAX_THREADS = 1024  # torch threads of one process


def check_threads(threads: object, error: type[FatnasError] = FatnasError) -> None:
    """--threads, where given, must be a whole number from 1 to MAX_THREADS (torch overflows beyond); `error` is the
    kind a settings class raises."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or not 0 < threads <= MAX_THREADS):
        raise error(f"--threads {threads!r}: must be a positive number, at most {MAX_THREADS:,}")


def check_positive(**values: object) -> None:
    """Each given value (None: not given) must be above 0; the error names it as its command-line flag."""
    for name, value in values.items():
        if value is not None and not value > 0:  # type: ignore[operator]  # `not >`: nan is refused too
            raise FatnasError(f"--{name.replace('_', '-')} {value}: must be a positive number")


def redact(text: str, *, one_word: bool = False) -> str:
    """`text` with every password in it replaced by `***`: the user-info password of any URL (with any
    characters, a raw `@` included) and password-like query parameters (`?password=`, `&sslpassword=`).
    It finds URLs anywhere in the text, so whole command lines (`--storage=URL`) and messages go through it.
    `one_word`: the text is one command-line argument, whose password may hold spaces too."""
    userinfo = _USERINFO_WORD if one_word else _USERINFO
    text = userinfo.sub(lambda m: f"{m['head']}:{MASK}@" if m["password"] else m[0], text)
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}" if m["password"] else m[0], text)


def has_secret(text: str) -> bool:
    """Whether `redact` would change `text`."""
    return redact(text) != text
