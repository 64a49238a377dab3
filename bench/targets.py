"""What the bench loads: the floor app, the gateway (`trackgate serve`), the Segment emulator."""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.procs import HOST, PYTHON, ROOT, Proc, free_port, uvicorn

TRACKGATE = str(ROOT / ".venv" / "bin" / "trackgate")
SOURCE_KEY = "bench-write-key"  # what the load generator authenticates with
DESTINATION_KEY = "bench-segment-key"  # what the gateway sends to the emulator


class Server:
    """A started HTTP server: its process and base URL."""

    def __init__(self, proc: Proc, url: str):
        self.proc, self.url = proc, url

    def stop(self) -> None:
        self.proc.stop()


def start_floor(workdir: Path, name: str = "floor") -> Server:
    port = free_port()
    env = {"BENCH_FLOOR_FILE": str(workdir / f"{name}.log")}
    proc = uvicorn(name, "bench.floor_app:app", port, workdir / f"{name}.out", env)
    server = Server(proc, f"http://{HOST}:{port}")
    _ready(server)
    return server


class Destination:
    """A destination the delivery phase drains to: its type, settings and emulator."""

    def __init__(self, name: str, settings: dict, emulator_argv: list[str], batch: dict | None = None):
        self.name, self.settings, self.emulator_argv, self.batch = name, settings, emulator_argv, batch or {}


SEGMENT = Destination(
    "segment",
    {"write_key": DESTINATION_KEY},
    ["-m", "tests.emulators.segment_api", "--write-key", DESTINATION_KEY],
)
AMPLITUDE = Destination(
    "amplitude",
    {"api_key": "bench-amplitude-key"},
    ["-m", "tests.emulators.amplitude_api", "--api-key", "bench-amplitude-key"],
    batch={"max_bytes": 1_000_000},  # Amplitude's own limit per request
)


def gateway_config(store: Path, port: int, emulator_url: str, paused: bool, destination: Destination = SEGMENT) -> dict:
    return {
        "server": {"host": HOST, "port": port},
        "store": {"backend": "sqlite", "path": str(store), "max_backlog_bytes": 64 << 30},
        "sources": {"bench": {"format": "segment", "keys": [SOURCE_KEY], "destinations": [destination.name]}},
        "destinations": {
            destination.name: {
                "type": destination.name,
                "paused": paused,
                "settings": {**destination.settings, "base_url": emulator_url},
                **({"batch": destination.batch} if destination.batch else {}),
            }
        },
    }


def start_gateway(
    workdir: Path, store: Path, emulator_url: str, paused: bool, name: str = "gateway", destination: Destination = SEGMENT
) -> Server:
    """`trackgate serve` on a generated config; ready once GET /readyz answers 200."""
    port = free_port()
    config = workdir / f"{name}.yaml"
    config.write_text(yaml.safe_dump(gateway_config(store, port, emulator_url, paused, destination), sort_keys=False))
    proc = Proc(name, [TRACKGATE, "serve", str(config), "--log-level", "warning"], workdir / f"{name}.out")
    server = Server(proc, f"http://{HOST}:{port}")
    _ready(server)
    return server


def start_emulator(workdir: Path, destination: Destination = SEGMENT) -> Server:
    """The destination's API emulator as its own process, in count-only mode."""
    argv = [PYTHON, *destination.emulator_argv, "--port", "0", "--count-only"]
    proc = Proc(f"{destination.name}-emulator", argv, workdir / f"{destination.name}-emulator.out", pipe=True)
    try:
        url = proc.first_line()
    except BaseException:
        proc.stop()
        raise
    return Server(proc, url)


def _ready(server: Server) -> None:
    try:
        server.proc.wait_http_ok(server.url + "/readyz")
    except BaseException:
        server.stop()
        raise
