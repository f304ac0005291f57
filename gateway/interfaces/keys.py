"""Typed application keys: the only way handlers reach the gateway's parts (no globals)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import SecretStr

from gateway.clock import Clock
from gateway.profiles.editor import ProfileEditor
from gateway.profiles.watcher import ProfileWatcher
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.interfaces.node import Node

SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
NODE: web.AppKey[Node] = web.AppKey("node")
# The admin API (gateway/interfaces/admin.py): the profile editor, the watcher whose set is active, the token.
PROFILE_EDITOR = web.AppKey("profile_editor", ProfileEditor)
PROFILE_WATCHER = web.AppKey("profile_watcher", ProfileWatcher)
ADMIN_TOKEN: web.AppKey[SecretStr | None] = web.AppKey("admin_token")
ADMIN_NAMED: web.AppKey[dict[str, str]] = web.AppKey("admin_named_tokens")
"""Each administrator's own token, by its SHA-256 (hex), to the administrator's name ([admin].tokens_file)."""
ADMIN_NAME: web.RequestKey[str] = web.RequestKey("admin_name")
"""On a request an administrator's own token authenticated: who it is."""
# The national REST API and /metrics (gateway/interfaces/access.py): their bearer token, if one is set.
API_TOKEN: web.AppKey[SecretStr | None] = web.AppKey("api_token")
