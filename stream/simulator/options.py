"""Every switch of the simulator, in one frozen dataclass.

Defaults are the faithful behaviour (rate limits on, Enterprise plan). Options marked [I] in their comment
implement inferred behaviour from ``zendesk-api.md`` and exist so a wrong guess is one flag away from fixed.
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


# zendesk-api.md §9.1 (Support API) and §8.2 (Profiles/Events API), Suite plans. "unlimited" is ours.
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


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    # Credentials. With none given, email + API token defaults apply (see ``with_default_credentials``).
    email: str | None = None
    api_token: str | None = dataclasses.field(default=None, repr=False)
    oauth_token: str | None = dataclasses.field(default=None, repr=False)
    allow_password_auth: bool = False  # email+password Basic auth is gone since 2025-12-31

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
    job_queued_ms: float = 100.0
    job_working_ms: float = 200.0
    bulk_import_enabled: bool = True

    # Inferred behaviours [I]
    email_external_id_precedence: EmailExternalIdPrecedence = "external_id_first"
    invalid_time_zone: InvalidTimeZonePolicy = "reject"
    user_fields_show_all_keys: bool = True
    create_organization_named_on_user: bool = True
    multiple_organizations: bool = True
    serve_legacy_sunshine_events: bool = True

    request_log_limit: int = 100_000

    def with_default_credentials(self) -> SimulatorOptions:
        if self.api_token is None and self.oauth_token is None:
            return dataclasses.replace(self, email=self.email or DEFAULT_EMAIL, api_token=DEFAULT_API_TOKEN)
        return self

    def validate(self) -> None:
        """Raise ValueError naming the first bad option."""
        if self.plan not in PLANS:
            raise ValueError(f"unknown plan {self.plan!r}; choose one of {', '.join(PLANS)}")
        if (self.api_token is None) != (self.email is None) and self.oauth_token is None:
            raise ValueError("--email and --token go together")
        for name in ("latency_ms", "jitter_ms", "search_lag_ms", "job_queued_ms", "job_working_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
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
        for secret in ("api_token", "oauth_token"):
            if data[secret] is not None:
                data[secret] = "***"
        return data
