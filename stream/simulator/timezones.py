"""Time-zone names Zendesk accepts: Rails-style names (``"Eastern Time (US & Canada)"``) and IANA ids."""

from __future__ import annotations

import functools
import zoneinfo

# A subset of ActiveSupport's names (the ones /api/v2/time_zones lists first); enough for tests.
RAILS_TO_IANA: dict[str, str] = {
    "International Date Line West": "Etc/GMT+12",
    "Hawaii": "Pacific/Honolulu",
    "Alaska": "America/Juneau",
    "Pacific Time (US & Canada)": "America/Los_Angeles",
    "Mountain Time (US & Canada)": "America/Denver",
    "Arizona": "America/Phoenix",
    "Central Time (US & Canada)": "America/Chicago",
    "Eastern Time (US & Canada)": "America/New_York",
    "Atlantic Time (Canada)": "America/Halifax",
    "Brasilia": "America/Sao_Paulo",
    "UTC": "Etc/UTC",
    "London": "Europe/London",
    "Dublin": "Europe/Dublin",
    "Lisbon": "Europe/Lisbon",
    "Amsterdam": "Europe/Amsterdam",
    "Berlin": "Europe/Berlin",
    "Copenhagen": "Europe/Copenhagen",
    "Madrid": "Europe/Madrid",
    "Paris": "Europe/Paris",
    "Rome": "Europe/Rome",
    "Stockholm": "Europe/Stockholm",
    "Vienna": "Europe/Vienna",
    "Warsaw": "Europe/Warsaw",
    "Athens": "Europe/Athens",
    "Helsinki": "Europe/Helsinki",
    "Moscow": "Europe/Moscow",
    "Dubai": "Asia/Dubai",
    "Mumbai": "Asia/Kolkata",
    "Singapore": "Asia/Singapore",
    "Beijing": "Asia/Shanghai",
    "Tokyo": "Asia/Tokyo",
    "Seoul": "Asia/Seoul",
    "Sydney": "Australia/Sydney",
    "Auckland": "Pacific/Auckland",
}


@functools.cache
def _iana_ids() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def iana_for(name: str) -> str | None:
    """The IANA id for a Zendesk time-zone value, or None when Zendesk would not know it."""
    if name in RAILS_TO_IANA:
        return RAILS_TO_IANA[name]
    if name in _iana_ids():
        return name
    return None
