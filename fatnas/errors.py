"""The one base class for bad user input; the CLI turns it into a one-line error and exit 2.

Also the one redaction of secrets (`redact`): every place that writes or shows a storage URL or a
command line (run.yaml, study attributes, errors, progress lines) passes the text through it.
"""
from __future__ import annotations

import re

MASK = "***"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_QUERY_PARAMETER = re.compile(r"[?&][A-Za-z_][A-Za-z0-9_.-]*=")  # `?key=` or `&key=` of a URL's query
# a key that names a secret (password, sslpassword, pass, pwd, passwd, secret, token, api_key, auth, ...), then `=`
# or its `%3D`
_SECRET_KEY = (r"(?:(?<![A-Za-z0-9_-])|(?<=%20))['\"]?[A-Za-z_-]*(?:pass|pwd|secret|token|key|auth|credential)"
               r"[A-Za-z_-]*['\"]?\s*(?:=|%3D)")
# its value: in free text up to a separator; in one argument (whose value may hold spaces) up to the next `&key=`
_SECRET_VALUE = re.compile(rf"(?P<key>{_SECRET_KEY})(?P<value>[^&;\s'\"]*)", re.IGNORECASE)
_SECRET_VALUE_WORD = re.compile(rf"(?P<key>{_SECRET_KEY})(?P<value>(?:(?![&;][A-Za-z_-]+=).)*)",
                                re.IGNORECASE | re.DOTALL)


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
MAX_TRIALS = 1_000_000  # trials of one search: far beyond any budget, and a count every record can hold


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
    """`text` with every password in it replaced by `***`, found by parsing each URL in it (`split_userinfo`, from
    the last URL to the first) and then every secret-named `key=value` (`?password=`, `&sslpassword=`, `pass=`,
    `?api_key=`, `options=-c%20password%3D...`), whatever characters the password holds. `one_word`: the text is
    one command-line argument, whose values may hold spaces too."""
    text = _mask_userinfo(text, bounded=not one_word)  # free text may hold several URLs: one never runs into the next
    return (_SECRET_VALUE_WORD if one_word else _SECRET_VALUE).sub(lambda m: f"{m['key']}{MASK}", text)


def redact_url(url: str) -> str:
    """One storage URL or address with its password masked: `redact` of one argument."""
    return redact(url, one_word=True)


def split_userinfo(url: str) -> tuple[str, str, str, str] | None:
    """(`scheme://`, USER, PASSWORD, `@HOST...`) of `scheme://USER:PASSWORD@HOST...`, or None without a password.

    The user runs to the first `:` after `//`, the password from there to the last `@`, whatever it holds
    (`@`, `:`, `/`, `?`, `#`, whitespace), except where a query parameter (`?key=`, `&key=`) stands between
    the first `?` and that `@`: then the `@` is a query value's (`?password=p@ss`) and the user-info ends at
    the last `@` before the `?`. A hosted service's user name may hold a raw `@`; a user holding `/` is a path
    (`sqlite:///a.db`). SQLAlchemy's parser ends the password at its first `@`, which would leak (and mis-send)
    the rest of it."""
    scheme, sep, rest = url.partition("://")
    at, query = rest.rfind("@"), rest.find("?")
    if 0 <= query < at and _QUERY_PARAMETER.search(rest, query, at):
        at = rest.rfind("@", 0, query)
    user, colon, password = rest[:max(at, 0)].partition(":")
    if not sep or at < 0 or not colon or "/" in user:
        return None
    return f"{scheme}://", user, password, rest[at:]


def _mask_userinfo(text: str, *, bounded: bool) -> str:
    """Every URL's user-info password in `text` masked (`split_userinfo`), from the last URL to the first; each
    URL runs to the end of `text`, or (`bounded`) to the next URL's scheme."""
    starts = [match.start() for match in _SCHEME.finditer(text)]
    for start, end in reversed(list(zip(starts, [*starts[1:], len(text)]))):
        end = end if bounded else len(text)
        text = text[:start] + _redact_userinfo(text[start:end]) + text[end:]
    return text


def _redact_userinfo(text: str) -> str:
    """`scheme://USER:PASSWORD@HOST...` (to the end of `text`) with PASSWORD masked, as `split_userinfo` reads it."""
    parts = split_userinfo(text)
    if parts is None or parts[2] == MASK:
        return text
    scheme, user, _, rest = parts
    return f"{scheme}{user}:{MASK}{rest}"

