"""Delivery throughput to Amplitude: the Segment backlog drained through the `amplitude` destination.

The same phase as bench/delivery.py, with `type: amplitude` and the Amplitude API emulator (its
own process, count-only, deduplicating on insert_id) as the target. Every event of the pool
(track, page, identify) becomes one Amplitude event, so the emulator must see N distinct
insert_ids.

Standalone: ``python -m bench.amplitude`` (BENCH_DELIVERY_EVENTS, BENCH_DELIVERY_TIMEOUT as for
`make bench`); `python -m bench` runs it after the Segment delivery phase.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench import delivery
from bench.delivery import DeliveryResult
from bench.payloads import write_pools
from bench.targets import AMPLITUDE, start_emulator


def run(workdir: Path, pool: Path, events: int, timeout_s: float) -> DeliveryResult:
    """Queue `events` (rounded up to whole batches) paused, then time the drain to Amplitude."""
    emulator = start_emulator(workdir, AMPLITUDE)
    try:
        return delivery.run(workdir, emulator, pool, events, timeout_s, AMPLITUDE)
    finally:
        emulator.stop()


def line(result: dict, timeout_s: float) -> str:
    """One report line, in the style of bench/report.py's delivery line."""
    state = "" if result["complete"] else f"  INCOMPLETE after {timeout_s:g} s"
    return (
        f"delivery to Amplitude: {result['events']:,} queued events drained to the Amplitude emulator in "
        f"{result['drain_s']:.2f} s = {result['events_s']:,.0f} events/s "
        f"(gateway {result['gateway_cpu_us_per_event']:.1f} us CPU/event){state}"
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
