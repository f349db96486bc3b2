"""Bulk endpoints: one request, one background job, per-item results.

Facts: docs/zendesk-api.md §2.3, §5.4, §6.2, §7.

Every bulk POST/PUT counts once against the account bucket (like any request) and once against the
in-flight job limit, shared by all bulk endpoints. The endpoint-specific buckets (create_or_update user
5/min per user, organization update 5/min per organization) do not apply to items inside a job [I: the
documented limits name the single-record endpoints only].

Items are checked for JSON types when the request arrives (a wrongly typed item fails the whole request
with 400, or, with ``bulk_item_type_errors=fail_item``, just that item [I]); everything else is decided when
the job completes, item by item, in request order, with the single-record rules of :mod:`state`. Each item
is logged as a ``JOB`` entry of the request log, carrying the user it concerned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stream.simulator import errors
from stream.simulator.core import Simulator
from stream.simulator.errors import ZendeskError
from stream.simulator.jobs import Job, job_json
from stream.simulator.messages import Reply, Request
from stream.simulator.state import User, check_organization_attributes, check_user_attributes

MAX_BULK = 100
USERS_TOO_MANY = "Maximum 100 users may be created per call"
# The live organization body has the double space (docs/zendesk-api.md §1.4).
PARAMETER_TOO_MANY = "Parameter  cannot specify more than 100 values"

Check = Callable[[dict[str, Any], str], dict[str, Any]]


def check_bulk_size(count: int, description: str, *, max_count: int | None = None) -> None:
    if count > MAX_BULK:
        raise errors.too_many_values(description, max_count=max_count)


def inflight_header(sim: Simulator) -> tuple[str, str]:
    total = sim.options.max_inflight_jobs
    remaining = max(total - len(sim.jobs.in_flight()), 0)
    return ("zendesk-ratelimit-inflight-jobs", f"total={total}; remaining={remaining}; resets=60")


@dataclass(frozen=True, slots=True)
class Item:
    index: int
    attrs: dict[str, Any]
    error: ZendeskError | None = None  # refused on arrival (``bulk_item_type_errors=fail_item``)
    target: tuple[str, Any] | None = None  # update_many: ("id", 5) or ("external_id", "acme")


@dataclass(frozen=True, slots=True)
class Applied:
    result: dict[str, Any]
    status: int
    change: dict[str, Any]
    user: User | None = None


@dataclass(frozen=True, slots=True)
class BulkKind:
    job_type: str  # as job_status.job_type reports it
    job_class: str  # as TooManyJobs names it
    working_message: str
    apply: Callable[[Simulator, Item, float], Applied]
    failure: Callable[[Simulator, Item, ZendeskError], dict[str, Any]]


def failure_code_and_text(error: ZendeskError) -> tuple[str, str]:
    """The code and text of a failed item, from the body the single-record endpoint would have sent."""
    body = error.body
    if not isinstance(body, dict):
        return "Error", body
    top = body.get("error")
    if isinstance(top, dict):  # 400 {"error": {"title": "Invalid attribute", "message": ...}}
        return "InvalidAttribute", str(top.get("message", ""))
    for items in (body.get("details") or {}).values():
        if items:
            return str(items[0].get("error") or top), str(items[0].get("description"))
    return str(top), str(body.get("description", ""))


def _organization_details(text: str) -> str:
    """Organization job failures read "Name:  X has already been taken": two spaces after the label [F]."""
    label, sep, rest = text.partition(": ")
    return f"{label}:  {rest}" if sep else text


def _chosen_code(option: str, detail_code: str) -> str:
    return detail_code if option == "detail" else option


# -- per-kind item logic ---------------------------------------------------------------------------------


def _apply_user(sim: Simulator, item: Item, now: float) -> Applied:
    write = sim.state.create_or_update_user(item.attrs, now)
    action, status = ("create", "Created") if write.created else ("update", "Updated")
    return Applied(
        result={"action": action, "id": write.user.id, "status": status, "success": True},
        status=201 if write.created else 200,
        change={"kind": f"user.{action}", "fields": list(write.changed)},
        user=write.user,
    )


def _user_failure(sim: Simulator, item: Item, error: ZendeskError) -> dict[str, Any]:
    code, text = failure_code_and_text(error)
    return {
        "index": item.index,
        "id": None,
        "error": _chosen_code(sim.options.user_job_error_code, code),
        "details": text,
    }


def _apply_org_create(sim: Simulator, item: Item, now: float) -> Applied:
    org = sim.state.create_organization(item.attrs, now)
    if sim.options.organization_create_many_results == "live":
        result: dict[str, Any] = {"status": "Created", "id": org.id}
    else:
        result = {"id": org.id, "index": item.index}
    return Applied(
        result=result, status=201, change={"kind": "organization.create", "organization_id": org.id}
    )


def _org_create_failure(sim: Simulator, item: Item, error: ZendeskError) -> dict[str, Any]:
    _, text = failure_code_and_text(error)
    return {
        "index": item.index,
        "error": sim.options.organization_create_job_error_code,
        "id": None,
        "details": _organization_details(text),
    }


def _org_target_id(sim: Simulator, item: Item) -> int | None:
    if item.target is None:
        return None
    name, value = item.target
    if name == "id":  # items that failed the type check keep whatever they held
        is_id = isinstance(value, int) and not isinstance(value, bool)
        return value if is_id and value in sim.state.organizations else None
    if not isinstance(value, str):
        return None
    org = sim.state.organization_by_external_id(value)
    return None if org is None else org.id


def _apply_org_update(sim: Simulator, item: Item, now: float) -> Applied:
    org_id = _org_target_id(sim, item)
    if org_id is None:
        raise errors.record_not_found()
    changed = sim.state.update_organization(sim.state.organizations[org_id], item.attrs, now)
    return Applied(
        result={"action": "update", "id": org_id, "status": "Updated", "success": True},
        status=200,
        change={"kind": "organization.update", "organization_id": org_id, "fields": list(changed)},
    )


def _org_update_failure(sim: Simulator, item: Item, error: ZendeskError) -> dict[str, Any]:
    org_id = _org_target_id(sim, item)
    if org_id is None:
        # [I] no evidence for an unknown organization inside update_many
        given = item.target[1] if item.target is not None and item.target[0] == "id" else None
        return {"index": item.index, "error": "RecordNotFound", "id": given, "details": "Not found"}
    _, text = failure_code_and_text(error)
    # The live failure shape: no "action", no "success" [F].
    return {
        "index": item.index,
        "error": "OrganizationUpdateFailed",
        "id": org_id,
        "details": _organization_details(text),
    }


def _apply_membership(sim: Simulator, item: Item, now: float) -> Applied:
    membership = sim.state.create_membership(
        user_id=item.attrs.get("user_id"),
        organization_id=item.attrs.get("organization_id"),
        default=item.attrs.get("default"),
        now=now,
    )
    return Applied(
        result={"action": "create", "id": membership.id, "status": "Created", "success": True},
        status=201,
        change={"kind": "membership.create", "organization_id": membership.organization_id},
        user=sim.state.users[membership.user_id],
    )


def _membership_failure(sim: Simulator, item: Item, error: ZendeskError) -> dict[str, Any]:
    code, text = failure_code_and_text(error)
    return {
        "index": item.index,
        "id": None,
        "error": _chosen_code(sim.options.membership_job_error_code, code),
        "details": text,
    }


USERS = BulkKind(
    job_type="Bulk Create Or Update User",
    job_class="UserBulkUpdateJobV2",
    working_message="Processing user",
    apply=_apply_user,
    failure=_user_failure,
)
ORGANIZATIONS_CREATE = BulkKind(
    job_type="Bulk Create Organization",  # live [F]
    job_class="OrganizationBulkCreateJobV2",
    working_message="Creating organization",  # live [F]
    apply=_apply_org_create,
    failure=_org_create_failure,
)
ORGANIZATIONS_UPDATE = BulkKind(
    job_type="Bulk Update Organization",
    job_class="OrganizationBulkUpdateJobV2",
    working_message="Updating organization",
    apply=_apply_org_update,
    failure=_org_update_failure,
)
MEMBERSHIPS_CREATE = BulkKind(
    job_type="Bulk Create Organization Membership",
    job_class="OrganizationMembershipBulkCreateJobV2",
    working_message="Creating organization membership",
    apply=_apply_membership,
    failure=_membership_failure,
)


# -- the job ---------------------------------------------------------------------------------------------


def _items(sim: Simulator, raw: list[Any], *, check: Check, envelope: str, endpoint: str) -> list[Item]:
    items = []
    for index, value in enumerate(raw):
        error: ZendeskError
        if isinstance(value, dict):
            try:
                items.append(Item(index=index, attrs=check(value, endpoint)))
                continue
            except ZendeskError as refused:
                error = refused
        else:
            error = errors.invalid_attribute(envelope, "an Array of Hashes", endpoint)
        if sim.options.bulk_item_type_errors == "reject_request":
            raise error
        items.append(Item(index=index, attrs=value if isinstance(value, dict) else {}, error=error))
    return items


def _enqueue(sim: Simulator, req: Request, kind: BulkKind, items: list[Item]) -> Reply:
    job_ref: list[Job] = []

    def run_items(now: float) -> list[dict[str, Any]]:
        job_id = job_ref[0].id
        results: list[dict[str, Any]] = []
        for item in items:
            try:
                if item.error is not None:
                    raise item.error
                applied = kind.apply(sim, item, now)
            except ZendeskError as error:
                failure = kind.failure(sim, item, error)
                results.append(failure)
                sim.log.append(
                    at=now,
                    method="JOB",
                    path=req.path,
                    query=f"index={item.index}",
                    status=error.status,
                    change={
                        "kind": "job.item_failed",
                        "error": failure.get("error"),
                        "job_item": item.index,
                        "job_id": job_id,
                    },
                )
                continue
            results.append(applied.result)
            sim.log.append(
                at=now,
                method="JOB",
                path=req.path,
                query=f"index={item.index}",
                status=applied.status,
                user_id=applied.user.id if applied.user else None,
                user_key=applied.user.key if applied.user else None,
                change={**applied.change, "job_item": item.index, "job_id": job_id},
            )
        return results

    try:
        job = sim.jobs.enqueue(
            job_type=kind.job_type,
            job_class=kind.job_class,
            total=len(items),
            run_items=run_items,
            now=req.now,
            working_message=kind.working_message,
        )
    except ZendeskError as error:
        error.headers.append(inflight_header(sim))
        raise
    job_ref.append(job)
    return Reply(
        status=200,
        body={"job_status": job_json(job, req.urls.of(f"job_statuses/{job.id}"))},
        headers=[inflight_header(sim)],
        change={"kind": "job.enqueue", "job_id": job.id, "job_type": job.job_type, "total": len(items)},
    )


def _array(body: Any, envelope: str, endpoint: str) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get(envelope), list):
        raise errors.invalid_attribute(envelope, "an Array", endpoint)
    value: list[Any] = body[envelope]
    return value


# -- handlers --------------------------------------------------------------------------------------------


def create_or_update_many_users(sim: Simulator, req: Request) -> Reply:
    endpoint = "api/v2/users/create_or_update_many"
    raw = _array(req.json(), "users", endpoint)
    if not sim.options.bulk_import_enabled:
        raise errors.forbidden()
    check_bulk_size(len(raw), USERS_TOO_MANY)
    items = _items(sim, raw, check=check_user_attributes, envelope="users", endpoint=endpoint)
    return _enqueue(sim, req, USERS, items)


def create_many_organizations(sim: Simulator, req: Request) -> Reply:
    endpoint = "api/v2/organizations/create_many"
    raw = _array(req.json(), "organizations", endpoint)
    check_bulk_size(len(raw), PARAMETER_TOO_MANY, max_count=MAX_BULK)
    items = _items(sim, raw, check=check_organization_attributes, envelope="organizations", endpoint=endpoint)
    return _enqueue(sim, req, ORGANIZATIONS_CREATE, items)


def update_many_organizations(sim: Simulator, req: Request) -> Reply:
    """``?ids=``/``?external_ids=`` with one ``organization`` for all, or a batch of ``organizations``."""
    endpoint = "api/v2/organizations/update_many"
    body = req.json()
    ids, external_ids = req.id_list("ids"), req.string_list("external_ids")
    if ids or external_ids:
        check_bulk_size(len(ids) + len(external_ids), PARAMETER_TOO_MANY, max_count=MAX_BULK)
        if not isinstance(body, dict) or not isinstance(body.get("organization"), dict):
            raise errors.invalid_attribute("organization", "a Hash", endpoint)
        common = _items(
            sim,
            [body["organization"]],
            check=check_organization_attributes,
            envelope="organization",
            endpoint=endpoint,
        )[0]
        targets: list[tuple[str, Any]] = [("id", i) for i in ids] + [("external_id", e) for e in external_ids]
        items = [
            Item(index=index, attrs=common.attrs, error=common.error, target=target)
            for index, target in enumerate(targets)
        ]
    else:
        raw = _array(body, "organizations", endpoint)
        check_bulk_size(len(raw), PARAMETER_TOO_MANY, max_count=MAX_BULK)
        checked = _items(
            sim, raw, check=check_organization_attributes, envelope="organizations", endpoint=endpoint
        )
        items = [
            Item(index=i.index, attrs=i.attrs, error=i.error, target=_batch_target(i.attrs)) for i in checked
        ]
    return _enqueue(sim, req, ORGANIZATIONS_UPDATE, items)


def _batch_target(attrs: dict[str, Any]) -> tuple[str, Any] | None:
    if attrs.get("id") is not None:
        return ("id", attrs["id"])
    if attrs.get("external_id"):
        return ("external_id", attrs["external_id"])
    return None


def create_many_memberships(sim: Simulator, req: Request) -> Reply:
    endpoint = "api/v2/organization_memberships/create_many"
    raw = _array(req.json(), "organization_memberships", endpoint)
    check_bulk_size(len(raw), PARAMETER_TOO_MANY, max_count=MAX_BULK)  # [I] the organization wording
    items = _items(
        sim, raw, check=lambda attrs, _: dict(attrs), envelope="organization_memberships", endpoint=endpoint
    )
    return _enqueue(sim, req, MEMBERSHIPS_CREATE, items)


def show_many_jobs(sim: Simulator, req: Request) -> Reply:
    """Exactly the jobs named by ``ids``, in that order, in ``{"job_statuses": [...]}`` [D]; unknown ids
    are left out [I]. In ``per_poll`` mode this GET moves each named job one state, like a single GET."""
    seen: set[str] = set()
    found = []
    for job_id in req.string_list("ids"):
        if job_id in seen:
            continue
        seen.add(job_id)
        job = sim.jobs.poll(job_id, req.now)
        if job is not None:
            found.append(job_json(job, req.urls.of(f"job_statuses/{job.id}")))
    return Reply(status=200, body={"job_statuses": found})
