"""A throwaway PostgreSQL server for tests: Debian's initdb and pg_ctl in a temporary folder, on 127.0.0.1.

PostgreSQL refuses to run as root, so a root test runs the server as the `postgres` user the
Debian package creates. The server is stopped and its folder removed when the context ends.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                 key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
PG_BIN = PG_BINS[-1] if PG_BINS else Path("/usr/lib/postgresql/missing/bin")
USER, PASSWORD = "fatnas", "s3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A running server; yields the SQLAlchemy URL (with password) of its `postgres` database."""
    if not (PG_BIN / "pg_ctl").is_file():
        pytest.skip("apt-get install postgresql (make postgres does)")
    folder = Path(tempfile.mkdtemp(prefix="fatnas-pg-"))
    data, port = folder / "data", free_port()
    try:
        (folder / "pw").write_text(PASSWORD)
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
            shutil.chown(folder / "pw", "postgres", "postgres")
        initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={folder / 'pw'}",
                  "--auth=scram-sha-256"]
        subprocess.run(_as_server_user(initdb), check=True, capture_output=True, timeout=120)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}"
        subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                                        str(folder / "log"), "-w", "start"]), check=True, capture_output=True,
                       timeout=120)
        try:
            yield f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=120)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
