"""`lmn-tf serve` as a child process: started on free ports, found by its "listening" lines.

The demo, the notebooks, the benchmarks and the tests all run the server the way it runs in
production, as a process of its own, and talk to it only over the network.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

# Printed by Server._announce (server.py); the log line written by `logging` says the same.
_LISTENING = re.compile(r"\b(REST|gRPC) listening on (\S+)$", re.MULTILINE)


class ServerProcess:
    """Runs ``python -m lmn_tf serve ARGS`` on 127.0.0.1 until ``stop``.

    The server's stdout and stderr go to ``log_path`` (a pipe nobody drains would block the
    child once it fills). The constructor returns when both the REST and the gRPC port are
    announced there; the models may still be loading.

    Args:
        args: further ``lmn-tf serve`` flags, e.g. ``["--model-base-path", path,
            "--model-name", "lmn"]``; a flag given here wins over the ones below.
        log_path: file for the server's output (created or truncated).
        host: bind address.
        rest_port: REST port; 0 lets the OS pick a free one.
        grpc_port: gRPC port; 0 lets the OS pick a free one.
        env: variables added to this process's environment for the child.
        timeout: seconds to wait for both ports.

    Attributes:
        rest: the REST base URL, ``http://HOST:PORT``.
        grpc: the gRPC target, ``HOST:PORT``.
        rest_port, grpc_port: the ports as ints.
        proc: the ``subprocess.Popen``.

    Raises:
        RuntimeError: the server exited or did not announce both ports within ``timeout``
            (the message holds its log; the process is killed).

    Example:

    >>> with ServerProcess(["--model-base-path", "models/lmn", "--model-name", "lmn"],
    ...                    "server.log") as server:  # doctest: +SKIP
    ...     predict_rest(server.rest, "lmn", rows)
    ...     print(server.stop())  # SIGTERM: in-flight requests finish, then exit 0
    0
    """

    def __init__(
        self,
        args: Sequence[str | os.PathLike[str]],
        log_path: str | os.PathLike,
        *,
        host: str = "127.0.0.1",
        rest_port: int = 0,
        grpc_port: int = 0,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
    ):
        self.log_path = os.fspath(log_path)
        cmd = [sys.executable, "-m", "lmn_tf", "serve", "--host", host,
               "--rest-port", str(rest_port), "--grpc-port", str(grpc_port), *map(os.fspath, args)]
        with open(self.log_path, "w") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        ports = self._wait_for_ports(timeout)
        self.rest_port, self.grpc_port = (int(ports[k].rsplit(":", 1)[1]) for k in ("REST", "gRPC"))
        self.rest, self.grpc = f"http://{ports['REST']}", ports["gRPC"]

    def _wait_for_ports(self, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            ports = dict(_LISTENING.findall(text[: text.rfind("\n") + 1]))  # whole lines only
            if len(ports) == 2:
                return ports
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                code = self.proc.wait()
                raise RuntimeError(
                    f"`lmn-tf serve` did not start within {timeout:g} s (exit code {code}); "
                    f"its log {self.log_path}:\n{self.log()}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mb(self) -> float:
        """The server's resident memory (VmRSS, Linux), in MiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return kb / 1024

    def log(self) -> str:
        """Everything the server has written so far."""
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (the server drains in-flight requests), then kill after ``timeout`` s.

        Returns:
            The exit code: 0 after a clean shutdown, ``-9`` if it had to be killed.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
