"""``permit-gateway profiles ...`` and ``permit-gateway keys ...``: partner profiles and our own keys.

The profile commands work on the files through ``ProfileEditor``, the same code path as the admin API; a
running gateway picks their changes up through its profile watcher (and a key rollover through its keystore
watcher), without a restart.
"""

from __future__ import annotations

import asyncio
import getpass
import io
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import aiohttp
import typer
from cryptography import x509
from cryptography.x509.oid import NameOID
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from ruamel.yaml import YAML

from gateway.as4 import Suite
from gateway.clock import SystemClock
from gateway.errors import GatewayError
from gateway.interfaces.cli_common import (
    DEFAULT_CONFIG,
    ConfigOption,
    console,
    err,
    fail,
    load_profiles_of,
    settings_of,
)
from gateway.outbound.ping import PingResult, ping
from gateway.outbound.proxy import proxy_settings
from gateway.profiles.certificates import fingerprint, load_certificate, require_own_key_files
from gateway.profiles.check import Ourselves, check_folder
from gateway.profiles.editor import EditConflict, Precondition, ProfileEditor, ProfileFile
from gateway.profiles.keystore import (
    KeyInfo,
    KeyStatus,
    generate_key,
    import_key,
    list_keys,
    load_own_keys,
    retire,
    rollover,
    subject_name,
)
from gateway.profiles.loader import PROFILE_SUFFIXES, is_profile_file
from gateway.profiles.model import profile_json_schema
from gateway.profiles.trust import Partners
from gateway.settings import KeySettings, Settings, guarded_folders

profiles_app = typer.Typer(help="Partner profiles: check, show, history, diff, rollback, ping, schema.")
keys_app = typer.Typer(help="Our own keys: generate, import, list, rollover.")


def _editor(settings: Settings) -> ProfileEditor:
    return ProfileEditor(
        settings.profiles.folder,
        certificates_dir=settings.profiles.certificates,
        data_dir=settings.data_dir,
        clock=SystemClock(),
        warning_days=settings.keys.expiry_warning_days,
        duplicate_window=settings.inbound.duplicate_window,
        tls_passphrase=settings.keys.passphrase,
        guarded=guarded_folders(settings),
    )


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


# --- profiles --------------------------------------------------------------------------------------------


@profiles_app.command("check")
def check(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Validate the profile folder as a reload would, print every error and warning; exit 1 on an error."""
    settings = settings_of(config)
    result = check_folder(
        settings.profiles.folder,
        certificates_dir=settings.profiles.certificates,
        now=SystemClock().now(),
        warning_days=settings.keys.expiry_warning_days,
        duplicate_window=settings.inbound.duplicate_window,
        tls_passphrase=settings.keys.passphrase,
        ourselves=Ourselves(
            party_id=settings.identity.party_id,
            party_id_type=settings.identity.party_id_type,
            certificates=_own_certificates(settings.keys),
            endpoints=settings.http.own_as4_urls(),
        ),
        guarded=guarded_folders(settings),
    )
    folder = settings.profiles.folder
    for line in result.errors:
        err.print(f"[bold red]error[/] {escape(line)}", highlight=False, soft_wrap=True)
    for line in [*result.warnings, *_not_loaded(folder, settings.profiles.certificates)]:
        err.print(f"[yellow]warning[/] {escape(line)}", highlight=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)
    ids = [profile.id for profile in result.partners.registry] if result.partners is not None else []
    if not ids:
        raise fail(
            f"{folder} ([profiles].folder) holds no partner profile, so the gateway would know no partner: put one "
            f"file per partner authority, named NAME.yaml, directly in {folder} (partner_profiles/README.md "
            "describes its keys; 'permit-gateway profiles schema' gives editors a JSON Schema)"
        )
    console.print(f"{folder}: {len(ids)} partner profile(s) OK: {', '.join(ids)}", highlight=False, markup=False)


# Subfolders the gateway keeps beside the profiles on purpose: the certificates, and the shipped examples
# (documentation, never loaded).
_KEPT_SUBFOLDERS = ("certs", "examples")


def _not_loaded(folder: Path, certificates: Path) -> list[str]:
    """A warning for each entry of ``folder`` that looks like a profile but that the loader leaves out: a name
    with ``.yaml`` inside but not at its end (``be-famhp.yaml.txt``, as Notepad saves), or a subfolder of
    profile files; hidden entries and the subfolders kept there on purpose are not profiles."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []  # a folder that cannot be read is the loader's error already
    found = []
    for entry in entries:
        if entry.name.startswith(".") or is_profile_file(entry):
            continue
        if entry.is_dir():
            found += _subfolder_not_loaded(folder, entry, certificates)
        elif (stem := _profile_name_inside(entry.name)) is not None:
            found.append(_misnamed(folder, entry, stem))
    return found


def _profile_name_inside(name: str) -> str | None:
    """``be-famhp.yaml`` of ``be-famhp.yaml.txt``: the name up to a profile suffix inside it, if any."""
    lowered = name.lower()
    ends = [lowered.find(s) + len(s) for s in PROFILE_SUFFIXES if s in lowered]
    return name[: min(ends)] if ends else None


def _misnamed(folder: Path, entry: Path, name: str) -> str:
    taken = (
        f"; {folder / name} exists already, so remove {entry.name} if it is an old copy"
        if (folder / name).exists()
        else ""
    )
    return (
        f"{entry} is not loaded: a partner profile's file name ends in .yaml or .yml; rename it to {name}"
        f"{taken} (an editor that adds .txt: save with the file type 'All files')"
    )


def _subfolder_not_loaded(folder: Path, subfolder: Path, certificates: Path) -> list[str]:
    if subfolder.name in _KEPT_SUBFOLDERS or _same_folder(subfolder, certificates):
        return []
    try:
        inside = sorted(p.name for p in subfolder.iterdir() if is_profile_file(p) and p.is_file())
    except OSError:
        return []
    if not inside:
        return []
    return [
        f"{subfolder}{os.sep} holds {len(inside)} profile file(s) ({', '.join(inside)}) that are not loaded: "
        f"partner profiles are read only from {folder} itself, not from its subfolders; move them up into {folder}"
    ]


def _same_folder(one: Path, other: Path) -> bool:
    try:
        return one.resolve() == other.resolve()
    except OSError:
        return False


def _own_certificates(keys: KeySettings) -> tuple[tuple[str, x509.Certificate], ...]:
    """Our certificates, each with the setting it comes from; none that cannot be read (no passphrase needed)."""
    if keys.keystore is not None:
        try:
            infos = list_keys(keys.keystore)
        except GatewayError:
            return ()
        return tuple(
            (f"[keys].keystore key {info.record.id}", cert)
            for info in infos
            for cert in (info.certificate, info.agreement_certificate)
            if cert is not None
        )
    files = [("[keys].certificate", keys.certificate)]
    for section, suite in (("edelivery_2_0", keys.edelivery_2_0), ("edelivery_2_0_ecc", keys.edelivery_2_0_ecc)):
        if suite is not None:
            files += [
                (f"[keys.{section}].certificate", suite.certificate),
                (f"[keys.{section}].agreement_certificate", suite.agreement_certificate),
            ]
    found = []
    for setting, path in files:
        try:
            found.append((setting, load_certificate(path)))
        except GatewayError:
            continue
    return tuple(found)


@profiles_app.command("show")
def show(
    profile_id: Annotated[str, typer.Argument(metavar="ID", help="the profile id")],
    effective: Annotated[bool, typer.Option("--effective", help="every key, defaults merged in")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Print a profile as written, or with --effective as the gateway uses it (defaults, absolute paths)."""
    settings = settings_of(config)
    try:
        if not effective:
            console.print(_editor(settings).get(profile_id).text, end="", highlight=False, markup=False)
            return
        loaded = load_profiles_of(settings)
        profile = loaded.registry.get(profile_id)
    except GatewayError as exc:
        raise fail(str(exc)) from None
    out = io.StringIO()
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # a long path or URL stays on its key's line, where a reader (or grep) looks for it
    yaml.dump(profile.model_dump(mode="json"), out)
    console.print(
        f"# effective profile {profile_id!r} from {loaded.files[profile_id]}", highlight=False, markup=False
    )
    console.print(out.getvalue(), end="", highlight=False, markup=False)


@profiles_app.command("schema")
def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write to this file")] = None,
) -> None:
    """Export the JSON Schema of a profile file, for editors that complete and check YAML."""
    text = json.dumps(profile_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(
            f"cannot write {output}: {exc.strerror or exc}; give --output a path in an existing, writable folder"
        ) from None
    console.print(f"JSON Schema written to {output}", highlight=False, markup=False)


@profiles_app.command("history")
def history(
    partner: Annotated[str, typer.Argument(help="the profile id")], config: ConfigOption = DEFAULT_CONFIG
) -> None:
    """List every version of a profile: when, by whom, how; the current one is marked."""
    editor = _editor(settings_of(config))
    try:
        versions = editor.versions(partner)
        current = editor.find(partner)
    except GatewayError as exc:
        raise fail(str(exc)) from None
    table = Table("version", "at", "actor", "action", "sha256", "")
    for version in versions:
        marks = ["current"] if current is not None and version.sha256 == current.etag else []
        mark = ", ".join(marks + (["refused"] if version.refused else []))
        actor = Text(version.actor)  # as the admin API's caller named itself: text, never markup
        table.add_row(str(version.number), version.at, actor, version.action, version.sha256[:16], mark)
    console.print(table)
    if current is None:
        console.print(f"{partner} is retired; 'profiles rollback {partner} VERSION' brings it back", markup=False)
    elif not any(v.sha256 == current.etag for v in versions):
        console.print(
            f"the current file {current.path} is not in the history yet (it is saved at the next edit, or when "
            "the gateway next starts)",
            markup=False,
        )


@profiles_app.command("diff")
def diff(
    partner: Annotated[str, typer.Argument(help="the profile id")],
    version: Annotated[int | None, typer.Argument(help="from this version; default: the previous one")] = None,
    to: Annotated[int | None, typer.Option(help="to this version; default: the current file")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Show what changed between a version and the current file (or another version)."""
    try:
        text = _editor(settings_of(config)).diff(partner, version, to)
    except GatewayError as exc:
        raise fail(str(exc)) from None
    typer.echo(text or "(no difference)", nl=not text)


@profiles_app.command("rollback")
def rollback_profile(
    partner: Annotated[str, typer.Argument(help="the profile id")],
    version: Annotated[
        int | None, typer.Argument(help="the version to restore; default: the previous one")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    force: Annotated[
        bool, typer.Option("--force", help="roll back even over a change made after this command read the profile")
    ] = False,
) -> None:
    """Make an earlier version current again (validated first); a running gateway picks it up by itself. Refused
    when the profile changes between this command's reading it and its writing, unless --force."""
    editor = _editor(settings_of(config))
    try:
        read = editor.find(partner)
        condition = Precondition() if force else _unchanged_since(read)
        result = editor.rollback(partner, version, condition=condition, actor=_actor())
    except EditConflict as exc:
        raise fail(_changed_meanwhile(editor, partner, read, exc)) from None
    except GatewayError as exc:
        raise fail(str(exc)) from None
    for warning in result.warnings:
        err.print(f"[yellow]warning[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if result.version is None:
        console.print(
            f"{partner}: the file already is that version; nothing changed", highlight=False, markup=False
        )
        return
    console.print(
        f"{partner}: {result.action} written as version {result.version} to {result.path}",
        highlight=False,
        markup=False,
    )


def _unchanged_since(read: ProfileFile | None) -> Precondition:
    """The profile must still be as read (a retired one still retired) when the edit takes the writers' lock."""
    return Precondition(if_absent=True) if read is None else Precondition(if_match=read.etag)


def _changed_meanwhile(editor: ProfileEditor, partner: str, read: ProfileFile | None, exc: EditConflict) -> str:
    """Which change came between reading and writing, and who made it (the history's latest matching version)."""
    try:
        now = editor.find(partner)
    except GatewayError:
        return str(exc)
    if (now.etag if now else None) == (read.etag if read else None):
        return str(exc)  # not a change since the read: the conflict says what it is
    if now is None:
        newer = "it was retired meanwhile"
    else:
        made = [v for v in editor.history.versions(partner) if v.sha256 == now.etag]
        newer = (
            f"it is now version {made[-1].number} ({made[-1].action} by {made[-1].actor} at {made[-1].at})"
            if made
            else f"its file {now.path} was changed on disk meanwhile (not in the history yet)"
        )
    return (
        f"{partner}: not rolled back: the profile changed after this command read it, and a rollback must not undo "
        f"a change unseen; {newer}. Look at it ('permit-gateway profiles history {partner}', 'profiles diff "
        f"{partner}') and run the rollback again, or add --force to roll back over that change"
    )


@profiles_app.command("ping")
def ping_partner(
    partner: Annotated[str, typer.Argument(help="the profile id")],
    config: ConfigOption = DEFAULT_CONFIG,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the receipt")] = 30.0,
) -> None:
    """Send the AS4 test-service message; report the signed receipt's round trip or what failed."""
    settings = settings_of(config)
    try:
        result = asyncio.run(_ping(settings, partner, timeout))
    except GatewayError as exc:
        raise fail(str(exc)) from None
    _print_ping(result)
    raise typer.Exit(0 if result.ok else 1)


async def _ping(settings: Settings, partner_id: str, timeout: float) -> PingResult:
    clock = SystemClock()
    if settings.keys.keystore is None:
        require_own_key_files(settings.keys.private_key, settings.keys.certificate)
    keys = load_own_keys(settings.keys, now=clock.now())
    loaded = load_profiles_of(settings)
    partner = Partners(loaded.registry, now=clock.now()).get(partner_id)
    proxy = proxy_settings(settings.outbound)
    async with aiohttp.ClientSession() as session:
        return await ping(
            partner,
            identity=settings.identity,
            keys=keys,
            session=session,
            clock=clock,
            timeout=timeout,
            tls_passphrase=settings.keys.passphrase(),
            proxy=proxy,
        )


def _print_ping(result: PingResult) -> None:
    status = f"HTTP {result.http_status}" if result.http_status is not None else "no HTTP answer"
    took = f"{result.round_trip_ms} ms" if result.round_trip_ms is not None else "-"
    # The endpoint and the detail carry what the partner (or a proxy) sent: text, never markup.
    if result.ok:
        text = f" {result.partner} at {result.endpoint}: {result.detail}; round trip {took}"
        console.print(Text.assemble(("OK", "bold green"), text), highlight=False)
        return
    codes = f" [{', '.join(result.error_codes)}]" if result.error_codes else ""
    text = (
        f" {result.partner} at {result.endpoint}: {result.stage.value}{codes} ({status}, {took}): {result.detail}"
    )
    err.print(Text.assemble(("FAILED", "bold red"), text), highlight=False, soft_wrap=True)


# --- keys ------------------------------------------------------------------------------------------------


class NewKeyStatus(StrEnum):
    """What a new key may be: a key becomes previous or retired only by a rollover."""

    CURRENT = "current"
    NEXT = "next"


StatusOption = Annotated[
    NewKeyStatus | None,
    typer.Option("--status", help="current or next; default: current for the first key, else next"),
]


def _status(status: NewKeyStatus | None) -> KeyStatus | None:
    return None if status is None else KeyStatus(status.value)


SuiteOption = Annotated[
    Suite,
    typer.Option(
        "--suite",
        help="the eDelivery AS4 security suite: edelivery-as4-1.15 (RSA), edelivery-as4-2.0 (Ed25519 + X25519, "
        "EXPERIMENTAL) or edelivery-as4-2.0-ecc (ECDSA + ECDH P-256, EXPERIMENTAL)",
    ),
]


NO_KEYSTORE = (
    "the keys commands work on a keystore, and [keys] names none: set [keys].keystore to its folder (e.g. "
    'keystore = "../var/keystore") and its passphrase with [keys].passphrase_env (an environment variable '
    "holding it) or [keys].passphrase_file, then run the command again; the gateway then uses the keystore "
    "instead of [keys].private_key and certificate"
)


def _keystore(settings: Settings) -> tuple[Path, bytes]:
    folder = settings.keys.keystore
    if folder is None:
        raise fail(NO_KEYSTORE)
    try:
        return folder, settings.keys.keystore_passphrase()
    except GatewayError as exc:
        raise fail(str(exc)) from None


@keys_app.command("generate")
def generate(
    config: ConfigOption = DEFAULT_CONFIG,
    status: StatusOption = None,
    days: Annotated[int, typer.Option(min=1, help="validity of the self-signed certificate")] = 730,
    suite: SuiteOption = Suite.EDELIVERY_1_15,
) -> None:
    """Create the keys of a suite (1.15: RSA-3072; 2.0: Ed25519 + X25519; 2.0-ecc: ECDSA + ECDH P-256), CSRs for
    the CA and self-signed certificates (development use; an agreement certificate is issued by the signing key)."""
    settings = settings_of(config)
    folder, passphrase = _keystore(settings)
    identity = settings.identity
    subject = subject_name(identity.party_id, identity.authority_name, identity.country)
    try:
        info = generate_key(
            folder,
            passphrase,
            subject=subject,
            now=SystemClock().now(),
            status=_status(status),
            days=days,
            suite=suite,
        )
    except GatewayError as exc:
        raise fail(str(exc)) from None
    _print_key(info, "generated")
    for csr in sorted(folder.glob(f"{info.record.id}*.csr.pem")):
        console.print(f"CSR for your CA: {csr}", highlight=False, markup=False)
    _print_next_steps(folder, info)


@keys_app.command("import")
def import_(
    key: Annotated[Path, typer.Option("--key", help="the private key (PEM or DER)")],
    certificate: Annotated[Path, typer.Option("--certificate", help="its certificate (PEM or DER)")],
    key_passphrase_env: Annotated[
        str | None, typer.Option(help="environment variable with the passphrase of --key, if encrypted")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    status: StatusOption = None,
    suite: SuiteOption = Suite.EDELIVERY_1_15,
    agreement_key: Annotated[
        Path | None, typer.Option("--agreement-key", help="2.0 suites: the X25519 / ECDH P-256 key (PEM or DER)")
    ] = None,
    agreement_certificate: Annotated[
        Path | None, typer.Option("--agreement-certificate", help="2.0 suites: the agreement key's certificate")
    ] = None,
) -> None:
    """Add an existing key and certificate (2.0 suites: and the agreement key with its certificate); the keys are
    stored encrypted with the keystore passphrase."""
    settings = settings_of(config)
    folder, passphrase = _keystore(settings)
    try:
        info = import_key(
            folder,
            passphrase,
            key_file=key,
            certificate_file=certificate,
            key_passphrase=_env_passphrase(key_passphrase_env),
            now=SystemClock().now(),
            status=_status(status),
            suite=suite,
            agreement_key_file=agreement_key,
            agreement_certificate_file=agreement_certificate,
        )
    except GatewayError as exc:
        raise fail(_import_refusal(str(exc), key_passphrase_env)) from None
    _print_key(info, "imported")
    _warn_if_not_ours(info, settings.identity.party_id, folder)
    _print_next_steps(folder, info)


_ENCRYPTED_KEY_REFUSAL = "is encrypted and needs a passphrase"


def _import_refusal(message: str, key_passphrase_env: str | None) -> str:
    """The import's error, naming the option that gives an encrypted key's passphrase when none was given."""
    if key_passphrase_env is not None or _ENCRYPTED_KEY_REFUSAL not in message:
        return message
    return (
        f"{message}: put the passphrase in an environment variable and name that variable with "
        "--key-passphrase-env (e.g. 'export IMPORT_PASS=...' and --key-passphrase-env IMPORT_PASS); it is "
        "used only to read the key, which the keystore stores encrypted with its own passphrase"
    )


def _warn_if_not_ours(info: KeyInfo, party_id: str, folder: Path) -> None:
    """Partners see the certificate's CN as whose key it is: ours carry our PartyId ([identity].party_id)."""
    names = [str(a.value) for a in info.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if any(name.casefold() == party_id.casefold() for name in names):
        return
    looks = f"it looks like {names[0]}'s certificate" if names else "its subject has no CN naming whose key it is"
    warning = (
        f" the imported certificate {info.subject!r} does not name our PartyId {party_id!r} ([identity].party_id): "
        f"{looks}. If it is not our key, do not give it to partners: "
        + (
            f"'permit-gateway keys retire {info.record.id}', then import ours"
            if info.record.status is not KeyStatus.CURRENT
            else f"it is the keystore's current key: import ours as next, 'keys rollover', then 'keys retire "
            f"{info.record.id}' (or, if the keystore holds nothing else, remove {folder} and import ours)"
        )
    )
    err.print(Text.assemble(("warning", "yellow"), warning), highlight=False, soft_wrap=True)


def _print_next_steps(folder: Path, info: KeyInfo) -> None:
    """A next key signs only after 'keys rollover'; partners must have pinned its certificate by then."""
    if info.record.status is not KeyStatus.NEXT:
        return
    option = "" if info.record.suite is Suite.EDELIVERY_1_15 else f" --suite {info.record.suite.value}"
    console.print(
        f"Give its certificate {_certificate_files(folder, info.record.id)} to every partner before 'permit-gateway "
        f"keys rollover{option}': each pins it in its profile of us beside the current one, and refuses our "
        "messages signed with it (EBMS:0101) until then",
        highlight=False,
        markup=False,
    )


def _certificate_files(folder: Path, key_id: str) -> str:
    """The certificate files of a keystore key (a 2.0 key also has its agreement certificate)."""
    return " and ".join(str(path) for path in sorted(folder.glob(f"{key_id}*.crt.pem")))


def _env_passphrase(variable: str | None) -> bytes | None:
    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise fail(f"--key-passphrase-env names {variable!r}, which is not set")
    return value.encode()


@keys_app.command("list")
def list_(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Every key: status, fingerprint, subject and validity (no passphrase needed)."""
    settings = settings_of(config)
    if settings.keys.keystore is None:
        raise fail(NO_KEYSTORE)
    try:
        keys = list_keys(settings.keys.keystore)
    except GatewayError as exc:
        raise fail(str(exc)) from None
    now = SystemClock().now()
    table = Table("id", "suite", "status", "key", "sha256", "subject", "valid until", "days left")
    for info in keys:
        certificates = [("signing", info.certificate)]
        if info.agreement_certificate is not None:
            certificates.append(("agreement", info.agreement_certificate))
        for purpose, cert in certificates:
            table.add_row(
                info.record.id,
                info.record.suite.value.removeprefix("edelivery-as4-"),
                info.record.status.value,
                purpose,
                fingerprint(cert)[:16],
                Text(cert.subject.rfc4514_string()),
                f"{cert.not_valid_after_utc:%Y-%m-%d}",
                str((cert.not_valid_after_utc - now).days),
            )
    console.print(table)


@keys_app.command("retire")
def retire_key(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="the key's id, as 'keys list' shows it")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Retire a key that is not current: a next key added by mistake, or a previous one no partner encrypts for
    any more. It stays on disk and is no longer loaded."""
    settings = settings_of(config)
    if settings.keys.keystore is None:
        raise fail(NO_KEYSTORE)
    try:
        was = retire(settings.keys.keystore, key_id)
    except GatewayError as exc:
        raise fail(str(exc)) from None
    if was.status is KeyStatus.RETIRED:
        console.print(f"key {key_id} was retired already; nothing changed", highlight=False, markup=False)
        return
    after = {
        KeyStatus.NEXT: "the next rollover needs a new next key ('keys generate' or 'keys import')",
        KeyStatus.PREVIOUS: "a message a partner still encrypts for it can no longer be decrypted",
    }[was.status]
    console.print(
        f"retired key {key_id} (was {was.status.value}, suite {was.suite.value}): {after}. A running gateway "
        "drops it within [profiles].poll_seconds.",
        highlight=False,
        markup=False,
    )


@keys_app.command("rollover")
def rollover_keys(config: ConfigOption = DEFAULT_CONFIG, suite: SuiteOption = Suite.EDELIVERY_1_15) -> None:
    """Within a suite: next key becomes current (signs), current becomes previous (still decrypts), previous is
    retired. The other suites' keys are not touched."""
    settings = settings_of(config)
    folder, passphrase = _keystore(settings)
    try:
        keystore = rollover(folder, passphrase, now=SystemClock().now(), suite=suite)
    except GatewayError as exc:
        raise fail(str(exc)) from None
    signing = keystore.signing_for(suite).certificate
    console.print(
        f"rolled over {suite.value}: now signing with {signing.subject.rfc4514_string()} "
        f"(SHA-256 {fingerprint(signing)[:16]}..., valid until {signing.not_valid_after_utc:%Y-%m-%d}); decrypting "
        f"with {len(keystore.decryption_for(suite))} key(s). A running gateway switches within "
        "[profiles].poll_seconds.",
        highlight=False,
        markup=False,  # "[profiles]" is a setting's name, not markup
    )
    console.print(_pin_now(folder, suite), highlight=False, markup=False)


def _pin_now(folder: Path, suite: Suite) -> str:
    """Which certificate partners must pin from now on, and what a partner that pinned only the old one does."""
    by_status = {i.record.status: i for i in list_keys(folder) if i.record.suite is suite}
    current = by_status[KeyStatus.CURRENT]
    previous = by_status.get(KeyStatus.PREVIOUS)
    old = f" (SHA-256 {previous.fingerprint[:16]}...)" if previous is not None else ""
    return (
        f"Partners must pin {_certificate_files(folder, current.record.id)} in their profile of us; they should "
        "have been given it before this rollover, when the key was added as next. A partner that pinned only "
        f"the previous certificate{old} refuses every message we sign from now on (EBMS:0101) until it pins this "
        "one."
    )


def _print_key(info: KeyInfo, verb: str) -> None:
    cert = info.certificate
    console.print(
        f"{verb} key {info.record.id} ({info.record.status.value}): {info.subject}, SHA-256 {info.fingerprint}, "
        f"valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}; suite "
        f"{info.record.suite.value}",
        highlight=False,
        markup=False,
    )
