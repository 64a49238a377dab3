"""Processes the bench starts: spawn on 127.0.0.1, wait until ready, read CPU, stop by pid."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
HOST = "127.0.0.1"
UVICORN_FLAGS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Proc:
    """One child process, its output in ``log``; ``stop()`` ends it (and only it) by pid."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None, pipe: bool = False):
        self.name, self.argv, self.log_path = name, argv, log
        self._log = open(log, "wb")
        stdout = subprocess.PIPE if pipe else self._log
        self.popen = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=stdout, stderr=self._log, stdin=subprocess.DEVNULL
        )
        self.pid = self.popen.pid

    def first_line(self, timeout: float = 30.0) -> str:
        """The first line the process prints on stdout (``pipe=True``), e.g. its URL."""
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"{self.name}: printed nothing in {timeout:.0f} s; see {self.log_path}")
        line = self.popen.stdout.readline().decode().strip()
        if not line:
            raise RuntimeError(f"{self.name}: exited early; see {self.log_path}\n{self.tail()}")
        return line

    def wait_http_ok(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                code = self.popen.returncode
                raise RuntimeError(f"{self.name}: exited with {code}; see {self.log_path}\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: {url} not 200 within {timeout:.0f} s; see {self.log_path}\n{self.tail()}")

    def cpu_seconds(self) -> float:
        """user+system CPU of the process and its live descendants."""
        return sum(_cpu(pid) for pid in [self.pid, *_descendants(self.pid)])

    def tail(self, lines: int = 20) -> str:
        self._log.flush()
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} (pid {self.pid}) ignored SIGTERM for {timeout:.0f} s: killing it")
                self.popen.kill()
                self.popen.wait(timeout)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._log.close()
        return self.popen.returncode


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def uvicorn(name: str, app: str, port: int, log: Path, env: dict[str, str] | None = None) -> Proc:
    """``app`` under uvicorn with the gateway's settings: one worker, uvloop, httptools."""
    argv = [PYTHON, "-m", "uvicorn", app, "--host", HOST, "--port", str(port), "--workers", "1", *UVICORN_FLAGS]
    return Proc(name, [*argv, "--lifespan", "auto"], log, env)



def box_busy_seconds() -> float:
    """CPU-seconds all processes spent in user and system mode (IRQ, softirq, idle excluded)."""
    user, nice, system = (int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:4])
    return (user + nice + system) / _TICKS


def kernel_threads_seconds() -> float:
    """CPU-seconds of kernel threads (writeback, journaling: the disk work fsync causes)."""
    return _cpu(2) + sum(_cpu(pid) for pid in _descendants(2))
