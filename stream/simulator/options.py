"""Every switch of the simulator, in one frozen dataclass.

Defaults are the faithful behaviour (rate limits on, Enterprise plan). Options marked [I] in their comment
implement inferred behaviour from ``docs/zendesk-api.md`` and exist so a wrong guess is one flag away
from fixed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

DEFAULT_EMAIL = "admin@example.com"
DEFAULT_API_TOKEN = "simulator-token"  # noqa: S105 - a documented, fake default credential


@dataclass(frozen=True, slots=True)
class PlanLimits:
    support_rpm: int | None
    events_rpm: int | None


# docs/zendesk-api.md §9.1 (Support API) and §8.2 (Profiles/Events API), Suite plans. "unlimited" is ours.
PLANS: dict[str, PlanLimits] = {
    "team": PlanLimits(support_rpm=200, events_rpm=250),
    "growth": PlanLimits(support_rpm=400, events_rpm=250),
    "professional": PlanLimits(support_rpm=400, events_rpm=500),
    "enterprise": PlanLimits(support_rpm=700, events_rpm=700),
    "enterprise_plus": PlanLimits(support_rpm=2500, events_rpm=1000),
    "unlimited": PlanLimits(support_rpm=None, events_rpm=None),
}

EmailExternalIdPrecedence = Literal["external_id_first", "email_first"]
InvalidTimeZonePolicy = Literal["reject", "ignore"]
JobMode = Literal["clock", "per_poll"]
BulkItemTypeErrors = Literal["reject_request", "fail_item"]
CreateManyResults = Literal["live", "documented"]

# Options that hold credentials: masked in every dump; those in CREDENTIALS cannot change at runtime.
CREDENTIALS = frozenset({"email", "api_token", "oauth_token", "allow_password_auth"})
SECRETS = ("api_token", "oauth_token")


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    # Credentials. With none given, email + API token defaults apply (see ``with_default_credentials``).
    email: str | None = None
    api_token: str | None = dataclasses.field(default=None, repr=False)
    oauth_token: str | None = dataclasses.field(default=None, repr=False)
    allow_password_auth: bool = False  # email+password Basic auth is gone since 2025-12-31
    # OAuth (docs/zendesk-api.md §11.2): confidential clients (id → secret) and authorization codes; both may
    # change at runtime (control API), unlike the static credentials above.
    oauth_clients: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    oauth_codes: list[str] = dataclasses.field(default_factory=list, repr=False)
    oauth_access_ttl_s: int = 1800  # new clients' default since 2026-02-02: 30 min
    oauth_refresh_ttl_s: int = 2_592_000  # 30 days
    oauth_min_expires_in_s: int = 300  # a requested expires_in must be greater than this...
    oauth_max_expires_in_s: int = 172_800  # ...and less than this (lower the floor for short test tokens)
    oauth_min_refresh_expires_in_s: int = 604_800  # [I] refresh lifetime 7..90 days, bounds included
    oauth_max_refresh_expires_in_s: int = 7_776_000
    oauth_expiring_tokens: bool = True  # false: legacy clients whose tokens never expire (no refresh token)
    oauth_default_scope: str = "read write"  # [I] scope when the request names none

    # Rate limits
    plan: str = "enterprise"
    rate_limits: bool = True
    limit_scale: float = 1.0  # multiplies every limit (0.1 = a tenth of the real budget)
    create_update_user_per_second: int = 1  # documented, but surprisingly strict: configurable
    create_update_user_per_user_per_minute: int = 5
    org_update_per_minute: int = 5
    org_update_limit_on_create_or_update: bool = True  # [I] the documented limit names PUT only
    max_inflight_jobs: int = 30

    # Realism knobs
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0  # share of Zendesk requests answered with ``error_status``
    error_status: int = 503
    error_retry_after: int = 1
    search_lag_ms: float = 0.0  # users/search?query= sees writes this much later
    manual_clock: bool = False
    random_seed: int = 0

    # Bulk jobs
    job_mode: JobMode = "clock"  # "per_poll": every GET of a job moves it one state on
    job_queued_ms: float = 100.0  # at least this long queued
    job_working_ms: float = 200.0  # fixed cost of running a job (benchmarks: 3000 for a slow Zendesk)
    job_ms_per_item: float = 5.0  # [I] plus this per item
    job_workers: int = 4  # [I] jobs of the account run at once; 0 = no bound
    bulk_import_enabled: bool = True
    bulk_item_type_errors: BulkItemTypeErrors = "reject_request"  # [I] a wrongly typed item: 400 or item
    user_job_error_code: str = "detail"  # [I] "detail": the 422 detail's code; else this literal code
    membership_job_error_code: str = "detail"  # [I] likewise for organization_memberships/create_many
    organization_create_job_error_code: str = "OrganizationCreateFailed"  # [I] by analogy with update
    organization_create_many_results: CreateManyResults = "live"  # {"status","id"} live; {"id","index"} doc

    # Inferred behaviours [I]
    email_external_id_precedence: EmailExternalIdPrecedence = "external_id_first"
    invalid_time_zone: InvalidTimeZonePolicy = "reject"
    user_fields_show_all_keys: bool = True
    create_organization_named_on_user: bool = True
    multiple_organizations: bool = True
    serve_legacy_sunshine_events: bool = True

    request_log_limit: int = 100_000

    def with_default_credentials(self) -> SimulatorOptions:
        """API-token defaults unless a static credential was given; OAuth clients come on top of either."""
        if self.api_token is None and self.oauth_token is None:
            return dataclasses.replace(self, email=self.email or DEFAULT_EMAIL, api_token=DEFAULT_API_TOKEN)
        return self

    def validate(self) -> None:
        """Raise ValueError naming the first bad option."""
        if self.plan not in PLANS:
            raise ValueError(f"unknown plan {self.plan!r}; choose one of {', '.join(PLANS)}")
        if (self.api_token is None) != (self.email is None) and self.oauth_token is None:
            raise ValueError("--email and --token go together")
        for name in (
            "latency_ms",
            "jitter_ms",
            "search_lag_ms",
            "job_queued_ms",
            "job_working_ms",
            "job_ms_per_item",
            "job_workers",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        self._validate_choices()
        self._validate_oauth()

    def _validate_choices(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        if self.limit_scale <= 0:
            raise ValueError("limit_scale must be positive")
        if self.error_status not in (429, 500, 502, 503, 504):
            raise ValueError("error_status must be one of 429, 500, 502, 503, 504")
        if self.job_mode not in ("clock", "per_poll"):
            raise ValueError("job_mode must be 'clock' or 'per_poll'")
        if self.email_external_id_precedence not in ("external_id_first", "email_first"):
            raise ValueError("email_external_id_precedence must be 'external_id_first' or 'email_first'")
        if self.invalid_time_zone not in ("reject", "ignore"):
            raise ValueError("invalid_time_zone must be 'reject' or 'ignore'")
        if self.bulk_item_type_errors not in ("reject_request", "fail_item"):
            raise ValueError("bulk_item_type_errors must be 'reject_request' or 'fail_item'")
        if self.organization_create_many_results not in ("live", "documented"):
            raise ValueError("organization_create_many_results must be 'live' or 'documented'")
        for name in (
            "user_job_error_code",
            "membership_job_error_code",
            "organization_create_job_error_code",
        ):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")

    def _validate_oauth(self) -> None:
        if not all(
            isinstance(client_id, str) and client_id and isinstance(secret, str) and secret
            for client_id, secret in self.oauth_clients.items()
        ):
            raise ValueError("oauth_clients maps non-empty client ids to non-empty secrets")
        if not all(isinstance(code, str) and code for code in self.oauth_codes):
            raise ValueError("oauth_codes holds non-empty strings")
        for name in ("oauth_access_ttl_s", "oauth_refresh_ttl_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.oauth_min_expires_in_s < 0 or self.oauth_min_refresh_expires_in_s < 0:
            raise ValueError("the oauth_min_* options must not be negative")
        if self.oauth_min_expires_in_s >= self.oauth_max_expires_in_s:
            raise ValueError("oauth_min_expires_in_s must be below oauth_max_expires_in_s")
        if self.oauth_min_refresh_expires_in_s > self.oauth_max_refresh_expires_in_s:
            raise ValueError("oauth_min_refresh_expires_in_s must not exceed oauth_max_refresh_expires_in_s")

    def updated(self, changes: dict[str, Any]) -> SimulatorOptions:
        """A copy with ``changes`` applied; unknown names and wrong types raise ValueError."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        for name, value in changes.items():
            if name not in fields:
                raise ValueError(f"unknown option {name!r}")
            current = getattr(self, name)
            if isinstance(current, bool) and not isinstance(value, bool):
                raise ValueError(f"option {name!r} takes true or false")
            if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
                continue
            if current is not None and value is not None and type(current) is not type(value):
                raise ValueError(f"option {name!r} takes a {type(current).__name__}")
        result = dataclasses.replace(self, **changes)
        result.validate()
        return result

    def public_dict(self) -> dict[str, Any]:
        """All options, secrets masked."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for secret in SECRETS:
            if data[secret] is not None:
                data[secret] = "***"
        data["oauth_clients"] = {client_id: "***" for client_id in self.oauth_clients}
        data["oauth_codes"] = ["***" for _ in self.oauth_codes]
        return data
