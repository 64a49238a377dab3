"""The `trackgate` command: serve, check, send, stats, rejected and the dead-letter queue."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import msgspec

from gateway import config as config_module
from gateway import registry
from gateway.store.base import DeadLetterFilter

DEFAULT_CONFIG = "config/gateway.yaml"
EXIT_USAGE = 2


def _load(path: str):
    try:
        return config_module.load(path)
    except config_module.ConfigError as error:
        print(f"trackgate: {path} is not valid:", file=sys.stderr)
        for line in error.errors:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


# ---- serve / check -------------------------------------------------------------------


def cmd_serve(args) -> int:
    import uvicorn

    from gateway import logs
    from gateway.app import Gateway

    config = _load(args.config)
    logs.setup(args.log_level)
    app = Gateway(config, Path.cwd())
    uvicorn.run(
        app,
        host=args.host or config.server.host,
        port=args.port or config.server.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=args.log_level,
        timeout_graceful_shutdown=30,
    )
    return 0


def cmd_check(args) -> int:
    config = _load(args.config)
    print(
        f"{args.config}: ok ({len(config.sources)} sources, {len(config.destinations)} destinations, "
        f"store {config.store.backend} at {config.store.path})"
    )
    return 0


# ---- send ----------------------------------------------------------------------------


def cmd_send(args) -> int:
    adapter = registry.source(args.format)
    sample = getattr(adapter, "sample_request", None)
    if sample is None:
        print(f"trackgate: format {args.format!r} has no sample request", file=sys.stderr)
        return EXIT_USAGE
    # A messageId always, as SDKs send one (and some dialects require it).
    message_id = args.message_id or str(uuid.uuid4())
    fields = {"type": args.type, "userId": args.user_id, "event": args.event, "messageId": message_id}
    path, headers, body = sample(args.key, {k: v for k, v in fields.items() if v})
    request = urllib.request.Request(args.url.rstrip("/") + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, reply = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, reply = error.code, error.read()
    except OSError as error:
        print(f"trackgate: cannot reach {args.url}: {error}", file=sys.stderr)
        return 1
    print(f"POST {path} -> {status} {reply.decode('utf-8', 'replace')}")
    return 0 if 200 <= status < 300 else 1


# ---- store-reading commands ----------------------------------------------------------


def _with_store(args, action):
    from gateway.app import open_store

    store = open_store(_load(args.config), Path.cwd(), for_ingest=False)

    async def run():
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def cmd_stats(args) -> int:
    stats = _with_store(args, lambda store: store.stats())
    if args.json:
        print(msgspec.json.encode(stats).decode())
        return 0
    print(f"backlog {stats.backlog_bytes:,} of {stats.max_backlog_bytes:,} bytes")
    print(f"{'destination':<20} {'pending':>9} {'retrying':>9} {'dead':>7} {'oldest':>8} {'delivered':>10} {'retried':>8} {'dup?':>6}  skipped")
    for name, dest in sorted(stats.destinations.items()):
        skipped = ", ".join(f"{k.removeprefix('skipped_')}={v}" for k, v in sorted(dest.counters.items()) if k.startswith("skipped_"))
        print(
            f"{name:<20} {dest.pending:>9,} {dest.retrying:>9,} {dest.dead_letters:>7,} "
            f"{_age(dest.oldest_pending_age_s):>8} {dest.counters.get('delivered', 0):>10,} "
            f"{dest.counters.get('retried', 0):>8,} {dest.counters.get('possible_duplicates', 0):>6,}  {skipped or '-'}"
        )
    for source, count in sorted(stats.rejected.items()):
        print(f"source {source}: {count:,} rejected events (see `trackgate rejected`)")
    return 0


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def _moment(text: str | None) -> float | None:
    """An ISO 8601 time, or an age such as 30m / 2h / 7d (that long ago)."""
    if text is None:
        return None
    match = _RELATIVE.match(text)
    if match:
        return time.time() - float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"trackgate: {text!r} is neither an ISO 8601 time nor an age like 2h") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _filter(args) -> DeadLetterFilter:
    return DeadLetterFilter(
        ids=tuple(args.id or ()),
        message_ids=tuple(args.message_id or ()),
        reason=args.reason,
        since=_moment(args.since),
        until=_moment(args.until),
        limit=args.limit,
    )


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def cmd_dlq_list(args) -> int:
    rows = _with_store(args, lambda store: store.dead_letters(args.destination, _filter(args)))
    if not rows:
        print("no dead letters")
        return 0
    print(f"{'id':>6}  {'destination':<16} {'failed at (UTC)':<19}  {'attempts':>8}  {'reason':<18} message_id")
    for row in rows:
        print(f"{row.id:>6}  {row.destination:<16} {_when(row.failed_at):<19}  {row.attempts:>8}  {row.reason:<18} {row.message_id}")
    return 0


def cmd_dlq_show(args) -> int:
    rows = _with_store(args, lambda store: store.dead_letters(None, DeadLetterFilter(ids=(args.dead_letter_id,))))
    if not rows:
        print(f"trackgate: no dead letter {args.dead_letter_id}", file=sys.stderr)
        return 1
    row = rows[0]
    print(f"id:           {row.id}\ndestination:  {row.destination}\nmessage_id:   {row.message_id}")
    print(f"failed at:    {_when(row.failed_at)} UTC\nattempts:     {row.attempts}\nreason:       {row.reason}")
    print(f"detail:       {row.detail or '-'}")
    print(f"event:\n{msgspec.json.format(row.payload, indent=2).decode()}")
    print(f"last request:\n{row.last_request or '-'}\nlast response:\n{row.last_response or '-'}")
    return 0


def cmd_dlq_replay(args) -> int:
    count = _with_store(args, lambda store: store.replay(args.destination, _filter(args)))
    print(f"replayed {count} dead letters to {args.destination} (original messageIds kept)")
    return 0


def cmd_dlq_purge(args) -> int:
    count = _with_store(args, lambda store: store.purge(args.destination, _filter(args)))
    print(f"purged {count} dead letters of {args.destination}")
    return 0


def cmd_rejected(args) -> int:
    rows = _with_store(args, lambda store: store.rejects(args.source, args.limit))
    if not rows:
        print("no rejected events")
        return 0
    for row in rows:
        print(f"{row.id:>6}  {_when(row.received_at)}  {row.source:<12} {row.code:<20} {row.message}")
        if args.payload:
            print(f"        {row.payload.decode('utf-8', 'replace')}")
    return 0


# ---- argument parsing ----------------------------------------------------------------


def _config_arg(parser, positional: bool = False) -> None:
    if positional:
        parser.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    else:
        parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")


def _filter_args(parser) -> None:
    parser.add_argument("--id", type=int, action="append", help="a dead letter id (repeatable)")
    parser.add_argument("--message-id", action="append", help="an event's messageId (repeatable)")
    parser.add_argument("--reason", help="only this reason code, e.g. http_400")
    parser.add_argument("--since", help="failed at or after: ISO 8601 time or an age like 2h")
    parser.add_argument("--until", help="failed before: ISO 8601 time or an age like 30m")
    parser.add_argument("--limit", type=int, help="at most this many")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trackgate",
        description="Self-hosted identify/track gateway: point analytics SDKs at it, fan events out to your tools.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    _config_arg(serve, positional=True)
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)

    check = commands.add_parser("check", help="validate a config file (exit 0 if valid, 2 if not)")
    _config_arg(check, positional=True)
    check.set_defaults(func=cmd_check)

    send = commands.add_parser("send", help="post a sample event to a running gateway")
    send.add_argument("--url", default="http://127.0.0.1:8088", help="the gateway's base URL")
    send.add_argument("--key", default="dev-web-key", help="the source's write key")
    send.add_argument("--format", default="segment", help="the dialect to speak (a source format)")
    send.add_argument("--type", default="track", choices=["identify", "track", "page", "screen", "group", "alias"])
    send.add_argument("--user-id", default="trackgate-test-user")
    send.add_argument("--event", default="Trackgate Test Event", help="event name for track")
    send.add_argument("--message-id", help="use this messageId (to try dedupe)")
    send.set_defaults(func=cmd_send)

    stats = commands.add_parser("stats", help="backlog, retries, dead letters and skips per destination")
    _config_arg(stats)
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.set_defaults(func=cmd_stats)

    rejected = commands.add_parser("rejected", help="input events refused at ingest, and why")
    _config_arg(rejected)
    rejected.add_argument("--source", help="only this source")
    rejected.add_argument("--limit", type=int, default=50)
    rejected.add_argument("--payload", action="store_true", help="print each rejected item too")
    rejected.set_defaults(func=cmd_rejected)

    dlq = commands.add_parser("dlq", help="the dead-letter queue: list, show, replay, purge")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dlq_list = dlq_commands.add_parser("list", help="list dead letters")
    _config_arg(dlq_list)
    dlq_list.add_argument("--destination", help="only this destination")
    _filter_args(dlq_list)
    dlq_list.set_defaults(func=cmd_dlq_list)
    dlq_show = dlq_commands.add_parser("show", help="one dead letter: event, reason, last request and response")
    _config_arg(dlq_show)
    dlq_show.add_argument("dead_letter_id", type=int, metavar="ID")
    dlq_show.set_defaults(func=cmd_dlq_show)
    for name, func, text in (
        ("replay", cmd_dlq_replay, "send dead letters to their destination again, keeping messageIds"),
        ("purge", cmd_dlq_purge, "delete dead letters for good"),
    ):
        action = dlq_commands.add_parser(name, help=text)
        _config_arg(action)
        action.add_argument("destination", metavar="DESTINATION")
        _filter_args(action)
        action.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
