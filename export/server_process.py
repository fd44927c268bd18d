"""A model server in a child process: ``python -m export.serve`` or ``tensorflow_model_server``.

Benchmarks and end-to-end tests start either one with the same flags and talk to it over gRPC.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from export.client import ServingClient, ServingClientError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ModelServerProcess:
    """A model server in a child process: ``python -m export.serve`` or the real binary.

    Both are started with the same ``tensorflow_model_server`` flags; :meth:`start` returns once
    the model has an available version, :meth:`stop` sends SIGTERM and returns the exit code.
    """

    def __init__(self, command: Sequence[str], address: str, model: str, log_path: str) -> None:
        self.command = list(command)
        self.address = address
        self.model = model
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(
        cls,
        kind: str,
        base_path: str,
        model: str,
        log_path: str,
        *,
        port: int | None = None,
        poll_wait_seconds: float = 1.0,
        extra_args: Sequence[str] = (),
    ) -> ModelServerProcess:
        """``kind`` is ``"export.serve"`` or a path to ``tensorflow_model_server``."""
        port = port or free_port()
        flags = [
            f"--port={port}",
            f"--model_name={model}",
            f"--model_base_path={os.path.abspath(base_path)}",
            f"--file_system_poll_wait_seconds={poll_wait_seconds:g}",
            *extra_args,
        ]
        if kind == "export.serve":
            command = [sys.executable, "-m", "export.serve", *flags]
        else:
            command = [kind, *flags]
        return cls(command, f"127.0.0.1:{port}", model, log_path)

    def start(self, timeout: float = 120.0) -> ModelServerProcess:
        """Starts the process and waits until the model is available."""
        repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command, cwd=repo_root, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        with ServingClient(self.address, self.model, timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.command[0]} exited with {self.process.returncode}:\n{self.log()}"
                    )
                try:
                    client.wait_until_ready(timeout=1.0)
                    return self
                except ServingClientError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(
                            f"model server not ready after {timeout}s:\n{self.log()}"
                        ) from None

    def log(self) -> str:
        """The process's output so far."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
