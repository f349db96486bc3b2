"""`zendesk-stream explain`: Segment's event tester, on the command line.

    EVENT.json ─► read_events ─► plan each event ─► Explanation ─► format_explanation ─► stdout
                                        └── --send: Destination.process; every exchange with Zendesk recorded

Without `--send` nothing is written to Zendesk: the only requests are the GETs that list the custom field
definitions (planning needs them to know which fields exist), and none at all with `--offline` or without
Zendesk credentials (the plan then assumes no custom field exists, and says so).

The pure parts (reading the input, describing a plan as the calls it makes, formatting, the exit code) are
separate from the I/O (`run_explain`). Nothing printed holds a credential: Zendesk is named by its base URL,
and answers are shown as excerpts with our secrets blanked (`stream.zendesk.classify.excerpt`).

Exit codes: 0 every event was (or would be) delivered or skipped; 3 one would be (or was) dead-lettered;
1 one failed transiently with `--send` (the consumer would retry it); 2 a configuration problem
(`stream.cli`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from stream.engine.records import InboundRecord
from stream.errors import ConfigError, InvalidEvent
from stream.events import decode_json, validate
from stream.jsontypes import quote
from stream.mapping.fields import Known
from stream.mapping.operations import (
    EnsureField,
    EnsureMembership,
    OrgRef,
    Plan,
    RemoveMembership,
    SendEvent,
    Skip,
    UpsertOrganization,
    UpsertUser,
    UserRef,
)
from stream.mapping.plan import plan as plan_event
from stream.mapping.settings import DestinationSettings
from stream.outcomes import DeadLetter, Delivered, DlqReason, Outcome, Skipped, Transient
from stream.zendesk.client import Exchange
from stream.zendesk.connection import ZendeskConnection

__all__ = [
    "EXIT_DEAD_LETTER",
    "EXIT_OK",
    "EXIT_TRANSIENT",
    "Call",
    "Explanation",
    "FieldsSource",
    "calls_for",
    "exit_code",
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
Verdict = Plan | Skipped | DeadLetter


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


# ------------------------------------------------------------------------------------- plan as calls


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """One request the plan leads to. `{user_id}`-style placeholders stand for ids Zendesk assigns."""

    method: str
    path: str
    body: Mapping[str, Any] | None = None
    note: str = ""


def calls_for(plan: Plan) -> list[Call]:
    """The Zendesk calls of a plan, in order, lookups included (as `Destination` carries them out)."""
    calls: list[Call] = []
    upserted_user: UserRef | None = None
    upserted_org: OrgRef | None = None
    for op in plan.operations:
        match op:
            case EnsureField():
                note = f'create the {op.kind.value} field "{op.key}" ({op.type}): Zendesk does not have it'
                calls.append(Call(method="POST", path=op.path, body=op.body(), note=note))
            case UpsertUser():
                note = "create or update the user (matched by email, else external_id)"
                if "time_zone" in op.user:
                    note += "; if Zendesk refuses the time zone, sent again without time_zone"
                calls.append(Call(method="POST", path=op.path, body=op.body(), note=note))
                upserted_user = op.ref
            case RemoveMembership():
                calls.extend(_user_lookup(op.user, upserted_user))
                calls.extend(_organization_lookup(op.organization, upserted_org))
                calls.append(
                    Call(
                        method="GET",
                        path="/api/v2/users/{user_id}/organization_memberships",
                        note="the user's memberships (every page)",
                    )
                )
                calls.append(
                    Call(
                        method="DELETE",
                        path="/api/v2/users/{user_id}/organization_memberships/{membership_id}",
                        note="the membership in that organization; no such organization, not a member "
                        "or already gone: success, nothing to delete",
                    )
                )
            case UpsertOrganization():
                note = "create or update the organization (matched by external_id, never by name)"
                calls.append(Call(method="POST", path=op.path, body=op.body(), note=note))
                upserted_org = op.ref
            case EnsureMembership():
                calls.extend(_user_lookup(op.user, upserted_user))
                calls.extend(_organization_lookup(op.organization, upserted_org))
                membership = {"user_id": "{user_id}", "organization_id": "{organization_id}"}
                calls.append(
                    Call(
                        method="POST",
                        path="/api/v2/organization_memberships",
                        body={"organization_membership": membership},
                        note="link the user to the organization; already a member: success",
                    )
                )
            case SendEvent():
                calls.extend(_user_lookup(op.user, upserted_user))
                calls.append(Call(method="POST", path=op.path, body=dict(op.body), note="the Sunshine event"))
    return calls


def _user_lookup(ref: UserRef, upserted: UserRef | None) -> list[Call]:
    if ref == upserted:
        return []  # the upsert's answer carries the user's id
    found = "the user must exist, else dead-letter user_not_found"
    calls: list[Call] = []
    if ref.external_id is not None:
        note = f"find the user by external_id (unless already known); {found}"
        calls.append(
            Call(method="GET", path=f"/api/v2/users/search?external_id={ref.external_id}", note=note)
        )
    if ref.email is not None:
        when = "only when no user has that external_id" if calls else "unless already known"
        calls.append(
            Call(
                method="GET",
                path=f'/api/v2/users/search?query=email:"{ref.email}"',
                note=f"find the user by email ({when})",
            )
        )
    return calls


def _organization_lookup(ref: OrgRef, upserted: OrgRef | None) -> list[Call]:
    if ref == upserted:
        return []  # the upsert's answer carries the organization's id
    calls: list[Call] = []
    if ref.external_id is not None:
        calls.append(
            Call(
                method="GET",
                path=f"/api/v2/organizations/search?external_id={ref.external_id}",
                note="find the organization by external_id (unless already known)",
            )
        )
    if ref.id is not None:
        calls.append(
            Call(
                method="GET",
                path=f"/api/v2/organizations/{ref.id}",
                note="only when no organization has that external_id: by Zendesk id",
            )
        )
    return calls


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
    verdict: Verdict  # what the destination would do
    sent: tuple[Exchange, ...] | None = None  # with --send: every request and its answer, in order
    outcome: Outcome | None = None  # with --send: what became of the event


def format_explanation(explanation: Explanation) -> str:
    lines = [f"── event {explanation.position} of {explanation.total}: {explanation.headline}"]
    verdict = explanation.verdict
    if isinstance(verdict, Plan):
        calls = calls_for(verdict)
        lines.append(
            f"{'planned' if explanation.sent is not None else 'would make'} {_count(len(calls), 'call')}:"
        )
        for number, call in enumerate(calls, 1):
            lines.append(f"  {number}. {call.method} {call.path}")
            if call.note:
                lines.append(f"{_INDENT}{call.note}")
            if call.body is not None:
                body = json.dumps(call.body, ensure_ascii=False, indent=2, default=str)
                lines.extend(f"{_INDENT}{line}" for line in body.splitlines())
        if verdict.dropped:
            left_out = ", ".join(f"{quote(d.key, _SHOWN_VALUE)} ({d.reason.value})" for d in verdict.dropped)
            lines.append(f"left out: {left_out}")
    if explanation.sent is not None:
        if explanation.sent:
            lines.append("sent:")
            lines.extend(_exchange_line(number, e) for number, e in enumerate(explanation.sent, 1))
        else:
            lines.append("sent: nothing")
    if explanation.sent is None:
        lines.extend(_result_lines(verdict, done=False))
    else:
        lines.extend(_result_lines(explanation.outcome, done=True))
    return "\n".join(lines)


def _exchange_line(number: int, exchange: Exchange) -> str:
    call = f"  {number}. {exchange.method} {exchange.path} →"
    if exchange.status is None:
        return f"{call} no answer ({exchange.excerpt})"
    return f"{call} {exchange.status} {exchange.excerpt}".rstrip()


def _result_lines(result: Verdict | Outcome | None, *, done: bool) -> list[str]:
    match result:
        case Plan():
            return [f"result: would deliver ({result.summary})"]
        case Delivered():
            return [f"result: delivered ({_count(result.operations, 'operation')}: {result.summary})"]
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
        case None:
            return ["result: unknown"]


def exit_code(explanations: Sequence[Explanation]) -> int:
    """3 when an event would be (or was) dead-lettered; else 1 when one failed transiently; else 0."""
    results = [e.outcome if e.sent is not None else e.verdict for e in explanations]
    if any(isinstance(r, DeadLetter) for r in results):
        return EXIT_DEAD_LETTER
    if any(isinstance(r, Transient) for r in results):
        return EXIT_TRANSIENT
    return EXIT_OK


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def verdict_of(item: Input, settings: DestinationSettings, known: Known) -> Verdict:
    """The pure plan of one input item, as a verdict."""
    if isinstance(item, InvalidEvent):
        return DeadLetter(reason=item.reason, message=item.message)
    try:
        planned = plan_event(validate(item), settings, known)
    except InvalidEvent as err:
        return DeadLetter(reason=err.reason, message=err.message)
    if isinstance(planned, Skip):
        return Skipped(reason=planned.reason, detail=planned.detail)
    return planned


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

    def emit(text: str) -> None:
        print(text, file=output, flush=True)

    if connection is None:
        emit(fields_header(FieldsSource(why_not=why_not)))
        explanations = [
            Explanation(
                position=position,
                total=len(items),
                headline=headline(item),
                verdict=verdict_of(item, settings, Known()),
            )
            for position, item in enumerate(items, 1)
        ]
        for explanation in explanations:
            emit(format_explanation(explanation))
        return exit_code(explanations)
    return asyncio.run(_with_zendesk(items, settings, connection, send=send, emit=emit))


async def _with_zendesk(
    items: Sequence[Input],
    settings: DestinationSettings,
    connection: ZendeskConnection,
    *,
    send: bool,
    emit: Callable[[str], None],
) -> int:
    from stream.delivery import Destination  # noqa: PLC0415
    from stream.errors import FieldsUnavailable  # noqa: PLC0415
    from stream.zendesk.client import ZendeskClient  # noqa: PLC0415

    exchanges: list[Exchange] = []
    explanations: list[Explanation] = []
    async with ZendeskClient(connection=connection, on_exchange=exchanges.append) as client:
        destination = Destination(client=client, settings=settings)
        known = Known()
        try:
            known = await destination.known()
        except FieldsUnavailable as err:
            source = FieldsSource(base_url=connection.base_url, why_not=f"listing them failed: {err}")
        else:
            source = FieldsSource(
                base_url=connection.base_url,
                user_fields=len(known.user_fields),
                organization_fields=len(known.organization_fields),
            )
        emit(fields_header(source))
        for position, item in enumerate(items, 1):
            verdict = verdict_of(item, settings, known)
            sent: tuple[Exchange, ...] | None = None
            outcome: Outcome | None = None
            if send:
                exchanges.clear()
                outcome = verdict if isinstance(verdict, Skipped | DeadLetter) else None
                if isinstance(verdict, Plan) and isinstance(item, dict):
                    outcome, progress = await destination.deliver(item)
                    if progress is not None:  # planned again with what Zendesk holds now
                        verdict = progress.plan
                sent = tuple(exchanges)
            explanation = Explanation(
                position=position,
                total=len(items),
                headline=headline(item),
                verdict=verdict,
                sent=sent,
                outcome=outcome,
            )
            explanations.append(explanation)
            emit(format_explanation(explanation))
    return exit_code(explanations)


def _record(item: Mapping[str, Any], position: int) -> InboundRecord:
    value = json.dumps(item, ensure_ascii=False, default=str).encode("utf-8", errors="replace")
    return InboundRecord(topic="explain", partition=0, offset=position - 1, key=None, value=value)


def _read_input(event_file: str, stdin: TextIO) -> str:
    if event_file == "-":
        return stdin.read()
    path = Path(event_file).expanduser()
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        raise ConfigError(f"explain: cannot read {path} ({err.strerror})") from None
