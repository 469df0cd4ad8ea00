"""Command line: parse arguments, build objects, hand off. No business logic here.

Names, options and exit codes follow the contract in shared/cli.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from batchtop import paths
from batchtop.errors import BatchtopError
from batchtop.exitcodes import Exit


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--data-dir", metavar="DIR", default=default, help="where the SQLite state lives (env BATCHTOP_DATA_DIR)")
    parser.add_argument("--config", metavar="FILE", default=default, help="TOML config file (env BATCHTOP_CONFIG)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchtop",
        description="A console for LLM work run through the providers' batch APIs.",
    )
    _global_options(parser, suppress=False)
    parser.add_argument("--once", action="store_true", help="print the status once and exit")
    parser.add_argument("--json", action="store_true", help="with --once: the stable JSON schema")
    parser.add_argument("--no-refresh", action="store_true", help="with --once: read the store only, no network")
    parser.add_argument("--fail-on-alert", action="store_true", help="with --once: exit 3 when an alert is raised")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _global_options(p, suppress=True)
        return p

    p = command("enqueue", "validate and enqueue native batch lines, all or nothing")
    p.add_argument("files", nargs="+", metavar="FILE", help="JSONL files of OpenAI or Anthropic batch lines; - reads stdin")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--sla", metavar="DURATION", help="results needed within this long, e.g. 36h")
    when.add_argument("--deadline", metavar="ISO", help="results needed by this time, e.g. 2026-11-27T09:00:00Z")
    p.add_argument("--provider", choices=["openai", "anthropic"], help="force the provider instead of telling it from the line")

    p = command("sim", "run the provider simulator (OpenAI Files + Batches, Anthropic Message Batches) on 127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (0 picks a free one)")
    p.add_argument("--failure-rate", type=float, default=0.0, help="share of request attempts that error")
    p.add_argument("--first-try-failure-rate", type=float, default=0.0, help="share of requests that fail their first try only")
    p.add_argument("--fault-rate", type=float, default=0.0, help="share of HTTP calls answered 429/500 with Retry-After")
    p.add_argument("--per-request-s", type=float, default=0.0005, help="simulated processing time per request")
    p.add_argument("--api-key", help="require this API key")
    return parser


def _data_dir(args: argparse.Namespace) -> Path:
    return paths.data_dir(args.data_dir)


def _cmd_enqueue(args: argparse.Namespace) -> int:
    import time

    from batchtop.client import resolve_deadline
    from batchtop.intake import enqueue_files
    from batchtop.store import Store

    try:
        deadline = resolve_deadline(args.sla, args.deadline, time.time())
    except ValueError as exc:
        raise BatchtopError(f"{'--sla' if args.sla else '--deadline'}: {exc}") from None
    with Store(_data_dir(args)) as store:
        counts = enqueue_files(store, args.files, provider=args.provider, deadline=deadline)
    total = sum(counts.values())
    if not total:
        print("nothing to enqueue: the input has no requests", file=sys.stderr)
        return Exit.OK
    print(f"enqueued {total} request{'s' if total != 1 else ''}")
    for key, n in sorted(counts.items()):
        print(f"  {n:>8}  {key.name}")
    return Exit.OK


def _cmd_sim(args: argparse.Namespace) -> int:
    from batchtop.sim import SimConfig, serve_forever

    config = SimConfig(
        failure_rate=args.failure_rate,
        first_try_failure_rate=args.first_try_failure_rate,
        fault_rate=args.fault_rate,
        per_request_s=args.per_request_s,
        require_api_key=args.api_key,
    )
    serve_forever(args.port, config)
    return Exit.OK


def _cmd_once(args: argparse.Namespace) -> int:
    from batchtop.once import run_once

    return run_once(
        _data_dir(args),
        config_path=args.config,
        as_json=args.json,
        refresh=not args.no_refresh,
        fail_on_alert=args.fail_on_alert,
    )


COMMANDS = {"enqueue": _cmd_enqueue, "sim": _cmd_sim}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            if args.once:
                return _cmd_once(args)
            parser.print_usage(sys.stderr)
            print("batchtop: the console is not built yet; use --once", file=sys.stderr)
            return Exit.USAGE
        if args.once:
            parser.error("--once takes no command")
        return COMMANDS[args.command](args)
    except BatchtopError as exc:
        print(f"batchtop: {exc}", file=sys.stderr)
        return Exit.ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`); don't print a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return Exit.ERROR


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
