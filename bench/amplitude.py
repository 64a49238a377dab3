"""Delivery throughput to Amplitude: the Segment backlog drained through the `amplitude` destination.

Like bench/delivery.py (whose helpers it uses), but the destination is `type: amplitude` and the
target is the Amplitude API emulator (its own process, count-only, deduplicating on insert_id):
N events are queued with the destination paused, the gateway restarts unpaused, and the rate
counts from the first delivered event to the last. Every event of the pool (track, page,
identify) becomes one Amplitude event, so the emulator must see N distinct insert_ids.

Standalone: ``python -m bench.amplitude`` (BENCH_DELIVERY_EVENTS, BENCH_DELIVERY_TIMEOUT as for
`make bench`). Wired into `python -m bench` by calling ``run()`` after the Segment delivery phase.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.delivery import POLL_S, DeliveryResult, _post_backlog, stats
from bench.payloads import BATCH_SIZE, write_pools
from bench.procs import HOST, PYTHON, Proc, free_port
from bench.targets import SOURCE_KEY, TRACKGATE, Server, _ready

API_KEY = "bench-amplitude-key"  # what the gateway sends to the emulator


def start_emulator(workdir: Path) -> Server:
    """The Amplitude emulator as its own process, in count-only mode."""
    argv = [PYTHON, "-m", "tests.emulators.amplitude_api", "--port", "0", "--api-key", API_KEY, "--count-only"]
    proc = Proc("amplitude-emulator", argv, workdir / "amplitude-emulator.out", pipe=True)
    try:
        url = proc.first_line()
    except BaseException:
        proc.stop()
        raise
    return Server(proc, url)


def gateway_config(store: Path, port: int, emulator_url: str, paused: bool) -> dict:
    return {
        "server": {"host": HOST, "port": port},
        "store": {"backend": "sqlite", "path": str(store), "max_backlog_bytes": 64 << 30},
        "sources": {"bench": {"format": "segment", "keys": [SOURCE_KEY], "destinations": ["amplitude"]}},
        "destinations": {
            "amplitude": {
                "type": "amplitude",
                "paused": paused,
                "settings": {"api_key": API_KEY, "base_url": emulator_url},
                "batch": {"max_bytes": 1_000_000},  # Amplitude's own limit per request
            }
        },
    }


def start_gateway(workdir: Path, store: Path, emulator_url: str, paused: bool, name: str) -> Server:
    port = free_port()
    config = workdir / f"{name}.yaml"
    config.write_text(yaml.safe_dump(gateway_config(store, port, emulator_url, paused), sort_keys=False))
    proc = Proc(name, [TRACKGATE, "serve", str(config), "--log-level", "warning"], workdir / f"{name}.out")
    server = Server(proc, f"http://{HOST}:{port}")
    _ready(server)
    return server


def run(workdir: Path, pool: Path, events: int, timeout_s: float) -> DeliveryResult:
    """Queue `events` (rounded up to whole batches) paused, then time the drain to Amplitude."""
    bodies = pool.read_bytes().splitlines()
    requests = -(-events // BATCH_SIZE)
    events = requests * BATCH_SIZE
    store = workdir / "amplitude-store" / "trackgate.db"
    store.parent.mkdir(parents=True, exist_ok=True)
    emulator = start_emulator(workdir)
    try:
        gateway = start_gateway(workdir, store, emulator.url, paused=True, name="gateway-amplitude-backlog")
        try:
            started = time.monotonic()
            asyncio.run(asyncio.wait_for(_post_backlog(gateway.url, bodies, requests), timeout_s))
            load_s = time.monotonic() - started
        finally:
            gateway.stop()
        return _drain(workdir, store, emulator, events, timeout_s, load_s)
    finally:
        emulator.stop()


def _drain(workdir: Path, store: Path, emulator: Server, events: int, timeout_s: float, load_s: float) -> DeliveryResult:
    before = stats(emulator)
    emulator_cpu = emulator.proc.cpu_seconds()
    launched = time.monotonic()
    gateway = start_gateway(workdir, store, emulator.url, paused=False, name="gateway-amplitude-deliver")
    try:
        first_t, first_n, first_cpu, now = None, 0, 0.0, before
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = stats(emulator)
            delivered = now["events"] - before["events"]
            if first_t is None and delivered > 0:
                first_t, first_n, first_cpu = time.monotonic(), delivered, gateway.proc.cpu_seconds()
            if now["unique"] - before["unique"] >= events:
                break
            time.sleep(POLL_S)
        done_t = time.monotonic()
        gateway_cpu = gateway.proc.cpu_seconds() - first_cpu
    finally:
        gateway.stop()
    delivered = now["events"] - before["events"]
    unique = now["unique"] - before["unique"]
    drain_s = done_t - first_t if first_t is not None else 0.0
    return DeliveryResult(
        events=events,
        delivered=delivered,
        unique=unique,
        complete=unique >= events,
        drain_s=round(drain_s, 3),
        startup_to_done_s=round(done_t - launched, 3),
        events_s=(delivered - first_n) / drain_s if drain_s > 0 else 0.0,
        gateway_cpu_us_per_event=gateway_cpu / max(delivered - first_n, 1) * 1e6,
        emulator_cpu_us_per_event=(emulator.proc.cpu_seconds() - emulator_cpu) / max(delivered, 1) * 1e6,
        load_s=round(load_s, 3),
    )


def line(result: dict, timeout_s: float) -> str:
    """One report line, in the style of bench/report.py's delivery line."""
    state = "" if result["complete"] else f"  INCOMPLETE after {timeout_s:g} s"
    return (
        f"delivery to Amplitude: {result['events']:,} queued events drained to the Amplitude emulator in "
        f"{result['drain_s']:.2f} s = {result['events_s']:,.0f} events/s "
        f"(gateway {result['gateway_cpu_us_per_event']:.1f} µs CPU/event){state}"
    )


def main() -> int:
    events = int(os.environ.get("BENCH_DELIVERY_EVENTS", "200000"))
    timeout_s = float(os.environ.get("BENCH_DELIVERY_TIMEOUT", "180"))
    workdir = Path(tempfile.mkdtemp(prefix="trackgate-bench-amplitude-"))
    try:
        pools = write_pools(workdir / "payloads")
        print(f"delivery to Amplitude: queue {events:,} events paused, restart unpaused, drain", flush=True)
        result = run(workdir, pools["batch"], events, timeout_s).as_dict()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(line(result, timeout_s))
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
