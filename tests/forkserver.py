"""A process that imports fatnas once and forks one child per CLI command, so that a test can start, kill -9
and resume many searches without paying the imports each time (about 9 s a process on a loaded 2-core host).

It reads one JSON request per line on stdin and answers one JSON line on stdout:
- {"run": [ARGS], "cwd": DIR, "env": {NAME: VALUE}, "log": FILE} forks `fatnas ARGS` -> {"pid": PID};
- {"wait": PID} reaps that child -> {"status": EXIT STATUS, or -SIGNAL if a signal ended it}.
The server itself never runs a torch operation, so its children start with no thread pool to inherit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _child(request: dict[str, Any]) -> None:
    """In the forked child: the command's folder, environment and log, then the CLI; never returns."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.update(request["env"])
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        from fatnas.cli import main

        sys.argv = [str(ROOT / "cli.py"), *request["run"]]  # what run.yaml records as the command
        code = main()
    finally:
        os._exit(code)


def serve() -> None:
    sys.path.insert(0, str(ROOT))
    import fatnas.cli.search  # noqa: F401  (the imports every child would otherwise pay)
    import fatnas.estimate.proxy  # noqa: F401
    import fatnas.search.api  # noqa: F401

    for line in sys.stdin:
        request = json.loads(line)
        if "run" in request:
            pid = os.fork()
            if pid == 0:
                _child(request)
            answer: dict[str, Any] = {"pid": pid}
        else:
            _, status = os.waitpid(request["wait"], 0)
            answer = {"status": os.waitstatus_to_exitcode(status)}
        print(json.dumps(answer), flush=True)


class ForkServer:
    """The test's end: start commands, wait for them; `close` stops the server."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=ROOT)

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def start(self, args: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> int:
        return self._ask({"run": args, "cwd": str(cwd), "env": env, "log": str(log)})["pid"]

    def wait(self, pid: int) -> int:
        return self._ask({"wait": pid})["status"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


if __name__ == "__main__":
    serve()
