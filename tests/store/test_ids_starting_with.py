"""``ids_starting_with`` suggests MessageIds for one cut short: case-sensitive (RFC 2822 msg-ids are) and alike
on SQLite and PostgreSQL, with no character of the prefix read as a wildcard or an escape."""

from __future__ import annotations

from gateway.store import MessageStore
from tests.store.helpers import new_message


async def test_a_prefix_matches_case_sensitively(store: MessageStore) -> None:
    for message_id in ("AbC-1@be.test", "abc-2@be.test", "ABC-3@be.test", "Ärger@be.test", "ärger@be.test"):
        await store.add(new_message(message_id))

    assert await store.ids_starting_with("abc") == ["abc-2@be.test"]
    assert await store.ids_starting_with("AbC") == ["AbC-1@be.test"]
    assert await store.ids_starting_with("aBc") == []
    assert await store.ids_starting_with("ä") == ["ärger@be.test"]
    assert await store.ids_starting_with("Ä") == ["Ärger@be.test"]


async def test_wildcards_and_the_escape_character_match_literally(store: MessageStore) -> None:
    ids = ("50%_off@be.test", "50x-off@be.test", "a_b@be.test", "axb@be.test", "a\\b@be.test", "a\\\\b@be.test")
    for message_id in ids:
        await store.add(new_message(message_id))

    assert await store.ids_starting_with("50%") == ["50%_off@be.test"]
    assert await store.ids_starting_with("%") == []
    assert await store.ids_starting_with("a_") == ["a_b@be.test"]
    assert await store.ids_starting_with("_") == []
    assert await store.ids_starting_with("a\\") == ["a\\\\b@be.test", "a\\b@be.test"]
    assert await store.ids_starting_with("a\\b") == ["a\\b@be.test"]
    assert await store.ids_starting_with("a\\\\") == ["a\\\\b@be.test"]
    assert await store.ids_starting_with("a\\%") == []
