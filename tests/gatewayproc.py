"""A real trackgate process for tests: generated config, a free port, readiness, SIGTERM or
SIGKILL. Everything binds 127.0.0.1 and every wait is bounded."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayProcess:
    """`with GatewayProcess(tmp_path, config_dict) as gw:` serves until the block ends."""

    def __init__(self, workdir: Path, config: dict, env: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = dict(config)
        config["server"] = {**config.get("server", {}), "host": "127.0.0.1", "port": self.port}
        config.setdefault("store", {"path": "data/trackgate.db"})
        self.config_path = self.workdir / "gateway.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "gateway.log"

    def start(self, timeout_s: float = 30.0) -> GatewayProcess:
        env = {**os.environ, **(self.env or {})}
        self.port_log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", str(self.config_path)],
            cwd=self.workdir,
            env=env,
            stdout=self.port_log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gateway did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
        """Run a `trackgate` command against this gateway's config."""
        return subprocess.run(
            [sys.executable, "-m", "gateway", *args, "-c", str(self.config_path)],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def terminate(self, timeout_s: float = 40.0) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._closed()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._closed()

    def _closed(self) -> None:
        self.proc = None
        if getattr(self, "port_log", None):
            self.port_log.close()
            self.port_log = None

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.terminate()


def post(url: str, body: bytes, headers: dict[str, str] | None = None, timeout_s: float = 10.0):
    """POST and return (status, headers, body) whatever the status."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def get(url: str, timeout_s: float = 10.0):
    """GET and return (status, body) whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def wait_until(predicate, timeout_s: float = 20.0, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s")
