"""OAuth access tokens that renew themselves: `POST <base>/oauth/tokens` (docs/zendesk-api.md §11.2).

`TokenKeeper` holds one replica's access token for `ZendeskClient`, which asks it for the header of
every request:

    the token                                   authorization()
    ──────────────────────────────────────────  ────────────────────────────────────────────────────────
    none yet, or expired                        waits for the renewal (the one in flight, or a new one)
    past its renewal time, not expired          the current token; one renewal starts in the background
    fresh                                       the current token

A request answered 401 `invalid_token` hands its token back (`invalid`); the client then asks again,
which waits for a renewal, and retries the request (at most twice, `MAX_TOKEN_RENEWALS`). Only one
renewal runs at a time: every caller joins it. The client is used from one event loop, so an asyncio
task is the only lock needed.

What a renewal comes to:

    answer of /oauth/tokens                      outcome
    ───────────────────────────────────────────  ────────────────────────────────────────────────────────
    200 with an access token                     the new token (refresh-token mode: the rotated refresh
                                                 token is stored durably first, `store_refresh_token`)
    400/401/403 (invalid_client, invalid_grant,  ZendeskConfigError naming the setting and Zendesk's
      invalid_request…), a redirect, a 404        answer (a redirect or 404: the base URL), raised to every
                                                 waiter and on every later call
    no answer, 408/409/429/5xx, an answer we     Unavailable: the waiting request is a transient failure;
      cannot read                                 the current token stays in use until it expires

When to renew is a pure function, `renewal_time`. Secrets (client secret, access and refresh tokens)
never reach a log line, a message or a repr; the access token is never written anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog

from stream.errors import FatalError, ZendeskConfigError
from stream.secret import Secret
from stream.zendesk.classify import Unavailable, UnavailableReason
from stream.zendesk.connection import (
    ClientCredentialsAuth,
    RefreshTokenAuth,
    RenewingAuth,
    read_refresh_token,
)

TOKEN_PATH: Final = "/oauth/tokens"  # noqa: S105 (a path)
RENEW_FROM: Final = 0.80  # renew somewhere between 80 % ...
RENEW_UNTIL: Final = 0.90  # ... and 90 % of a token's lifetime (jitter: replicas do not renew together)
SKEW_S: Final = 60.0  # and never later than this before it expires (clock skew, a slow token request)
RETRY_PAUSE_MAX_S: Final = 5.0  # after a failed background renewal, the longest wait before the next try
_TOKEN_CHARS: Final = re.compile(r"[\x21-\x7e]+")
_REMEMBERED_SECRETS: Final = 8  # old tokens redacted too (an answer may quote a token just replaced)


def renewal_time(issued_at: float, expires_in: float, *, jitter: float, skew_s: float = SKEW_S) -> float:
    """When to renew a token asked for at `issued_at` that lives `expires_in` seconds.

    At `RENEW_FROM`..`RENEW_UNTIL` of its lifetime (`jitter`, 0..1, picks the point), never later than
    `skew_s` before it expires, and never before half its lifetime (a token shorter than twice the skew
    would otherwise be renewed at once, over and over)."""
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be between 0 and 1, got {jitter}")
    if expires_in <= 0:
        return issued_at
    share = RENEW_FROM + (RENEW_UNTIL - RENEW_FROM) * jitter
    return issued_at + max(min(expires_in * share, expires_in - skew_s), expires_in / 2)


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    """What the token endpoint answered: status and body (the transport's failures are `Unavailable`)."""

    status: int
    body: bytes


Post = Callable[[Mapping[str, Any]], Awaitable[TokenAnswer | Unavailable]]


@dataclass(frozen=True, slots=True)
class _Token:
    header: Secret  # "Bearer <access token>"
    renew_at: float  # clock time; inf for a token that does not expire
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Granted:
    access_token: Secret
    expires_in: float | None
    refresh_token: Secret | None


class TokenKeeper:
    """One replica's OAuth access token, obtained and renewed through `post` (the client's seam)."""

    def __init__(
        self,
        *,
        auth: RenewingAuth,
        post: Post,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        skew_s: float = SKEW_S,
    ) -> None:
        self._auth = auth
        self._post = post
        self._clock = clock
        self._jitter = jitter
        self._skew_s = skew_s
        self._token: _Token | None = None
        self._refresh_token: Secret | None = None  # refresh-token mode, once read from the file
        self._renewal: asyncio.Task[_Token | Unavailable] | None = None
        self._failure: Exception | None = None  # a refusal: nothing can succeed until a human acts
        self._next_try_at = 0.0  # after a failed background renewal
        self._seen: deque[str] = deque(maxlen=_REMEMBERED_SECRETS)
        self._logger = structlog.get_logger(__name__)
        self.grants = 0  # successful token requests

    def __repr__(self) -> str:
        return f"TokenKeeper(settings={self._auth.settings!r}, grants={self.grants})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The client secret and the tokens this keeper held, for redaction of anything we echo."""
        return (*self._auth.secrets, *self._seen)

    async def authorization(self) -> Secret | Unavailable:
        """The Authorization header for the next request, or why there is none right now."""
        if self._failure is not None:
            raise self._failure
        token, now = self._token, self._clock()
        if token is not None and now < token.expires_at:
            if now >= token.renew_at and self._renewal is None and now >= self._next_try_at:
                self._start_renewal(background=True)
            return token.header
        if self._renewal is None:
            self._start_renewal(background=False)
        assert self._renewal is not None
        # Shielded: a request abandoned while it waits does not cancel the renewal the others wait for.
        outcome = await asyncio.shield(self._renewal)
        return outcome if isinstance(outcome, Unavailable) else outcome.header

    def invalid(self, header: Secret) -> None:
        """Zendesk answered 401 `invalid_token` to a request sent with `header`: unless the token was
        renewed meanwhile, it is dead, and the next `authorization()` waits for a new one."""
        if self._token is not None and self._token.header == header:
            self._token = None
            self._logger.info("zendesk.oauth_token_invalid", settings=self._auth.settings)

    def expires_in_s(self) -> float | None:
        """Seconds the access token held now has left (inf: it does not expire); None without one."""
        token = self._token
        if token is None:
            return None
        return token.expires_at - self._clock()

    async def aclose(self) -> None:
        """A refresh in flight is waited for (its rotated token must reach the file); any other renewal
        is cancelled."""
        task = self._renewal
        if task is None:
            return
        if isinstance(self._auth, RefreshTokenAuth):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), timeout=30)
        else:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    # --- renewal -------------------------------------------------------------------------------------

    def _start_renewal(self, *, background: bool) -> None:
        task = asyncio.get_running_loop().create_task(
            self._renew(background=background), name="oauth-renewal"
        )
        task.add_done_callback(_retrieve)
        self._renewal = task

    async def _renew(self, *, background: bool) -> _Token | Unavailable:
        try:
            return await self._obtain(background=background)
        except Exception as err:
            self._failure = err
            raise
        finally:
            self._renewal = None

    async def _obtain(self, *, background: bool) -> _Token | Unavailable:
        auth = self._auth
        if isinstance(auth, RefreshTokenAuth) and self._refresh_token is None:
            self._refresh_token = read_refresh_token(auth.refresh_token_file)
            self._seen.append(self._refresh_token.reveal())
        asked_at = self._clock()
        answer = await self._post(self._request_body())
        took_ms = round((self._clock() - asked_at) * 1000, 1)
        grant = self._grant_type
        if isinstance(answer, Unavailable):
            return self._unavailable(answer, background=background, took_ms=took_ms)
        if answer.status != 200:
            refusal = _refusal(answer, auth, grant, self.secrets)
            if refusal is None:
                detail = f"POST {TOKEN_PATH} answered {answer.status}"
                reason = (
                    UnavailableReason.SERVER_ERROR
                    if answer.status >= 500
                    else UnavailableReason.UNEXPECTED_STATUS
                )
                failed = Unavailable(reason, answer.status, detail=detail)
                return self._unavailable(failed, background=background, took_ms=took_ms)
            self._logger.error(
                "zendesk.oauth_token",
                grant_type=grant,
                outcome="refused",
                status=answer.status,
                duration_ms=took_ms,
            )
            raise refusal
        granted = _granted(answer.body, refresh=isinstance(auth, RefreshTokenAuth))
        if granted is None:
            failed = Unavailable(
                UnavailableReason.UNEXPECTED_STATUS,
                200,
                detail=f"POST {TOKEN_PATH} answered without a usable access token",
            )
            return self._unavailable(failed, background=background, took_ms=took_ms)
        self._seen.append(granted.access_token.reveal())
        if isinstance(auth, RefreshTokenAuth):
            assert granted.refresh_token is not None
            self._seen.append(granted.refresh_token.reveal())
            await self._store(auth, granted.refresh_token)
        if granted.expires_in is None:
            token = _Token(Secret("Bearer " + granted.access_token.reveal()), float("inf"), float("inf"))
        else:
            renew_at = renewal_time(asked_at, granted.expires_in, jitter=self._jitter(), skew_s=self._skew_s)
            token = _Token(
                Secret("Bearer " + granted.access_token.reveal()), renew_at, asked_at + granted.expires_in
            )
        self._token = token
        self._next_try_at = 0.0
        self.grants += 1
        self._logger.info(
            "zendesk.oauth_token",
            grant_type=grant,
            outcome="granted",
            expires_in=granted.expires_in,
            renew_in_s=None if granted.expires_in is None else round(token.renew_at - asked_at, 1),
            duration_ms=took_ms,
        )
        return token

    def _unavailable(self, failed: Unavailable, *, background: bool, took_ms: float) -> Unavailable:
        now = self._clock()
        token = self._token
        remaining = token.expires_at - now if token is not None else 0.0
        self._next_try_at = now + max(0.1, min(RETRY_PAUSE_MAX_S, remaining / 5))
        self._logger.warning(
            "zendesk.oauth_token",
            grant_type=self._grant_type,
            outcome="transient",
            reason=str(failed.reason),
            status=failed.status,
            error=failed.detail,
            background=background,
            token_valid_for_s=round(remaining, 1) if token is not None else None,
            duration_ms=took_ms,
        )
        detail = f"no OAuth access token: {failed.detail}" if failed.detail else "no OAuth access token"
        return Unavailable(failed.reason, failed.status, failed.retry_after_s, detail=detail)

    async def _store(self, auth: RefreshTokenAuth, token: Secret) -> None:
        path = auth.refresh_token_file
        try:
            await asyncio.to_thread(store_refresh_token, path, token)
        except OSError as err:
            raise FatalError(
                f"ZENDESK_OAUTH_REFRESH_TOKEN_FILE: cannot store the rotated refresh token in {path} "
                f"({err.strerror or type(err).__name__}); Zendesk has invalidated the previous one, so put "
                "a new refresh token there before starting again"
            ) from None
        self._refresh_token = token

    @property
    def _grant_type(self) -> str:
        return "refresh_token" if isinstance(self._auth, RefreshTokenAuth) else "client_credentials"

    def _request_body(self) -> dict[str, Any]:
        auth = self._auth
        body: dict[str, Any] = {
            "grant_type": self._grant_type,
            "client_id": auth.client_id,
            "client_secret": auth.client_secret.reveal(),
        }
        if isinstance(auth, ClientCredentialsAuth):
            body["scope"] = auth.scopes
        else:
            assert self._refresh_token is not None
            body["refresh_token"] = self._refresh_token.reveal()
        if auth.token_ttl_s is not None:
            body["expires_in"] = auth.token_ttl_s
        return body


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A background renewal's failure is kept by the keeper and raised on the next request: not lost."""
    if not task.cancelled():
        task.exception()


def _granted(body: bytes, *, refresh: bool) -> _Granted | None:
    """The token answer, or None when it is not one we can use."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    access = parsed.get("access_token")
    token_type = parsed.get("token_type", "bearer")
    expires_in = parsed.get("expires_in")
    refresh_token = parsed.get("refresh_token")
    if not isinstance(access, str) or not _TOKEN_CHARS.fullmatch(access):
        return None
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        return None
    if expires_in is not None and (
        isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0
    ):
        return None
    if refresh and (not isinstance(refresh_token, str) or not _TOKEN_CHARS.fullmatch(refresh_token)):
        return None
    return _Granted(
        access_token=Secret(access),
        expires_in=None if expires_in is None else float(expires_in),
        refresh_token=Secret(refresh_token) if refresh and isinstance(refresh_token, str) else None,
    )


def _refusal(
    answer: TokenAnswer, auth: RenewingAuth, grant: str, secrets: tuple[str, ...]
) -> ZendeskConfigError | None:
    """A refusal nobody can retry away, as the one line start-up (or the run) stops with; None when the
    answer is transient (408, 409, 429, 5xx)."""
    status = answer.status
    if status in (408, 409, 429) or status >= 500:
        return None
    error, description = _oauth_error(answer.body)
    said = ": ".join(part for part in (error, description) if part) or "no reason given"
    said = _one_line(_redact(said, secrets), 200)
    if 300 <= status < 400 or status == 404:
        return ZendeskConfigError(
            status,
            f"POST {TOKEN_PATH} answered {status}, not an OAuth answer; "
            "check ZENDESK_SUBDOMAIN/ZENDESK_BASE_URL",
        )
    return ZendeskConfigError(
        status,
        f"Zendesk refused the OAuth {grant} grant on POST {TOKEN_PATH} ({status} {said}); "
        f"check {_setting_for(error, description, auth)}",
    )


def _setting_for(error: str | None, description: str | None, auth: RenewingAuth) -> str:
    if error == "invalid_grant" and isinstance(auth, RefreshTokenAuth):
        return (
            "ZENDESK_OAUTH_REFRESH_TOKEN_FILE: the refresh token in it is expired, revoked or was already "
            "used; put a new one there"
        )
    if error == "invalid_scope":
        return "ZENDESK_OAUTH_SCOPES"
    if error == "invalid_request" and description and "expires_in" in description:
        return "ZENDESK_OAUTH_TOKEN_TTL_S"
    return auth.settings


def _oauth_error(body: bytes) -> tuple[str | None, str | None]:
    """RFC 6749's `{"error", "error_description"}` (also `description`, as Zendesk's API errors say)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    error = parsed.get("error")
    description = parsed.get("error_description", parsed.get("description"))
    return (
        error if isinstance(error, str) and error else None,
        description if isinstance(description, str) and description else None,
    )


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def store_refresh_token(path: Path, token: Secret) -> None:
    """Replace the file's refresh token durably and atomically: a temporary file in the same directory
    (mode 0600), fsync, rename over the old one, fsync the directory. A crash leaves the old token or
    the new one, never a torn file. The file holds the refresh token and nothing else."""
    directory = path.parent
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(token.reveal() + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
