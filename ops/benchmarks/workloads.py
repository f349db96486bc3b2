"""Workloads of the economy benchmarks, with the Zendesk state they must leave behind.

`mix`: Segment events over a user base, in the proportions of a real source: identifies (a share of
them repeating the user's traits unchanged), tracks and groups. Every user's first event is an identify,
as a source sends it first. Each track carries a unique `n` in its properties, so the simulator's final
state shows a lost or duplicated Sunshine event exactly.

`Expected` is what Zendesk must hold after every event was delivered once, in order per user: each
user's last value of every trait, its organization memberships, and the `n` of each of its tracks.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TIMESTAMP = "2026-12-01T10:00:00.000Z"
PLANS = ("free", "pro", "team", "enterprise")


@dataclass
class Expected:
    traits: dict[str, dict[str, Any]] = field(default_factory=dict)  # userId -> merged identify traits
    memberships: set[tuple[str, str]] = field(default_factory=set)  # (userId, groupId)
    organizations: dict[str, str] = field(default_factory=dict)  # groupId -> name
    tracks: dict[str, list[int]] = field(default_factory=dict)  # userId -> the n of each track


@dataclass
class Workload:
    records: list[tuple[str, bytes]]  # (Kafka key, value), in the order to produce them
    kinds: Counter[str]  # events by type; "identify_unchanged" counts the repeats among the identifies
    expected: Expected


def user_id(n: int) -> str:
    return f"user-{n:06d}"


def identify(user: str, traits: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": user,
        "messageId": str(uuid.uuid4()),
        "traits": dict(traits),
        "timestamp": TIMESTAMP,
    }


def track(user: str, n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": "Order Completed",
        "messageId": str(uuid.uuid4()),
        "properties": {"n": n, "total": 10 + n % 90},
        "timestamp": TIMESTAMP,
    }


def group(user: str, group_id: str) -> dict[str, Any]:
    return {
        "type": "group",
        "userId": user,
        "groupId": group_id,
        "messageId": str(uuid.uuid4()),
        "traits": {"name": organization_name(group_id)},
        "timestamp": TIMESTAMP,
    }


def organization_name(group_id: str) -> str:
    return f"Organization {group_id}"


def mix(
    *,
    events: int,
    users: int,
    organizations: int,
    identify_share: float = 0.6,
    unchanged_share: float = 0.5,
    track_share: float = 0.3,
    seed: int = 7,
) -> Workload:
    """`events` events over `users` users: `identify_share` identifies, of which `unchanged_share` repeat
    the user's current traits; `track_share` tracks; the rest groups, each user in one of `organizations`
    organizations. Users appear in a random order; each one's first event is an identify."""
    rng = random.Random(seed)
    identifies = round(events * identify_share)
    tracks = round(events * track_share)
    groups = events - identifies - tracks
    unchanged = round(identifies * unchanged_share)
    if identifies - unchanged < users:
        raise ValueError("every user needs one identify that sets its traits")
    # The kind of every event but the users' first identifies, shuffled; then a user for each.
    later = ["track"] * tracks + ["group"] * groups + ["unchanged"] * unchanged
    later += ["changed"] * (identifies - unchanged - users)
    rng.shuffle(later)
    first_at = sorted(rng.sample(range(events), users))  # where each new user appears
    expected = Expected()
    kinds: Counter[str] = Counter()
    records: list[tuple[str, bytes]] = []
    seen: list[str] = []
    later_iter = iter(later)
    first_iter = iter(first_at)
    next_first = next(first_iter, None)
    for position in range(events):
        if position == next_first or not seen:
            user = user_id(len(seen))
            seen.append(user)
            next_first = next(first_iter, None)
            event = _new_traits(rng, user, expected, first=True)
            kinds["identify"] += 1
        else:
            kind = next(later_iter)
            user = rng.choice(seen)
            if kind == "track":
                n = position
                expected.tracks.setdefault(user, []).append(n)
                event = track(user, n)
                kinds["track"] += 1
            elif kind == "group":
                group_id = f"org-{int(user.split('-')[1]) % organizations:04d}"
                expected.memberships.add((user, group_id))
                expected.organizations[group_id] = organization_name(group_id)
                event = group(user, group_id)
                kinds["group"] += 1
            elif kind == "unchanged":
                event = identify(user, expected.traits[user])
                kinds["identify"] += 1
                kinds["identify_unchanged"] += 1
            else:
                event = _new_traits(rng, user, expected, first=False)
                kinds["identify"] += 1
        records.append((user, json.dumps(event, separators=(",", ":")).encode()))
    return Workload(records, kinds, expected)


def _new_traits(rng: random.Random, user: str, expected: Expected, *, first: bool) -> dict[str, Any]:
    number = int(user.split("-")[1])
    current = expected.traits.get(user, {})
    traits = {
        "name": f"User {number}",
        "email": f"{user}@example.com",
        "plan": rng.choice(PLANS),
        "logins": int(current.get("logins", 0)) + 1,
    }
    if first:
        traits["logins"] = 1
    expected.traits[user] = traits
    return identify(user, traits)


def audience(users: int, *, trait: str = "in_winter_sale_audience") -> Workload:
    """One identify per distinct user setting one boolean trait, as an Engage audience sends them."""
    expected = Expected()
    records = []
    for n in range(users):
        user = user_id(n)
        traits = {"name": f"User {n}", trait: True}
        expected.traits[user] = traits
        records.append((user, json.dumps(identify(user, traits), separators=(",", ":")).encode()))
    return Workload(records, Counter({"identify": users}), expected)


# ------------------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class Verdict:
    users_wrong: int
    memberships_missing: int
    memberships_extra: int
    tracks_lost: int
    tracks_duplicated: int
    tracks_foreign: int
    examples: list[str]

    @property
    def exact(self) -> bool:
        return not (
            self.users_wrong
            or self.memberships_missing
            or self.memberships_extra
            or self.tracks_lost
            or self.tracks_duplicated
            or self.tracks_foreign
        )


def check(expected: Expected, state: Mapping[str, Any]) -> Verdict:
    """Compare the simulator's final state (`/_simulator/state`) with what the workload must leave."""
    examples: list[str] = []
    by_external = {u.get("external_id"): u for u in state["users"] if u.get("external_id")}
    users_wrong = 0
    for user, traits in expected.traits.items():
        found = by_external.get(user)
        problem = _user_problem(found, traits)
        if problem:
            users_wrong += 1
            if len(examples) < 5:
                examples.append(f"{user}: {problem}")
    org_external = {o["id"]: o.get("external_id") for o in state["organizations"]}
    user_external = {u["id"]: u.get("external_id") for u in state["users"]}
    actual = {
        (user_external.get(m["user_id"]), org_external.get(m["organization_id"]))
        for m in state["organization_memberships"]
    }
    actual = {pair for pair in actual if pair[0] in expected.traits}
    tracks_seen: Counter[tuple[str, int]] = Counter()
    foreign = 0
    for event in state["events"]:
        owner = user_external.get(event.get("user_id"))
        n = (event.get("properties") or {}).get("n")
        if owner is None or not isinstance(n, int):
            foreign += 1
            continue
        tracks_seen[(owner, n)] += 1
    wanted = Counter((user, n) for user, ns in expected.tracks.items() for n in ns)
    lost = sum(1 for pair in wanted if tracks_seen[pair] == 0)
    duplicated = sum(count - 1 for pair, count in tracks_seen.items() if count > 1)
    foreign += sum(count for pair, count in tracks_seen.items() if pair not in wanted)
    return Verdict(
        users_wrong=users_wrong,
        memberships_missing=len(expected.memberships - actual),
        memberships_extra=len(actual - expected.memberships),
        tracks_lost=lost,
        tracks_duplicated=duplicated,
        tracks_foreign=foreign,
        examples=examples,
    )


def _user_problem(found: Mapping[str, Any] | None, traits: Mapping[str, Any]) -> str | None:
    if found is None:
        return "missing"
    if found.get("name") != traits.get("name"):
        return f"name {found.get('name')!r}"
    if "email" in traits and (found.get("email") or "").lower() != str(traits["email"]).lower():
        return "email differs"
    fields = found.get("user_fields") or {}
    for key, value in traits.items():
        if key in ("name", "email"):
            continue
        if fields.get(key) != value:
            return f"{key} = {fields.get(key)!r}, expected {value!r}"
    return None


def keys_of(records: Iterable[tuple[str, bytes]]) -> set[str]:
    return {key for key, _ in records}
