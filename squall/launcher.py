"""Start and stop ``squall serve`` as a real child process (for tests and benchmarks).

The server's output goes to a file, never a pipe: a pipe nobody reads fills up and
blocks the server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

start_timeout_seconds = 15.0
stop_timeout_seconds = 10.0
poll_interval_seconds = 0.05


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: all bound at once, so none is handed out twice."""
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def answers_http(url: str, ca_file: Path | None = None) -> bool:
    context = None
    if ca_file is not None:
        import ssl

        context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(url + "/", timeout=1.0, context=context):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer (403 for an anonymous request) means it is up
    except OSError:
        return False


class ServerProcess:
    """``squall serve`` on 127.0.0.1:<port> with a data directory and root credentials."""

    def __init__(
        self,
        data_dir: Path,
        *,
        access_key: str,
        secret_key: str,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """``tls``: (certificate, key) PEM files to serve HTTPS with; the certificate
        (self-signed, for 127.0.0.1) is also what the start-up probe trusts."""
        self.data_dir = data_dir
        self.access_key = access_key
        self.secret_key = secret_key
        self.port = port or free_port()
        self.tls = tls
        if tls is not None:
            extra_args = ("--tls-cert-file", str(tls[0]), "--tls-key-file", str(tls[1]),
                          *extra_args)
        self.extra_args = extra_args
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()
        self.started_seconds = 0.0  # time from spawn until the server answered HTTP

    def start(self) -> ServerProcess:
        env = dict(os.environ)
        env["SQUALL_ROOT_USER"] = self.access_key
        env["SQUALL_ROOT_PASSWORD"] = self.secret_key
        command = [
            sys.executable, "-m", "squall", "serve", "--host", "127.0.0.1",
            "--port", str(self.port), "--data-dir", str(self.data_dir), *self.extra_args,
        ]  # fmt: skip
        began = time.monotonic()
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = began + start_timeout_seconds
        while not answers_http(self.url, self.tls[0] if self.tls else None):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"squall serve exited with {self.process.returncode}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"squall serve did not answer within {start_timeout_seconds} s")
            time.sleep(poll_interval_seconds)
        self.started_seconds = time.monotonic() - began
        return self

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=stop_timeout_seconds)

    def stop(self) -> int:
        """SIGTERM, then wait; returns the exit status (SIGKILL after the timeout)."""
        assert self.process is not None, "stop() before start()"
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=stop_timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=stop_timeout_seconds)
        return self.process.returncode

    def close(self) -> None:
        if self.process is not None:
            self.stop()
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
