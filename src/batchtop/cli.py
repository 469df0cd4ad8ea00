"""Command line: parse arguments, build objects, hand off. No business logic here.

Names, options and exit codes follow the contract in shared/cli.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from batchtop import paths
from batchtop.display import clean
from batchtop.errors import BatchtopError
from batchtop.exitcodes import Exit
from batchtop.providers import registry

if TYPE_CHECKING:  # annotations only: each command imports what it runs, lazily
    from batchtop.config import Config
    from batchtop.engine.tick import TickReport
    from batchtop.store.store import BufferKey, Store


def _say(text: str, *, err: bool = False) -> None:
    """Print a message that may carry provider or user text (batch ids, models, errors):
    cleaned, so no escape sequence in it reaches the terminal."""
    print(clean(text), file=sys.stderr if err else sys.stdout)


class _HelpFormatter(argparse.HelpFormatter):
    """Every option that takes a value shows its default: a value argparse knows is
    appended as "(default: X)"; where the default is not a plain value (the data dir,
    a provider told from each line) the help text says it in words."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "default" in text
            or not action.option_strings
            or action.nargs == 0
            or action.default in (None, argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: %(default)s)"


def _log_cleanly(level: int, fmt: str = "%(message)s") -> None:
    """Log to stderr through `display.clean`: the engine logs provider text (errors,
    batch ids). Without this, `tick` would print its warnings through logging's
    last-resort handler, raw. Imported only by the commands that run the engine."""
    import logging

    class CleanFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return clean(super().format(record), keep_newlines=True)

    handler = logging.StreamHandler()
    handler.setFormatter(CleanFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--data-dir", metavar="DIR", default=default,
        help="where the SQLite state lives (default: $BATCHTOP_DATA_DIR, else the platform's user data dir)",
    )
    parser.add_argument(
        "--config", metavar="FILE", default=default,
        help="TOML config file (default: $BATCHTOP_CONFIG, else config.toml in the platform's user config dir;"
        " optional there)",
    )
    parser.add_argument(
        "--store", metavar="URL", default=default,
        help="a shared PostgreSQL store, postgresql://user@host:port/db (any libpq URI; its password is never shown)"
        " (default: $BATCHTOP_STORE, else [store] url, else the SQLite file in the data dir)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchtop",
        description="A console for LLM work run through the providers' batch APIs."
        " Without a command it opens the console; --once prints its status and exits.",
        formatter_class=_HelpFormatter,
    )
    _global_options(parser, suppress=False)
    parser.add_argument("--once", action="store_true", help="print the status once and exit")
    parser.add_argument("--json", action="store_true", help="with --once: the stable JSON schema (same as --format json)")
    parser.add_argument(
        "--format", choices=["text", "json", "prometheus"], default=None,
        help="with --once: text (default), json (the stable JSON schema) or prometheus (text exposition)",
    )
    parser.add_argument("--no-refresh", action="store_true", help="with --once: read the store only, no network")
    parser.add_argument("--fail-on-alert", action="store_true", help="with --once: exit 3 when an alert is raised")
    parser.add_argument(
        "--read-only", action="store_true",
        help="the console only views: no flush, resubmit or cancel, and it runs no engine (also with serve)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, details: str = "") -> argparse.ArgumentParser:
        description = f"{help_text[0].upper()}{help_text[1:]}." + (f" {details}" if details else "")
        p = sub.add_parser(name, help=help_text, description=description, formatter_class=_HelpFormatter)
        _global_options(p, suppress=True)
        return p

    p = command("enqueue", "validate and enqueue native batch lines, all or nothing",
                "A file with any bad line is rejected whole, each problem named by file, line and field.")
    p.add_argument("files", nargs="+", metavar="FILE", help="JSONL files of OpenAI, Anthropic or Gemini batch lines; - reads stdin")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--sla", metavar="DURATION", help="results needed within this long, e.g. 36h (default: no deadline)")
    when.add_argument(
        "--deadline", metavar="ISO", help="results needed by this time, e.g. 2026-11-27T09:00:00Z (default: no deadline)"
    )
    p.add_argument(
        "--provider", choices=registry.names(),
        help="force the provider (default: told from each line's shape)",
    )
    p.add_argument("--model", metavar="MODEL", help="the model of Gemini lines that do not name theirs (default: each line names its own)")
    p.add_argument(
        "--tier", choices=["critical", "high", "normal", "low"],
        help="priority tier: its default SLA from [tiers] (critical 0s, high 1m, normal 1h; low none);"
        " --sla/--deadline win",
    )

    p = command("flush", "mark buffers for flushing now; the next tick submits them",
                "Without it a buffer is flushed by its policy: age, size or a deadline (see the config).")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("buffer", nargs="?", metavar="BUFFER", help="provider:endpoint:model, or a model name")
    which.add_argument("--all", action="store_true", help="every buffer with queued requests")

    command("tick", "one engine pass: flush due buffers, submit, poll, ingest results, resubmit failures")
    p = command("run", "the engine loop: ticks until SIGINT/SIGTERM")
    p.add_argument("--verbose", action="store_true", help="also log every HTTP request to the providers (credentials redacted)")
    p.add_argument("--standby", action="store_true",
                   help="when another engine holds the store, wait and take over once its lease lapses (instead of exiting 1)")

    p = command("resubmit", "put a batch's failed, expired and cancelled requests back for a new attempt now")
    p.add_argument("batch_id", metavar="BATCH_ID", help="the provider's batch id (or local-N for an unknown submission)")

    p = command("adopt", "resolve an unknown submission: it is this provider batch")
    p.add_argument("submission", metavar="LOCAL_ID", help="the unknown submission, as listed (local-N)")
    p.add_argument("batch_id", metavar="BATCH_ID", help="one of its candidate provider batch ids")

    p = command("cancel", "cancel a batch at the provider",
                "Asks first unless --yes; answering no changes nothing and exits 0. What finished before the"
                " cancel is still ingested when the batch ends.")
    p.add_argument("batch_id", metavar="BATCH_ID", help="the provider's batch id")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    p = command("results", "write the latest successful result of each request (JSONL, keyed by custom_id)")
    p.add_argument("batch_id", nargs="?", metavar="BATCH_ID", help="only the results of this provider batch (default: all)")
    p.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (mode 0600, atomically) instead of stdout (default: stdout)"
    )

    p = command("dead-letters", "list requests that used up their attempts, with their last error")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="a JSON array of objects")
    p.add_argument(
        "--retry-realtime", action="store_true",
        help="send each dead letter once more through the provider's real-time API, at list price (asks first with the estimated cost)",
    )
    p.add_argument("--yes", action="store_true", help="with --retry-realtime: do not ask")

    p = command("quote", "what batch input files would cost, batch vs real time, before enqueueing")
    p.add_argument("files", nargs="+", metavar="FILE", help="JSONL files of OpenAI, Anthropic or Gemini batch lines; - reads stdin")
    p.add_argument(
        "--provider", choices=registry.names(),
        help="force the provider (default: told from each line's shape)",
    )
    p.add_argument("--model", metavar="MODEL", help="the model of Gemini lines that do not name theirs (default: each line names its own)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="a JSON array, one object per model")

    p = command("report", "the cost report over a period: batch vs real time, per model and day, projections, what-if")
    p.add_argument("--since", metavar="ISO|DURATION", help="from this time, or this long ago (7d, 24h); default: the start")
    p.add_argument("--until", metavar="ISO", help="up to this time (default: now); periods are widened to whole hours")
    p.add_argument("--what-if", action="append", metavar="MODEL", dest="what_if",
                   help="also price the same usage in batch on MODEL (repeatable; default: [routing] candidates)")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="the report as JSON")
    shape.add_argument("--csv", action="store_true", help="spend per day (by_day) as CSV")

    p = command("events", "the engine's event log as JSON lines, oldest first",
                "Kinds: submitted, ended, ingested, resubmitted, dead_letter, alert, cancelled; each line is what"
                " [[webhooks]] receivers get. Reads the database only.")
    p.add_argument("--follow", action="store_true", help="keep printing new events until interrupted (Ctrl-C exits 0)")
    p.add_argument("--since", metavar="ISO|DURATION", help="only events at or after this time, or this long ago (1h)")
    p.add_argument("--after", metavar="ID", type=int, default=0, help="only events with an id above this one (resume)")

    p = command("demo", "the console on a throw-away data dir, fed by the built-in simulator; needs no keys")
    p.add_argument("--speed", type=float, default=1.0, help="how fast the simulated providers work")
    p.add_argument("--seconds", type=float, default=None, help="quit by itself after this many seconds (default: run until q)")

    p = command("serve", "the console in a browser (textual-serve): one console per browser session",
                "Binds 127.0.0.1 unless --host says otherwise; any other address needs --read-only or"
                " --token-env, else it refuses to start.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (0 picks a free one)")
    p.add_argument("--read-only", action="store_true", default=argparse.SUPPRESS,
                   help="the console only views: every action is refused, and it runs no engine")
    p.add_argument("--token-env", metavar="VAR",
                   help="require the token held in $VAR (at least 16 characters): open /?token=TOKEN once")

    p = command("sim", "run the provider simulator (OpenAI Files + Batches, Anthropic Message Batches, Gemini Batch Mode) on 127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (0 picks a free one)")
    p.add_argument("--failure-rate", type=float, default=0.0, help="share of request attempts that error")
    p.add_argument("--first-try-failure-rate", type=float, default=0.0, help="share of requests that fail their first try only")
    p.add_argument("--fault-rate", type=float, default=0.0, help="share of HTTP calls answered 429/500 with Retry-After")
    p.add_argument("--per-request-s", type=float, default=0.0005, help="simulated processing time per request")
    p.add_argument("--api-key", help="require this API key (default: none, any key is accepted)")
    p.add_argument("--stall", action="store_true", help="batches never progress (until cancelled or their window passes)")
    p.add_argument("--realtime-fault-rate", type=float, default=0.0,
                   help="share of real-time calls (chat completions, responses, embeddings, messages) answered 429/500")
    p.add_argument("--flex-refusal-rate", type=float, default=0.0,
                   help='share of OpenAI service_tier "flex" calls refused with a 429')
    p.add_argument("--replay", action="append", default=[], metavar="FILE",
                   help="answer requests whose custom_id is in this JSONL of recorded result lines with that line, "
                        "verbatim (repeatable)")
    return parser


def _data_dir(args: argparse.Namespace) -> Path:
    return paths.data_dir(args.data_dir)


def _cmd_enqueue(args: argparse.Namespace) -> int:
    import time

    from batchtop.intake.client import tier_deadline
    from batchtop.intake.files import enqueue_files

    config = _config(args)  # for its [prices] (a model without a known price is warned about) and [tiers]
    try:
        deadline = tier_deadline(args.tier, args.sla, args.deadline, time.time(), config.tiers)
    except ValueError as exc:
        raise BatchtopError(f"{'--sla' if args.sla else '--deadline'}: {exc}") from None
    with _store(args, "enqueue", config) as store:
        counts = enqueue_files(
            store, args.files, provider=args.provider, deadline=deadline, model=args.model, tier=args.tier
        )
    _warn_unpriced(config, counts)
    total = sum(counts.values())
    if not total:
        print("nothing to enqueue: the input has no requests", file=sys.stderr)
        return Exit.OK
    print(f"enqueued {total} request{'s' if total != 1 else ''}")
    for key, n in sorted(counts.items()):
        _say(f"  {n:>8}  {key.name}")
    return Exit.OK


def _warn_unpriced(config: Config, counts: Mapping[BufferKey, int]) -> None:
    """Enqueue takes models without a known price (an operator may add it later), but says so."""
    from batchtop.intake.quote import unknown_price_warning
    from batchtop.pricing.table import price_table

    table = price_table(config)
    warning = unknown_price_warning((k.provider, k.model) for k in counts if table.price(k.provider, k.model) is None)
    if warning:
        print(warning, file=sys.stderr)


def _config(args: argparse.Namespace) -> Config:
    """The config, with the store resolved: --store, $BATCHTOP_STORE, [store] url, SQLite."""
    from batchtop.config import load_config, resolve_store

    return resolve_store(load_config(paths.config_file(args.config), required=bool(args.config)), args.store)


def _store(args: argparse.Namespace, command: str, config: Config | None = None) -> Store:
    """The store a command that writes opens (created or migrated when blank). A
    PostgreSQL role that may only read is refused here, with a clean error, rather
    than by the first write's permission error."""
    from batchtop.store import Store

    config = config or _config(args)
    store = Store(_data_dir(args), url=config.store.url, schema=config.store.schema)
    if config.store.url is not None and store.read_only:
        where = store.where
        store.close()
        raise BatchtopError(_read_only_refusal(where, command))
    return store


def _read_only_refusal(where: str, command: str) -> str:
    return f"{where}: this role may only read the store (read-only); `batchtop {command}` writes: nothing was done"


def _check_writable(args: argparse.Namespace, config: Config, command: str) -> None:
    """For the engine's commands (which open the store themselves): refuse a read-only
    PostgreSQL role up front (a SQLite file is not checked: nothing to ask)."""
    if config.store.url is not None:
        _store(args, command, config).close()


def _cmd_flush(args: argparse.Namespace) -> int:
    import time

    from batchtop.store import actions

    with _store(args, "flush") as store:
        buffer_id = None if args.all else actions.find_buffer(store, args.buffer)
        n = actions.request_flush(store, buffer_id, time.time())
    print(f"marked {n} queued request{'s' if n != 1 else ''} for flushing; the next tick submits them")
    return Exit.OK


def _print_ingest_errors(report: TickReport) -> None:
    """Batches whose results could not be read this tick (tried again later)."""
    from batchtop.display import clean

    for batch_id, error in report.ingest_errors.items():
        print(f"  ingest of {clean(batch_id, limit=80)}: {clean(error, limit=300)}", file=sys.stderr)


def _print_report(report: TickReport) -> None:
    done = report.summary()
    summary = done if done else ("nothing done" if report.errors else "nothing to do")
    if report.errors:
        failed = len(report.errors)
        summary += f"; {failed} provider{'s' if failed != 1 else ''} failed: {', '.join(sorted(report.errors))}"
    print("tick: " + summary)
    _print_ingest_errors(report)
    for provider, error in report.errors.items():
        _say(f"  {provider}: {error}", err=True)
    for reason in report.lost_reasons.values():
        _say(f"  {reason}", err=True)


def _cmd_tick(args: argparse.Namespace) -> int:
    import logging

    from batchtop.engine import entrypoints as operations

    _log_cleanly(logging.WARNING)
    config = _config(args)
    _check_writable(args, config, "tick")
    report = operations.tick(_data_dir(args), config)
    _print_report(report)
    return Exit.ERROR if report.errors or report.lost else Exit.OK


def _cmd_run(args: argparse.Namespace) -> int:
    import logging

    from batchtop.engine import entrypoints as operations
    from batchtop.providers.clients import configure_logging

    _log_cleanly(logging.INFO, "%(asctime)s %(name)s %(levelname)s %(message)s")
    configure_logging(verbose=args.verbose)  # adds redaction and quiets the HTTP client
    config = _config(args)
    _check_writable(args, config, "run")
    operations.run(_data_dir(args), config, standby=args.standby)
    return Exit.OK


def _cmd_resubmit(args: argparse.Namespace) -> int:
    import time

    from batchtop.store import actions, submissions

    with _store(args, "resubmit") as store:
        if args.batch_id.startswith("local-"):
            try:
                submissions.resolve_unknown(store, args.batch_id.removeprefix("local-"), adopt=None, now=time.time())
            except LookupError as exc:
                raise BatchtopError(str(exc)) from None
            _say(f"{args.batch_id} will be submitted again on the next tick")
            return Exit.OK
        n = actions.resubmit(store, args.batch_id, time.time())
    _say(f"{n} request{'s' if n != 1 else ''} of {args.batch_id} queued for a new attempt; the next tick submits them")
    return Exit.OK


def _cmd_adopt(args: argparse.Namespace) -> int:
    import time

    from batchtop.store import submissions

    with _store(args, "adopt") as store:
        try:
            submissions.resolve_unknown(store, args.submission.removeprefix("local-"), adopt=args.batch_id, now=time.time())
        except LookupError as exc:
            raise BatchtopError(str(exc)) from None
    _say(f"{args.submission} is {args.batch_id}; the next tick polls it")
    return Exit.OK


def _cmd_cancel(args: argparse.Namespace) -> int:
    import logging
    import time

    from batchtop.engine import entrypoints as operations
    from batchtop.store import actions

    data_dir = _data_dir(args)
    config = _config(args)
    with _store(args, "cancel", config) as store:
        batch = store.batch_summary(args.batch_id)
        if batch is None:
            raise BatchtopError(f"no batch {args.batch_id!r} in {'this data dir' if store.url is None else store.where}")
        if not args.yes:
            sys.stderr.write(
                clean(f"cancel {args.batch_id} ({batch.provider} {batch.model}, {batch.status}, {batch.succeeded}"
                      f" succeeded / {batch.failed} failed / {batch.total})? [y/N] ")
            )
            sys.stderr.flush()
            answer = sys.stdin.readline().strip().lower()
            if answer not in ("y", "yes"):
                # Declining is an answer, not a failure: a script that says no succeeded.
                print("not cancelled", file=sys.stderr)
                return Exit.OK
        actions.request_cancel(store, args.batch_id, time.time())
    _log_cleanly(logging.WARNING)
    report = operations.cancel_now(data_dir, config)
    if report is None:
        _say(f"cancel of {args.batch_id} requested; the running engine carries it out on its next tick")
        return Exit.OK
    if report.errors:
        for provider, error in report.errors.items():
            _say(f"batchtop: {provider}: {error}; the cancel stays requested and is retried", err=True)
        return Exit.ERROR
    if report.lost:
        for reason in report.lost_reasons.values():
            _say(f"batchtop: {reason}", err=True)
        return Exit.ERROR
    _say(f"cancelling {args.batch_id}; what finished before the cancel is ingested when it ends")
    return Exit.OK


def _retry_dead_letters(args: argparse.Namespace) -> int:
    """`dead-letters --retry-realtime`: ask with the estimated cost, mark them for the
    engine holding the lease, and run one pass now when none does (issue 15)."""
    import logging

    from batchtop.engine import entrypoints
    from batchtop.engine.realtime import retry_estimate
    from batchtop.pricing.money import fmt_usd
    from batchtop.store import realtime as rt
    from batchtop.store.lease import EngineBusy

    config = _config(args)
    data_dir = _data_dir(args)
    with _store(args, "dead-letters --retry-realtime", config) as store:
        ids, skipped, cost, known = retry_estimate(store.db, config)
        if skipped:
            _say(f"batchtop: {skipped} dead letter(s) of endpoints with no real-time API here are left as they are", err=True)
        if not ids:
            print("no dead letters to retry real time", file=sys.stderr)
            return Exit.OK
        price = fmt_usd(cost) + ("" if known else " (some models have no known price)")
        if not args.yes:
            sys.stderr.write(f"send {len(ids)} dead letter(s) real time, at list price, about {price}? [y/N] ")
            sys.stderr.flush()
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                print("not retried", file=sys.stderr)
                return Exit.OK
        marked = rt.request_retry(store, ids)
    _log_cleanly(logging.WARNING)
    try:
        report = entrypoints.tick(data_dir, config)
    except EngineBusy:  # another engine holds the data dir: it sends them
        _say(f"{marked} dead letter(s) marked; the running engine sends them real time on its next tick")
        return Exit.OK
    lanes = report.lanes
    _say(f"retried {marked} dead letter(s) real time: {lanes.succeeded} succeeded, {lanes.failed} failed")
    for provider, error in report.errors.items():
        _say(f"batchtop: {provider}: {error}", err=True)
    return Exit.ERROR if report.errors else Exit.OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from batchtop.demo import run_demo

    return run_demo(speed=args.speed, seconds=args.seconds)


def _cmd_console(args: argparse.Namespace) -> int:
    from batchtop.tui import run_console

    return run_console(_data_dir(args), _config(args), read_only=args.read_only)


def _cmd_serve(args: argparse.Namespace) -> int:
    from batchtop.config import STORE_ENV
    from batchtop.tui import serve

    resolved = _config(args)  # a bad config is reported now, not in every browser session
    if resolved.store.url is not None:
        # The sessions' consoles find the same store in their environment, never on their
        # command line (textual-serve prints it, and any user on the host can list it).
        os.environ[STORE_ENV] = resolved.store.url
    token = serve.read_token(dict(os.environ), args.token_env) if args.token_env else None
    if args.token_env:
        os.environ.pop(args.token_env)  # the sessions' consoles have no use for it
    config = str(Path(args.config).resolve()) if args.config else None
    command = serve.console_command(_data_dir(args).resolve(), config, read_only=args.read_only)
    try:
        serve.serve(command, host=args.host, port=args.port, token=token, read_only=args.read_only)
    except serve.ExposureRefused as exc:
        print(f"batchtop: {clean(exc)}", file=sys.stderr)
        return Exit.USAGE
    return Exit.OK


def _cmd_sim(args: argparse.Namespace) -> int:
    from batchtop.sim import SimConfig, serve_forever
    from batchtop.sim.replay import load_recorded

    try:
        recorded = load_recorded(Path(f) for f in args.replay) if args.replay else None
    except (OSError, ValueError) as exc:
        raise BatchtopError(f"--replay: {exc}") from None
    config = SimConfig(
        replay=recorded,
        failure_rate=args.failure_rate,
        first_try_failure_rate=args.first_try_failure_rate,
        fault_rate=args.fault_rate,
        per_request_s=args.per_request_s,
        require_api_key=args.api_key,
        stall=args.stall,
        realtime_fault_rate=args.realtime_fault_rate,
        flex_refusal_rate=args.flex_refusal_rate,
    )
    serve_forever(args.port, config)
    return Exit.OK


def _cmd_once(args: argparse.Namespace) -> int:
    from batchtop.views.once import run_once

    if not args.no_refresh:
        import logging

        _log_cleanly(logging.WARNING)

    return run_once(
        _data_dir(args),
        _config(args),
        as_json=args.json or args.format == "json",
        prometheus=args.format == "prometheus",
        refresh_first=not args.no_refresh,
        fail_on_alert=args.fail_on_alert,
    )


def _cmd_results(args: argparse.Namespace) -> int:
    from batchtop.views import exports

    config = _config(args)
    with exports.existing_db(_data_dir(args), url=config.store.url, schema=config.store.schema) as db:
        with exports.open_export(args.output) as f:
            written = exports.write_results(db, f, args.batch_id)
        if args.output not in (None, "-"):
            _say(f"wrote {written.count} result{'s' if written.count != 1 else ''} to {args.output}", err=True)
    if written.note:
        _say(f"batchtop: {written.note}", err=True)
    return Exit.OK


def _cmd_dead_letters(args: argparse.Namespace) -> int:
    from batchtop.views import exports

    if args.retry_realtime:
        return _retry_dead_letters(args)

    config = _config(args)
    with exports.existing_db(_data_dir(args), url=config.store.url, schema=config.store.schema) as db:
        if args.json:
            exports.write_dead_letters_json(db, sys.stdout)
        else:
            exports.write_dead_letters_text(db, sys.stdout)
    return Exit.OK


def _cmd_events(args: argparse.Namespace) -> int:
    import signal
    import time

    from batchtop.report.document import parse_since
    from batchtop.views.eventlog import write_events

    try:
        since = parse_since(args.since, time.time()) if args.since else None
    except ValueError as exc:
        raise BatchtopError(f"--since: {exc}") from None
    config = _config(args)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopping a follower is not an error
    try:
        write_events(
            _data_dir(args), sys.stdout, since=since, after=args.after, follow=args.follow,
            url=config.store.url, schema=config.store.schema,
        )
    except KeyboardInterrupt:
        return Exit.OK
    return Exit.OK


def _cmd_quote(args: argparse.Namespace) -> int:
    import json

    from batchtop.intake.quote import quote, quote_warning, render_quote
    from batchtop.views.exports import existing_db

    config = _config(args)
    # lends observed mean outputs, if there is history
    with existing_db(_data_dir(args), url=config.store.url, schema=config.store.schema) as db:
        rows = quote(args.files, config, args.provider, db=db, model=args.model)
    warning = quote_warning(rows)
    if warning:
        print(warning, file=sys.stderr)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render_quote(rows, sys.stdout)
    return Exit.OK


def _cmd_report(args: argparse.Namespace) -> int:
    import json
    import time

    from batchtop.report import document, render
    from batchtop.timefmt import parse_time
    from batchtop.views.exports import existing_db

    now = time.time()
    try:
        since = document.parse_since(args.since, now) if args.since else None
    except ValueError as exc:
        raise BatchtopError(f"--since: {exc}") from None
    try:
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        raise BatchtopError(f"--until: {exc}") from None
    if since is not None and until is not None and until <= since:
        raise BatchtopError(f"--until {args.until} is not after --since {args.since}")
    config = _config(args)
    with existing_db(_data_dir(args), url=config.store.url, schema=config.store.schema) as db:
        doc = document.build(db, config, document.Period.rounded(since, until), args.what_if, now=now)
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.csv:
        render.write_csv(doc, sys.stdout)
    else:
        render.write_text(doc, sys.stdout)
        return Exit.OK
    for note in doc["notes"]:
        print(f"batchtop: {note}", file=sys.stderr)
    return Exit.OK


COMMANDS = {
    "enqueue": _cmd_enqueue,
    "flush": _cmd_flush,
    "tick": _cmd_tick,
    "run": _cmd_run,
    "resubmit": _cmd_resubmit,
    "adopt": _cmd_adopt,
    "cancel": _cmd_cancel,
    "results": _cmd_results,
    "dead-letters": _cmd_dead_letters,
    "quote": _cmd_quote,
    "report": _cmd_report,
    "events": _cmd_events,
    "demo": _cmd_demo,
    "sim": _cmd_sim,
    "serve": _cmd_serve,
}
_TAKES_JSON = {"dead-letters", "quote", "report"}


def _check_once_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--json / --no-refresh / --fail-on-alert go with --once (--json also with the commands
    that print JSON); silently ignoring one would hide a mistake in a cron line."""
    if args.json and args.format not in (None, "json"):
        parser.error(f"--json and --format {args.format} disagree: give one")
    if args.command is None:
        if not args.once and (args.json or args.format or args.no_refresh or args.fail_on_alert):
            parser.error("--json, --format, --no-refresh and --fail-on-alert go with --once")
        if args.once and args.read_only:
            parser.error("--read-only goes with the console or serve, not with --once (which only reads)")
        return
    if args.once:
        parser.error("--once takes no command")
    if args.read_only and args.command != "serve":
        parser.error(f"--read-only goes with the console or serve, not with {args.command}")
    if args.format:
        parser.error(f"--format goes with --once, not with {args.command}")
    if args.no_refresh or args.fail_on_alert:
        parser.error(f"--no-refresh and --fail-on-alert go with --once, not with {args.command}")
    if args.json and args.command not in _TAKES_JSON:
        parser.error(f"{args.command} has no --json")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_once_options(parser, args)
    try:
        if args.command is None:
            return _cmd_once(args) if args.once else _cmd_console(args)
        return COMMANDS[args.command](args)
    except BatchtopError as exc:
        # A rejected file has one line per problem: newlines kept, everything else cleaned.
        print(clean(f"batchtop: {exc}", keep_newlines=True), file=sys.stderr)
        return Exit.ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`); don't print a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return Exit.ERROR


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
