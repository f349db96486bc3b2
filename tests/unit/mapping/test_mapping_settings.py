"""ZENDESK_SETTINGS: Segment's five keys plus our documented extras."""

from __future__ import annotations

from typing import Any

import pytest

from stream.errors import ConfigError
from stream.mapping.settings import DestinationSettings


def test_defaults_match_segment_defaults() -> None:
    settings = DestinationSettings.parse({})
    assert settings == DestinationSettings()
    assert settings.events == ()
    assert settings.allow_group_without_user_id is False
    assert settings.remove_users_from_organizations is False
    assert settings.verified is False
    assert settings.subdomain is None
    assert settings.source_name == "segment"
    assert settings.auto_create_fields is True
    assert settings.max_auto_created_fields == 100
    assert settings.field_deny_list == frozenset()


def test_segment_settings_paste_is_accepted() -> None:
    settings = DestinationSettings.parse(
        {
            "events": ["Article Completed", "Order Completed", "Article Completed"],
            "allowGroupWithoutUserId": True,
            "removeUsersFromOrganizations": True,
            "verified": True,
            "subdomain": "acme-support",
        }
    )
    assert settings.events == ("Article Completed", "Order Completed")
    assert settings.allow_group_without_user_id
    assert settings.remove_users_from_organizations
    assert settings.verified
    assert settings.subdomain == "acme-support"


def test_our_extra_keys_are_accepted() -> None:
    settings = DestinationSettings.parse(
        '{"sourceName": "acme", "autoCreateFields": false, "maxAutoCreatedFields": 5,'
        ' "fieldDenyList": ["ssn", "creditCard"]}'
    )
    assert settings.source_name == "acme"
    assert settings.auto_create_fields is False
    assert settings.max_auto_created_fields == 5
    assert settings.field_deny_list == frozenset({"ssn", "credit_card"})


def test_inline_json_text_and_empty_text() -> None:
    assert DestinationSettings.parse('{"events": ["*"]}').events == ("*",)
    assert DestinationSettings.parse("  ") == DestinationSettings()


def test_events_wildcard_enables_every_event_and_empty_list_none() -> None:
    assert DestinationSettings.parse({"events": ["*"]}).event_enabled("Anything")
    assert not DestinationSettings.parse({"events": []}).event_enabled("Anything")
    only = DestinationSettings.parse({"events": ["Article Completed"]})
    assert only.event_enabled("Article Completed")
    assert not only.event_enabled("article completed")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"evnets": []}, 'ZENDESK_SETTINGS: unknown key "evnets" (did you mean "events"?)'),
        ({"apiKey": "x"}, 'ZENDESK_SETTINGS: unknown key "apiKey"'),
        (
            {"events": "Order Completed"},
            'ZENDESK_SETTINGS: "events" must be an array of strings, got a string',
        ),
        (
            {"events": ["ok", 3]},
            'ZENDESK_SETTINGS: "events" must be an array of non-empty strings, item 1 is a number',
        ),
        (
            {"events": [""]},
            'ZENDESK_SETTINGS: "events" must be an array of non-empty strings, item 0 is an empty string',
        ),
        ({"verified": "true"}, 'ZENDESK_SETTINGS: "verified" must be true or false, got a string'),
        (
            {"allowGroupWithoutUserId": 1},
            'ZENDESK_SETTINGS: "allowGroupWithoutUserId" must be true or false, got a number',
        ),
        (
            {"removeUsersFromOrganizations": None},
            'ZENDESK_SETTINGS: "removeUsersFromOrganizations" must be true or false, got null',
        ),
        ({"subdomain": 5}, 'ZENDESK_SETTINGS: "subdomain" must be a string, got a number'),
        (
            {"subdomain": "acme.zendesk.com"},
            'ZENDESK_SETTINGS: "subdomain" must hold only letters, digits and hyphens (no .zendesk.com)',
        ),
        (
            {"sourceName": "zendesk"},
            'ZENDESK_SETTINGS: "sourceName" must not be "zendesk": Zendesk reserves that source',
        ),
        (
            {"sourceName": "Zendesk"},
            'ZENDESK_SETTINGS: "sourceName" must not be "zendesk": Zendesk reserves that source',
        ),
        ({"sourceName": "x" * 41}, 'ZENDESK_SETTINGS: "sourceName" must be at most 40 characters, got 41'),
        (
            {"sourceName": ""},
            'ZENDESK_SETTINGS: "sourceName" must be non-empty, without leading or trailing spaces',
        ),
        ({"sourceName": 7}, 'ZENDESK_SETTINGS: "sourceName" must be a string, got a number'),
        (
            {"autoCreateFields": "yes"},
            'ZENDESK_SETTINGS: "autoCreateFields" must be true or false, got a string',
        ),
        (
            {"maxAutoCreatedFields": -1},
            'ZENDESK_SETTINGS: "maxAutoCreatedFields" must be an integer from 0 to 10000, got -1',
        ),
        (
            {"maxAutoCreatedFields": True},
            'ZENDESK_SETTINGS: "maxAutoCreatedFields" must be an integer from 0 to 10000, got True',
        ),
        (
            {"fieldDenyList": ["123"]},
            'ZENDESK_SETTINGS: "fieldDenyList" entry "123" is not a usable field key',
        ),
        (
            {"events": ["x" * 41]},
            'ZENDESK_SETTINGS: "events" lists an event name of 41 characters; '
            "Zendesk accepts at most 40, so it could never be sent",
        ),
        ([], "ZENDESK_SETTINGS: must be a JSON object, got an array"),
    ],
)
def test_wrong_type_or_unknown_key_is_a_one_line_config_error_naming_the_key(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DestinationSettings.parse(raw)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_invalid_json_text_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^ZENDESK_SETTINGS: not valid JSON"):
        DestinationSettings.parse("{events: [")


def test_unknown_key_with_newline_stays_on_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        DestinationSettings.parse({"bad\nkey": 1})
    assert "\n" not in str(caught.value)
