"""The bench's output: a table on stdout and the same figures as JSON in bench/.work/."""

from __future__ import annotations

import json
from pathlib import Path

from bench.amplitude import line as amplitude_line

WORK = Path(__file__).resolve().parent / ".work"
TARGETS = {"single": 0.5, "batch": 0.5, "delivery": 1.0}  # gateway / floor, delivery / batch ingest


def ratios(results: dict) -> dict[str, float | None]:
    rows = {(r["target"], r["payload"]): r for r in results["ingest"]}
    out: dict[str, float | None] = {}
    for payload in ("single", "batch"):
        floor, gateway = rows.get(("floor", payload)), rows.get(("gateway", payload))
        out[payload] = gateway["events_s"] / floor["events_s"] if floor and gateway and floor["events_s"] else None
    delivery, batch = results.get("delivery"), rows.get(("gateway", "batch"))
    if delivery and batch and batch["events_s"]:
        out["delivery"] = delivery["events_s"] / batch["events_s"]
    else:
        out["delivery"] = None
    return out


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(results: dict) -> str:
    s = results["settings"]
    lines = [
        f"trackgate bench {results['run_id']}: {s['duration_s']:g} s per run after a {s['warmup_s']:g} s warm-up; "
        f"wrk -t1 on the same {s['cpus']} CPUs, unpinned.",
        "Floor and gateway each run as ONE uvicorn process (uvloop, httptools, no access log): the gateway is one "
        "process because its SQLite store has one writer.",
    ]
    if s["only"] == "floor":
        lines.append("BENCH_ONLY=floor: the 'gateway' rows are the floor app again (a self-check; ratios ≈ 1).")
    lines += [
        "",
        f"Best of {s['repeat']} alternating runs each; 'range' is events/s over them; 'other' is CPU used by "
        "unrelated processes (% of one core) during the chosen run.",
        "",
        f"{'target':<8} {'payload':<7} {'conns':>5} {'req/s':>8} {'events/s':>9} {'range events/s':>17} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'srv us/req':>10} {'srv CPU':>7} {'other':>5}",
    ]
    for r in results["ingest"]:
        low, high = r["events_s_range"]
        lines.append(
            f"{r['target']:<8} {r['payload']:<7} {r['connections']:>5} {_n(r['req_s']):>8} {_n(r['events_s']):>9} "
            f"{_n(low) + '-' + _n(high):>17} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['errors']:>6} "
            f"{_n(r['server_cpu_us_per_req'], 1):>10} {r['server_cpu_pct']:>6.0f}% {r['other_cpu_pct']:>4.0f}%"
            + ("  disturbed" if r["disturbed"] else "")
        )
    d = results.get("delivery")
    if d:
        state = "" if d["complete"] else f"  INCOMPLETE after {s['delivery_timeout_s']:g} s"
        lines += [
            "",
            f"delivery: {d['events']:,} queued events drained to the Segment emulator in {d['drain_s']:.2f} s "
            f"= {_n(d['events_s'])} events/s{state}"
            + (f" (best of {s['repeat']} drains; range {_n(d['events_s_range'][0])}-{_n(d['events_s_range'][1])})"
               if "events_s_range" in d else ""),
            f"  received {d['delivered']:,} ({d['unique']:,} distinct messageIds, "
            f"{d['delivered'] - d['unique']:,} duplicates); {d['startup_to_done_s']:.2f} s from gateway start; "
            f"gateway CPU {d['gateway_cpu_us_per_event']:.1f} us/event, emulator CPU "
            f"{d['emulator_cpu_us_per_event']:.1f} us/event; backlog queued in {d['load_s']:.2f} s",
        ]
    if results.get("delivery_amplitude"):
        lines.append(amplitude_line(results["delivery_amplitude"], s["delivery_timeout_s"]))
    lines += ["", f"{'ratio':<34} {'measured':>8} {'target':>7}"]
    names = {
        "single": "single req/s, gateway / floor",
        "batch": "batch events/s, gateway / floor",
        "delivery": "delivery / gateway batch ingest",
    }
    for key, value in results["ratios"].items():
        verdict = "" if value is None else ("  ok" if value >= TARGETS[key] else "  BELOW TARGET")
        lines.append(f"{names[key]:<34} {_n(value, 2):>8} {'≥ ' + str(TARGETS[key]):>7}{verdict}")
    return "\n".join(lines)


def save(results: dict) -> Path:
    WORK.mkdir(exist_ok=True)
    path = WORK / f"results-{results['run_id']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
