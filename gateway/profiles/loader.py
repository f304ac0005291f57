"""Reading partner profiles: one YAML file per partner, every problem reported with file, line and field.

The round-trip loader keeps the position of every key, so a pydantic error location such as
``('security', 'suite')`` becomes ``be-famhp.yaml:9:3 security.suite``. All problems of a file are reported
at once. A folder is loaded whole or not at all, or (with ``keep``: the gateway's start and reload) with each file
that has problems of its own held back, its last accepted version in its place, so that one broken file among
many stops no other partner; problems between files still refuse the whole set.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from types import MappingProxyType, UnionType
from typing import Any, Union, get_args, get_origin

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent
from ruamel.yaml.scalarbool import ScalarBoolean

from gateway.errors import KeyMaterialError, ProfileError
from gateway.profiles.certificates import (
    Passphrase,
    check_certificate,
    check_revocation_list,
    check_suite_key,
    check_tls_client_key,
    load_certificate,
    load_certificate_bundle,
    load_revocation_list,
    missing_key_usage,
    no_passphrase,
)
from gateway.profiles.model import FieldError, PartnerProfile, Security, SecuritySuite
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.trust import time_to_live_problem

PROFILE_SUFFIXES = (".yaml", ".yml")

Loc = tuple[int | str, ...]


@dataclass(frozen=True, slots=True)
class _Problem:
    loc: Loc
    text: str


@dataclass(frozen=True, slots=True)
class _Loaded:
    path: Path
    document: CommentedMap | None  # None: a held-back file's last accepted version, its text no longer on disk
    profile: PartnerProfile

    def where(self, loc: Loc) -> str:
        if self.document is None:
            return f"{self.path} (its last accepted version)"
        line, column = _locate(self.document, loc)
        return f"{self.path}:{line}:{column}"


def load_profile(
    path: Path,
    *,
    certificates_dir: Path,
    now: datetime | None = None,
    tls_passphrase: Passphrase = no_passphrase,
    duplicate_window: timedelta | None = None,
) -> PartnerProfile:
    """Read and validate one partner profile; relative certificate paths resolve against ``certificates_dir``.

    The certificate files must exist, hold a certificate and suit the profile's security suite and the use
    its KeyUsage allows. With ``now``, each purpose (signing, encryption, trust anchor, TLS client) must also
    have a certificate valid at that time; without it, validity is left to each use
    (``PartnerCertificates.check``), so one expiring partner cannot keep all the others from loading. With
    ``duplicate_window`` (``[inbound]``'s), the time to live must stay below it.
    """
    return _load(
        path,
        None,
        certificates_dir=certificates_dir,
        now=now,
        tls_passphrase=tls_passphrase,
        duplicate_window=duplicate_window,
    ).profile


def load_profile_text(
    text: str,
    *,
    path: Path,
    certificates_dir: Path,
    now: datetime | None = None,
    tls_passphrase: Passphrase = no_passphrase,
    duplicate_window: timedelta | None = None,
    outside_allowed: Collection[str] | None = None,
) -> PartnerProfile:
    """Validate a profile not yet written to ``path`` (an edit); errors name ``path`` as if it were.

    With ``outside_allowed`` (an edit), a file the profile names must be in ``certificates_dir`` unless it is
    named by one of these values (what the file being replaced names already: its operator put it there)."""
    return _load(
        path,
        text,
        certificates_dir=certificates_dir,
        now=now,
        tls_passphrase=tls_passphrase,
        duplicate_window=duplicate_window,
        outside_allowed=outside_allowed,
    ).profile


def named_files(text: str, *, path: Path) -> frozenset[str]:
    """The file names (as written) a profile's text names for key material; none when it cannot be read."""
    try:
        return frozenset(ref.value for ref in _file_refs(_read_yaml(path, text)))
    except ProfileError:
        return frozenset()


@dataclass(frozen=True, slots=True)
class HeldBack:
    """A profile file left out of a load for problems of its own (``errors``): ``kept`` names the profile whose
    last accepted version from that file stays in the set instead, None when there is none (a new file)."""

    path: Path
    errors: tuple[str, ...]
    kept: str | None = None


@dataclass(frozen=True, slots=True)
class LoadedProfiles:
    """A valid profile folder: the registry, the file each profile came from, and the files held back."""

    registry: ProfileRegistry
    files: Mapping[str, Path]
    held_back: tuple[HeldBack, ...] = ()


def load_profiles(
    folder: Path,
    *,
    certificates_dir: Path,
    now: datetime | None = None,
    tls_passphrase: Passphrase = no_passphrase,
    duplicate_window: timedelta | None = None,
) -> ProfileRegistry:
    """Load every ``*.yaml``/``*.yml`` directly in ``folder`` (not in subfolders such as ``examples/``)."""
    return load_profile_folder(
        folder,
        certificates_dir=certificates_dir,
        now=now,
        tls_passphrase=tls_passphrase,
        duplicate_window=duplicate_window,
    ).registry


def load_profile_folder(
    folder: Path,
    *,
    certificates_dir: Path,
    now: datetime | None = None,
    overrides: Mapping[Path, str | None] | None = None,
    tls_passphrase: Passphrase = no_passphrase,
    duplicate_window: timedelta | None = None,
    keep: Mapping[Path, PartnerProfile] | None = None,
) -> LoadedProfiles:
    """Load a folder; ``overrides`` puts text in place of a file (None: as if removed).

    Without ``keep``, whole or not at all (``profiles check``, an edit's validation): every problem of every
    file is reported at once, then the problems across files (ids, PartyIds, a certificate one profile pins that
    another's trust anchor and subject admit). With ``keep`` (the last accepted profile of each file: what a
    reload replaces, none at a start), a file with problems of its own is held back and its kept profile, if
    any, stands in for it; the problems across files are then checked on that set and still refuse it whole,
    and so does a set in which every file was held back.
    """
    if not folder.is_dir():
        raise ProfileError(f"{folder}: partner profile folder not found; create it or fix [profiles].folder")
    changes = dict(overrides or {})
    loaded: list[_Loaded] = []
    errors: list[str] = []
    held: list[HeldBack] = []
    for path in _profile_files(folder, changes):
        try:
            text = changes.get(path)
            loaded.append(
                _load(
                    path,
                    text,
                    certificates_dir=certificates_dir,
                    now=now,
                    tls_passphrase=tls_passphrase,
                    duplicate_window=duplicate_window,
                )
            )
        except ProfileError as exc:
            errors.append(str(exc))
            kept = None if keep is None else keep.get(path)
            held.append(HeldBack(path, tuple(str(exc).splitlines()), None if kept is None else kept.id))
            if kept is not None:
                loaded.append(_Loaded(path, None, kept))
    if keep is None or not loaded:  # whole or not at all; or every file held back with nothing to keep
        errors += _duplicates(loaded)
        if errors:
            raise ProfileError("\n".join(errors))
    elif cross := _kept_files_gone(loaded) or _duplicates(loaded):  # gone first: the checks read the files
        raise ProfileError("\n".join(errors + cross))
    registry = ProfileRegistry(item.profile for item in loaded)
    files = MappingProxyType({i.profile.id: i.path for i in loaded})
    return LoadedProfiles(registry=registry, files=files, held_back=tuple(held))


def is_profile_file(path: Path) -> bool:
    """A profile file by its name: ``*.yaml`` or ``*.yml``, the suffix in any case (``de-bfarm.YAML`` too: an
    administrator's file is never left out unsaid), and not hidden (an editor's swap or temporary file)."""
    return path.suffix.lower() in PROFILE_SUFFIXES and not path.name.startswith(".")


def profile_files(folder: Path) -> dict[str, Path]:
    """Each profile file of ``folder`` by the ``id`` it declares (its stem when it declares none it can read).

    Tolerant on purpose: an administrator must be able to fetch and fix a broken file.
    """
    found: dict[str, Path] = {}
    for path in _profile_files(folder, {}):
        try:
            declared = _read_yaml(path).get("id")
        except ProfileError:
            declared = None
        found.setdefault(declared if isinstance(declared, str) and declared else path.stem, path)
    return found


def where(path: Path, text: str, loc: Loc) -> str:
    """``path:line:column`` of the key at ``loc`` in ``text`` (of its nearest present parent)."""
    line, column = _locate(_read_yaml(path, text), loc)
    return f"{path}:{line}:{column}"


def _profile_files(folder: Path, changes: Mapping[Path, str | None]) -> list[Path]:
    found = {path for path in folder.iterdir() if is_profile_file(path) and path.is_file()}
    found |= {path for path, text in changes.items() if text is not None}
    return sorted(found - {path for path, text in changes.items() if text is None})


def _load(
    path: Path,
    text: str | None,
    *,
    certificates_dir: Path,
    now: datetime | None,
    tls_passphrase: Passphrase,
    duplicate_window: timedelta | None = None,
    outside_allowed: Collection[str] | None = None,
) -> _Loaded:
    document = _read_yaml(path, text)
    profile, problems = _validate(document)
    problems += _file_problems(
        document,
        certificates_dir=certificates_dir,
        now=now,
        tls_passphrase=tls_passphrase,
        outside_allowed=outside_allowed,
    )
    if profile is not None and duplicate_window is not None:
        problems += _time_to_live_problems(profile, duplicate_window)
    if problems or profile is None:
        raise ProfileError(_report(path, document, problems))
    return _Loaded(path, document, _resolve_paths(profile, certificates_dir, path.parent))


def _time_to_live_problems(profile: PartnerProfile, duplicate_window: timedelta) -> list[_Problem]:
    """The check ``trust.check_time_to_live`` makes, here first so that it names the line."""
    problem = time_to_live_problem(profile.reception_awareness.time_to_live_hours, duplicate_window)
    return [] if problem is None else [_Problem(("reception_awareness", "time_to_live_hours"), problem)]


def _read_yaml(path: Path, text: str | None = None) -> CommentedMap:
    document = read_yaml_text(_read_text(path) if text is None else text, path)
    if not isinstance(document, CommentedMap):
        got = "an empty file" if document is None else _kind(document)
        raise ProfileError(f"{path}:1:1: got {got}, expected a mapping of profile keys (id, party_id, ...)")
    return document


def _kind(value: Any) -> str:
    """What a YAML document holds, in the words of the file rather than the YAML library's types."""
    if isinstance(value, list):
        return "a list (lines starting with '- ')"
    if isinstance(value, bool | ScalarBoolean):
        return "true or false alone"
    if isinstance(value, int | float):
        return "a number alone"
    if isinstance(value, str):
        return "text alone"
    return "a single value"


def read_yaml_text(text: str, path: Path, yaml: YAML | None = None) -> Any:
    """``text`` loaded by ``yaml`` (round-trip by default), as the profile in ``path``. Whatever the YAML
    library raises (a date that does not exist, an integer of 5000 digits, ``!!bool maybe``) becomes a
    ``ProfileError`` naming ``path:line:column`` when the library knows the place; no alias is allowed, nor
    nesting deeper than a profile needs."""
    yaml = yaml or YAML(typ="rt")
    yaml.Constructor = _PlaceNamingConstructor
    try:
        _refuse_aliases_and_depth(text, path)
        return yaml.load(text)
    except ProfileError:
        raise
    except RecursionError:
        raise ProfileError(f"{path}: nested too deeply to be a partner profile") from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ProfileError(f"{where}: not valid YAML: {_clip(str(exc.problem or exc.context), 500)}") from None
    except Exception as exc:  # the library's own ValueError, KeyError, AssertionError: still a broken file
        raise ProfileError(f"{path}: not valid YAML: {_clip(str(exc) or type(exc).__name__)}") from None


class _PlaceNamingConstructor(RoundTripConstructor):
    """A value the library fails to build (``2026-02-30``, ``!!int 0xZZ``) is reported at its own line."""

    def construct_non_recursive_object(self, node: Any, tag: str | None = None) -> Any:
        try:
            return super().construct_non_recursive_object(node, tag)
        except (MarkedYAMLError, RecursionError):
            raise
        except Exception as exc:
            value = node.value if isinstance(node.value, str) else ""
            shown = f" {_clip(value, 60)!r}" if value else ""
            raise ConstructorError(
                problem=f"cannot read the value{shown} as its tag or form says "
                f"({_clip(str(exc), 120) or type(exc).__name__}); "
                "quote it to make it text, or write a valid value",
                problem_mark=node.start_mark,
            ) from None


_MAX_DEPTH = 16
_MAX_REPORTED = 50


def _refuse_aliases_and_depth(text: str, path: Path) -> None:
    """From the parser's events, before any value is built. An alias (*name) puts one value in several places:
    a few lines stand for megabytes (each error about it repeats it) or, nested, billions of values (a "billion
    laughs"); profiles need none. Nor more than a few levels of nesting: the parser slows down with the square
    of the depth, so a deep one is refused as soon as it is seen."""
    aliases: list[str] = []
    depth = 0
    for event in YAML(typ="rt").parse(text):
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > _MAX_DEPTH:
                raise ProfileError(
                    f"{path}: nested more than {_MAX_DEPTH} levels deep; a partner profile needs a few"
                )
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
        elif isinstance(event, AliasEvent):
            mark = event.start_mark
            aliases.append(
                f"{path}:{mark.line + 1}:{mark.column + 1}: a YAML alias (*{_clip(str(event.anchor), 40)}) repeats "
                "the value of an anchor; partner profiles do not use anchors and aliases: write the value out "
                "where it is needed"
            )
    if aliases:
        raise ProfileError("\n".join(_capped(aliases, path)))


def _capped(lines: list[str], path: Path) -> list[str]:
    """At most ``_MAX_REPORTED`` lines: the rest is said in one more, so an error stays readable and small."""
    if len(lines) <= _MAX_REPORTED:
        return lines
    return [*lines[:_MAX_REPORTED], f"{path}: and {len(lines) - _MAX_REPORTED} more like these"]


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


class UndecodableProfile(ProfileError):
    """A profile file that is not UTF-8 (saved as Latin-1, say): named with its first bad byte, the rule and the
    fix. An edit never rewrites or removes it, and the other profiles' edits leave it out of their checks."""

    def __init__(self, path: Path, data: bytes, exc: UnicodeDecodeError) -> None:
        self.path, self.byte_offset = path, exc.start
        good = data[: exc.start].decode("utf-8")  # everything before the first bad byte is UTF-8
        self.line = good.count("\n") + 1
        self.column = len(good) - (good.rfind("\n") + 1) + 1
        super().__init__(
            f"{path}:{self.line}:{self.column}: byte {exc.start} (0x{data[exc.start]:02x}) is not UTF-8: partner "
            "profiles are UTF-8 YAML, and this file was saved in another encoding (Latin-1 or Windows-1252, "
            "most likely). It is left as it is: it cannot be read or edited here, and the gateway leaves this "
            "profile out (its last accepted version stays active) while it is there. Re-save it as UTF-8, e.g. "
            f"iconv -f latin1 -t utf-8 {path} > {path}.utf8 && mv {path}.utf8 {path}"
        )


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ProfileError(f"{path}: partner profile file not found") from None
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read partner profile: {exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UndecodableProfile(path, data, exc) from None


def _plain(node: Any) -> Any:
    """The YAML tree as plain Python values, so that validation sees no ruamel subclasses."""
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if isinstance(node, ScalarBoolean):
        return bool(node)
    for kind in (bool, int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return node


def _validate(document: CommentedMap) -> tuple[PartnerProfile | None, list[_Problem]]:
    try:
        return PartnerProfile.model_validate(_plain(document)), []
    except ValidationError as exc:
        return None, [_problem(error) for error in exc.errors()]


def _problem(error: ErrorDetails) -> _Problem:
    cause = error.get("ctx", {}).get("error")
    loc = tuple(error["loc"]) + (cause.loc if isinstance(cause, FieldError) else ())
    kind = error["type"]
    got = f"got {_short(error.get('input'))}"
    if kind == "missing":
        return _Problem(loc, "required key is missing")
    if kind == "extra_forbidden":
        return _Problem(loc, _unknown_key(loc))
    declared = _declared_type(loc)
    if kind == "enum" and isinstance(declared, type) and issubclass(declared, Enum):
        return _Problem(loc, f"{got}, expected one of: {', '.join(str(m.value) for m in declared)}")
    if kind == "model_type" and isinstance(declared, type) and issubclass(declared, BaseModel):
        return _Problem(loc, f"{got}, expected a mapping with the keys: {', '.join(declared.model_fields)}")
    if kind in ("tuple_type", "list_type"):
        return _Problem(loc, f"{got}, expected a list")
    if kind == "bool_parsing":
        return _Problem(loc, f"{got}, expected true or false")
    if kind == "path_type":
        return _Problem(loc, f"{got}, expected a file path")
    field = _field_info(loc)
    if kind == "string_pattern_mismatch" and field is not None and field.description:
        return _Problem(loc, f"{got}, expected {field.description}")
    if kind == "value_error":
        message = error["msg"].removeprefix("Value error, ")
        plain = isinstance(error.get("input"), dict) or error.get("input") is None
        return _Problem(loc, message if plain else f"{got}, {message}")
    return _Problem(loc, f"{got}, {_as_expectation(error['msg'])}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_expectation(message: str) -> str:
    """Turn pydantic's "Input should be ..." into "expected ..."."""
    message = re.sub(r"^\w+ should be (greater|less)", r"expected a value \1", message, count=1)
    return re.sub(r"^\w+ should (be |have )?", "expected ", message, count=1)


def _unknown_key(loc: Loc) -> str:
    parent = _declared_type(loc[:-1])
    if not (isinstance(parent, type) and issubclass(parent, BaseModel)):
        return "unknown key"
    allowed = list(parent.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}expected one of: {', '.join(allowed)}"


def _declared_type(loc: Loc) -> Any:
    """The type the model declares at ``loc``, or None when ``loc`` is not in the model."""
    current: Any = PartnerProfile
    for part in loc:
        current = _without_none(current)
        if isinstance(part, int):
            items = [arg for arg in get_args(current) if arg is not Ellipsis]
            if not items:
                return None
            current = items[0]
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return None
    return _without_none(current)


def _field_info(loc: Loc) -> FieldInfo | None:
    parent = _declared_type(loc[:-1])
    if loc and isinstance(parent, type) and issubclass(parent, BaseModel):
        return parent.model_fields.get(str(loc[-1]))
    return None


def _without_none(annotation: Any) -> Any:
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
        return args[0]
    return annotation


@dataclass(frozen=True, slots=True)
class _FileRef:
    """A file named in a profile: where, what it must hold, and which purpose its certificate serves."""

    loc: Loc
    value: str
    kind: str
    purpose: str


_EXPECTED_FILE = {
    "certificate": "the partner's certificate (PEM or DER)",
    "anchor": "the CA certificate (PEM or DER) that issues the partner's certificates",
    "bundle": "CA certificates (PEM)",
    "tls": "our TLS client certificate (PEM)",
    "key": "the private key of the TLS client certificate (PEM)",
    "crl": "the trust anchor's certificate revocation list (PEM or DER)",
}


def _file_refs(document: CommentedMap) -> list[_FileRef]:
    security = document.get("security")
    security = security if isinstance(security, dict) else {}
    tls = document.get("tls")
    tls = tls if isinstance(tls, dict) else {}
    pinned = security.get("signing_certificates")
    pinned = pinned if isinstance(pinned, list) else []
    candidates: list[tuple[Loc, object, str, str]] = [
        (("security", "signing_certificate"), security.get("signing_certificate"), "certificate", "signing"),
        *((("security", "signing_certificates", i), v, "certificate", "signing") for i, v in enumerate(pinned)),
        (
            ("security", "encryption_certificate"),
            security.get("encryption_certificate"),
            "certificate",
            "encryption",
        ),
        (("security", "trust_anchor"), security.get("trust_anchor"), "anchor", "trust-anchor"),
        (("security", "revocation_list"), security.get("revocation_list"), "crl", "revocation"),
        (("tls", "ca_bundle"), tls.get("ca_bundle"), "bundle", "tls-ca"),
        (("tls", "client_certificate"), tls.get("client_certificate"), "tls", "tls-client"),
        (("tls", "client_key"), tls.get("client_key"), "key", "tls-client"),
    ]
    return [
        _FileRef(loc, value, kind, purpose) for loc, value, kind, purpose in candidates if isinstance(value, str)
    ]


def _file_problems(
    document: CommentedMap,
    *,
    certificates_dir: Path,
    now: datetime | None,
    tls_passphrase: Passphrase,
    outside_allowed: Collection[str] | None,
) -> list[_Problem]:
    """Check the files named in the raw document, so they are reported with any other problem.

    With ``now``, a purpose (signing, encryption, trust anchor, TLS client) whose certificates are all invalid
    at ``now`` is a problem at each of them; one expired certificate beside a valid one is fine (a rollover).
    The TLS client key must open with ``tls_passphrase()`` (the ``[keys]`` passphrase, asked for only when the
    key is encrypted) and match its certificate. With ``outside_allowed``, every file must be in
    ``certificates_dir`` but those named by one of these values.
    """
    security = document.get("security")
    security = security if isinstance(security, dict) else {}
    suite = _suite(security.get("suite", Security.model_fields["suite"].default))
    # without encryption_certificate we encrypt for a pinned signing certificate (edelivery-as4-1.15 only)
    signing_encrypts = suite is SecuritySuite.EDELIVERY_AS4_1_15 and security.get("encryption_certificate") is None
    problems: list[_Problem] = []
    invalid: dict[str, list[_Problem]] = {}
    valid: set[str] = set()
    loaded: dict[str, x509.Certificate] = {}  # what the key and the CRL are checked against, by kind
    for ref in _file_refs(document):
        path = certificates_dir / ref.value
        try:
            certificate = _check_file(
                ref,
                path,
                certificates_dir=certificates_dir,
                suite=suite,
                signing_encrypts=signing_encrypts,
                confined=outside_allowed is not None and ref.value not in outside_allowed,
            )
            if certificate is not None:
                loaded[ref.kind] = certificate
            if ref.kind == "key" and "tls" in loaded:
                _check_tls_key(path, loaded["tls"], tls_passphrase)
            if ref.kind == "crl" and "anchor" in loaded:
                _check_crl(path, loaded["anchor"], now)
            if now is not None and certificate is not None:
                check_certificate(certificate, now=now, purpose=f"certificate {path}")
                valid.add(ref.purpose)
        except _Unfit as exc:
            problems.append(_Problem(ref.loc, str(exc)))
        except KeyMaterialError as exc:
            invalid.setdefault(ref.purpose, []).append(_Problem(ref.loc, str(exc)))
        except (OSError, ValueError) as exc:
            problems.append(_Problem(ref.loc, f"cannot read {_clip(str(path))}: {exc}"))
    return problems + [p for purpose, found in invalid.items() if purpose not in valid for p in found]


class _Unfit(Exception):
    """A named file is missing or holds the wrong thing (as opposed to a certificate not valid now)."""


_MAX_NAME_BYTES = 255  # of one path component, as Linux and most file systems allow
_MAX_PATH_BYTES = 4096


def _check_path_text(ref: _FileRef) -> None:
    """A path the system would refuse with an exception rather than an answer is refused with the reason."""
    if "\0" in ref.value:
        raise _Unfit(f"got {_short(ref.value, 200)}, which holds a NUL character; expected a file name")
    longest = max((len(part.encode("utf-8", "surrogateescape")) for part in ref.value.split("/")), default=0)
    if longest > _MAX_NAME_BYTES or len(ref.value.encode("utf-8", "surrogateescape")) > _MAX_PATH_BYTES:
        raise _Unfit(
            f"got {_short(ref.value, 200)} ({len(ref.value)} characters); a file name has at most "
            f"{_MAX_NAME_BYTES} bytes and a path {_MAX_PATH_BYTES}: name the file relative to the certificates folder"
        )


def _check_file(
    ref: _FileRef,
    path: Path,
    *,
    certificates_dir: Path,
    suite: SecuritySuite | None,
    signing_encrypts: bool,
    confined: bool,
) -> x509.Certificate | None:
    _check_path_text(ref)
    try:
        inside = path.resolve().is_relative_to(certificates_dir.resolve())
        is_file = path.is_file()
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: a symbolic link loop
        raise _Unfit(
            f"got {_short(ref.value, 200)}, which cannot be looked up ({exc}); expected a file name"
        ) from None
    if ref.kind == "key" and not inside:
        raise _Unfit(
            f"got {_short(ref.value, 200)}, which is outside {certificates_dir}; a private key a profile names must "
            "be in that folder, so that no profile can put another key of this host (the gateway's own) to use. "
            "Copy the TLS client key there"
        )
    if confined and not inside:
        raise _Unfit(
            f"got {_short(ref.value, 200)}, which is outside {certificates_dir}; a file an edit (the admin API, "
            "'permit-gateway profiles') names must be in that folder, so that no edit can look at other files of "
            "this host. Copy the file there and name it relative to the folder"
        )
    if not is_file:
        raise _Unfit(
            f"got {_short(ref.value, 200)}, but {_clip(str(path))} is not a file; expected "
            f"{_EXPECTED_FILE[ref.kind]} there (relative paths resolve against {certificates_dir})"
        )
    try:
        if ref.kind in ("key", "crl"):
            return None
        if ref.kind == "bundle":
            load_certificate_bundle(path)
            return None
        certificate = load_certificate(path)
        if ref.kind == "certificate" and suite is not None:
            check_suite_key(certificate, suite, purpose=f"certificate {path}", use=ref.purpose)
        if ref.kind == "anchor":
            _check_ca(certificate, path)
    except KeyMaterialError as exc:
        raise _Unfit(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise _Unfit(f"cannot read {path}: {exc}; expected {_EXPECTED_FILE[ref.kind]} there") from None
    if ref.kind == "certificate":
        _check_key_usage(certificate, path, ref.purpose, signing_encrypts=signing_encrypts)
    return certificate


def _check_key_usage(certificate: x509.Certificate, path: Path, purpose: str, *, signing_encrypts: bool) -> None:
    """The receiver refuses a signature whose certificate's KeyUsage lacks digitalSignature (EBMS:0101), and a
    certificate whose KeyUsage forbids encryption must not be encrypted for: found here, not at the first message."""
    subject = certificate.subject.rfc4514_string()
    missing = missing_key_usage(certificate, purpose)
    if missing is not None and purpose == "signing":
        raise _Unfit(
            f"certificate {path} ({subject}) has a KeyUsage extension without {missing}, so signatures made with "
            f"it are refused (EBMS:0101); name the partner's signing certificate, one whose KeyUsage includes {missing}"
        )
    if missing is not None:
        raise _Unfit(
            f"certificate {path} ({subject}) has a KeyUsage extension without {missing}, so we must not encrypt "
            f"for it; name the partner's encryption certificate, one whose KeyUsage includes {missing}"
        )
    missing = missing_key_usage(certificate, "encryption") if purpose == "signing" and signing_encrypts else None
    if missing is not None:
        raise _Unfit(
            f"certificate {path} ({subject}) has a KeyUsage extension without {missing}, so we must not encrypt "
            "for it, and without encryption_certificate we encrypt for the signing certificates; add "
            f"security.encryption_certificate naming the partner's encryption certificate (KeyUsage {missing})"
        )


def _check_crl(path: Path, anchor: x509.Certificate, now: datetime | None) -> None:
    try:
        crl = load_revocation_list(path, anchor)
        if now is not None:
            check_revocation_list(crl, now=now, purpose=f"revocation list {path}")
    except KeyMaterialError as exc:
        raise _Unfit(str(exc)) from None


def _check_tls_key(path: Path, certificate: x509.Certificate, passphrase: Passphrase) -> None:
    try:
        check_tls_client_key(path, certificate, passphrase)
    except KeyMaterialError as exc:
        raise _Unfit(str(exc)) from None


def _check_ca(certificate: x509.Certificate, path: Path) -> None:
    try:
        is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise KeyMaterialError(
            f"certificate {path} ({certificate.subject.rfc4514_string()}) is not a CA certificate "
            "(no basicConstraints CA:TRUE); expected the certificate of the CA that issues the partner's"
        )


def _suite(value: object) -> SecuritySuite | None:
    if not isinstance(value, str):
        return None
    try:
        return SecuritySuite(value)
    except ValueError:
        return None


def _resolve_paths(profile: PartnerProfile, certificates_dir: Path, profile_dir: Path) -> PartnerProfile:
    """Make relative paths absolute: key material against ``certificates_dir``, the inbox against the profile."""
    security, tls, delivery = profile.security, profile.tls, profile.delivery

    def under(path: Path | None, base: Path = certificates_dir) -> Path | None:
        return None if path is None else base / path

    resolved_security = security.model_copy(
        update={
            "signing_certificate": under(security.signing_certificate),
            "signing_certificates": tuple(certificates_dir / p for p in security.signing_certificates),
            "encryption_certificate": under(security.encryption_certificate),
            "trust_anchor": under(security.trust_anchor),
            "revocation_list": under(security.revocation_list),
        }
    )
    resolved_tls = tls.model_copy(
        update={
            "ca_bundle": under(tls.ca_bundle),
            "client_certificate": under(tls.client_certificate),
            "client_key": under(tls.client_key),
        }
    )
    resolved_delivery = delivery.model_copy(update={"folder": under(delivery.folder, profile_dir)})
    return profile.model_copy(
        update={"security": resolved_security, "tls": resolved_tls, "delivery": resolved_delivery}
    )


def _report(path: Path, document: CommentedMap, problems: Sequence[_Problem]) -> str:
    lines = []
    for problem in problems:
        line, column = _locate(document, problem.loc)
        lines.append((line, column, f"{path}:{line}:{column} {_dotted(problem.loc)}: {problem.text}"))
    return "\n".join(_capped([text for _, _, text in sorted(lines)], path))


def _locate(document: CommentedMap, loc: Loc) -> tuple[int, int]:
    """1-based line and column of the deepest key of ``loc`` present in the document."""
    node: Any = document
    line, column = document.lc.line, document.lc.col
    for part in loc:
        try:
            if isinstance(node, CommentedMap) and part in node:
                line, column = node.lc.key(part)
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line, column = node.lc.item(part)
            else:
                break
        except KeyError:
            break
        node = node[part]
    return line + 1, column + 1


def _dotted(loc: Loc) -> str:
    parts = (f"[{part}]" if isinstance(part, int) else f".{_clip(str(part), 60)}" for part in loc)
    text = "".join(parts).lstrip(".")
    return text or "(profile)"


def _kept_files_gone(loaded: Sequence[_Loaded]) -> list[str]:
    """A held-back file's last accepted version stands in for it only while the key material it names is still
    in regular files: its certificates are loaded again with the set, and a FIFO put in place of one would block
    that read (a missing or unreadable one refuses the set when it is loaded)."""
    errors: list[str] = []
    for item in loaded:
        if item.document is not None:
            continue
        security, tls = item.profile.security, item.profile.tls
        named = (
            *security.pinned_certificates,
            *security.encryption_candidates,
            security.trust_anchor,
            security.revocation_list,
            tls.ca_bundle,
            tls.client_certificate,
            tls.client_key,
        )
        errors += [
            f"{item.where(())}: {path} is no longer a file, so the profile {item.profile.id!r} cannot be kept at "
            "that version; put the file back, or fix the profile file: until then the whole change is refused"
            for path in named
            if path is not None and not path.is_file()
        ]
    return errors


def _duplicates(loaded: Sequence[_Loaded]) -> list[str]:
    errors: list[str] = []
    by_id: dict[str, _Loaded] = {}
    by_party: dict[tuple[str, str], _Loaded] = {}
    for item in loaded:
        profile = item.profile
        first = by_id.setdefault(profile.id, item)
        if first is not item:
            errors.append(
                f"{item.where(('id',))} id: {profile.id!r} is already the id of the profile in "
                f"{first.where(('id',))}; give each partner its own id"
            )
        first = by_party.setdefault((profile.party_id_type, profile.party_id), item)
        if first is not item:
            errors.append(
                f"{item.where(('party_id',))} party_id: {profile.party_id!r} (type {profile.party_id_type}) "
                f"is already the PartyId of profile {first.profile.id!r} in {first.where(('party_id',))}; "
                "a PartyId must name one partner"
            )
    return errors + _shared_signing_certificates(loaded) + _anchors_admitting_others(loaded)


def _shared_signing_certificates(loaded: Sequence[_Loaded]) -> list[str]:
    """A pinned signing certificate may belong to one partner only: the receiver applies the policy of the
    message's From PartyId, so a certificate pinned for two partners could sign as either."""
    errors: list[str] = []
    owners: dict[bytes, _Loaded] = {}
    for item in loaded:
        for path in item.profile.security.pinned_certificates:
            fingerprint = load_certificate(path).fingerprint(hashes.SHA256())
            first = owners.setdefault(fingerprint, item)
            if first is not item:
                errors.append(
                    f"{item.where(('security',))} security: the signing certificate {path.name} (SHA-256 "
                    f"{fingerprint.hex()[:16]}...) is also pinned by profile {first.profile.id!r} in {first.path}; "
                    "a signing certificate must belong to one partner, or either could sign as the other"
                )
    return errors


def _anchors_admitting_others(loaded: Sequence[_Loaded]) -> list[str]:
    """A trust anchor with its subject may admit only the partner's own certificates: one that admits a
    certificate another profile names would let that partner sign as this one (the message's From PartyId
    picks the profile, and the anchor vouches for the certificate)."""
    errors: list[str] = []
    certificate = functools.cache(load_certificate)
    for item in loaded:
        security = item.profile.security
        if security.trust_anchor is None or security.subject is None:
            continue
        anchor = certificate(security.trust_anchor)
        for other in (other for other in loaded if other is not item):
            for use, path in _named_certificates(other.profile):
                found = certificate(path)
                if _admits(anchor, security.subject, found):
                    errors.append(_admitted(item, other, use, path, found, certificate))
    return errors


def _named_certificates(profile: PartnerProfile) -> list[tuple[str, Path]]:
    security = profile.security
    named = [("signing", path) for path in security.pinned_certificates]
    if security.encryption_certificate is not None:
        named.append(("encryption", security.encryption_certificate))
    return named


def _admits(anchor: x509.Certificate, subject: str, cert: x509.Certificate) -> bool:
    """Would the receiver trust ``cert`` through ``anchor`` and ``subject`` (as ``wss.trust_certificate`` does)?"""
    if cert == anchor or re.fullmatch(subject, cert.subject.rfc4514_string()) is None:
        return False
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        pass
    try:
        cert.verify_directly_issued_by(anchor)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _admitted(
    item: _Loaded,
    other: _Loaded,
    use: str,
    path: Path,
    found: x509.Certificate,
    certificate: Callable[[Path], x509.Certificate],
) -> str:
    security = item.profile.security
    anchor = security.trust_anchor.name if security.trust_anchor is not None else ""
    named = _named_certificates(item.profile)
    example = ""
    if named:
        own_use, own = named[-1]
        example = f" (its {own_use} certificate {own.name} has {certificate(own).subject.rfc4514_string()!r})"
    return (
        f"{item.where(('security', 'subject'))} security.subject: {_short(security.subject, 200)} with trust_anchor {anchor} "
        f"admits the {use} certificate {path.name} ({found.subject.rfc4514_string()}) of profile "
        f"{other.profile.id!r} in {other.path}, so that partner could sign as {item.profile.id!r}; narrow the "
        f"subject to {item.profile.id!r}'s own certificates{example}"
    )
