"""What every ``permit-gateway`` command shares: the consoles, the ``--config`` option and the one way to fail."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from gateway.errors import GatewayError
from gateway.profiles.loader import LoadedProfiles, load_profile_folder
from gateway.settings import Settings, load_settings

console = Console(width=max(Console().width, 132))
err = Console(stderr=True)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="the gateway configuration file")]
DEFAULT_CONFIG = Path("config/gateway.toml")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as an error and return the exit to raise."""
    err.print(f"[bold red]error[/]: {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


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
