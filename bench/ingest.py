"""Ingest phase: floor and gateway loaded in turn (A/B, repeated), the best clean run of each kept.

Both servers stay up for the whole phase (an idle one costs nothing), and their runs alternate,
so slow drifts of the machine (other work, disk writeback) hit both alike. Each run records the
CPU that processes other than the server, wrk and kernel threads used meanwhile ("other", % of
one core); a run with more than DISTURBED_PCT is marked disturbed and only chosen when no clean
run exists.
"""

from __future__ import annotations

import resource

from bench.load import run_wrk
from bench.payloads import BATCH_SIZE
from bench.procs import box_busy_seconds, kernel_threads_seconds
from bench.targets import SOURCE_KEY, Server
from tests.emulators.segment_api import basic_auth

PATHS = {"single": ("/v1/identify", 1), "batch": ("/v1/batch", BATCH_SIZE)}
DISTURBED_PCT = 25.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(server: Server, target: str, payload: str, pool, s: dict, duration_s: float) -> dict:
    path, per_request = PATHS[payload]
    before = (box_busy_seconds(), server.proc.cpu_seconds(), _children_cpu(), kernel_threads_seconds())
    conns, auth = s["conns"][payload], basic_auth(SOURCE_KEY)
    result = run_wrk(server.url, path, pool, auth, conns, duration_s, per_request, payload)
    after = (box_busy_seconds(), server.proc.cpu_seconds(), _children_cpu(), kernel_threads_seconds())
    box, srv, wrk, kernel = (b - a for a, b in zip(before, after))
    result.server_cpu_us_per_req = srv / max(result.requests, 1) * 1e6
    pct = 100 / max(result.duration_s, 0.1)
    other_pct = max(0.0, box - srv - wrk - kernel) * pct
    return {
        "target": target,
        **result.as_dict(),
        "server_cpu_pct": srv * pct,
        "wrk_cpu_pct": wrk * pct,
        "kernel_threads_cpu_pct": kernel * pct,
        "other_cpu_pct": other_pct,
        "disturbed": other_pct > DISTURBED_PCT,
    }


def compare(servers: dict[str, Server], pools: dict, s: dict) -> tuple[list[dict], list[dict]]:
    """All runs, and the best run per (target, payload) with the range over its repeats."""
    runs: list[dict] = []
    for payload in PATHS:
        for target, server in servers.items():
            if s["warmup_s"] > 0:
                print(f"  {payload}: {target} warm-up {s['warmup_s']:g} s", flush=True)
                one_run(server, target, payload, pools[payload], s, s["warmup_s"])
        for repeat in range(s["repeat"]):
            for target, server in servers.items():
                row = one_run(server, target, payload, pools[payload], s, s["duration_s"])
                row["repeat"] = repeat
                runs.append(row)
                note = "  DISTURBED" if row["disturbed"] else ""
                print(
                    f"  {payload}: {target} #{repeat + 1}: {row['events_s']:,.0f} events/s, "
                    f"p99 {row['p99_ms']:.1f} ms, "
                    f"errors {row['errors']}, other CPU {row['other_cpu_pct']:.0f}%{note}",
                    flush=True,
                )
    return runs, best(runs)


def best(runs: list[dict]) -> list[dict]:
    chosen = []
    keys = dict.fromkeys((r["target"], r["payload"]) for r in runs)
    for target, payload in sorted(keys, key=lambda k: (list(PATHS).index(k[1]), k[0] != "floor")):
        mine = [r for r in runs if (r["target"], r["payload"]) == (target, payload)]
        clean = [r for r in mine if not r["disturbed"]] or mine
        top = max(clean, key=lambda r: r["events_s"])
        chosen.append({**top, "events_s_range": [min(r["events_s"] for r in mine), max(r["events_s"] for r in mine)]})
    return chosen
