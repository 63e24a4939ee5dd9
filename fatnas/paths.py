"""Where fatnas keeps the files a user makes (runs, exported variants): the working directory or $FATNAS_HOME;
and how it writes them: whole or not at all.

Nothing is ever written beside the installed package; the package's own data (search spaces)
is read through importlib.resources.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def home_dir() -> Path:
    """$FATNAS_HOME when set, else the current directory (relative, so printed paths stay short)."""
    return Path(os.environ.get("FATNAS_HOME") or ".")


def folder_setting(env: str, default: Path) -> Path:
    """The folder an environment variable names (else `default`): a folder, or a path not made yet; a file there
    is an error naming the variable."""
    from .errors import FatnasError

    folder = Path(os.environ.get(env) or default)
    if folder.exists() and not folder.is_dir():
        raise FatnasError(f"${env if os.environ.get(env) else 'FATNAS_HOME'} gives {folder}, which is not a "
                          "folder; accepted: a folder, or a path where one can be made")
    return folder


def portable_path(path: str | Path) -> str:
    """A path as a record should keep it: relative to the working folder, never the machine's absolute path
    (a file of the installed package: relative to the package's parent, e.g. `fatnas/search_spaces/fat.yaml`)."""
    text = str(path)
    if not os.path.isabs(text):
        return text
    package = Path(__file__).resolve().parent
    resolved = Path(text).resolve()
    if resolved.is_relative_to(package):
        return str(resolved.relative_to(package.parent))
    return os.path.relpath(resolved, Path.cwd().resolve())


# fields of a record (run.yaml, a variant's source) that hold a path, and the storage URLs that hold a file's path
PATH_FIELDS = ("data_dir", "base", "space_source", "model", "table", "storage")
FILE_URL_PREFIXES = ("sqlite:///", "journal://")


def portable_record(record: dict) -> dict:
    """A copy of a record with every path field made portable (`portable_path`), at any depth: a new run records
    no machine path, whether its paths came from the command line, a settings class or a storage URL."""
    out = dict(record)
    for key, value in out.items():
        if isinstance(value, dict):
            out[key] = portable_record(value)
        elif key in PATH_FIELDS and isinstance(value, str):
            out[key] = portable_url(value) if key == "storage" else portable_path(value)
    return out


def portable_url(url: str) -> str:
    """A storage URL whose file (`sqlite:///PATH`, `journal://PATH`) is made portable; other URLs as they are."""
    prefix = next((p for p in FILE_URL_PREFIXES if url.startswith(p)), None)
    return url if prefix is None else prefix + portable_path(url[len(prefix):])


def check_writable(path: str | Path, what: str = "output") -> Path:
    """Refuse, before any work, an output whose kind `write_target` refuses or whose folder cannot be made or
    written (`-o /proc/x.pt2`)."""
    from .errors import FatnasError

    target = write_target(path, what)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise FatnasError(f"{what} {path}: cannot be written there ({exc.strerror or exc})") from None
    return Path(path)


WRITE_FORMS = "a regular file, a symlink to one, or a new path"


def write_target(path: str | Path, what: str = "output") -> Path:
    """The file a write to `path` replaces: `path` itself, or the file its symlink points to (as a shell redirect
    writes it). A folder, device, FIFO or socket there is refused, so `-o /dev/null` leaves the device alone."""
    from .errors import FatnasError

    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if path.is_symlink() and not os.path.lexists(target) and not target.parent.is_dir():
        raise FatnasError(f"{what} {path}: is a symlink into {target.parent}, a folder that does not exist (none is "
                          f"made there); accepted: {WRITE_FORMS}")
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise FatnasError(f"{what} {path}: cannot be written ({exc.strerror or exc}); accepted: {WRITE_FORMS}") \
            from None
    if not stat.S_ISREG(mode):
        raise FatnasError(f"{what} {path}: is {_file_kind(mode)}, not a regular file; accepted: {WRITE_FORMS}")
    return target


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def atomic_write_text(path: Path, text: str, *, replace: bool = True) -> None:
    """Write a text file whole or not at all (temporary file, then rename); see `atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode(), replace=replace)


def atomic_write_bytes(path: Path, data: bytes, *, replace: bool = True) -> None:
    """The one way fatnas writes a file: whole or not at all (a temporary file beside the target, then rename),
    into the regular file, new path or symlink target that `write_target` accepts. `replace=False`: only where no
    file is yet, decided atomically (a hard link), so of two processes writing one new name one gets
    FileExistsError."""
    from .errors import FatnasError

    target = write_target(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as exc:
        raise FatnasError(f"output {path}: cannot be written there ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; run files are for sharing
        if replace:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)
            os.unlink(tmp)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
            raise FatnasError(f"output {path}: cannot be written ({exc.strerror or exc})") from None
        raise


def torch_bytes(obj: object) -> bytes:
    """What `torch.save(obj)` writes, as bytes (for `atomic_write_bytes`, or a hash of exactly what is written)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


__all__ = ["atomic_write_bytes", "atomic_write_text", "check_writable", "folder_setting", "home_dir", "portable_path",
           "portable_record", "portable_url", "torch_bytes", "write_target"]
