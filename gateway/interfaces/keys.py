"""Typed application keys: the only way handlers reach the gateway's parts (no globals)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.clock import Clock
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.interfaces.node import Node

SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
NODE: web.AppKey[Node] = web.AppKey("node")
