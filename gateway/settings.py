"""The one configuration loader: ``config/gateway.toml`` into a typed, frozen ``Settings``.

Relative paths in the file are resolved against the folder that holds the file, so a gateway behaves the same
whatever directory it is started from. Unknown keys are errors: a misspelt key must not become a silent default.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from gateway.errors import ConfigError

PARTY_ID_TYPE_UNREGISTERED = "urn:oasis:names:tc:ebcore:partyid-type:unregistered"
MAX_CONNECTIONS = 256
"""Outgoing HTTP connections of one gateway process, shared by sends, pulls and deliveries to the national system."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class IdentitySettings(_Section):
    party_id: Annotated[str, Field(min_length=1, description="our ebMS PartyId, e.g. BE-FAMHP")]
    party_id_type: str = PARTY_ID_TYPE_UNREGISTERED
    country: Annotated[
        str,
        Field(
            pattern=r"^[A-Z]{2}$", description="an ISO 3166-1 alpha-2 country code, two capital letters such as BE"
        ),
    ]
    authority_name: Annotated[str, Field(min_length=1)]


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8480
    public_url: str | None = Field(
        default=None, description="the AS4 endpoint URL partners use; default http://HOST:PORT/as4"
    )

    def as4_url(self) -> str:
        return self.public_url or f"{self.listening()}/as4"

    def own_as4_urls(self) -> tuple[str, ...]:
        """Where partners reach this gateway, and where it listens: a partner endpoint that is one is ours."""
        return (self.as4_url(), f"{self.listening()}/as4")

    def listening(self) -> str:
        """``http://HOST:PORT``, an IPv6 host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class SuiteKeyFiles(_Section):
    """Our keys of an eDelivery AS4 2.0 suite (EXPERIMENTAL) as files: it signs with one key, and partners
    encrypt for another (key agreement). Encrypted keys use the ``[keys]`` passphrase."""

    private_key: Path = Field(description="the signing key (Ed25519, or ECDSA P-256 for 2.0-ecc)")
    certificate: Path = Field(description="the signing key's certificate")
    agreement_key: Path = Field(description="the key agreement key (X25519, or ECDH P-256 for 2.0-ecc)")
    agreement_certificate: Path = Field(description="the agreement key's certificate, which partners encrypt for")


class KeySettings(_Section):
    private_key: Path = Path("../var/keys/gateway.key.pem")
    certificate: Path = Path("../var/keys/gateway.crt.pem")
    passphrase_env: str | None = Field(
        default=None, description="environment variable holding the private key's passphrase, if encrypted"
    )
    passphrase_file: Path | None = Field(
        default=None, description="file holding the passphrase (first line), instead of passphrase_env"
    )
    keystore: Path | None = Field(
        default=None,
        description="keystore folder (current, next, previous keys); replaces private_key and certificate",
    )
    expiry_warning_days: Annotated[int, Field(ge=1)] = 60
    edelivery_2_0: SuiteKeyFiles | None = Field(
        default=None, description="Ed25519 + X25519 keys for edelivery-as4-2.0 partners (EXPERIMENTAL)"
    )
    edelivery_2_0_ecc: SuiteKeyFiles | None = Field(
        default=None, description="ECDSA + ECDH P-256 keys for edelivery-as4-2.0-ecc partners (EXPERIMENTAL)"
    )

    @model_validator(mode="after")
    def _one_passphrase_source(self) -> KeySettings:
        if self.passphrase_env is not None and self.passphrase_file is not None:
            raise ValueError("set passphrase_env or passphrase_file, not both")
        if self.keystore is not None and (self.edelivery_2_0 or self.edelivery_2_0_ecc):
            raise ValueError(
                "set [keys.edelivery_2_0] / [keys.edelivery_2_0_ecc] files or [keys].keystore, not both: the "
                "keystore holds the keys of every suite ('permit-gateway keys generate --suite ...')"
            )
        return self

    def passphrase(self) -> bytes | None:
        if self.passphrase_file is not None:
            return _first_line(self.passphrase_file, "[keys].passphrase_file")
        if self.passphrase_env is None:
            return None
        _check_variable_name(self.passphrase_env, "[keys].passphrase_env", "passphrase")
        value = os.environ.get(self.passphrase_env)
        if not value:
            raise ConfigError(
                f"[keys].passphrase_env names the environment variable {self.passphrase_env!r}, "
                "which is not set or empty; export the passphrase or remove the key"
            )
        return value.encode()

    def keystore_passphrase(self) -> bytes:
        """The keystore's passphrase: its private keys are always encrypted at rest."""
        passphrase = self.passphrase()
        if not passphrase:
            raise ConfigError(
                "[keys].keystore needs a passphrase: set [keys].passphrase_env or [keys].passphrase_file"
            )
        return passphrase


def _first_line(path: Path, key: str) -> bytes:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{key}: {path} is not UTF-8 text; write the passphrase as UTF-8 on its first line"
        ) from None
    if not lines or not lines[0]:
        raise ConfigError(f"{key}: {path} is empty; expected the passphrase on its first line")
    return lines[0].encode()


_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_variable_name(env: str, key: str, secret: str) -> None:
    """An ``*_env`` key that holds no variable name most likely holds the secret itself: never repeated."""
    if not _VARIABLE_NAME.fullmatch(env):
        raise ConfigError(
            f"{key} must name an environment variable (letters, digits and _, not starting with a digit), and "
            f"what it holds is no such name: it looks like the {secret} itself, which is not shown here. Put the "
            f"variable's name there, export the {secret} in that variable, and, if the file was shared, change "
            f"the {secret}"
        )


def _token(env: str | None, key: str, off: str) -> SecretStr | None:
    if env is None:
        return None
    _check_variable_name(env, key, "token")
    value = (os.environ.get(env) or "").strip()  # as a presented token is: a secret file's newline is no part
    if not value:
        raise ConfigError(
            f"{key} names the environment variable {env!r}, which is not set, empty or only spaces; export a "
            f"long random token or remove the key to {off}"
        )
    return SecretStr(value)


class AdminSettings(_Section):
    token_env: str | None = Field(
        default=None,
        description="environment variable holding the admin API's shared bearer token; unset (and no "
        "tokens_file): the admin API is off",
    )
    tokens_file: Path | None = Field(
        default=None,
        description="one line per administrator, 'NAME SHA256' of that person's own token "
        "('permit-gateway admin token NAME' makes one); the audit log then names who made each change",
    )

    def token(self) -> SecretStr | None:
        return _token(self.token_env, "[admin].token_env", "turn the admin API off")

    def named_tokens(self) -> dict[str, str]:
        """SHA-256 (hex) of each administrator's token -> the administrator's name."""
        if self.tokens_file is None:
            return {}
        try:
            lines = self.tokens_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(
                f"[admin].tokens_file: cannot read {self.tokens_file}: {exc.strerror or exc}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"[admin].tokens_file: {self.tokens_file} is not UTF-8 text") from None
        found: dict[str, str] = {}
        for number, line in enumerate(lines, 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if (
                len(fields) != 2
                or not re.fullmatch(r"[0-9a-f]{64}", fields[1])
                or not re.fullmatch(r"[\w.@-]+", fields[0])
            ):
                raise ConfigError(
                    f"{self.tokens_file}:{number}: expected 'NAME SHA256' (a name of letters, digits, . @ - _ and "
                    "the 64 hex digits 'permit-gateway admin token NAME' prints)"
                )
            if fields[1] == _EMPTY_SHA256:
                raise ConfigError(
                    f"{self.tokens_file}:{number}: {fields[1]} is the SHA-256 of an empty token (what 'echo -n "
                    '"$TOKEN" | sha256sum\' prints when TOKEN is not set), which would let a request with no token '
                    f"in as {fields[0]}; write the hash 'permit-gateway admin token {fields[0]}' prints"
                )
            found[fields[1]] = fields[0]
        return found


class ApiSettings(_Section):
    token_env: str | None = Field(
        default=None,
        description="environment variable holding the bearer token national systems send to the REST API "
        "(/api/v1 outside /admin) and scrapers to /metrics; unset: only loopback clients are answered",
    )

    def token(self) -> SecretStr | None:
        return _token(self.token_env, "[api].token_env", "answer loopback clients alone")


class StoreSettings(_Section):
    url: str = "sqlite+aiosqlite:///../var/gateway.db"
    wait_seconds: Annotated[float, Field(ge=1, le=300)] = Field(
        default=30.0,
        description="how long an operation waits for the database (a lock another process holds, a connection) "
        "before it is answered 'try again' (HTTP 503 with Retry-After)",
    )

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("expected a sqlite+aiosqlite:/// or postgresql+asyncpg:// URL")
        try:
            make_url(value).port  # noqa: B018  # a port that is not a number fails here, not at the first connect
        except (ArgumentError, ValueError):
            raise ValueError(
                "expected a URL of the form postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE"
            ) from None
        return value


class ProfileSettings(_Section):
    folder: Path = Path("../partner_profiles")
    certificates: Path = Field(
        default=Path("../partner_profiles/certs"),
        description="folder against which relative certificate paths in profiles are resolved",
    )
    poll_seconds: Annotated[float, Field(gt=0)] = Field(
        default=5.0, description="how often the profile folder and the keystore are checked for changes"
    )


class FolderSettings(_Section):
    outbox: Path = Path("../var/outbox")
    inbox: Path = Path("../var/inbox")
    rejected: Path = Path("../var/rejected")


DIRECT_HOSTS = ("localhost", "127.0.0.1", "::1")
"""The default of ``[outbound].no_proxy``: loopback partners (a test setup, a gateway beside its proxy)."""


class OutboundSettings(_Section):
    sweep_seconds: Annotated[float, Field(gt=0)] = 30.0
    http_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    lease_seconds: Annotated[float, Field(gt=0, description="how long a node owns a message it is sending")] = (
        120.0
    )
    max_in_flight_per_partner: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=16,
        description="messages sent to one partner at once; each partner has its own lane, so a partner that hangs "
        "holds up only its own messages",
    )
    max_in_flight: Annotated[int, Field(ge=1, le=MAX_CONNECTIONS // 2)] = Field(
        default=64,
        description="messages sent at once to all partners together; a send waiting for its turn does not count "
        "against its HTTP time-out",
    )
    proxy: str | None = Field(
        default=None,
        description="the HTTP proxy every request to a partner goes through, as http://HOST:PORT (an https:// "
        "partner is tunnelled with CONNECT, its TLS kept end to end); unset: partners are reached directly",
    )
    proxy_user: str | None = Field(
        default=None, description="user name the proxy asks for (HTTP Basic), with proxy_password_env"
    )
    proxy_password_env: str | None = Field(
        default=None, description="environment variable holding the password of proxy_user"
    )
    no_proxy: tuple[str, ...] = Field(
        default=DIRECT_HOSTS,
        description="partner hosts reached directly, not through the proxy: a host name, '.example.org' for "
        "that domain and every name under it, or an IP address; the list replaces the default (loopback), "
        "nothing else bypasses the proxy",
    )

    @field_validator("proxy")
    @classmethod
    def _plain_http_proxy(cls, value: str | None) -> str | None:
        return None if value is None else _proxy_url(value)

    @field_validator("proxy_user")
    @classmethod
    def _basic_auth_user(cls, value: str | None) -> str | None:
        if value is not None and (":" in value or not value.isprintable() or not value.strip()):
            raise ValueError("expected the proxy's user name: printable, not empty, without ':' (HTTP Basic)")
        return value

    @field_validator("no_proxy")
    @classmethod
    def _direct_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_direct_host(entry) for entry in value)

    @model_validator(mode="after")
    def _proxy_credentials_together(self) -> OutboundSettings:
        if (self.proxy_user is None) != (self.proxy_password_env is None):
            raise ValueError(
                "set proxy_user and proxy_password_env together (the proxy's user name, and the environment "
                "variable holding its password), or neither"
            )
        if self.proxy_user is not None and self.proxy is None:
            raise ValueError('proxy_user is set but proxy is not: set proxy = "http://HOST:PORT" or remove it')
        return self

    @model_validator(mode="after")
    def _per_partner_within_total(self) -> OutboundSettings:
        # only when set: the default (16) above a lowered max_in_flight is capped at it by the send loop
        if "max_in_flight_per_partner" in self.model_fields_set and self.max_in_flight_per_partner > self.max_in_flight:
            raise ValueError(
                f"[outbound].max_in_flight_per_partner = {self.max_in_flight_per_partner} is more than "
                f"[outbound].max_in_flight = {self.max_in_flight}, the messages sent at once to all partners "
                "together: one partner that takes requests and never answers could hold every send slot until its "
                f"HTTP time-out. Lower max_in_flight_per_partner to at most {self.max_in_flight}, or raise "
                f"max_in_flight (at most {MAX_CONNECTIONS // 2})"
            )
        return self

    def proxy_password(self) -> str | None:
        """The proxy's password, from the environment variable ``proxy_password_env`` names."""
        if self.proxy_password_env is None:
            return None
        _check_variable_name(self.proxy_password_env, "[outbound].proxy_password_env", "password")
        value = os.environ.get(self.proxy_password_env)
        if not value:
            raise ConfigError(
                f"[outbound].proxy_password_env names the environment variable {self.proxy_password_env!r}, "
                "which is not set or empty; export the proxy's password in it, or remove proxy_user and "
                "proxy_password_env if the proxy asks for none"
            )
        return value


def _proxy_url(value: str) -> str:
    """``http://HOST:PORT`` as written, or why not: the proxy's password never goes in the URL (it would be
    logged with it), and the gateway speaks plain HTTP to the proxy."""
    form = 'expected http://HOST:PORT with the port written and nothing after it, e.g. "http://proxy.example:3128"'
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        raise ValueError(form) from None
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "the proxy URL holds credentials (USER:PASSWORD@), which would be shown wherever the URL is: write "
            'proxy = "http://HOST:PORT", the user name in proxy_user, and the password in an environment '
            "variable named by proxy_password_env"
        )
    if parts.scheme.lower() != "http":
        raise ValueError(
            "expected http://HOST:PORT: the gateway speaks plain HTTP to the proxy, which tunnels https:// partners "
            "(CONNECT) with their TLS kept end to end; an https:// or other proxy scheme is not supported"
        )
    if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(form)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"http://{host}:{port}"


_HOST_NAME = re.compile(r"\.?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?")


def _direct_host(entry: str) -> str:
    """A ``no_proxy`` entry, lower case; an IP address in its usual form."""
    text = entry.strip().lower()
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(text.strip("[]")))
    if not _HOST_NAME.fullmatch(text) or text == ".":
        raise ValueError(
            f"no_proxy entry {entry!r} is not a host name, '.domain' or an IP address (no scheme, port, path or "
            "wildcard: '.example.org' covers every name under example.org)"
        )
    return text.rstrip(".")


class InboundSettings(_Section):
    duplicate_window_hours: Annotated[float, Field(gt=0)] = Field(
        default=720.0,
        description="received messages are remembered this long for duplicate detection; an older eb:Timestamp "
        "is refused (EBMS:0003), and no partner's time_to_live_hours may exceed it",
    )
    max_message_bytes: Annotated[int, Field(ge=1024 * 1024)] = Field(
        default=128 * 1024 * 1024,
        description="the largest AS4 request body accepted on /as4 (read before the sender is known, so keep it "
        "near the largest max_payload_bytes of any partner); bodies over 1 MiB are spooled to the data folder; "
        "at least 1 MiB, as a signed and encrypted permit with its receipt needs room",
    )

    read_timeout_seconds: Annotated[float, Field(gt=0)] = Field(
        default=60.0,
        description="a request to /as4 must not stall: a body up to 1 MiB must arrive within this time, a larger "
        "one must not pause this long; otherwise 408, and what arrived is dropped",
    )
    body_seconds: Annotated[float, Field(gt=0)] = Field(
        default=600.0,
        description="a request body to /as4 must have arrived whole within this time, however steadily it comes; "
        "otherwise 408, and what arrived is dropped (a sender trickling bytes holds no spool file longer)",
    )
    max_concurrent_requests: Annotated[int, Field(ge=1, le=MAX_CONNECTIONS)] = Field(
        default=32,
        description="AS4 requests handled on /as4 at once (each may spool up to max_message_bytes to the data "
        "folder before its sender is known); one more is answered 503 with Retry-After before its body is read",
    )

    @property
    def duplicate_window(self) -> timedelta:
        return timedelta(hours=self.duplicate_window_hours)


class RetentionSettings(_Section):
    """Days a message is kept after reaching each final state; then it goes with its events and evidence."""

    acknowledged_days: Annotated[float, Field(gt=0)] = 365.0
    failed_days: Annotated[float, Field(gt=0)] = 365.0
    delivered_days: Annotated[float, Field(gt=0)] = 365.0
    rejected_days: Annotated[float, Field(gt=0)] = 365.0
    duplicate_days: Annotated[float, Field(gt=0)] = 365.0
    batch_size: Annotated[int, Field(ge=1, le=10000)] = 500

    def days_by_state(self) -> dict[str, float]:
        """Final state name -> days kept."""
        return {
            "ACKNOWLEDGED": self.acknowledged_days,
            "FAILED": self.failed_days,
            "DELIVERED": self.delivered_days,
            "REJECTED": self.rejected_days,
            "DUPLICATE": self.duplicate_days,
        }


class DocumentSettings(_Section):
    tables: Path | None = Field(
        default=None,
        description="folder of the control tables the cross-document rules consult (estimates.csv, "
        "prohibitions.csv, import-requirements.csv; a missing file is an empty table); unset: none",
    )


class FaultSettings(_Section):
    crash: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, description="crash-test only: point name -> probability of SIGKILL there"
    )


class Settings(_Section):
    identity: IdentitySettings
    http: HttpSettings = HttpSettings()
    data_dir: Path = Field(
        default=Path("../var"), description="the folder of the gateway's payload files and other state"
    )
    keys: KeySettings = KeySettings()
    store: StoreSettings = StoreSettings()
    profiles: ProfileSettings = ProfileSettings()
    folders: FolderSettings = FolderSettings()
    outbound: OutboundSettings = OutboundSettings()
    inbound: InboundSettings = InboundSettings()
    retention: RetentionSettings = RetentionSettings()
    documents: DocumentSettings = DocumentSettings()
    faults: FaultSettings = FaultSettings()
    api: ApiSettings = ApiSettings()
    admin: AdminSettings = AdminSettings()

    @model_validator(mode="after")
    def _inbound_kept_for_the_duplicate_window(self) -> Settings:
        window = self.inbound.duplicate_window_hours
        for key in ("delivered_days", "rejected_days", "duplicate_days"):
            days = getattr(self.retention, key)
            if days * 24 < window:
                raise ValueError(
                    f"[retention].{key} = {days:g} days is shorter than [inbound].duplicate_window_hours = "
                    f"{window:g} hours: received messages must be kept at least as long as the duplicate window"
                )
        return self


def _resolve(base: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Make the relative paths and the SQLite URL of a parsed file absolute, against ``base``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = _resolve(base, value)
        elif key == "url" and isinstance(value, str):
            out[key] = _absolute_sqlite(base, value)
        else:
            out[key] = value
    return out


def _absolute_sqlite(base: Path, url: str) -> str:
    prefix = "sqlite+aiosqlite:///"
    path = url.removeprefix(prefix)
    if not url.startswith(prefix) or not path or path.startswith(("/", ":memory:")):
        return url
    return f"{prefix}{(base / path).resolve()}"


def _resolve_paths(base: Path, settings: Settings) -> Settings:
    def fix(model: BaseModel) -> BaseModel:
        updates: dict[str, Any] = {}
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, Path) and not value.is_absolute():
                updates[name] = (base / value).resolve()
            elif isinstance(value, BaseModel):
                updates[name] = fix(value)
        return model.model_copy(update=updates)

    fixed = fix(settings)
    assert isinstance(fixed, Settings)
    # the default URL too, not only one written in the file: it named a database beside the working directory
    store = fixed.store.model_copy(update={"url": _absolute_sqlite(base, fixed.store.url)})
    return fixed.model_copy(update={"store": store})


_SECRET_KEYS = ("url", "passphrase", "token", "password", "secret", "proxy")


def _describe(error: Any, text: str | None = None) -> str:
    line = _line_of(text, tuple(str(part) for part in error["loc"])) if text is not None else None
    where = _where(error)
    return f"line {line}: {where}" if line is not None else where


def _where(error: Any) -> str:
    loc = tuple(str(part) for part in error["loc"])
    key = loc[-1] if loc else ""
    got = error.get("input")
    where = _place(loc, section=isinstance(got, dict) or _is_section(loc))
    # a value may be a secret (a store URL with its password, a passphrase put in the wrong place): not echoed
    secret = any(word in key.lower() for word in _SECRET_KEYS) or isinstance(got, dict)
    if error["type"] == "extra_forbidden":
        known = ", ".join(_known_keys(error["loc"][:-1]))
        kind = "key" if len(loc) > 1 else "section" if where.startswith("[") else "top-level key"
        return f"{where}: unknown {kind}; expected one of: {known}"
    field = _field(loc)
    description = field.description if field is not None else None
    message = _plain_message(error, description)
    got_text = "" if error["type"] == "missing" or secret else f" (got {_shown(got)})"
    about = f"; {key}: {description}" if description and description not in message else ""
    return f"{where}: {message}{got_text}{about}"


def _place(loc: tuple[str, ...], *, section: bool) -> str:
    """``[store].url``; a section alone as ``[store]``, and a key outside any section (``data_dir``) as itself."""
    if not loc:
        return "configuration"
    if len(loc) == 1:
        return f"[{loc[0]}]" if section else loc[0]
    return f"[{'.'.join(loc[:-1])}].{loc[-1]}"


def _is_section(loc: tuple[str, ...]) -> bool:
    field = _field(loc)
    annotation = _without_none(field.annotation) if field is not None else None
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _field(loc: tuple[str, ...]) -> FieldInfo | None:
    """The pydantic field at ``loc``, or None when ``loc`` names none (an unknown key, an item of a table)."""
    model: Any = Settings
    field = None
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _without_none(field.annotation)
    return field


def _without_none(annotation: Any) -> Any:
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    return args[0] if get_origin(annotation) in (Union, UnionType) and len(args) == 1 else annotation


_PLAIN = {
    "path_type": "expected a path, as text in quotes",
    "string_type": "expected text, in quotes",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "dict_type": "expected a section (a [table] of keys)",
    "model_type": "expected a section (a [table] of keys)",
    "model_attributes_type": "expected a section (a [table] of keys)",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
}
"""pydantic's wording where it names Python types (``<class 'pathlib.Path'>``, ``instance of KeySettings``)."""


def _plain_message(error: Any, description: str | None) -> str:
    kind, message = str(error["type"]), str(error["msg"])
    if kind in _PLAIN:
        return _PLAIN[kind]
    if kind == "string_pattern_mismatch":
        return f"expected {description}" if description else "is not written in the form this key takes"
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _shown(value: object) -> str:
    """A value as it is written in TOML (``true``, not Python's ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at ``loc`` (a path of sections from the top) accepts."""
    model: Any = Settings
    for part in loc:
        field = model.model_fields.get(str(part))
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)


_TOML_KEY = re.compile(r"""\s*(?:[A-Za-z0-9_-]+|"[^"\\]*"|'[^']*')""")


def _key_path(text: str) -> tuple[tuple[str, ...], str] | None:
    """The dotted key at the start of ``text`` (bare or quoted parts) and what follows it, or None."""
    parts, rest = [], text
    while match := _TOML_KEY.match(rest):
        parts.append(match.group().strip().strip("\"'"))
        rest = rest[match.end() :].lstrip()
        if not rest.startswith("."):
            return tuple(parts), rest
        rest = rest[1:]
    return None


def _line_of(text: str, loc: tuple[str, ...]) -> int | None:
    """The line of the TOML file where the key (or table) at ``loc`` is written, for the error message:
    tomllib keeps no positions, so the text is scanned for table headers and ``key =`` lines."""
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines() if loc else (), 1):
        stripped = line.strip()
        header = _key_path(stripped.strip("[]")) if stripped.startswith("[") else None
        if header is not None:
            table = header[0]
            if table[: len(loc)] == loc:
                return number
            continue
        found = _key_path(stripped)
        if found is not None and found[1].startswith("=") and (table + found[0])[: len(loc)] == loc:
            return number
    return None


def settings_from_dict(
    data: dict[str, Any], *, base: Path, source: str = "<settings>", text: str | None = None
) -> Settings:
    """Build settings from already-parsed TOML data; relative paths resolve against ``base``. With the file's
    ``text``, each error names the line its key is written on."""
    try:
        settings = Settings.model_validate(_resolve(base, data))
    except ValidationError as exc:
        lines = [f"{source}: invalid configuration"]
        lines += [f"  {_describe(err, text)}" for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    resolved = _resolve_paths(base, settings)
    clashes = folder_clashes(resolved)
    if clashes:
        raise ConfigError("\n".join([f"{source}: invalid configuration", *(f"  {c}" for c in clashes)]))
    return resolved


INBOX_KEY = "[folders].inbox"


@dataclass(frozen=True)
class GuardedFolder:
    """A folder of the exchange with the national system or of the gateway's own files, each received permits
    must stay out of but the inbox: its configuration key, how an error names it, and where it is."""

    key: str
    label: str
    path: Path


def guard_table(
    *,
    folders: FolderSettings | None,
    data_dir: Path,
    profiles: Path,
    certificates: Path,
    keystore: Path | None = None,
) -> tuple[GuardedFolder, ...]:
    """The guarded folders, the exchange folders first (without ``folders``: none, and so no inbox)."""
    exchange = (
        ()
        if folders is None
        else (
            GuardedFolder(INBOX_KEY, "the inbox ([folders].inbox)", folders.inbox),
            GuardedFolder("[folders].outbox", "the outbox ([folders].outbox)", folders.outbox),
            GuardedFolder("[folders].rejected", "the rejected folder ([folders].rejected)", folders.rejected),
        )
    )
    own = (
        GuardedFolder("data_dir", "the gateway's data folder (data_dir)", data_dir),
        GuardedFolder("[profiles].folder", "the partner profile folder ([profiles].folder)", profiles),
        GuardedFolder(
            "[profiles].certificates", "the certificates folder ([profiles].certificates)", certificates
        ),
    )
    keys = (
        () if keystore is None else (GuardedFolder("[keys].keystore", "the keystore ([keys].keystore)", keystore),)
    )
    return exchange + own + keys


def guarded_folders(settings: Settings) -> tuple[GuardedFolder, ...]:
    """The folders received permits must stay out of, and the inbox they go to, of this configuration."""
    return guard_table(
        folders=settings.folders,
        data_dir=settings.data_dir,
        profiles=settings.profiles.folder,
        certificates=settings.profiles.certificates,
        keystore=settings.keys.keystore,
    )


def real_path(path: Path) -> Path:
    """``path`` absolute, without '..' and through symbolic links as far as they exist."""
    try:
        return Path(os.path.realpath(path))
    except ValueError:  # a NUL in the path: nothing on disk is named so
        return Path(os.path.normpath(os.path.abspath(path)))


def guarding(target: Path, guarded: Iterable[GuardedFolder]) -> GuardedFolder | None:
    """The deepest guarded folder that is ``target`` or holds it, or None. Deepest, because the folders nest: a
    folder in the inbox is the inbox's even when the inbox is in the data folder, and one in a keystore placed in
    the inbox is the keystore's."""
    real = real_path(target)
    holding = [g for g in guarded if real.is_relative_to(real_path(g.path))]
    return max(holding, key=lambda g: len(real_path(g.path).parts), default=None)


_EXCHANGE_DOES = {
    INBOX_KEY: "received permits are delivered there",
    "[folders].outbox": "every permit found there is sent",
    "[folders].rejected": "refused outbox files are moved there",
}


def folder_clashes(settings: Settings) -> list[str]:
    """The national system's folders that are one folder with each other or with a folder the gateway keeps its
    own files in: a permit received into the outbox would be sent on (or refused there and lost to the inbox)."""
    table = guarded_folders(settings)
    real = {g.key: real_path(g.path) for g in table}
    clashes = []
    for index, folder in enumerate(table):
        does = _EXCHANGE_DOES.get(folder.key)
        if does is None:
            continue
        for other in (o for o in table[index + 1 :] if real[o.key] == real[folder.key]):
            clashes.append(
                f"{folder.key} and {other.key} are the same folder ({folder.path}), but {does}: give each its own "
                "folder (the defaults are var/inbox, var/outbox and var/rejected beside the data folder's files)"
            )
    outbox = real["[folders].outbox"]
    for folder in (g for g in table if g.key in (INBOX_KEY, "[folders].rejected")):
        if real[folder.key] != outbox and real[folder.key].is_relative_to(outbox):
            clashes.append(
                f"{folder.key} ({folder.path}) is inside [folders].outbox ({settings.folders.outbox}), whose sent/ "
                "and .processing/ folders the gateway keeps for itself: put it beside the outbox, not in it"
            )
    return clashes


def load_settings(path: Path) -> Settings:
    """Read and validate the configuration file; every problem is reported with the file and the key."""
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found (pass --config PATH)")
    try:
        text = path.read_text(encoding="utf-8")
        if text.startswith("\ufeff"):
            raise ConfigError(
                f"{path}: the file starts with a byte-order mark (an editor's UTF-8 'with BOM'), which TOML does "
                "not allow; save it as UTF-8 without one"
            )
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror or exc}") from None
    return settings_from_dict(data, base=path.parent, source=str(path), text=text)
