from __future__ import annotations

import httpx

from stream.zendesk import (
    Bucket,
    LruCache,
    RateLimitInfo,
    RateLimitState,
    ZendeskCache,
    parse_rate_limit,
)

# --- rate-limit headers ---------------------------------------------------------------------------


def test_parse_legacy_account_headers() -> None:
    info = parse_rate_limit({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "699"})
    assert info == RateLimitInfo(account=Bucket("account", 700, 699, None))


def test_parse_all_headers_from_httpx_headers() -> None:
    headers = httpx.Headers(
        {
            "x-rate-limit": "700",
            "x-rate-limit-remaining": "650",
            "ratelimit-limit": "700",
            "ratelimit-remaining": "640",
            "ratelimit-reset": "17",
            "zendesk-ratelimit-create-update-user": "total=5; remaining=4; resets=60",
            "Zendesk-RateLimit-inflight-jobs": "total=30;remaining=29;resets=60",
        }
    )
    info = parse_rate_limit(headers)
    assert info.account == Bucket("account", 700, 640, 17)
    assert info.bucket("create-update-user") == Bucket("create-update-user", 5, 4, 60)
    assert info.bucket("inflight-jobs") == Bucket("inflight-jobs", 30, 29, 60)
    assert info.bucket("account") is info.account
    assert info.bucket("nope") is None
    assert info.exhausted_bucket() is None


def test_malformed_values_are_none() -> None:
    info = parse_rate_limit(
        {"x-rate-limit": "lots", "zendesk-ratelimit-search-index": "total=x; remaining=; resets=9; extra=1"}
    )
    assert info.account is None
    assert info.bucket("search-index") == Bucket("search-index", None, None, 9)
    assert parse_rate_limit({}) == RateLimitInfo(account=None)
    assert parse_rate_limit({"zendesk-ratelimit-": "total=1"}).buckets == ()


def test_exhausted_bucket_prefers_endpoint_bucket() -> None:
    info = parse_rate_limit(
        {
            "x-rate-limit-remaining": "0",
            "zendesk-ratelimit-create-update-user": "total=5; remaining=0; resets=3",
        }
    )
    exhausted = info.exhausted_bucket()
    assert exhausted is not None and exhausted.name == "create-update-user"


def test_state_keeps_latest_per_bucket() -> None:
    state = RateLimitState()
    state.observe(
        parse_rate_limit(
            {"x-rate-limit-remaining": "10", "zendesk-ratelimit-create-update-user": "remaining=3"}
        ),
        at=1.0,
    )
    state.observe(parse_rate_limit({"x-rate-limit-remaining": "9"}), at=2.0)
    account = state.latest()
    bucket = state.latest("create-update-user")
    assert account is not None and account.bucket.remaining == 9 and account.at == 2.0
    assert bucket is not None and bucket.bucket.remaining == 3 and bucket.at == 1.0
    assert set(state.snapshot()) == {"account", "create-update-user"}


# --- caches ---------------------------------------------------------------------------------------


def test_lru_evicts_least_recently_used() -> None:
    lru: LruCache[str, int] = LruCache(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3)
    assert "b" not in lru and lru.get("a") == 1 and lru.get("c") == 3
    assert len(lru) == 2


def test_user_cache_is_bounded_and_case_insensitive() -> None:
    cache = ZendeskCache(max_users=3)
    for i in range(1, 6):
        cache.learn_user({"id": i, "external_id": f"User-{i}", "email": f"U{i}@Example.com"})
    assert cache.user_id_by_external_id("user-1") is None  # evicted
    assert cache.user_id_by_external_id("USER-5") == 5
    assert cache.user_id_by_email("u4@example.COM") == 4
    assert len(cache._user_by_external_id) == 3 and len(cache._user_by_email) == 3


def test_learn_user_ignores_garbage_and_forgets_deleted_users() -> None:
    cache = ZendeskCache()
    assert cache.learn_user({"id": "12", "external_id": "x"}) is None
    assert cache.learn_user({"id": True, "external_id": "x"}) is None
    assert cache.learn_user(None) is None
    assert cache.learn_user({"id": 7, "external_id": None, "email": None}) == 7
    cache.learn_user({"id": 8, "external_id": "gone", "email": "gone@example.com"})
    cache.learn_user({"id": 8, "external_id": "gone", "active": False})
    assert cache.user_id_by_external_id("gone") is None and cache.user_id_by_email("gone@example.com") is None


def test_forget_user_drops_every_key() -> None:
    cache = ZendeskCache()
    cache.remember_user_id(9, external_id="A", email="a@example.com")
    cache.remember_user_id(10, external_id="B")
    cache.forget_user(9)
    assert cache.user_id_by_external_id("a") is None and cache.user_id_by_email("a@example.com") is None
    assert cache.user_id_by_external_id("b") == 10


def test_organization_cache() -> None:
    cache = ZendeskCache(max_organizations=1)
    cache.learn_organization({"id": 1, "external_id": "Org-1"})
    assert cache.organization_id_by_external_id("ORG-1") == 1
    cache.learn_organization({"id": 2, "external_id": "org-2"})
    assert cache.organization_id_by_external_id("org-1") is None
    cache.forget_organization(2)
    assert cache.organization_id_by_external_id("org-2") is None
