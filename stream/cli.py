"""The `zendesk-stream` command. Wiring only: settings, logs and adapters come together here.

A bad setting ends the command with one line on stderr naming it and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from stream import __version__
from stream.environment import ENVIRONMENT, check_environment
from stream.errors import ConfigError, StreamError, ZendeskConfigError
from stream.kafka.config import KafkaSettings, kafka_settings_from_env
from stream.observability import configure_logging
from stream.zendesk.governor import ACCOUNT_CREATE_UPDATE_PER_S, MAX_JOBS, PER_KEY_RPM, PLANS

EXIT_FAILED = 1
EXIT_CONFIG = 2

DESCRIPTION = """\
Reads Segment events (identify, track, group) from Kafka and applies them to Zendesk the way Segment's
Zendesk destination does: users, organizations, custom fields, memberships and Sunshine events.
Configuration comes from the environment (KAFKA_*, STREAM_*, ZENDESK_*); see README.md.
"""


def _settings_help() -> str:
    """The settings with their defaults, for `run --help` (the contract's own words)."""
    width = max(len(name) for name in ENVIRONMENT)
    lines = [f"  {name.ljust(width)}  {meaning}" for name, meaning in ENVIRONMENT.items()]
    plans = ", ".join(
        f"{plan} {support}/{events}" for plan, (support, events) in PLANS.items() if plan != "unlimited"
    )
    governor = (
        f"Rate governor defaults, requests/min of the Support API/Events API by ZENDESK_PLAN: {plans}. "
        f"create_or_update user: {ACCOUNT_CREATE_UPDATE_PER_S}/s per account, {PER_KEY_RPM}/min per user; "
        f"organization updates {PER_KEY_RPM}/min each; at most {MAX_JOBS} bulk jobs queued or running. "
        "Zendesk's rate-limit headers correct these once it answers; a 429 pauses its bucket for "
        "Retry-After plus jitter."
    )
    return (
        "settings (environment; other KAFKA_* variables go to librdkafka):\n"
        + "\n".join(lines)
        + "\n\n"
        + textwrap.fill(governor, width=100)
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zendesk-stream",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"zendesk-stream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="consume Segment events and apply them to Zendesk (the long-running service)",
        description=(
            "Consume the input topic as a member of the consumer group and apply each event to Zendesk. "
            "Offsets are committed only for finished events; invalid events and permanent rejections go "
            "to the dead-letter topic with the reason in their headers. SIGTERM or SIGINT stops taking "
            "work, lets in-flight events finish within STREAM_SHUTDOWN_DEADLINE_S, commits and exits 0."
        ),
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--exit-at-end",
        action="store_true",
        help="exit 0 once every event that existed at start-up is finished and committed (replays, tests)",
    )
    run.set_defaults(handler=_run)

    demo = commands.add_parser(
        "demo",
        help="local Kafka + Zendesk simulator + sample events + the consumer, then a summary",
        description=(
            "Start a local Kafka broker (ops/kafka) and the Zendesk simulator, produce the sample Segment "
            "events, run the consumer until it has caught up, and print what reached Zendesk."
        ),
    )
    demo.add_argument("--keep-kafka", action="store_true", help="leave the local broker running afterwards")
    demo.set_defaults(handler=_demo)

    topics = commands.add_parser(
        "topics",
        help="manage the topics declared in topics/topics.toml",
        description="Manage the Kafka topics the service uses (input, retry, dead-letter).",
    )
    topic_commands = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    apply = topic_commands.add_parser(
        "apply",
        help="create missing topics and align their configs (idempotent)",
        description=(
            "Create the topics declared in topics/topics.toml that are missing and align the configs they "
            "declare. Safe to run any number of times: a second run changes nothing. Partition counts are "
            "never lowered; raising one remaps keys (per-key order breaks across the change), so it needs "
            "--increase-partitions. Topic names come from STREAM_TOPIC, STREAM_RETRY_TOPIC and "
            "STREAM_DLQ_TOPIC; brokers from KAFKA_BOOTSTRAP_SERVERS."
        ),
    )
    apply.add_argument("--file", type=Path, help="topic definitions (default: topics/topics.toml)")
    apply.add_argument(
        "--replication-factor",
        type=int,
        metavar="N",
        help="override the declared replication factor (development clusters with fewer brokers)",
    )
    apply.add_argument(
        "--increase-partitions", action="store_true", help="raise partition counts to the declared ones"
    )
    apply.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    apply.set_defaults(handler=_topics_apply)

    replay = commands.add_parser(
        "replay",
        help="send this group's dead letters again, through its retry path",
        description=(
            "Copy this consumer group's dead letters that match every filter into its retry path, where "
            "`run` delivers them in order per key under the same rate governor. Progress is kept in the "
            "group <group>.replay: the same replay again resumes, or finds nothing left. --dry-run counts "
            "what would be re-sent, by reason and Zendesk status, with a sample, and changes nothing."
        ),
    )
    replay.add_argument("--reason", action="append", default=[], help="a zs.error.reason (repeatable)")
    replay.add_argument(
        "--since", metavar="T", help="dead-lettered at or after T (ISO-8601, or 90s/30m/2h/7d ago)"
    )
    replay.add_argument("--until", metavar="T", help="dead-lettered before T (same forms)")
    replay.add_argument("--key", action="append", default=[], help="a record key (repeatable)")
    replay.add_argument("--partition", type=int, metavar="P", help="only this dead-letter partition")
    replay.add_argument("--offset", type=int, metavar="O", help="with --partition: from this offset on")
    replay.add_argument("--dry-run", action="store_true", help="count and show, change nothing")
    replay.set_defaults(handler=_replay)

    rewind = commands.add_parser(
        "rewind",
        help="move the consumer group back (plan first; --execute to move)",
        description=(
            "Move the service's consumer group to an earlier point, and its retry path with it: events "
            "waiting in the retry path are read again from the input instead, so nothing is processed "
            "twice by the two paths and order per key holds. Prints the plan (per partition the current "
            "and new offset and the events processed again); moves the offsets only with --execute, and "
            "never while the group has active members."
        ),
    )
    where = rewind.add_mutually_exclusive_group(required=True)
    where.add_argument("--to-datetime", metavar="T", help="the first offset at or after T (ISO-8601)")
    where.add_argument(
        "--by-duration", metavar="D", help="the first offset at or after now - D (90s, 30m, 2h, 7d)"
    )
    where.add_argument("--to-earliest", action="store_true", help="the log start of each partition")
    where.add_argument(
        "--to-offset", action="append", metavar="P:O", help="partition P to offset O (repeatable)"
    )
    rewind.add_argument("--partitions", metavar="P,P", help="only these input partitions")
    rewind.add_argument("--execute", action="store_true", help="move the offsets (default: print the plan)")
    rewind.set_defaults(handler=_rewind)

    status = commands.add_parser(
        "status",
        help="where the consumer group stands: lag, parked keys, retries, dead letters, members",
        description=(
            "Read from Kafka, without joining the group: per input partition the committed offset, the end "
            "offset and the lag; the keys parked in the retry path and the oldest waiting record; retry and "
            "dead-letter records by reason (the dead-letter topic is read whole); the group's members. "
            "Topics and group come from STREAM_TOPIC, STREAM_GROUP_ID, STREAM_RETRY_TOPIC and "
            "STREAM_DLQ_TOPIC."
        ),
    )
    status.add_argument("--json", action="store_true", help="one JSON document instead of text")
    status.set_defaults(handler=_status)

    explain = commands.add_parser(
        "explain",
        help="the event tester: what the destination would do with an event (--send: do it)",
        description=(
            "Print what the destination would do with each event of EVENT.json under the configured "
            "settings (ZENDESK_SETTINGS): the skip reason, the dead-letter reason and message, or the "
            "Zendesk calls in order with their JSON bodies, made by the same delivery code `run` uses. "
            "Nothing is written to Zendesk: with credentials configured, Zendesk answers the reads "
            "(GET only); without them, or with --offline, the explanation says what it had to assume. "
            "EVENT.json holds one event, a JSON array of events or JSON lines; '-' reads stdin. "
            "Exit status: 0 delivered or skipped, 3 dead-lettered, 1 transient failure (--send), "
            "2 configuration problem."
        ),
    )
    explain.add_argument("event_file", metavar="EVENT.json", help="the event(s) to explain; - for stdin")
    explain_mode = explain.add_mutually_exclusive_group()
    explain_mode.add_argument(
        "--send",
        action="store_true",
        help="send the event(s) to Zendesk and show each call's answer and the outcome",
    )
    explain_mode.add_argument(
        "--offline",
        action="store_true",
        help="make no request at all: say what would have to exist in Zendesk",
    )
    explain.add_argument("--json", action="store_true", help="the same report as one JSON document")
    explain.set_defaults(handler=_explain)

    simulator = commands.add_parser(
        "simulator",
        help="run the Zendesk simulator, a real HTTP server on loopback",
        description="A local Zendesk for tests, the demo and benchmarks. See docs/simulator.md.",
    )
    _add_simulator_arguments(simulator)
    simulator.set_defaults(handler=_simulator)
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    environment = dict(os.environ if env is None else env)
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, Mapping[str, str]], int] = args.handler
    try:
        if args.command != "simulator":
            check_environment(environment)
        configure_logging(environment)
        return handler(args, environment)
    except ConfigError as err:
        print(f"zendesk-stream: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except ZendeskConfigError as err:
        print(f"zendesk-stream: Zendesk refused our credentials ({err.status}): {err}", file=sys.stderr)
        return EXIT_CONFIG
    except StreamError as err:
        print(f"zendesk-stream: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    import asyncio  # noqa: PLC0415

    from stream.config import (  # noqa: PLC0415
        consumer_options_from_env,
        delivery_options_from_env,
        engine_options_from_env,
        load_config,
        metrics_port_from_env,
    )
    from stream.service import check_kafka, run_service  # noqa: PLC0415

    config = load_config(env)
    options = engine_options_from_env(env)
    consumer = consumer_options_from_env(env)
    metrics_port = metrics_port_from_env(env)
    largest = check_kafka(config)
    result = asyncio.run(
        run_service(
            config,
            options,
            exit_at_end=args.exit_at_end,
            consumer=consumer,
            delivery=delivery_options_from_env(env),
            max_record_bytes=largest,
            metrics_port=metrics_port,
        )
    )
    return result.exit_code


def _demo(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from stream.demo import run_demo  # noqa: PLC0415

    return run_demo(env, keep_kafka=args.keep_kafka)


def _topics_apply(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from stream import topics  # noqa: PLC0415 (keep --help fast and free of librdkafka)
    from stream.kafka.admin import KafkaAdmin  # noqa: PLC0415

    if args.replication_factor is not None and args.replication_factor < 1:
        raise ConfigError("--replication-factor must be at least 1")
    settings = kafka_settings_from_env(env)
    specs = topics.load_specs(
        settings, path=args.file or topics.DEFAULT_FILE, replication_factor=args.replication_factor
    )
    admin = KafkaAdmin(settings=settings)
    brokers = admin.broker_count()
    existing = admin.existing_topics(spec.name for spec in specs)
    actions = topics.plan_changes(
        specs,
        existing,
        broker_count=brokers,
        increase_partitions=args.increase_partitions,
        dry_run=args.dry_run,
    )
    for action in actions:
        print(topics.describe(action))
    changes = [a for a in actions if not isinstance(a, topics.Warning_)]
    if not changes:
        print(f"topics up to date: {', '.join(spec.name for spec in specs)}")
    elif args.dry_run:
        print(f"dry run: {len(changes)} change(s) not applied")
    else:
        admin.apply(changes)
        print(f"applied {len(changes)} change(s)")
    return 0


def _replay(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    import uuid  # noqa: PLC0415
    from datetime import UTC, datetime  # noqa: PLC0415

    from stream.recovery.replay import ReplayFilter, parse_when, run_replay  # noqa: PLC0415
    from stream.recovery.replay_report import ProgressLine, report  # noqa: PLC0415

    if args.offset is not None and args.partition is None:
        raise ConfigError(
            "--offset needs --partition: offsets belong to one partition of the dead-letter topic"
        )
    now = datetime.now(UTC)
    selection = ReplayFilter(
        reasons=frozenset(args.reason),
        since=parse_when(args.since, now=now, option="--since") if args.since else None,
        until=parse_when(args.until, now=now, option="--until") if args.until else None,
        keys=frozenset(args.key),
        partition=args.partition,
        offset=args.offset,
    )
    settings = kafka_settings_from_env(env)
    _require_topics(settings)
    progress = ProgressLine(sys.stderr)
    summary = run_replay(
        settings,
        selection,
        dry_run=args.dry_run,
        now=now,
        replay_id=f"replay-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
        on_progress=progress.show,
    )
    progress.done()
    print(report(summary, dry_run=args.dry_run, retry_topic=settings.retry_topic))
    return 0


def _rewind(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from datetime import UTC, datetime  # noqa: PLC0415

    from stream.recovery.replay import parse_when  # noqa: PLC0415
    from stream.recovery.rewind import Target, execute, read_plan, render_plan  # noqa: PLC0415
    from stream.recovery.status import describe_group  # noqa: PLC0415

    now = datetime.now(UTC)
    if args.to_earliest:
        target = Target(earliest=True)
    elif args.to_offset:
        target = Target(offsets=dict(_partition_offset(text) for text in args.to_offset))
    else:
        option, text = (
            ("--to-datetime", args.to_datetime) if args.to_datetime else ("--by-duration", args.by_duration)
        )
        if option == "--by-duration" and text[-1:] not in ("s", "m", "h", "d"):
            raise ConfigError(f"--by-duration: expected a duration (90s, 30m, 2h, 7d), got {text!r}")
        target = Target(at=parse_when(text, now=now, option=option))
    partitions = None
    if args.partitions:
        try:
            partitions = {int(p) for p in args.partitions.split(",") if p.strip()}
        except ValueError:
            raise ConfigError(
                f"--partitions: expected partition numbers like 0,1,2, got {args.partitions!r}"
            ) from None
    settings = kafka_settings_from_env(env)
    _require_topics(settings)
    _, members = describe_group(settings)
    if members:
        hosts = ", ".join(sorted({m.host for m in members}))
        raise StreamError(
            f"group {settings.group_id} has {len(members)} active member(s) ({hosts}): stop them first "
            "(scale the deployment to 0, or `docker compose stop`), then run rewind again"
        )
    moves = read_plan(settings, target, partitions=partitions)
    print(render_plan(moves, group=settings.group_id, topic=settings.input_topic, execute=args.execute))
    if args.execute:
        execute(settings, moves)
        print(f"moved group {settings.group_id} and {settings.group_id}.retry")
    return 0


def _partition_offset(text: str) -> tuple[int, int]:
    partition, _, offset = text.partition(":")
    if not (partition.strip().isdigit() and offset.strip().isdigit()):
        raise ConfigError(f"--to-offset: expected PARTITION:OFFSET like 0:1200, got {text!r}")
    return int(partition), int(offset)


def _require_topics(settings: KafkaSettings) -> None:
    from stream.kafka.admin import check_topics  # noqa: PLC0415

    check_topics(settings)


def _status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    import json  # noqa: PLC0415

    from stream.recovery.status import read_status, render  # noqa: PLC0415

    settings = kafka_settings_from_env(env)
    _require_topics(settings)
    status = read_status(settings)
    print(json.dumps(status.to_json(), indent=2) if args.json else render(status))
    return 0


def _explain(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from stream.explain import run_explain  # noqa: PLC0415

    # The printed explanation is the output: the request log lines stay quiet unless asked for.
    configure_logging({**env, "STREAM_LOG_LEVEL": env.get("STREAM_LOG_LEVEL") or "warning"})
    return run_explain(args.event_file, env, send=args.send, offline=args.offline, as_json=args.json)


def _add_simulator_arguments(parser: argparse.ArgumentParser) -> None:
    from stream.simulator.cli import add_arguments  # noqa: PLC0415 (its server is imported on use only)

    add_arguments(parser)


def _simulator(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from stream.simulator.cli import run  # noqa: PLC0415

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
