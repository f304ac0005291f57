"""An admin edit refused as invalid names its places in the edited text, which was not saved, not as
``file:line:column`` of the file on disk, whose lines they are not."""

from __future__ import annotations

from tests.interfaces.test_admin import (  # noqa: F401 (pytest fixtures)
    AUTH,
    CH,
    URL,
    Admin,
    _default_logging,
    api,
    pki,
)

MERGE = "application/merge-patch+json"


async def _refused(api: Admin, method: str, body: str, content_type: str) -> list[str]:  # noqa: F811
    headers = AUTH | {"If-Match": await api.etag("ch-swissmedic"), "Content-Type": content_type}
    async with api.client.request(method, f"{URL}/ch-swissmedic", data=body, headers=headers) as response:
        found = await response.json()
        assert response.status == 422, found
    errors: list[str] = found["errors"]
    return errors


async def test_a_patchs_errors_name_the_place_in_the_edited_profile_not_saved(api: Admin) -> None:  # noqa: F811
    errors = await _refused(api, "PATCH", '{"reception_awareness": {"retries": "five"}}', MERGE)

    path = api.folder / "ch-swissmedic.yaml"
    assert errors and all(str(path) not in error for error in errors), errors
    assert any(
        error.startswith("in the edited ch-swissmedic.yaml (not saved), line ")
        and "reception_awareness.retries" in error
        for error in errors
    ), errors
    assert path.read_text() == CH


async def test_a_puts_errors_name_the_place_in_the_edited_profile_not_saved(api: Admin) -> None:  # noqa: F811
    text = CH.replace("\nid: ch-swissmedic\n", "\nid: ch-other\n")
    assert text != CH
    errors = await _refused(api, "PUT", text, "application/yaml")

    assert errors and all(f"{api.folder / 'ch-swissmedic.yaml'}:" not in error for error in errors), errors
    assert any(
        error.startswith("in the edited ch-swissmedic.yaml (not saved), line 2 column 1 id: got 'ch-other'")
        for error in errors
    )
