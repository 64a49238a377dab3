"""The load driver: wrk with bench/post_pool.lua, time-bounded, parsed from its WRKJSON line."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "post_pool.lua"  # absolute: wrk falls back to GET / otherwise


@dataclass
class LoadResult:
    payload: str
    connections: int
    duration_s: float
    requests: int  # answered 2xx/3xx
    events: int
    req_s: float
    events_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # connect/read/write/timeouts + non-2xx/3xx answers
    status_errors: int
    server_cpu_us_per_req: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def ensure_wrk() -> str:
    """wrk's path; installs Debian's wrk when missing and running as root, else exits clearly."""
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing it with apt-get (Debian package `wrk`)…", flush=True)
        quiet = {"stdout": subprocess.DEVNULL}
        subprocess.run(["apt-get", "update", "-qq"], check=False, **quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, **quiet)
        path = shutil.which("wrk")
        if path:
            return path
    sys.exit("bench: needs the `wrk` load generator; install it (e.g. `sudo apt-get install -y wrk`) and rerun")


def run_wrk(
    url: str,
    path: str,
    pool: Path,
    auth: str,
    connections: int,
    duration_s: float,
    events_per_request: int,
    payload: str,
) -> LoadResult:
    """One closed-loop wrk run of ``duration_s`` against ``url + path``; fresh messageIds."""
    tag = secrets.token_hex(2)
    argv = [
        ensure_wrk(), "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--timeout", "5s",
        "--latency", "-s", str(LUA), url + path, "--", str(pool.resolve()), path, auth, tag,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no WRKJSON line (script not loaded?)\n{done.stdout}\n{done.stderr}")
    stats = json.loads(line.removeprefix("WRKJSON "))
    seconds = stats["duration_us"] / 1e6
    requests = stats["requests"] - stats["status_errors"]  # answered 2xx/3xx
    socket_errors = sum(stats[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return LoadResult(
        payload=payload,
        connections=connections,
        duration_s=round(seconds, 2),
        requests=requests,
        events=requests * events_per_request,
        req_s=requests / seconds,
        events_s=requests * events_per_request / seconds,
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        errors=socket_errors + stats["status_errors"],
        status_errors=stats["status_errors"],
    )
