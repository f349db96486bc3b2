"""`zendesk-stream explain`: Segment's event tester, on the command line.

    EVENT.json ─► read_events ─► Destination.deliver (the code `run` uses) ─► Explanation ─► text, JSON
                   over DryRunClient: reads answered by Zendesk (or assumed), writes recorded
                   over ZendeskClient with --send: everything sent, every exchange recorded

There is one request sequence for an event: the destination's. Without `--send` it runs over a dry-run
client (`stream.zendesk.dryrun`), so what explain prints is what `run` would do. Reads are answered by
Zendesk when credentials are configured (GET only), or by nothing with `--offline` or without them;
then the explanation says what it had to assume ("needs a Zendesk user with external_id u-999").
Nothing printed holds a credential: Zendesk is named by its base URL, answers are shown as excerpts with
our secrets blanked.

Exit codes: 0 every event was (or would be) delivered or skipped; 3 one would be (or was) dead-lettered;
1 one failed transiently (the consumer would retry it); 2 a configuration problem (`stream.cli`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from stream.errors import ConfigError, FieldsUnavailable, InvalidEvent
from stream.events import decode_json
from stream.jsontypes import quote
from stream.mapping.fields import Dropped
from stream.mapping.settings import DestinationSettings
from stream.outcomes import DeadLetter, Delivered, DlqReason, Outcome, Skipped, Transient
from stream.zendesk.client import Exchange
from stream.zendesk.connection import ZendeskConnection
from stream.zendesk.dryrun import DryCall, is_placeholder

if TYPE_CHECKING:
    from stream.delivery import Destination

__all__ = [
    "EXIT_DEAD_LETTER",
    "EXIT_OK",
    "EXIT_TRANSIENT",
    "Explanation",
    "FieldsSource",
    "exit_code",
    "explanation_json",
    "fields_header",
    "format_explanation",
    "headline",
    "read_events",
    "run_explain",
]

EXIT_OK: Final = 0
EXIT_TRANSIENT: Final = 1
EXIT_DEAD_LETTER: Final = 3

_INDENT: Final = "     "
_SHOWN_VALUE: Final = 60

Input = dict[str, Any] | InvalidEvent


# ------------------------------------------------------------------------------------------------ input


def read_events(text: str) -> list[Input]:
    """The events of EVENT.json: one JSON object (pretty-printed or not), a JSON array of objects, or JSON
    lines. An item that is not a usable JSON object is kept as the `InvalidEvent` the consumer would
    dead-letter it with. Raises ConfigError when there is no event at all or the array is broken."""
    stripped = text.strip()
    if not stripped:
        raise ConfigError("EVENT.json holds no event (expected a JSON object, an array or JSON lines)")
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except (ValueError, RecursionError) as err:
            raise ConfigError(f"EVENT.json starts with '[' but is not a valid JSON array ({err})") from None
        if not items:
            raise ConfigError("EVENT.json holds an empty array: no event to explain")
        return [_object_item(item, index) for index, item in enumerate(items, 1)]
    lines = [line for line in stripped.splitlines() if line.strip()]
    if len(lines) > 1 and _is_json_object(lines[0]):
        return [_decoded(line) for line in lines]
    return [_decoded(stripped)]


def _object_item(item: object, index: int) -> Input:
    if isinstance(item, dict):
        return item
    kind = "an array" if isinstance(item, list) else type(item).__name__
    return InvalidEvent(DlqReason.INVALID_PAYLOAD, f"array item {index} is not a JSON object (got {kind})")


def _decoded(text: str) -> Input:
    try:
        return decode_json(text)
    except InvalidEvent as err:
        return err


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def headline(item: Input) -> str:
    """What the event is, in one line: type and identifiers, as the event spells them."""
    if isinstance(item, InvalidEvent):
        return "not a usable event"
    kind = item.get("type", item.get("action"))
    parts = [str(kind) if isinstance(kind, str) and kind.strip() else "(no type)"]
    for key in ("event", "userId", "anonymousId", "groupId", "messageId"):
        value = item.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            parts.append(f"{key}={quote(value, _SHOWN_VALUE)}")
    return " ".join(parts)


# -------------------------------------------------------------------------------------------- output


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldsSource:
    """Where planning learned which custom fields exist."""

    base_url: str | None = None  # Zendesk that was asked (GET only); None: nobody was asked
    user_fields: int = 0
    organization_fields: int = 0
    why_not: str = ""  # why none are known: --offline, no credentials, or the listing failed


def fields_header(source: FieldsSource) -> str:
    if source.base_url is not None and not source.why_not:
        return (
            f"custom fields: read from Zendesk at {source.base_url} (GET only): "
            f"{_count(source.user_fields, 'user field')}, "
            f"{_count(source.organization_fields, 'organization field')}"
        )
    return (
        f"custom fields: none assumed to exist ({source.why_not}); "
        "a field the event needs is shown as created"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    position: int  # 1-based, in the input
    total: int
    headline: str
    outcome: Outcome  # what became (with --send) or would become of the event
    sent: bool = False  # --send: the calls went to Zendesk
    calls: tuple[DryCall, ...] = ()  # the dry run's calls, in order
    exchanges: tuple[Exchange, ...] = ()  # --send: every request and its answer, in order
    assumptions: tuple[str, ...] = ()  # what the dry run could not ask and assumed
    dropped: tuple[Dropped, ...] = field(default=())  # traits left out of the writes


def format_explanation(explanation: Explanation) -> str:
    lines = [f"── event {explanation.position} of {explanation.total}: {explanation.headline}"]
    if explanation.sent:
        if explanation.exchanges:
            lines.append("sent:")
            lines.extend(_exchange_line(number, e) for number, e in enumerate(explanation.exchanges, 1))
        else:
            lines.append("sent: nothing")
    elif explanation.calls:
        lines.append(f"would make {_count(len(explanation.calls), 'call')}:")
        for number, call in enumerate(explanation.calls, 1):
            lines.extend(_call_lines(number, call))
    if explanation.dropped:
        left_out = ", ".join(f"{quote(d.key, _SHOWN_VALUE)} ({d.reason.value})" for d in explanation.dropped)
        lines.append(f"left out: {left_out}")
    lines.extend(f"needs: {assumption}" for assumption in explanation.assumptions)
    lines.extend(_result_lines(explanation.outcome, done=explanation.sent))
    return "\n".join(lines)


def _call_lines(number: int, call: DryCall) -> list[str]:
    if call.sent:
        first = f"  {number}. {call.method} {call.path} → {call.status} (asked Zendesk)"
    elif call.body is None and call.method == "GET":
        first = f"  {number}. {call.method} {call.path}"
    else:
        first = f"  {number}. {call.method} {call.path} (not sent)"
    lines = [first]
    if call.note:
        lines.append(f"{_INDENT}{call.note}")
    if call.body is not None:
        body = json.dumps(_shown(call.body), ensure_ascii=False, indent=2, default=str)
        lines.extend(f"{_INDENT}{line}" for line in body.splitlines())
    return lines


def _shown(value: Any) -> Any:
    """A body with the dry run's made-up ids shown as what they stand for."""
    if is_placeholder(value):
        return "<id Zendesk assigns or holds>"
    if isinstance(value, Mapping):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v) for v in value]
    return value


def _exchange_line(number: int, exchange: Exchange) -> str:
    call = f"  {number}. {exchange.method} {exchange.path} →"
    if exchange.status is None:
        return f"{call} no answer ({exchange.excerpt})"
    return f"{call} {exchange.status} {exchange.excerpt}".rstrip()


def _result_lines(result: Outcome, *, done: bool) -> list[str]:
    match result:
        case Delivered():
            if done:
                return [f"result: delivered ({_count(result.operations, 'operation')}: {result.summary})"]
            return [f"result: would deliver ({result.summary})"]
        case Skipped():
            detail = f": {result.detail}" if result.detail else ""
            return [
                f"result: {'skipped' if done else 'would be skipped'}, reason {result.reason.value}{detail}"
            ]
        case DeadLetter():
            status = f", HTTP {result.http_status}" if result.http_status else ""
            return [
                f"result: {'dead-lettered' if done else 'would be dead-lettered'}, "
                f"reason {result.reason.value} (class {result.reason.error_class.value}{status})",
                f"  message: {result.message}",
            ]
        case Transient():
            status = f" (HTTP {result.http_status})" if result.http_status else ""
            return [f"result: transient failure{status}, the consumer would retry it: {result.message}"]


def explanation_json(explanation: Explanation) -> dict[str, Any]:
    """The same report as a machine-readable document (`explain --json`)."""
    outcome = explanation.outcome
    result: dict[str, Any] = {"outcome": _outcome_name(outcome)}
    match outcome:
        case Delivered(operations=operations, summary=summary):
            result.update(operations=operations, summary=summary)
        case Skipped(reason=reason, detail=detail):
            result.update(reason=reason.value, detail=detail)
        case DeadLetter(reason=reason, message=message, http_status=status):
            result.update(reason=reason.value, error_class=reason.error_class.value, message=message)
            result.update(http_status=status)
        case Transient(message=message, http_status=status):
            result.update(message=message, http_status=status)
    document: dict[str, Any] = {
        "position": explanation.position,
        "event": explanation.headline,
        "sent": explanation.sent,
        "result": result,
        "left_out": [{"trait": d.key, "reason": d.reason.value} for d in explanation.dropped],
        "assumptions": list(explanation.assumptions),
    }
    if explanation.sent:
        document["exchanges"] = [
            {"method": e.method, "path": e.path, "status": e.status, "excerpt": e.excerpt}
            for e in explanation.exchanges
        ]
    else:
        document["calls"] = [
            {
                "method": c.method,
                "path": c.path,
                "write": c.body is not None or c.method != "GET",
                "asked_zendesk": c.sent,
                "status": c.status,
                "body": _shown(c.body),
                "note": c.note,
            }
            for c in explanation.calls
        ]
    return document


def _outcome_name(outcome: Outcome) -> str:
    match outcome:
        case Delivered():
            return "delivered"
        case Skipped():
            return "skipped"
        case DeadLetter():
            return "dead_lettered"
        case Transient():
            return "transient"


def exit_code(explanations: Sequence[Explanation]) -> int:
    """3 when an event would be (or was) dead-lettered; else 1 when one failed transiently; else 0."""
    results = [e.outcome for e in explanations]
    if any(isinstance(r, DeadLetter) for r in results):
        return EXIT_DEAD_LETTER
    if any(isinstance(r, Transient) for r in results):
        return EXIT_TRANSIENT
    return EXIT_OK


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


# ---------------------------------------------------------------------------------------------- I/O

OFFLINE_FLAG: Final = "--offline: no request made"
NO_CREDENTIALS: Final = (
    "no Zendesk credentials configured; set ZENDESK_SUBDOMAIN and ZENDESK_EMAIL + ZENDESK_API_TOKEN "
    "(or ZENDESK_OAUTH_TOKEN) for an exact plan"
)


def run_explain(
    event_file: str,
    env: Mapping[str, str],
    *,
    send: bool = False,
    offline: bool = False,
    as_json: bool = False,
    out: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Explain (and with `send`, deliver) every event of `event_file` (`-`: stdin); return the exit code.
    Raises ConfigError for bad settings or input, ZendeskConfigError when Zendesk refuses the credentials."""
    from stream.config import (  # noqa: PLC0415 (keeps librdkafka out of the pure parts' imports)
        load_destination_settings,
        load_zendesk_connection,
        zendesk_credentials_given,
    )

    if send and offline:
        raise ConfigError("explain: --send and --offline exclude each other")
    settings = load_destination_settings(env.get("ZENDESK_SETTINGS", ""))
    connection: ZendeskConnection | None = None
    why_not = OFFLINE_FLAG
    if not offline:
        if send or zendesk_credentials_given(env):
            connection = load_zendesk_connection(env, settings)
        else:
            why_not = NO_CREDENTIALS
    items = read_events(_read_input(event_file, stdin or sys.stdin))
    output = out or sys.stdout
    report = _Report(output, as_json=as_json)
    explanations = asyncio.run(
        _explain_all(items, settings, connection, send=send, why_not=why_not, report=report)
    )
    report.close()
    return exit_code(explanations)


class _Report:
    """Text as each event is explained, or one JSON document at the end."""

    def __init__(self, out: TextIO, *, as_json: bool) -> None:
        self._out = out
        self._as_json = as_json
        self._document: dict[str, Any] = {"events": []}

    def fields(self, source: FieldsSource) -> None:
        if self._as_json:
            self._document["custom_fields"] = {
                "read_from": source.base_url if not source.why_not else None,
                "user_fields": source.user_fields,
                "organization_fields": source.organization_fields,
                "why_not": source.why_not or None,
            }
        else:
            print(fields_header(source), file=self._out, flush=True)

    def event(self, explanation: Explanation) -> None:
        if self._as_json:
            self._document["events"].append(explanation_json(explanation))
        else:
            print(format_explanation(explanation), file=self._out, flush=True)

    def close(self) -> None:
        if self._as_json:
            json.dump(self._document, self._out, ensure_ascii=False, indent=2, default=str)
            print(file=self._out, flush=True)


async def _explain_all(
    items: Sequence[Input],
    settings: DestinationSettings,
    connection: ZendeskConnection | None,
    *,
    send: bool,
    why_not: str,
    report: _Report,
) -> list[Explanation]:
    from stream.delivery import Destination  # noqa: PLC0415
    from stream.zendesk.client import ZendeskClient  # noqa: PLC0415
    from stream.zendesk.dryrun import DryRunClient  # noqa: PLC0415

    exchanges: list[Exchange] = []
    real = ZendeskClient(connection=connection, on_exchange=exchanges.append) if connection else None
    dry = None if send else DryRunClient(reads=real)
    client = dry or real
    assert client is not None
    destination = Destination(client=client, settings=settings)
    try:
        report.fields(await _fields_source(destination, connection, why_not))
        explanations = []
        for position, item in enumerate(items, 1):
            exchanges.clear()
            if dry is not None:
                dry.begin_event()
            outcome = await _deliver(destination, item)
            explanation = Explanation(
                position=position,
                total=len(items),
                headline=headline(item),
                outcome=outcome[0],
                sent=send,
                calls=tuple(dry.calls) if dry is not None else (),
                exchanges=tuple(exchanges) if send else (),
                assumptions=tuple(dict.fromkeys(dry.assumptions)) if dry is not None else (),
                dropped=outcome[1],
            )
            explanations.append(explanation)
            report.event(explanation)
        return explanations
    finally:
        if real is not None:
            await real.aclose()


async def _fields_source(
    destination: Destination, connection: ZendeskConnection | None, why_not: str
) -> FieldsSource:
    """Reads the field definitions once, before the first event (offline: assumes none)."""
    try:
        known = await destination.known()
    except FieldsUnavailable as err:
        return FieldsSource(
            base_url=connection.base_url if connection else None, why_not=f"listing them failed: {err}"
        )
    if connection is None:
        return FieldsSource(why_not=why_not)
    return FieldsSource(
        base_url=connection.base_url,
        user_fields=len(known.user_fields),
        organization_fields=len(known.organization_fields),
    )


async def _deliver(destination: Destination, item: Input) -> tuple[Outcome, tuple[Dropped, ...]]:
    if isinstance(item, InvalidEvent):
        return DeadLetter(reason=item.reason, message=item.message), ()
    outcome, progress = await destination.deliver(item)
    return outcome, progress.plan.dropped if progress is not None else ()


def _read_input(event_file: str, stdin: TextIO) -> str:
    if event_file == "-":
        return stdin.read()
    path = Path(event_file).expanduser()
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        raise ConfigError(f"explain: cannot read {path} ({err.strerror})") from None
