"""`python -m bench`: floor vs gateway durable ingest (single, batch), then delivery throughput.

Environment knobs: BENCH_DURATION (s per measured run, 10), BENCH_WARMUP (2), BENCH_REPEAT (A/B
rounds per payload, 3; the best clean run counts; also the Segment drains, the fastest counts),
BENCH_CONNS_SINGLE
(64), BENCH_CONNS_BATCH (32), BENCH_DELIVERY_EVENTS (200000), BENCH_DELIVERY_TIMEOUT (180 s),
BENCH_ONLY=floor (the floor app stands in for the gateway; no delivery phase), BENCH_KEEP=1
(keep the scratch directory: configs, logs, stores).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import amplitude, delivery, ingest, report
from bench.load import ensure_wrk
from bench.payloads import pool_stats, write_pools
from bench.targets import Server, start_emulator, start_floor, start_gateway


def settings() -> dict:
    env = os.environ.get
    only = env("BENCH_ONLY", "")
    if only not in ("", "floor"):
        sys.exit(f"bench: BENCH_ONLY={only!r}: the only choice is 'floor'")
    return {
        "duration_s": float(env("BENCH_DURATION", "10")),
        "warmup_s": float(env("BENCH_WARMUP", "2")),
        "repeat": int(env("BENCH_REPEAT", "3")),
        "conns": {"single": int(env("BENCH_CONNS_SINGLE", "64")), "batch": int(env("BENCH_CONNS_BATCH", "32"))},
        "delivery_events": int(env("BENCH_DELIVERY_EVENTS", "200000")),
        "delivery_timeout_s": float(env("BENCH_DELIVERY_TIMEOUT", "180")),
        "only": only,
        "cpus": os.cpu_count(),
        "workers": 1,
    }


def run(s: dict, workdir: Path) -> dict:
    results: dict = {"run_id": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"), "settings": s}
    pools = write_pools(workdir / "payloads")
    results["payloads"] = {name: pool_stats(path) for name, path in pools.items()}
    running: list[Server] = []
    try:
        floor = start_floor(workdir)
        running.append(floor)
        if s["only"] == "floor":
            print("BENCH_ONLY=floor: a second floor app stands in for the gateway", flush=True)
            gateway = start_floor(workdir, name="gateway-as-floor")
        else:
            emulator = start_emulator(workdir)
            running.append(emulator)
            gateway = start_gateway(workdir, workdir / "ingest-store" / "trackgate.db", emulator.url, paused=True)
        running.append(gateway)
        print(f"ingest: floor {floor.url} vs gateway {gateway.url} (destination paused)", flush=True)
        results["runs"], results["ingest"] = ingest.compare({"floor": floor, "gateway": gateway}, pools, s)
        floor.stop()
        gateway.stop()

        if s["only"] != "floor":
            n = s["delivery_events"]
            print(f"delivery: queue {n:,} events paused, restart unpaused, drain to the emulator", flush=True)
            started = time.monotonic()
            drains = []
            for attempt in range(s["repeat"]):  # best of `repeat`, like the ingest runs
                drains.append(delivery.run(workdir, emulator, pools["batch"], n, s["delivery_timeout_s"], attempt=attempt))
                print(f"  drain #{attempt + 1}: {drains[-1].events_s:,.0f} events/s", flush=True)
            results["delivery"] = delivery.best(drains)
            print(f"  done in {time.monotonic() - started:.1f} s", flush=True)
            print("delivery to Amplitude: the same backlog through the amplitude destination", flush=True)
            outcome = amplitude.run(workdir, pools["batch"], n, s["delivery_timeout_s"])
            results["delivery_amplitude"] = outcome.as_dict()
    finally:
        for server in reversed(running):
            server.stop()
    results["ratios"] = report.ratios(results)
    return results


def main() -> int:
    s = settings()
    ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="trackgate-bench-"))
    try:
        results = run(s, workdir)
    finally:
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"scratch directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(report.table(results))
    print(f"\nresults: {report.save(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
