"""Changing partner profiles safely: validate first, keep every version, audit who did what, roll back.

The REST admin API and the ``permit-gateway profiles`` commands both go through ``ProfileEditor``; it works on
the files, so a running gateway picks a CLI change up through its watcher, and an API change at once through
``on_change``. An edit is validated as the whole folder would be after it (ids and PartyIds stay unique,
certificates load, every time to live is below the duplicate-detection window), and the edited profile must have a currently valid certificate for each purpose unless
it is disabled; only then is the file replaced (atomically, keeping its mode, owner and symlink), and only if
it still holds what the edit was based on. Only problems in the edited file, or across profiles that the edit
makes, refuse it: another file invalid on disk before is left out of the checks and named in the warnings (the
gateway keeps its last accepted version meanwhile), so a broken file never stops an urgent edit of another.
Writers take a file lock, so the API and the CLI never interleave. A running gateway also hands the editor what its watcher finds changed on disk (``watcher.record_with``,
``record_reload``), and at its start every profile file, to compare with the history (``record_start``): each
change becomes a version and an audit entry, unless an editor made it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import structlog
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.tokens import CommentToken

from gateway.clock import Clock
from gateway.errors import GatewayError, ProfileError
from gateway.profiles.certificates import Passphrase, no_passphrase
from gateway.profiles.expiry import DEFAULT_WARNING_DAYS, Validity, certificate_status
from gateway.profiles.history import (
    PROFILE_ID,
    AuditIndex,
    AuditLog,
    ProfileHistory,
    UnknownVersion,
    Version,
    check_profile_id,
    sha256_text,
    unified_diff,
    write_text_atomically,
)
from gateway.profiles.loader import (
    UndecodableProfile,
    is_profile_file,
    load_profile_folder,
    load_profile_text,
    named_files,
    profile_files,
    read_yaml_text,
    where,
)
from gateway.profiles.metrics import PROFILE_LAST_REFUSAL, PROFILE_RELOADS
from gateway.profiles.model import PartnerProfile
from gateway.profiles.trust import Partners
from gateway.profiles.watcher import FileChange, ReloadOutcome
from gateway.settings import INBOX_KEY, FolderSettings, GuardedFolder, guard_table, guarding, real_path

HISTORY_FOLDER = "profile-history"
AUDIT_FILE = "profile-audit.jsonl"
DISK_ACTOR = "(file on disk)"
FILE_ACTOR = "(file)"  # the file an edit replaced, kept as it was

log = structlog.get_logger("gateway.profiles")


class ProfileNotFound(UnknownVersion):
    """No profile file with this id (it may be retired: see its history)."""


class EditConflict(ProfileError):
    """The profile changed since the caller read it (If-Match), or exists when it should not."""


class InvalidProfile(ProfileError):
    """The edit would leave an invalid profile or folder; ``errors`` lists each with file:line:column."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileFile:
    id: str
    path: Path
    text: str

    @property
    def etag(self) -> str:
        return sha256_text(self.text)


@dataclass(frozen=True, slots=True, kw_only=True)
class EditResult:
    """What an edit did: the new version (None when nothing changed), the ETag (None once retired)."""

    id: str
    action: str
    path: Path
    etag: str | None
    version: int | None
    diff: str
    active: bool
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Precondition:
    """``if_match``: the ETag the caller read ("*" for any); ``if_absent``: the profile must not exist yet."""

    if_match: str | None = None
    if_absent: bool = False

    def check(self, profile_id: str, current: ProfileFile | None) -> None:
        if self.if_absent and current is not None:
            raise EditConflict(f"profile {profile_id!r} exists already (its ETag is {current.etag})")
        if self.if_match is None:
            return
        if current is None:
            raise EditConflict(f"profile {profile_id!r} does not exist, so it cannot match ETag {self.if_match}")
        # The ETag is the SHA-256 of the file's bytes. A proxy that compresses answers (nginx with gzip) hands it
        # on weakened, W/"...": the same value still names the same bytes, so it is compared as the strong one
        # (RFC 9110 would have a weak tag never match, which would lock such clients out of every edit).
        wanted = self.if_match.removeprefix("W/").strip('"')
        if wanted not in ("*", current.etag):
            raise EditConflict(
                f"profile {profile_id!r} changed since it was read: its ETag is {current.etag}, not {wanted}; "
                "fetch it again and reapply the change"
            )


def merge_patch(document: CommentedMap, patch: Mapping[str, Any]) -> CommentedMap:
    """RFC 7396 JSON merge patch applied in place to a round-trip YAML mapping: null removes a key, an object
    merges into a mapping, anything else replaces; comments and key order of untouched keys are kept."""
    for key, value in patch.items():
        current = document.get(key)
        if value is None:
            _remove_keeping_comments(document, key)
        elif isinstance(value, Mapping) and isinstance(current, CommentedMap):
            merge_patch(current, value)
        else:
            _replace_keeping_comments(document, key, value)
    return document


def _replace_keeping_comments(document: CommentedMap, key: str, value: Any) -> None:
    """Set ``key`` to ``value``. ruamel keeps the comment lines after a block list or mapping on its last entry,
    though they are about the next key: they move to the end of the new value."""
    following = _following_comment(document, key)
    document[key] = _commented(value)
    if following:
        entry, slot = _trailing_comment(document, key)
        _append_comment(entry, slot, following)


def _following_comment(document: CommentedMap, key: str) -> str:
    """The comment lines after the block list or mapping at ``key`` (a scalar's stay with its key)."""
    value = document.get(key)
    if not isinstance(value, CommentedMap | CommentedSeq) or not value or value.fa.flow_style():
        return ""
    entry, slot = _trailing_comment(document, key)
    return entry[slot].value.partition("\n")[2] if entry[slot] is not None else ""


def _commented(value: Any) -> Any:
    """JSON objects and arrays as round-trip nodes, which can hold comments; scalars as they are."""
    if isinstance(value, Mapping):
        return merge_patch(CommentedMap(), value)
    if isinstance(value, list):
        return CommentedSeq(_commented(item) for item in value)
    return value


def _append_comment(entry: list[Any], slot: int, lines: str) -> None:
    if entry[slot] is None:
        entry[slot] = CommentToken("\n" + lines, CommentMark(0), None)
    else:
        entry[slot].value = entry[slot].value.removesuffix("\n") + "\n" + lines


def _remove_keeping_comments(document: CommentedMap, key: str) -> None:
    """Remove ``key``. ruamel keeps the comment lines that follow an entry on that entry, though they are about
    the next key: they move to the entry before (or above the mapping); only the entry's own end-of-line
    comment goes with it."""
    if key not in document:
        return
    keys = list(document)
    entry, slot = _trailing_comment(document, key)
    token = entry[slot]
    following = token.value.partition("\n")[2] if token is not None else ""
    document.pop(key)
    document.ca.items.pop(key, None)
    if not following:
        return
    index = keys.index(key)
    if index == 0:
        if document.ca.comment is None:
            document.ca.comment = [None, None]
        if document.ca.comment[1] is None:
            document.ca.comment[1] = []
        document.ca.comment[1].append(CommentToken(following, CommentMark(0), None))
        return
    _append_comment(*_trailing_comment(document, keys[index - 1]), following)


def _trailing_comment(node: CommentedMap | CommentedSeq, key: Any) -> tuple[list[Any], int]:
    """Where ruamel keeps the comment after the entry ``key`` of ``node``: on the last entry of a block
    mapping or list it holds, else on the entry itself (slot 2 in a mapping, 0 in a list)."""
    value = node[key]
    if isinstance(value, CommentedMap | CommentedSeq) and value and not value.fa.flow_style():
        return _trailing_comment(value, list(value)[-1] if isinstance(value, CommentedMap) else len(value) - 1)
    entry = node.ca.items.setdefault(key, [None, None, None, None])
    return entry, 2 if isinstance(node, CommentedMap) else 0


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


MAX_PATCH_DEPTH = 16  # as deep as a profile may be nested


def apply_merge_patch(text: str, patch: Mapping[str, Any], *, path: Path) -> str:
    if _depth(patch) > MAX_PATCH_DEPTH:
        raise InvalidProfile(
            [
                f"{path}: the merge patch is nested more than {MAX_PATCH_DEPTH} levels deep, deeper than a "
                "partner profile may be; send only the keys to change"
            ]
        )
    yaml = _yaml()
    try:
        document = read_yaml_text(text, path, yaml)
    except ProfileError as exc:
        raise InvalidProfile(
            [
                *str(exc).splitlines(),
                f"{path}: the current file is not valid YAML, so it cannot be merged; replace it whole (PUT)",
            ]
        ) from None
    if not isinstance(document, CommentedMap):
        raise InvalidProfile([f"{path}:1:1: the current file is not a mapping, so it cannot be merged"])
    out = io.StringIO()
    yaml.dump(merge_patch(document, patch), out)
    return out.getvalue()


def _depth(value: object) -> int:
    """How deeply JSON objects and arrays nest in ``value`` (an object of scalars: 1), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, Mapping) else node))
    return deepest


class ProfileEditor:
    """Edits, retires and rolls back the profiles of one folder, keeping history and an audit log."""

    def __init__(
        self,
        folder: Path,
        *,
        certificates_dir: Path,
        data_dir: Path,
        clock: Clock,
        on_change: Callable[[str], bool] | None = None,
        warning_days: int = DEFAULT_WARNING_DAYS,
        duplicate_window: timedelta | None = None,
        tls_passphrase: Passphrase = no_passphrase,
        guarded: Sequence[GuardedFolder] | None = None,
        folders: FolderSettings | None = None,
        kept: Callable[[], Mapping[Path, PartnerProfile]] | None = None,
    ) -> None:
        """``kept``: the running gateway's last accepted profile of each file (``ProfileWatcher.last_accepted``),
        which it keeps active for a file broken on disk: an edit is checked across profiles against those, as
        the gateway will load it. ``guarded``: the gateway's inbox, to which an edit confines ``delivery.folder``, and the folders it
        must stay out of (``gateway.settings.guarded_folders``). Without them, the table of ``folders`` (the
        gateway's [folders]) and this editor's own folders, which knows no keystore; without either, no inbox,
        and an edit cannot set a new delivery folder."""
        self.folder = folder
        self.data_dir = data_dir
        self.guarded = tuple(
            guard_table(folders=folders, data_dir=data_dir, profiles=folder, certificates=certificates_dir)
            if guarded is None
            else guarded
        )
        self._tls_passphrase = tls_passphrase
        self.certificates_dir = certificates_dir
        self.history = ProfileHistory(data_dir / HISTORY_FOLDER)
        self.audit = AuditLog(data_dir / AUDIT_FILE)
        self._clock = clock
        self._on_change = on_change
        self._kept = kept
        self.warning_days = warning_days
        self._duplicate_window = duplicate_window
        self._declared_ids: dict[bytes, str | None] = {}  # by the SHA-256 of a profile file's bytes

    # --- reading ----------------------------------------------------------------------------------------

    def profiles(self) -> list[ProfileFile]:
        return [self.read(profile_id, path) for profile_id, path in sorted(self.files().items())]

    def files(self) -> dict[str, Path]:
        """Each profile's file by the id it declares (its stem when it declares none it can read), as
        ``loader.profile_files`` finds them; one that cannot be read is still named. A file whose bytes were
        seen before is not parsed again: the id is kept by the SHA-256 of the bytes, so a request that needs the
        ids of 200 profiles parses only the files changed since the last one (each parse takes milliseconds)."""
        found: dict[str, Path] = {}
        seen: dict[bytes, str | None] = {}
        known = self._declared_ids  # read once: another request's thread may replace it meanwhile
        for path in self._paths():
            try:
                data = path.read_bytes()
            except OSError:
                found.setdefault(path.stem, path)
                continue
            digest = hashlib.sha256(data).digest()
            declared = known[digest] if digest in known else _declared_in(data, path)
            seen[digest] = declared
            found.setdefault(declared or path.stem, path)
        self._declared_ids = seen  # only the files there now: the cache never outgrows the folder
        return found

    def _paths(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(path for path in self.folder.iterdir() if is_profile_file(path) and path.is_file())

    def retired(self, files: Mapping[str, Path] | None = None) -> list[str]:
        """Ids with a history but no file: retired profiles that can be rolled back. ``files``: ``files()``
        when the caller has it already."""
        current = self.files() if files is None else files
        return [profile_id for profile_id in self.history.ids() if profile_id not in current]

    def find(self, profile_id: str, files: Mapping[str, Path] | None = None) -> ProfileFile | None:
        """``files``: ``files()`` when the caller has it already (a listing: one pass over the folder)."""
        path = (self.files() if files is None else files).get(check_profile_id(profile_id))
        return None if path is None else self.read(profile_id, path)

    def get(self, profile_id: str) -> ProfileFile:
        found = self.find(profile_id)
        if found is None:
            hint = "; it was retired, see its history" if self.history.versions(profile_id) else ""
            raise ProfileNotFound(f"no partner profile {profile_id!r} in {self.folder}{hint}")
        return found

    def versions(self, profile_id: str, files: Mapping[str, Path] | None = None) -> list[Version]:
        versions = self.history.versions(profile_id)
        if not versions and self.find(profile_id, files) is None:
            raise ProfileNotFound(f"no partner profile {profile_id!r} in {self.folder} and no history of it")
        return versions

    def diff(self, profile_id: str, version: int | None = None, to: int | None = None) -> str:
        """Unified diff from ``version`` (default: the one before the latest) to ``to`` (default: the file)."""
        files = self.files()
        before_number = version if version is not None else self._previous_number(profile_id, files=files)
        before = self.history.text(profile_id, before_number)
        if to is None:
            current = self.find(profile_id, files)
            after, after_name = (current.text, str(current.path)) if current else ("", "(retired)")
        else:
            after, after_name = self.history.text(profile_id, to), f"{profile_id} version {to}"
        return unified_diff(
            before, after, before_name=f"{profile_id} version {before_number}", after_name=after_name
        )

    def _previous_number(
        self, profile_id: str, *, loadable: bool = False, files: Mapping[str, Path] | None = None
    ) -> int:
        """The latest version that differs from the current file; ``loadable`` (a rollback's default): the latest
        such version that was not refused when found on disk (a half-written or invalid file)."""
        files = self.files() if files is None else files
        versions = self.versions(profile_id, files)
        current = self.find(profile_id, files)
        candidates = [v for v in versions if current is None or v.sha256 != current.etag]
        if loadable:
            candidates = [v for v in candidates if not v.refused]
        if not candidates:
            refused = " that was not refused when found on disk" if loadable else ""
            raise UnknownVersion(
                f"profile {profile_id!r} has no earlier version{refused} than its current file; name the version "
                "to restore (see its history)"
            )
        return candidates[-1].number

    @staticmethod
    def read(profile_id: str, path: Path) -> ProfileFile:
        """The profile file at ``path`` (found by ``files()``), as its bytes are: no YAML is parsed."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read partner profile: {exc}") from None
        try:
            text = data.decode("utf-8")  # as written: the ETag is the hash of these exact bytes
        except UnicodeDecodeError as exc:
            raise UndecodableProfile(path, data, exc) from None
        return ProfileFile(id=profile_id, path=path, text=text)

    def _undecodable(self) -> list[UndecodableProfile]:
        """The profile files of the folder that are not UTF-8."""
        found: list[UndecodableProfile] = []
        for path in sorted(self.folder.iterdir()) if self.folder.is_dir() else ():
            if not (is_profile_file(path) and path.is_file()):
                continue
            try:
                data = path.read_bytes()
                data.decode("utf-8")
            except OSError:
                continue  # the folder's load reports it
            except UnicodeDecodeError as exc:
                found.append(UndecodableProfile(path, data, exc))
        return found

    # --- writing ----------------------------------------------------------------------------------------

    def put(self, profile_id: str, text: str, *, condition: Precondition, actor: str) -> EditResult:
        """Replace (or create) a profile with ``text`` after validating it and the folder it would make."""
        return self._write(profile_id, lambda _: (text, "put"), condition=condition, actor=actor)

    def merge(
        self, profile_id: str, patch: Mapping[str, Any], *, condition: Precondition, actor: str
    ) -> EditResult:
        """Apply a JSON merge patch to the profile's YAML, keeping its comments and key order."""

        def merged(current: ProfileFile | None) -> tuple[str, str]:
            if current is None:
                raise ProfileNotFound(f"no partner profile {profile_id!r} in {self.folder} to merge into")
            return apply_merge_patch(current.text, patch, path=current.path), "merge"

        return self._write(profile_id, merged, condition=condition, actor=actor)

    def rollback(
        self, profile_id: str, version: int | None = None, *, condition: Precondition, actor: str
    ) -> EditResult:
        """Make an earlier version current again (default: the latest one before the current file that was not
        refused when found on disk), as a new version. The default is chosen under the writers' lock, against
        the file the precondition is checked on."""

        def restored(_: ProfileFile | None) -> tuple[str, str]:
            number = version if version is not None else self._previous_number(profile_id, loadable=True)
            return self.history.text(profile_id, number), f"rollback:{number}"

        return self._write(profile_id, restored, condition=condition, actor=actor, operators=True)

    def retire(self, profile_id: str, *, condition: Precondition, actor: str) -> EditResult:
        """Take a profile out of service: its file moves into the history (a rollback brings it back). Refused
        when the folder without it would not load (another file broken on disk), unlike an edit."""
        with self._locked():
            current = self.get(profile_id)
            condition.check(profile_id, current)
            now = self._clock.now()
            try:
                self._check_folder({current.path: None}, now)
            except InvalidProfile as exc:
                self._refuse(profile_id, "retire", actor, now, exc.errors)
            self._check_unchanged(profile_id, current, current.path)
            self._record_current(current, now)
            current.path.unlink()
            self.history.mark_retired(profile_id, current.etag, at=now, actor=actor)
            diff = unified_diff(current.text, "", before_name=str(current.path), after_name="(retired)")
            self._audit(now, actor, "retire", profile_id, current.etag, None, diff, version=None)
            self.history.mark_retirement_audited(profile_id, current.etag)
        active = self._on_change(f"profile {profile_id!r} retired by {actor}") if self._on_change else False
        return EditResult(
            id=profile_id, action="retire", path=current.path, etag=None, version=None, diff=diff, active=active
        )

    def _write(
        self,
        profile_id: str,
        make_text: Callable[[ProfileFile | None], tuple[str, str]],
        *,
        condition: Precondition,
        actor: str,
        operators: bool = False,
    ) -> EditResult:
        """``make_text``: from the current file (None: none), under the lock, the new text and the action.
        ``operators`` (a rollback): the files and delivery folder any version found on disk named stay allowed,
        as the file named them when that version was current (a retired profile has no current file)."""
        check_profile_id(profile_id)
        with self._locked():
            current = self.find(profile_id)
            condition.check(profile_id, current)
            text, action = make_text(current)
            path = current.path if current else self._new_path(profile_id)
            if current is None and path.exists():
                raise EditConflict(
                    f"{path} already holds another profile ({self._declared(path)}); profile {profile_id!r} "
                    "would overwrite it. Give the new profile another id, or fix the id declared in that file"
                )
            now = self._clock.now()
            try:  # an unchanged text too: the file on disk may be one the watcher refused
                kept = self._operators_texts(profile_id) if operators else []
                warnings = self._validate(profile_id, path, text, now, kept)
            except InvalidProfile as exc:
                unsaved = current is None or current.text != text
                self._refuse(profile_id, action, actor, now, _in_edit(exc.errors, path) if unsaved else exc.errors)
            if current is not None and current.text == text:
                latest = self.history.latest(profile_id)
                return EditResult(
                    id=profile_id,
                    action=action,
                    path=path,
                    etag=current.etag,
                    version=latest.number if latest and latest.sha256 == current.etag else None,
                    diff="",
                    active=True,
                    warnings=warnings,
                )
            version = self._commit(profile_id, current, path, text, now=now, actor=actor, action=action)
        active = self._on_change(f"profile {profile_id!r} {action} by {actor}") if self._on_change else False
        return EditResult(
            id=profile_id,
            action=action,
            path=path,
            etag=sha256_text(text),
            version=version.number,
            diff=unified_diff(current.text if current else "", text, before_name="before", after_name="after"),
            active=active,
            warnings=warnings,
        )

    @staticmethod
    def _declared(path: Path) -> str:
        found = [declared for declared, file in profile_files(path.parent).items() if file == path]
        return f"id {found[0]!r}" if found else "an unreadable one"

    def _new_path(self, profile_id: str) -> Path:
        latest = self.history.latest(profile_id)
        return self.folder / (latest.file if latest else f"{profile_id}.yaml")

    def _commit(
        self,
        profile_id: str,
        current: ProfileFile | None,
        path: Path,
        text: str,
        *,
        now: datetime,
        actor: str,
        action: str,
    ) -> Version:
        self._check_unchanged(profile_id, current, path)
        if current is not None:
            self._record_current(current, now)
        write_text_atomically(path, text, keep_attributes=True)
        version = self.history.add(profile_id, text, at=now, actor=actor, action=action, file=path.name)
        before = current.text if current else ""
        diff = unified_diff(before, text, before_name=f"{path.name} (before)", after_name=f"{path.name} (after)")
        self._audit(
            now, actor, action, profile_id, current.etag if current else None, version.sha256, diff, version.number
        )
        self.history.mark_audited(profile_id, version.number)
        return version

    @staticmethod
    def _check_unchanged(profile_id: str, current: ProfileFile | None, path: Path) -> None:
        """Right before the file is replaced: it must still be what the edit was based on (validating takes a
        while, and a change saved by hand meanwhile must not be overwritten unseen)."""
        try:
            found: str | None = hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:
            found = None
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read partner profile: {exc}") from None
        expected = current.etag if current else None
        if found != expected:
            now = f"its ETag is now {found}" if found else "it was removed"
            raise EditConflict(
                f"profile {profile_id!r} changed on disk while the edit was checked ({path}: {now}, not "
                f"{expected or 'absent'}); nothing was written: fetch it again and reapply the change"
            )

    def _record_current(self, current: ProfileFile, now: datetime) -> None:
        """Keep the file being replaced in the history, when it is not already its latest version
        (it was there before the first edit, or was changed by hand)."""
        latest = self.history.latest(current.id)
        if latest is None or latest.sha256 != current.etag:
            action = "found" if latest is None else "changed-on-disk"
            version = self.history.add(
                current.id, current.text, at=now, actor=FILE_ACTOR, action=action, file=current.path.name
            )
            if latest is not None:  # an edit made outside the editor is audited when the editor first sees it
                before = self.history.text(current.id, latest.number)
                diff = unified_diff(before, current.text, before_name="before", after_name="on disk")
                self._audit(now, FILE_ACTOR, action, current.id, latest.sha256, current.etag, diff, version.number)
                self.history.mark_audited(current.id, version.number)

    # --- changes left unaudited by a writer that stopped --------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The writers' lock; first, what a writer that stopped part way left unaudited is audited."""
        with self.history.lock():
            self._audit_unaudited()
            yield

    def _audit_unaudited(self) -> None:
        """A writer stopped (killed, a crash) after keeping a version or retiring, before its audit entry, left a
        change in force that the disk checks skip as an editor's: it is audited now, as the version (or the
        retirement mark) says, marked ``recovered``. Only the last change can be missing: every writer audits
        what was missing before it makes its own. A change is known audited by its marker in the history, not by
        the log (which an operator may rotate or truncate): the log is read only for a change without one."""
        upgrading = not self.history.markers_kept()
        index = functools.cache(self.audit.index)
        failed = False
        for profile_id in self.history.ids():
            try:
                self._audit_missing(profile_id, index, upgrading=upgrading)
            except Exception:  # one profile's history that cannot be read must not stop the others' edits
                failed = True
                log.exception("an unaudited profile change could not be audited", profile=profile_id)
        if upgrading and not failed:
            self.history.keep_markers()

    def _audit_missing(self, profile_id: str, index: Callable[[], AuditIndex], *, upgrading: bool) -> None:
        latest = self.history.latest(profile_id)
        # a "found" version is the start of a history, never a change
        if latest is not None and latest.action != "found" and not self.history.audited(profile_id, latest.number):
            if not self._in_log(index(), (profile_id, latest.number), latest.at, upgrading=upgrading):
                self.audit.append(self._recovered_version(profile_id, latest))
            self.history.mark_audited(profile_id, latest.number)
        retired = self.history.retired(profile_id)
        if retired is not None and not self.history.retirement_audited(profile_id, retired):
            at = self.history.retired_by(profile_id).get("at")
            if not self._in_log(index(), (profile_id, retired), at, upgrading=upgrading):
                self.audit.append(self._recovered_retirement(profile_id, retired))
            self.history.mark_retirement_audited(profile_id, retired)

    @staticmethod
    def _in_log(index: AuditIndex, change: tuple[str, int | str], at: object, *, upgrading: bool) -> bool:
        """Whether a change without its marker was audited: its entry is in the log (the writer stopped after the
        entry, before the marker), or, in a history kept before markers were, the log does not reach back to the
        change (rotated or truncated since), so it cannot tell, and the change is taken as audited."""
        profile_id, which = change
        if isinstance(which, int):
            found = index.audited(profile_id, which)
        else:
            found = index.removal_audited(profile_id, which)
        return found or (upgrading and not index.covers(at if isinstance(at, str) else None))

    def _recovered_version(self, profile_id: str, version: Version) -> dict[str, Any]:
        earlier = [v for v in self.history.versions(profile_id) if v.number < version.number]
        before = self.history.text(profile_id, earlier[-1].number) if earlier else ""
        after = self.history.text(profile_id, version.number)
        names = {"before_name": f"{version.file} (before)", "after_name": f"{version.file} (after)"}
        entry = {
            "at": version.at,
            "actor": version.actor,
            "action": version.action,
            "profile": profile_id,
            "result": "refused" if version.refused else "ok",
            "version": version.number,
            "before_sha256": earlier[-1].sha256 if earlier else None,
            "after_sha256": version.sha256,
            "diff": unified_diff(before, after, **names),
        }
        return entry | self._recovered_mark()

    def _recovered_retirement(self, profile_id: str, sha256: str) -> dict[str, Any]:
        by = self.history.retired_by(profile_id)
        kept = [v for v in self.history.versions(profile_id) if v.sha256 == sha256]
        before = self.history.text(profile_id, kept[-1].number) if kept else ""
        entry = {
            "at": by.get("at") or self._clock.now().isoformat(),
            "actor": by.get("actor") or "(unknown: the retirement was not audited)",
            "action": "retire",
            "profile": profile_id,
            "result": "ok",
            "version": None,
            "before_sha256": sha256,
            "after_sha256": None,
            "diff": unified_diff(
                before, "", before_name=kept[-1].file if kept else profile_id, after_name="(retired)"
            ),
        }
        return entry | self._recovered_mark()

    def _recovered_mark(self) -> dict[str, Any]:
        return {
            "recovered": True,
            "recovered_at": self._clock.now().isoformat(),
            "reason": "the change was made but its writer stopped before auditing it; audited when next found",
        }

    # --- changes found on disk -------------------------------------------------------------------------

    def record_reload(self, outcome: ReloadOutcome) -> None:
        """What the watcher found changed on disk, activated or refused: each profile file becomes a version
        and an audit entry; the certificate files changed, one entry. A file holding what an editor wrote (the
        latest version), or removed by an editor's retire, was audited by that edit and is skipped."""
        with self._locked():
            self._record_disk_changes(outcome.profiles, outcome)
            if outcome.certificates:
                files = [self._file_entry(change) for change in outcome.certificates]
                entry = self._disk_entry(outcome, "certificates-changed-on-disk", None)
                self.audit.append(entry | {"files": files})

    def record_start(self, outcome: ReloadOutcome) -> None:
        """What a gateway starts with (``outcome.profiles``: every profile file, each as a change from nothing),
        compared with the history: a file that is not its profile's latest version, or a profile with a history
        whose file is gone though no editor retired it, was changed while the gateway was stopped. Each such
        difference is recorded as one found while running is (changed-, added- or removed-on-disk)."""
        on_disk = {_declared_id(change.path, _text(change.after)) for change in outcome.profiles}
        with self._locked():
            self._record_disk_changes(outcome.profiles, outcome)
            removed = []
            for profile_id in self.history.ids():
                latest = self.history.latest(profile_id)
                if profile_id in on_disk or latest is None or self.history.retired(profile_id) is not None:
                    continue
                text = self.history.text(profile_id, latest.number).encode("utf-8")
                path = self.folder / latest.file
                removed.append(FileChange(path=path, before_sha256=latest.sha256, after_sha256=None, before=text))
            self._record_disk_changes(removed, outcome)

    def _record_disk_changes(self, changes: Iterable[FileChange], outcome: ReloadOutcome) -> None:
        for change in changes:
            try:
                self._record_disk_change(change, outcome)
            except Exception:  # one change that cannot be versioned must not leave the others unaudited
                log.exception("a profile change found on disk could not be versioned", file=str(change.path))
                self._audit_unversioned(change, outcome)

    def _audit_unversioned(self, change: FileChange, outcome: ReloadOutcome) -> None:
        """The least an audit entry says of a change: the file and its hashes (no diff, no version)."""
        action = "removed-on-disk" if change.after is None else "changed-on-disk"
        entry = self._disk_entry(outcome, action, change.path.name) | self._file_entry(change) | {"version": None}
        try:
            self.audit.append(entry)
        except Exception:
            log.exception("a profile change found on disk could not be audited", file=str(change.path))

    def _record_disk_change(self, change: FileChange, outcome: ReloadOutcome) -> None:
        """The entry's before is the profile's latest version (what the last edit or change left, so entries
        chain), else what the watcher loaded last, kept as the version 'found'."""
        after = _text(change.after)
        profile_id = _declared_id(change.path, after) or _declared_id(change.path, _text(change.before))
        if profile_id is None:  # no id a history can be kept under: audited only
            self._audit_disk_change(change, outcome, change.path.name, change.before, None)
            return
        retired, latest = self.history.retired(profile_id), self.history.latest(profile_id)
        if change.after is None and retired is not None:
            return  # an editor retired it
        if change.after is not None and retired is None and latest and latest.sha256 == change.after_sha256:
            return  # an editor wrote it (or this was recorded already)
        before: bytes | None = None
        if retired is None and latest is not None:
            before = self.history.text(profile_id, latest.number).encode("utf-8")
        elif retired is None and (found := _text(change.before)) is not None:
            self.history.add(
                profile_id, found, at=outcome.at, actor=FILE_ACTOR, action="found", file=change.path.name
            )
            before = change.before
        version = None
        if after is not None:
            action, file, at = _disk_action(change, before), change.path.name, outcome.at
            version = self.history.add(
                profile_id, after, at=at, actor=DISK_ACTOR, action=action, file=file, refused=not outcome.activated
            )
        self._audit_disk_change(change, outcome, profile_id, before, version)
        if version is not None:
            self.history.mark_audited(profile_id, version.number)
        if change.after is None and before is not None and outcome.activated:
            # audited once: neither the next start nor a copy of the same text put back may pass unaudited
            removed = hashlib.sha256(before).hexdigest()
            self.history.mark_retired(profile_id, removed)
            self.history.mark_retirement_audited(profile_id, removed)

    def _audit_disk_change(
        self,
        change: FileChange,
        outcome: ReloadOutcome,
        profile: str,
        before: bytes | None,
        version: Version | None,
    ) -> None:
        diff = unified_diff(
            _shown(before),
            _shown(change.after),
            before_name=f"{change.path.name} (before)",
            after_name=f"{change.path.name} (on disk)",
        )
        entry = self._disk_entry(outcome, _disk_action(change, before), profile)
        entry |= {
            "file": str(change.path),
            "before_sha256": None if before is None else hashlib.sha256(before).hexdigest(),
            "after_sha256": change.after_sha256,
            "version": version.number if version else None,
            "diff": diff,
        }
        self.audit.append(entry)

    @staticmethod
    def _disk_entry(outcome: ReloadOutcome, action: str, profile_id: str | None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "at": outcome.at.isoformat(),
            "actor": DISK_ACTOR,
            "action": action,
            "profile": profile_id,
            "result": "activated" if outcome.activated else "refused",
            "reason": outcome.reason,
        }
        if not outcome.activated:
            entry["errors"] = list(outcome.errors)
        return entry

    @staticmethod
    def _file_entry(change: FileChange) -> dict[str, Any]:
        before, after = change.before_sha256, change.after_sha256
        return {"file": str(change.path), "before_sha256": before, "after_sha256": after}

    # --- validating -------------------------------------------------------------------------------------

    def _operators_texts(self, profile_id: str) -> list[str]:
        """The versions an operator wrote on disk (found by the watcher, or replaced by an edit)."""
        versions = self.history.versions(profile_id)
        return [self.history.text(profile_id, v.number) for v in versions if v.actor in (DISK_ACTOR, FILE_ACTOR)]

    def _validate(self, profile_id: str, path: Path, text: str, now: datetime, kept: list[str]) -> list[str]:
        """Errors as ``InvalidProfile``; returns warnings about certificates that expire soon or have expired."""
        try:
            return self._check(profile_id, path, text, now, [self._current_text(path), *kept])
        except InvalidProfile:
            raise
        except GatewayError as exc:
            raise InvalidProfile(str(exc).splitlines()) from None

    def _check(self, profile_id: str, path: Path, text: str, now: datetime, kept: list[str]) -> list[str]:
        """An edit may name only files in the certificates folder, but those the ``kept`` texts name (the file it
        replaces): no edit can look at other files of this host, and an operator's own choice stays editable."""
        files, passphrase = self.certificates_dir, self._tls_passphrase
        allowed = frozenset().union(*(named_files(known, path=path) for known in kept))
        profile = load_profile_text(
            text, path=path, certificates_dir=files, tls_passphrase=passphrase, outside_allowed=allowed
        )
        if profile.id != profile_id:
            raise InvalidProfile(
                [
                    f"{where(path, text, ('id',))} id: got {profile.id!r}, expected {profile_id!r} (the profile edited)"
                ]
            )
        self._check_delivery_folder(profile, path, text, kept)
        if profile.enabled:
            load_profile_text(text, path=path, certificates_dir=files, now=now, tls_passphrase=passphrase)
        partners, elsewhere = self._load_folder({path: text}, now)
        return self._warnings(partners, profile, now) + elsewhere

    def _check_delivery_folder(self, profile: PartnerProfile, path: Path, text: str, kept: list[str]) -> None:
        """An edit may deliver received permits only into the inbox or a folder inside it, and never into a folder
        the gateway reads from or keeps its own files in (an inbox inside the data folder is the inbox): else the
        admin token would let anyone make the gateway write anywhere it can. A folder the replaced file names
        already (one of ``kept``) stays: the operator chose it on disk."""
        if profile.delivery.folder is None:
            return
        target = _resolved(profile.delivery.folder)
        if any(target == _delivery_folder(known, path) for known in kept):
            return
        inbox = next((real_path(f.path) for f in self.guarded if f.key == INBOX_KEY), None)
        owner = guarding(target, self.guarded)
        if owner is not None and owner.key == INBOX_KEY:
            return
        at = f"{where(path, text, ('delivery', 'folder'))} delivery.folder: got {target}"
        if inbox is None:
            raise InvalidProfile(
                [
                    f"{at}, but this editor was not told the gateway's inbox ([folders].inbox), so an edit may not "
                    "name a new delivery folder; leave delivery.folder out (received permits go to the inbox), or "
                    "set it in the file on disk"
                ]
            )
        where_now = (
            f"inside {owner.label} ({real_path(owner.path)})"
            if owner
            else f"outside the inbox ([folders].inbox: {inbox})"
        )
        raise InvalidProfile(
            [
                f"{at}, which is {where_now}; an edit may deliver received permits only into the inbox or a folder "
                "inside it, so that no edit can make the gateway write where it reads or keeps its own files. Name "
                f"a folder inside {inbox}, or leave delivery.folder out to deliver into the inbox"
            ]
        )

    @staticmethod
    def _current_text(path: Path) -> str:
        try:
            return path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return ""

    def _check_folder(self, overrides: Mapping[Path, str | None], now: datetime) -> None:
        """Errors as ``InvalidProfile``: the folder as it would be with ``overrides`` (None: a file removed), the
        files that are not UTF-8 left out. Stricter than an edit's check: a retirement is refused while another
        file is invalid on disk."""
        left_out: dict[Path, str | None] = {exc.path: None for exc in self._undecodable()}
        try:
            self._partners(left_out | dict(overrides), now)
        except GatewayError as exc:
            raise InvalidProfile(str(exc).splitlines()) from None

    def _load_folder(self, overrides: Mapping[Path, str | None], now: datetime) -> tuple[Partners, list[str]]:
        """The folder as it would be with ``overrides``, and a warning for each other file left out of it: one
        that is not UTF-8, and one that was invalid on disk before this change already. Those do not stop the
        change (the gateway keeps the last accepted version of such a file while the others' changes apply);
        a problem in a changed file, or one across profiles that the change makes, is a ``GatewayError``."""
        undecodable = [exc for exc in self._undecodable() if exc.path not in overrides]
        base: dict[Path, str | None] = {exc.path: None for exc in undecodable}
        warnings = [
            f"{exc} (left out of this edit's checks across profiles; the edit is written, and the gateway keeps "
            "that profile's last accepted version until the file is fixed)"
            for exc in undecodable
        ]
        try:
            return self._partners(base | dict(overrides), now), warnings
        except GatewayError as exc:
            invalid = self._invalid_before(str(exc).splitlines(), base, overrides)
        partners = self._with_kept(base, overrides, invalid, now)
        for path, problems in invalid.items():
            log.warning(
                "a profile change was checked without another profile file, invalid on disk before it",
                file=str(path),
                problems=problems,
            )
        return partners, warnings + [_invalid_elsewhere(path, problems) for path, problems in invalid.items()]

    def _with_kept(
        self, base: Mapping[Path, str | None], overrides: Mapping[Path, str | None], invalid: Iterable[Path],
        now: datetime,
    ) -> Partners:
        """The folder with the change, each of the ``invalid`` files as the gateway will hold it: its last
        accepted version (``kept``), or left out (none accepted, or no running gateway to ask). A PartyId or id
        the change shares with such a kept version refuses the change here, as the gateway's reload would."""
        if self._kept is None:
            return self._partners({**base, **dict.fromkeys(invalid), **overrides}, now)
        held = set(invalid)
        kept = {path: profile for path, profile in self._kept().items() if path in held}
        return self._partners({**base, **overrides}, now, keep=kept)

    def _partners(
        self,
        overrides: Mapping[Path, str | None],
        now: datetime,
        *,
        keep: Mapping[Path, PartnerProfile] | None = None,
    ) -> Partners:
        loaded = load_profile_folder(
            self.folder,
            certificates_dir=self.certificates_dir,
            overrides=overrides,
            tls_passphrase=self._tls_passphrase,
            duplicate_window=self._duplicate_window,
            keep=keep,
        )
        return Partners(loaded.registry, now=now, max_age=self._duplicate_window)

    def _invalid_before(
        self, errors: list[str], base: Mapping[Path, str | None], overrides: Mapping[Path, str | None]
    ) -> dict[Path, list[str]]:
        """The other files whose problems in ``errors`` (the folder's, with the change) were there without the
        change, each with those problems; ``ProfileError`` with the rest, which the change makes: a problem
        in a changed file, or naming one (a PartyId it shares with another profile), is never left out."""
        try:
            self._partners(base, self._clock.now())
            before: set[str] = set()
        except GatewayError as exc:
            before = set(str(exc).splitlines())
        changed = [str(path) for path in overrides]
        others = [path for path in self._paths() if path not in overrides and path not in base]
        invalid: dict[Path, list[str]] = {}
        made: list[str] = []
        for error in errors:
            owner = next((path for path in others if error.startswith(f"{path}:")), None)
            if owner is None or error not in before or any(name in error for name in changed):
                made.append(error)
            else:
                invalid.setdefault(owner, []).append(error)
        if made:
            raise ProfileError("\n".join(made))
        return invalid

    def _warnings(self, partners: Partners, profile: PartnerProfile, now: datetime) -> list[str]:
        partner = partners.get(profile.id)
        statuses = [
            certificate_status(profile.id, purpose, cert, now=now, warning_days=self.warning_days)
            for purpose, cert in partner.certificates.every()
        ]
        warnings = [s.describe() for s in statuses if s.validity is not Validity.VALID]
        if not profile.enabled:
            warnings.append(f"partner {profile.id!r} is disabled (enabled: false): nothing is exchanged with it")
        loose = profile.security.subject_warning()
        if loose is not None:
            warnings.append(f"partner {profile.id!r}: {loose}")
        return warnings

    def _refuse(self, profile_id: str, action: str, actor: str, now: datetime, errors: list[str]) -> NoReturn:
        PROFILE_RELOADS.labels(result="refused").inc()
        PROFILE_LAST_REFUSAL.set(now.timestamp())
        self.audit.append(
            {
                "at": now.isoformat(),
                "actor": actor,
                "action": action,
                "profile": profile_id,
                "result": "refused",
                "errors": errors,
            }
        )
        raise InvalidProfile(errors)

    def _audit(
        self,
        now: datetime,
        actor: str,
        action: str,
        profile_id: str,
        before: str | None,
        after: str | None,
        diff: str,
        version: int | None,
    ) -> None:
        self.audit.append(
            {
                "at": now.isoformat(),
                "actor": actor,
                "action": action,
                "profile": profile_id,
                "result": "ok",
                "version": version,
                "before_sha256": before,
                "after_sha256": after,
                "diff": diff,
            }
        )


def _in_edit(errors: list[str], path: Path) -> list[str]:
    """The errors found in an edit's text, which was not written: their places are lines of that text, not of
    the file on disk, and are named so (other files' errors keep their ``file:line:column``)."""
    at = re.compile(rf"^{re.escape(str(path))}(?::(\d+):(\d+))?(?=[: ])")

    def edited(found: re.Match[str]) -> str:
        where = f", line {found[1]} column {found[2]}" if found[1] else ""
        return f"in the edited {path.name} (not saved){where}"

    return [at.sub(edited, error, count=1) for error in errors]


def _text(data: bytes | None) -> str | None:
    """A profile file's text as the history keeps it; None when absent or not UTF-8 (no version is kept)."""
    try:
        return None if data is None else data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _resolved(path: Path) -> Path:
    """``path`` absolute, without '..' and through symbolic links as far as they exist."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a symbolic link loop; ValueError: a NUL
        return Path(os.path.normpath(path.absolute()))


def _delivery_folder(text: str, path: Path) -> Path | None:
    """The delivery folder a profile's text names, resolved as the loader does (against its folder)."""
    try:
        document = read_yaml_text(text, path)
    except ProfileError:
        return None
    delivery = document.get("delivery") if isinstance(document, CommentedMap) else None
    folder = delivery.get("folder") if isinstance(delivery, CommentedMap) else None
    return _resolved(path.parent / folder) if isinstance(folder, str) and folder and "\0" not in folder else None


def _disk_action(change: FileChange, before: bytes | None) -> str:
    if change.after is None:
        return "removed-on-disk"
    return "added-on-disk" if before is None else "changed-on-disk"


def _shown(data: bytes | None) -> str:
    return "" if data is None else data.decode("utf-8", "replace")


def _invalid_elsewhere(path: Path, problems: list[str]) -> str:
    return (
        f"{path}: another profile file, invalid on disk before this edit, which it does not stop: the edit is "
        "written, that file is left out of its checks across profiles, and the gateway keeps that profile's last "
        "accepted version until the file is fixed (GET and PUT it through the admin API, or edit it on disk). "
        f"Its problems: {' | '.join(problems)}"
    )


def _declared_in(data: bytes, path: Path) -> str | None:
    """The id a profile file's bytes declare, as ``loader.profile_files`` reads it; None when it declares none
    that can be read."""
    try:
        document = read_yaml_text(data.decode("utf-8"), path)
    except (UnicodeDecodeError, ProfileError):
        return None
    declared = document.get("id") if isinstance(document, CommentedMap) else None
    return declared if isinstance(declared, str) and declared else None


def _declared_id(path: Path, text: str | None) -> str | None:
    """The id a profile file declares (its name's stem when it declares none that can be read), if a slug."""
    declared: object = None
    if text is not None:
        try:
            document = read_yaml_text(text, path)
        except ProfileError:  # any file at all: the change must still be recorded
            document = None
        declared = document.get("id") if isinstance(document, CommentedMap) else None
    if not isinstance(declared, str) or not declared:
        declared = path.stem if text is not None else None
    return declared if isinstance(declared, str) and PROFILE_ID.fullmatch(declared) else None
