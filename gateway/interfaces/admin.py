"""The admin API: partner profiles read, edited, retired and rolled back over REST, with a bearer token.

Every route needs ``Authorization: Bearer <token>``: an administrator's own token (``[admin].tokens_file``,
which names them in the audit log) or the shared one (``[admin].token_env``, with ``X-Admin-Actor`` naming
the person, audited as "NAME (shared token)"; a name that tokens_file gives an administrator is refused with
400); without it the answer is 401. Writes need ``If-Match: "<etag>"`` (the ETag of the profile as
read; ``If-None-Match: *`` to create one): 428 without it, 412 when the profile changed meanwhile. An
invalid profile is 422 with every error and its place: ``in the edited NAME.yaml (not saved), line L column C
field: ...`` in the text sent, ``file:line:column`` in another profile file on disk. An accepted change is active at
once.

    GET    /api/v1/admin/profiles                         list (with retired ids and the last refusal)
    GET    /api/v1/admin/profiles/{id}                    the YAML text, ETag = sha256 of the file
    PUT    /api/v1/admin/profiles/{id}                    replace or create (body: YAML)
    PATCH  /api/v1/admin/profiles/{id}                    JSON merge patch (POST does the same)
    DELETE /api/v1/admin/profiles/{id}                    retire: the file moves into the history
    GET    /api/v1/admin/profiles/{id}/history            versions
    GET    /api/v1/admin/profiles/{id}/history/{version}  the YAML text of a version
    GET    /api/v1/admin/profiles/{id}/diff?from=N&to=M   unified diff (default: previous -> file)
    POST   /api/v1/admin/profiles/{id}/rollback?version=N a version becomes current again
    GET    /api/v1/admin/audit?profile=ID&limit=N         the audit log
    GET    /api/v1/admin/certificates                     days to expiry of every certificate in use
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.errors import ProfileError
from gateway.inbound.http import UnreadableBody, check_content_encoding, read_chunk
from gateway.interfaces.access import bearer_matches, bearer_token
from gateway.interfaces.keys import ADMIN_NAME, ADMIN_NAMED, ADMIN_TOKEN, NODE, PROFILE_EDITOR, PROFILE_WATCHER
from gateway.profiles.editor import (
    EditConflict,
    EditResult,
    InvalidProfile,
    Precondition,
    ProfileEditor,
    ProfileFile,
)
from gateway.profiles.expiry import certificate_statuses
from gateway.profiles.history import UnknownVersion, Version
from gateway.profiles.loader import UndecodableProfile
from gateway.profiles.registry import ProfileRegistry
from gateway.store import Direction, State

ADMIN = "/api/v1/admin"
PROFILE = f"{ADMIN}/profiles/{{profile_id}}"
MAX_PROFILE_BYTES = 256 * 1024
YAML_TYPE = "application/yaml"
MAX_AUDIT_ENTRIES = 1000
PENDING = frozenset({State.SUBMITTED, State.SENDING, State.RETRY_WAIT})
UNDELIVERED = frozenset({State.RECEIVED, State.ACCEPTED})  # received from the partner, not yet delivered

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _problem(status: int, error: str, **extra: Any) -> web.Response:
    return web.json_response({"error": error, **extra}, status=status)


def admin_only(handler: Handler) -> Handler:
    """401 unless the request carries an administrator's own token ([admin].tokens_file) or the shared one."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        shared, named = request.app[ADMIN_TOKEN], request.app.get(ADMIN_NAMED, {})
        if shared is None and not named:
            return _problem(
                403, "the admin API is off; set [admin].token_env or [admin].tokens_file to turn it on"
            )
        name = _named(request, named)
        if name is not None:
            request[ADMIN_NAME] = name
        elif shared is None or not bearer_matches(request, shared):
            return web.json_response(
                {"error": "admin credential missing or wrong; send Authorization: Bearer <token>"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="permit-gateway-admin"'},
            )
        else:
            claimed = _claimed_actor(request)
            if claimed.casefold() in {known.casefold() for known in named.values()}:
                return _problem(
                    400,
                    f"X-Admin-Actor {claimed!r} is the name of an administrator with an own token "
                    "([admin].tokens_file), and the shared token cannot act in that name: send that "
                    "administrator's own token, or name yourself in X-Admin-Actor",
                )
        return await handler(request)

    return guarded


def _named(request: web.Request, named: dict[str, str]) -> str | None:
    """The administrator whose own token the request carries: its SHA-256 compared with each, in constant time."""
    given = bearer_token(request)
    if given is None or not named:
        return None
    digest = hashlib.sha256(given).hexdigest()
    found = [name for known, name in named.items() if hmac.compare_digest(digest, known)]
    return found[0] if found else None


async def _body(request: web.Request) -> bytes | None:
    """The whole body, or None when it is longer than a profile may be; UnreadableBody for one that cannot be
    decoded."""
    check_content_encoding(request)
    data = bytearray()
    while chunk := await read_chunk(request, 64 * 1024):
        data += chunk
        if len(data) > MAX_PROFILE_BYTES:
            return None
    return bytes(data)


def _too_large() -> web.Response:
    return _problem(413, f"a profile must be at most {MAX_PROFILE_BYTES} bytes")


def _etag(value: str) -> str:
    return f'"{value}"'


def _actor(request: web.Request) -> str:
    """Who made a change: the administrator an own token names, else what X-Admin-Actor says, marked as said by
    a holder of the shared token (anyone with it could say it)."""
    name = request.get(ADMIN_NAME)
    who = name if name else f"{_claimed_actor(request)} (shared token)"
    return f"{who}@{request.remote or 'unknown'}"


def _claimed_actor(request: web.Request) -> str:
    return _header_text(request.headers.get("X-Admin-Actor", "admin"))


def _header_text(value: str) -> str:
    """A header as text for the audit log: UTF-8, else ISO-8859-1 (what older HTTP clients send, 'José' from
    python-requests), without control characters, at most 100 characters."""
    raw = value.encode("utf-8", "surrogateescape")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("iso-8859-1")
    return "".join(c for c in text if c.isprintable())[:100] or "admin"


def _precondition(request: web.Request) -> Precondition | None:
    if_match = request.headers.get("If-Match")
    if if_match:
        return Precondition(if_match=if_match)
    if request.headers.get("If-None-Match", "").strip() == "*":
        return Precondition(if_absent=True)
    return None


def _precondition_required() -> web.Response:
    return _problem(
        428,
        "send If-Match with the ETag of the profile as you read it (GET it first), "
        "or If-None-Match: * to create a new profile",
    )


def _error(exc: ProfileError) -> web.Response:
    """Map the editor's errors: 404 unknown, 412 changed meanwhile, 422 invalid, 409 anything else (a file that
    is not UTF-8 with where its first bad byte is)."""
    match exc:
        case UndecodableProfile():
            where = {"file": str(exc.path), "byte_offset": exc.byte_offset, "line": exc.line, "column": exc.column}
            return _problem(409, str(exc), **where)
        case InvalidProfile():
            return _problem(422, "the profile is invalid; nothing was changed", errors=exc.errors)
        case EditConflict():
            return _problem(412, str(exc))
        case UnknownVersion():
            return _problem(404, str(exc))
        case BadParameter():
            return _problem(400, str(exc))
    return _problem(409, str(exc))


def _written(result: EditResult, *, created: bool = False) -> web.Response:
    body = {
        "id": result.id,
        "action": result.action,
        "file": str(result.path),
        "etag": result.etag,
        "version": result.version,
        "active": result.active,
        "warnings": result.warnings,
        "diff": result.diff,
    }
    headers = {"ETag": _etag(result.etag)} if result.etag else {}
    return web.json_response(body, status=201 if created else 200, headers=headers)


def _editor(request: web.Request) -> tuple[ProfileEditor, str]:
    return request.app[PROFILE_EDITOR], request.match_info["profile_id"]


def _listed(registry: ProfileRegistry, profile_id: str, path: Path) -> dict[str, Any]:
    """One profile of the list; a file that cannot be read is listed with the reason, so it can be found."""
    active = registry.get(profile_id) if profile_id in registry else None
    item: dict[str, Any] = {
        "id": profile_id,
        "file": str(path),
        "active": active is not None,
        "enabled": active.enabled if active else None,
        "party_id": active.party_id if active else None,
        "endpoint": active.endpoint if active else None,
    }
    try:
        item["etag"] = ProfileEditor.read(profile_id, path).etag
    except ProfileError as exc:
        item["error"] = str(exc)
    return item


def _listing(editor: ProfileEditor, registry: ProfileRegistry) -> tuple[list[dict[str, Any]], list[str]]:
    """The profiles and the retired ids from one pass over the folder (in a worker thread: reading 200 files must
    not hold up /as4 and /health on the event loop)."""
    files = editor.files()
    items = [_listed(registry, profile_id, path) for profile_id, path in sorted(files.items())]
    return items, editor.retired(files)


@admin_only
async def list_profiles(request: web.Request) -> web.Response:
    editor, watcher = request.app[PROFILE_EDITOR], request.app[PROFILE_WATCHER]
    items, retired = await asyncio.to_thread(_listing, editor, watcher.partners.registry)
    body = {
        "profiles": items,
        "retired": retired,
        "active_since": watcher.active.since.isoformat(),
        "last_refusal": watcher.last_error.splitlines() if watcher.last_error else None,
    }
    return web.json_response(body)


@admin_only
async def get_profile(request: web.Request) -> web.Response:
    editor, profile_id = _editor(request)
    try:
        found = await asyncio.to_thread(editor.get, profile_id)
    except ProfileError as exc:
        return _error(exc)
    return web.Response(text=found.text, content_type=YAML_TYPE, headers={"ETag": _etag(found.etag)})


@admin_only
async def put_profile(request: web.Request) -> web.Response:
    editor, profile_id = _editor(request)
    condition = _precondition(request)
    if condition is None:
        return _precondition_required()
    try:
        body = await _body(request)
    except UnreadableBody as exc:
        return exc.json_response()
    if body is None:
        return _too_large()
    try:
        text = body.decode("utf-8")
        result = await asyncio.to_thread(editor.put, profile_id, text, condition=condition, actor=_actor(request))
    except UnicodeDecodeError:
        return _problem(400, "the body must be UTF-8 YAML text")
    except ProfileError as exc:
        return _error(exc)
    return _written(result, created=condition.if_absent)


@admin_only
async def merge_profile(request: web.Request) -> web.Response:
    editor, profile_id = _editor(request)
    condition = _precondition(request)
    if condition is None:
        return _precondition_required()
    try:
        body = await _body(request)
    except UnreadableBody as exc:
        return exc.json_response()
    if body is None:
        return _too_large()
    try:
        patch = json.loads(body)
    except ValueError as exc:
        return _problem(400, f"the body must be a JSON merge patch (RFC 7396): {exc}")
    except RecursionError:
        return _problem(400, "the body must be a JSON merge patch (RFC 7396), not nested this deeply")
    if not isinstance(patch, dict):
        return _problem(400, 'the body must be a JSON object, e.g. {"enabled": false}')
    try:
        result = await asyncio.to_thread(
            editor.merge, profile_id, patch, condition=condition, actor=_actor(request)
        )
    except ProfileError as exc:
        return _error(exc)
    return _written(result)


@admin_only
async def retire_profile(request: web.Request) -> web.Response:
    editor, profile_id = _editor(request)
    condition = _precondition(request)
    if condition is None:
        return _precondition_required()
    outbound, inbound = await _pending_messages(request, profile_id)
    if (outbound or inbound) and request.query.get("force") != "true":
        return _problem(
            409,
            f"{outbound} message(s) to {profile_id!r} are still on their way (they would wait unsent without the "
            f"profile and fail at their time to live), and {inbound} message(s) received from {profile_id!r} still "
            "wait for delivery to the national system (delivered as the partner's profile says, delivery:); wait "
            "until those to it are ACKNOWLEDGED or FAILED and those from it DELIVERED (GET /api/v1/messages?state="
            "RETRY_WAIT, ?state=ACCEPTED), or retire with ?force=true",
        )
    try:
        result = await asyncio.to_thread(editor.retire, profile_id, condition=condition, actor=_actor(request))
    except ProfileError as exc:
        return _error(exc)
    return _written(result)


async def _pending_messages(request: web.Request, profile_id: str) -> tuple[int, int]:
    """How many messages to the partner are still on their way, and how many from it wait for delivery."""
    node = request.app.get(NODE)
    if node is None:
        return 0, 0
    counts = await node.store.count_by_state()
    mine = [(direction, state, n) for (direction, partner, state), n in counts.items() if partner == profile_id]
    outbound = sum(n for direction, state, n in mine if direction == Direction.OUTBOUND and state in PENDING)
    inbound = sum(n for direction, state, n in mine if direction == Direction.INBOUND and state in UNDELIVERED)
    return outbound, inbound


@admin_only
async def history(request: web.Request) -> web.Response:
    editor, profile_id = _editor(request)
    try:
        versions, current = await asyncio.to_thread(_versions, editor, profile_id)
    except ProfileError as exc:
        return _error(exc)
    items = [
        {
            "version": v.number,
            "at": v.at,
            "actor": v.actor,
            "action": v.action,
            "sha256": v.sha256,
            "current": current is not None and v.sha256 == current.etag,
        }
        for v in versions
    ]
    return web.json_response({"id": profile_id, "retired": current is None, "versions": items})


def _versions(editor: ProfileEditor, profile_id: str) -> tuple[list[Version], ProfileFile | None]:
    files = editor.files()
    return editor.versions(profile_id, files), editor.find(profile_id, files)


@admin_only
async def get_version(request: web.Request) -> web.Response:
    editor, profile_id = _editor(request)
    try:
        version = _int(request.match_info["version"], "version")
        text = await asyncio.to_thread(editor.history.text, profile_id, version)
    except ProfileError as exc:
        return _error(exc)
    return web.Response(text=text, content_type=YAML_TYPE)


@admin_only
async def diff(request: web.Request) -> web.Response:
    editor, profile_id = _editor(request)
    try:
        numbers = _optional_int(request, "from"), _optional_int(request, "to")
        text = await asyncio.to_thread(editor.diff, profile_id, *numbers)
    except ProfileError as exc:
        return _error(exc)
    return web.Response(text=text, content_type="text/x-diff")


@admin_only
async def rollback(request: web.Request) -> web.Response:
    editor, profile_id = _editor(request)
    condition = _precondition(request)
    if condition is None:
        return _precondition_required()
    try:
        version = _optional_int(request, "version")
        actor = _actor(request)
        result = await asyncio.to_thread(editor.rollback, profile_id, version, condition=condition, actor=actor)
    except ProfileError as exc:
        return _error(exc)
    return _written(result)


@admin_only
async def audit(request: web.Request) -> web.Response:
    editor = request.app[PROFILE_EDITOR]
    text = request.query.get("limit", "100")
    digits = len(str(MAX_AUDIT_ENTRIES))
    if not (text.isascii() and text.isdigit()) or len(text) > digits or not 1 <= int(text) <= MAX_AUDIT_ENTRIES:
        return _problem(400, f"limit must be a whole number from 1 to {MAX_AUDIT_ENTRIES}, not {text[:40]!r}")
    limit = int(text)
    entries = await asyncio.to_thread(editor.audit.entries, request.query.get("profile"), limit=limit)
    return web.json_response({"entries": entries})


@admin_only
async def certificates(request: web.Request) -> web.Response:
    watcher, editor = request.app[PROFILE_WATCHER], request.app[PROFILE_EDITOR]
    node = request.app.get(NODE)
    own = node.keys.own_certificates() if node is not None else []
    statuses = await asyncio.to_thread(
        certificate_statuses, watcher.partners, own, now=watcher.clock.now(), warning_days=editor.warning_days
    )
    items = [
        {
            "owner": s.owner,
            "purpose": s.purpose,
            "subject": s.subject,
            "sha256": s.fingerprint,
            "not_after": s.not_after.isoformat(),
            "days_left": s.days_left,
            "validity": s.validity.value,
        }
        for s in statuses
    ]
    return web.json_response({"certificates": items})


class BadParameter(ProfileError):
    """A query or path parameter that cannot be what it names (400)."""


_MAX_VERSION_DIGITS = 100  # far beyond any version; shorter numbers get 404 (documented), as unknown


def _int(value: str, name: str) -> int:
    if not (value.isascii() and value.isdigit()):  # "²" is a digit to str.isdigit, not to int()
        raise UnknownVersion(f"{name} must be a version number such as 3, got {value[:40]!r}")
    if len(value) > _MAX_VERSION_DIGITS:  # int() of thousands of digits raises (and takes long)
        raise BadParameter(
            f"{name} must be a version number of at most {_MAX_VERSION_DIGITS} digits, got one of {len(value)}"
        )
    return int(value)


def _optional_int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    return None if value is None else _int(value, name)


routes: list[web.RouteDef] = [
    web.get(f"{ADMIN}/profiles", list_profiles, allow_head=False),
    web.get(PROFILE, get_profile, allow_head=False),
    web.put(PROFILE, put_profile),
    web.patch(PROFILE, merge_profile),
    web.post(PROFILE, merge_profile),
    web.delete(PROFILE, retire_profile),
    web.get(f"{PROFILE}/history", history, allow_head=False),
    web.get(f"{PROFILE}/history/{{version}}", get_version, allow_head=False),
    web.get(f"{PROFILE}/diff", diff, allow_head=False),
    web.post(f"{PROFILE}/rollback", rollback),
    web.get(f"{ADMIN}/audit", audit, allow_head=False),
    web.get(f"{ADMIN}/certificates", certificates, allow_head=False),
]
