"""What every ``permit-gateway`` command shares: the consoles, the ``--config`` option and the one way to fail."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from gateway.errors import GatewayError
from gateway.profiles.loader import LoadedProfiles, load_profile_folder
from gateway.settings import Settings, load_settings

STORE_ERRORS = (DBAPIError, OSError)
"""What opening or querying a store raises when it is unreachable, refuses us or lacks its tables."""

# soft wrap: a line longer than the terminal (a path, a token, a profile's own text) is printed whole, never
# broken where a reader or a pipe would take the break for part of it
console = Console(width=max(Console().width, 132), soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="the gateway configuration file")]
DEFAULT_CONFIG = Path("config/gateway.toml")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as an error and return the exit to raise."""
    err.print(f"[bold red]error[/]: {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def shown_url(url: str) -> str:
    """A store URL fit to print or log: its password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return "(an unreadable URL)"


def store_unusable(url: str, exc: Exception) -> typer.Exit:
    """The exit for one of ``STORE_ERRORS``: which store, what it said, what to check."""
    reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return fail(
        f"cannot use the store at {shown_url(url)}: {reason}; check [store].url and that the database is running "
        "and reachable"
    )


def settings_of(config: Path) -> Settings:
    """The settings in ``config``, or exit 1 naming the file, the key and the expectation."""
    try:
        return load_settings(config)
    except GatewayError as exc:
        raise fail(str(exc)) from None


def load_profiles_of(settings: Settings) -> LoadedProfiles:
    """The profile folder of ``settings``, loaded as the gateway loads it (TLS keys opened with its passphrase)."""
    return load_profile_folder(
        settings.profiles.folder,
        certificates_dir=settings.profiles.certificates,
        tls_passphrase=settings.keys.passphrase,
    )
