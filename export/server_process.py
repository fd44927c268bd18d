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

import grpc

from export.client import ServingClient, ServingClientError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def process_tree_resident_bytes(pid: int) -> int:
    """VmRSS of `pid` and its descendants, from /proc (0 for processes already gone)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            with open(f"/proc/{current}/status", encoding="ascii", errors="replace") as f:
                total += next((int(line.split()[1]) * 1024 for line in f
                               if line.startswith("VmRSS:")), 0)  # fmt: skip
        except OSError:
            continue
    return total


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
        # gRPC's reconnect backoff grows to minutes while the server is still loading; retry
        # every second instead so that readiness is seen when it comes.
        channel = grpc.insecure_channel(
            self.address,
            options=[
                ("grpc.initial_reconnect_backoff_ms", 250),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        with (
            channel,
            ServingClient(self.address, self.model, timeout=2.0, channel=channel) as client,
        ):
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

    def kill(self) -> int | None:
        """SIGKILL, as the OOM killer or a lost machine would end it; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait()

    def resident_bytes(self) -> int:
        """Resident memory of the server process and every process it started."""
        return process_tree_resident_bytes(self.process.pid) if self.process else 0

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
