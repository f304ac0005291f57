"""SOAP-with-Attachments packaging: a ``multipart/related`` body with the SOAP envelope as its root part.

Receiving goes through one incremental parser, ``MimeReader``, in h11's style: ``feed(chunk)`` returns the
events that chunk completes (``PartStarted``, ``PartData``, ``PartEnded``), ``close()`` checks the body
ended properly. It keeps at most one delimiter's worth of bytes (or one header block) buffered, whatever
the chunk size. ``PackageAssembler`` turns those events into a ``Package``, spooling parts larger than a
threshold through a caller-supplied ``spool()`` factory: the core itself never opens a file. ``parse`` is
the one-shot form of the same two.

Both CRLF and bare-LF line ends are accepted; Content-IDs with or without angle brackets; ``cid:`` URLs are
URL-decoded before they are compared (RFC 2392).
"""

from __future__ import annotations

import binascii
import functools
import io
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import quote, unquote

from gateway.as4._ns import SOAP11_CONTENT_TYPE, SOAP12_CONTENT_TYPE, SoapVersion
from gateway.as4.errors import EbmsCode, EbmsError

MAX_PARTS = 100
"""MIME parts in one message (envelope included)."""
MAX_PART_HEADER_BYTES = 8 * 1024
"""Bytes of one part's header block."""
MAX_PART_HEADERS = 32
"""Header fields in one part."""
MAX_PART_BYTES = (1 << 30) + (1 << 24)
"""Bytes of one part's (decoded) content: 1 GiB of payload plus room for compression and GCM overhead."""
MAX_MESSAGE_BYTES = 1 << 31
"""Bytes of a whole multipart body."""
MAX_ROOT_PART_BYTES = 4 * 1024 * 1024
"""Bytes of the root part, the SOAP envelope (the same limit as ``envelope.MAX_ENVELOPE_BYTES``)."""
MAX_BOUNDARY_LENGTH = 70  # RFC 2046 section 5.1.1
MAX_TRANSPORT_PADDING = 256
CHUNK_SIZE = 1 << 20
"""Size of the chunks read back from spooled parts."""

Spool = Callable[[], BinaryIO]

_CRLF = b"\r\n"
_BCHARS = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]*[0-9A-Za-z'()+_,\-./:=?]")
_CONTENT_ID = re.compile(r"[^\s<>\"\x00-\x1f\x7f]+")
_FIELD_NAME = re.compile(rb"[!-9;-~]+")  # RFC 5322 ftext: printable ASCII except the colon
_SINGLE_FIELDS = frozenset({b"content-type", b"content-id", b"content-transfer-encoding"})  # read: once only
_CID_SAFE = "@!$&'()*+,;=:~-._"  # left unencoded in cid: URLs (RFC 3986 sub-delims and unreserved, "@" and ":")


def in_memory_spool() -> BinaryIO:
    """The default spool: memory, so the core never touches a filesystem."""
    return io.BytesIO()


# --- content ids ---------------------------------------------------------------------------------------


def cid_url(content_id: str) -> str:
    """The ``cid:`` URL of a Content-ID (RFC 2392: URL-encoded, no angle brackets)."""
    return "cid:" + quote(content_id, safe=_CID_SAFE)


def cid_of_url(url: str) -> str | None:
    """The Content-ID a ``cid:`` URL names (URL-decoded), or None for any other URL."""
    if url[:4].lower() != "cid:":
        return None
    if "%" not in url:
        return url[4:]
    try:
        return unquote(url[4:], errors="strict")
    except UnicodeDecodeError:
        return None


def content_id_of_header(value: str | None) -> str:
    """A Content-ID header value without its angle brackets, which some senders omit."""
    text = (value or "").strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text


# --- part content ----------------------------------------------------------------------------------------


class PartBody:
    """The content of one MIME part: chunks in memory, or a spooled file (read back in ``CHUNK_SIZE`` pieces)."""

    __slots__ = ("_chunks", "_file", "size")

    def __init__(self, chunks: Sequence[bytes | memoryview] = (), *, file: BinaryIO | None = None, size: int = 0):
        self._chunks = tuple(c for c in chunks if len(c))
        self._file = file
        self.size = size if file is not None else sum(len(c) for c in self._chunks)

    @classmethod
    def of(cls, data: bytes | memoryview) -> PartBody:
        return cls((data,))

    @property
    def spooled(self) -> bool:
        return self._file is not None

    @property
    def file(self) -> BinaryIO | None:
        return self._file

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[bytes | memoryview]:
        """The bytes from ``start`` to ``end`` in order, without copying what is in memory."""
        end = self.size if end is None else min(end, self.size)
        if start >= end:
            return
        if self._file is not None:
            self._file.seek(start)
            remaining = end - start
            while remaining > 0:
                block = self._file.read(min(CHUNK_SIZE, remaining))
                if not block:
                    raise EbmsError(EbmsCode.MIME_INCONSISTENCY, "a spooled MIME part ended early")
                remaining -= len(block)
                yield block
            return
        offset = 0
        for chunk in self._chunks:
            lo, hi = max(start - offset, 0), min(end - offset, len(chunk))
            if lo < hi:
                yield chunk if (lo, hi) == (0, len(chunk)) else memoryview(chunk)[lo:hi]
            offset += len(chunk)
            if offset >= end:
                return

    def buffer(self) -> bytes | memoryview:
        """The whole content in one buffer, without a copy when it is one piece in memory."""
        pieces = list(self.chunks())
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        pieces = list(self.chunks(start, end))
        if len(pieces) == 1 and isinstance(pieces[0], bytes):
            return pieces[0]
        return b"".join(pieces)


@dataclass(frozen=True, slots=True, kw_only=True)
class MimePart:
    content_id: str
    content_type: str
    body: PartBody = field(repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def of(cls, content_id: str, content_type: str, data: bytes) -> MimePart:
        return cls(content_id=content_id, content_type=content_type, body=PartBody.of(data))

    @property
    def data(self) -> bytes:
        """The whole content in memory (a copy for spooled parts: use ``body.chunks()`` for large ones)."""
        return self.body.read()

    @property
    def size(self) -> int:
        return self.body.size

    @property
    def media_type(self) -> str:
        return self.content_type.split(";")[0].strip().lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class Package:
    """What went over (or comes from) the wire: the SOAP envelope and its attachments by Content-ID."""

    envelope: bytes = field(repr=False)
    attachments: dict[str, MimePart] = field(default_factory=dict)
    envelope_content_type: str = SOAP12_CONTENT_TYPE


_RFC2045_CHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE = re.compile(rf"\s*({_RFC2045_CHARS}/{_RFC2045_CHARS})\s*")
_PARAMETER = re.compile(rf';\s*({_RFC2045_CHARS})\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s"]*)\s*')  # lenient: type=text/xml


def parse_content_type(header: str) -> tuple[str, dict[str, str]]:
    """(media type in lower case, parameters by lower-case name) of a Content-Type (RFC 2045 section 5.1).

    A header that does not parse gives the media type "" and no parameters, which every caller refuses. A
    repeated parameter keeps its first value here; ``received_content_type`` refuses it.
    """
    media_type, params, _ = _parsed(header)
    return media_type, dict(params)


def received_content_type(header: str, where: str) -> tuple[str, dict[str, str]]:
    """``parse_content_type`` for a header that arrived: EBMS:0007 for a parameter given twice (an error by
    RFC 6838 section 4.3; taking either value would be a guess). ``where`` names the header."""
    media_type, params, repeated = _parsed(header)
    if repeated:
        raise _repeated_parameter(where, repeated)
    return media_type, dict(params)


def type_and_charset(content_type: str) -> str:
    """A Content-Type's media type with its charset, if it names one; its other parameters (a file name, say)
    left out: what an AS4 MimeType holds. "" when the header does not parse."""
    media_type, params = parse_content_type(content_type)
    charset = params.get("charset")
    return f"{media_type}; charset={charset}" if media_type and charset else media_type


def soap_version_of(content_type: str) -> SoapVersion:
    """The SOAP version a request's Content-Type announces (``text/xml``, alone or as a multipart's ``type``:
    1.1): the version to answer in when the request itself could not be read."""
    media_type, params = parse_content_type(content_type)
    announced = params.get("type", "").lower() if media_type == "multipart/related" else media_type
    return SoapVersion.SOAP11 if announced == SOAP11_CONTENT_TYPE else SoapVersion.SOAP12


def _parsed(header: str) -> tuple[str, tuple[tuple[str, str], ...], str]:
    return _parse_content_type(header) if len(header) <= _CACHED_HEADER_LENGTH else _parse(header)


def _parse(header: str) -> tuple[str, tuple[tuple[str, str], ...], str]:
    """(media type, parameters with the first value of each, the first repeated parameter name or "")."""
    match = _MEDIA_TYPE.match(header)
    if match is None:
        return "", (), ""
    params: dict[str, str] = {}
    repeated = ""
    position = match.end()
    while position < len(header):
        param = _PARAMETER.match(header, position)
        if param is None:
            if header[position:].strip(" \t;"):
                return "", (), ""
            break
        value = param.group(2)
        if value.startswith('"'):
            value = value[1:-1]
            if "\\" in value:
                value = re.sub(r"\\(.)", r"\1", value)
        name = param.group(1).lower()
        if name in params:
            repeated = repeated or name
        else:
            params[name] = value
        position = param.end()
    return match.group(1).lower(), tuple(params.items()), repeated


_CACHED_HEADER_LENGTH = 512
_parse_content_type = functools.lru_cache(maxsize=256)(_parse)
"""Ordinary headers parsed once (a message's Content-Type is read twice, part headers repeat across messages)."""


# --- building ----------------------------------------------------------------------------------------------


def build(
    envelope: bytes, attachments: Sequence[MimePart], *, envelope_content_type: str = SOAP12_CONTENT_TYPE
) -> tuple[str, bytes]:
    """The HTTP Content-Type and body for an envelope; plain SOAP when there is nothing to attach."""
    content_type, pieces = build_pieces(envelope, attachments, envelope_content_type=envelope_content_type)
    return content_type, b"".join(chunks_of(pieces))


def build_pieces(
    envelope: bytes, attachments: Sequence[MimePart], *, envelope_content_type: str = SOAP12_CONTENT_TYPE
) -> tuple[str, tuple[bytes | PartBody, ...]]:
    """``build`` without joining: header bytes and part bodies in wire order, so spooled parts stay on disk."""
    if not attachments:
        return f'{envelope_content_type}; charset="UTF-8"', (envelope,)
    random_hex = os.urandom(24).hex()  # 128 bits for the boundary, 64 for the root part's Content-ID
    boundary = f"MIMEBoundary_{random_hex[:32]}"
    root_id = f"root.{random_hex[32:]}@permit-gateway"
    pieces: list[bytes | PartBody] = [
        _part_head(boundary, f'{envelope_content_type}; charset="UTF-8"', root_id),
        envelope,
    ]
    for part in attachments:
        pieces += [_CRLF + _part_head(boundary, part.content_type, part.content_id), part.body]
    pieces.append(_CRLF + f"--{boundary}--".encode() + _CRLF)
    content_type = f'multipart/related; boundary="{boundary}"; type="{envelope_content_type}"; start="<{root_id}>"'
    return content_type, tuple(pieces)


def chunks_of(pieces: Sequence[bytes | PartBody]) -> Iterator[bytes | memoryview]:
    """The bytes of ``build_pieces`` in order, spooled bodies read back in ``CHUNK_SIZE`` pieces."""
    for piece in pieces:
        if isinstance(piece, PartBody):
            yield from piece.chunks()
        else:
            yield piece


def _part_head(boundary: str, content_type: str, content_id: str) -> bytes:
    if _CONTENT_ID.fullmatch(content_id) is None or any(c in content_type for c in "\r\n"):
        raise ValueError(f"Content-ID {content_id!r} or Content-Type {content_type!r} cannot go in a MIME header")
    return (
        f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: binary\r\n"
        f"Content-ID: <{content_id}>\r\n\r\n"
    ).encode()


# --- the incremental reader ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartStarted:
    """A part's header block was read. ``headers`` are (name, value) in order, names as sent."""

    index: int
    headers: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def content_id(self) -> str:
        return content_id_of_header(self.get("Content-ID"))

    @property
    def content_type(self) -> str:
        return (self.get("Content-Type") or "").strip()


@dataclass(frozen=True, slots=True)
class PartData:
    """Some (decoded) content of the current part."""

    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class PartEnded:
    index: int
    size: int


MimeEvent = PartStarted | PartData | PartEnded

_PREAMBLE, _DELIMITER_LINE, _HEADERS, _BODY, _EPILOGUE, _ERROR = range(6)


class MimeReader:
    """Incremental ``multipart/related`` parser: ``feed(chunk) -> events``, then ``close() -> events``.

    After an ``EbmsError`` the reader is in an error state and refuses further input.
    """

    def __init__(
        self,
        content_type: str,
        *,
        max_parts: int = MAX_PARTS,
        max_part_bytes: int = MAX_PART_BYTES,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        media_type, params = received_content_type(content_type, "the HTTP Content-Type")
        if media_type != "multipart/related":
            raise _fail(f"Content-Type {media_type!r} is not multipart/related")
        boundary = params.get("boundary")
        if not boundary:
            raise _fail("multipart/related Content-Type has no boundary parameter")
        if len(boundary) > MAX_BOUNDARY_LENGTH or _BCHARS.fullmatch(boundary) is None:
            raise _fail(f"MIME boundary {boundary!r} is not a valid RFC 2046 boundary")
        self.params = params
        self._dash_boundary = b"--" + boundary.encode("ascii")
        self._delimiter = b"\n" + self._dash_boundary
        self._buf = bytearray()
        self._state = _PREAMBLE
        self._scan = 0
        self._at_start = True
        self._part_index = -1
        self._part_size = 0
        self._total = 0
        self._base64: bytearray | None = None
        self._max_parts = max_parts
        self._max_part_bytes = max_part_bytes
        self._max_message_bytes = max_message_bytes

    def feed(self, chunk: bytes) -> list[MimeEvent]:
        if self._state == _ERROR:
            raise _fail("the MIME reader already failed on this message")
        self._total += len(chunk)
        if self._total > self._max_message_bytes:
            self._state = _ERROR
            raise _fail(f"the multipart body exceeds the limit of {self._max_message_bytes} bytes")
        events: list[MimeEvent] = []
        if self._state == _EPILOGUE or not chunk:
            return events
        if self._buf:
            self._buf += chunk
            view: bytes | bytearray = self._buf
        else:
            view = chunk
        try:
            consumed = self._run(view, events, final=False)
        except EbmsError:
            self._state = _ERROR
            raise
        if view is self._buf:
            del self._buf[:consumed]
        else:
            self._buf = bytearray(memoryview(chunk)[consumed:])
        self._scan = max(0, self._scan - consumed)
        return events

    def close(self) -> list[MimeEvent]:
        """The last events; EBMS:0007 unless the closing delimiter was seen."""
        if self._state == _ERROR:
            raise _fail("the MIME reader already failed on this message")
        events: list[MimeEvent] = []
        if self._state != _EPILOGUE:
            try:
                self._run(self._buf, events, final=True)
            except EbmsError:
                self._state = _ERROR
                raise
            self._state = _ERROR
            if self._part_index < 0 and not events:
                raise _fail("the body contains no MIME boundary delimiter")
            raise _fail("the multipart body has no closing boundary delimiter (truncated?)")
        self._buf = bytearray()
        return events

    # the state machine ---------------------------------------------------------------------------------

    def _run(self, view: bytes | bytearray, events: list[MimeEvent], *, final: bool) -> int:
        pos = 0
        while True:
            if self._state == _PREAMBLE:
                found = self._find_first_delimiter(view)
                if found < 0:
                    return max(pos, len(view) - len(self._delimiter))
                pos = found
                self._state = _DELIMITER_LINE
            elif self._state == _DELIMITER_LINE:
                end = self._delimiter_line(view, pos)
                if end is None:
                    return pos
                if end < 0:  # the close delimiter
                    self._state = _EPILOGUE
                    return len(view)
                pos = end
                self._state = _HEADERS
                self._scan = pos
            elif self._state == _HEADERS:
                end = self._headers(view, pos, events)
                if end is None:
                    return pos
                pos = end
                self._state = _BODY
                self._scan = pos
            elif self._state == _BODY:
                pos, done = self._body(view, pos, events, final=final)
                if not done:
                    return pos
                if self._base64:
                    raise _fail(f"MIME part {self._part_index + 1} ends inside a base64 quantum")
                events.append(PartEnded(self._part_index, self._part_size))
                self._state = _DELIMITER_LINE
            else:  # _EPILOGUE: ignored
                return len(view)

    def _find_first_delimiter(self, view: bytes | bytearray) -> int:
        """Position of the first dash-boundary that starts a line (the preamble before it is ignored)."""
        if self._at_start:
            if len(view) < len(self._dash_boundary) and self._dash_boundary.startswith(bytes(view)):
                return -1
            self._at_start = False
            if view.startswith(self._dash_boundary):
                return 0
        found = view.find(self._delimiter, self._scan)
        if found < 0:
            self._scan = max(0, len(view) - len(self._delimiter))
            return -1
        return found + 1

    def _delimiter_line(self, view: bytes | bytearray, pos: int) -> int | None:
        """After ``--boundary`` at ``pos``: where the next part starts, -1 after the close delimiter, None: need data."""
        after = pos + len(self._dash_boundary)
        if len(view) < after + 2:
            return None
        if view[after : after + 2] == b"--":
            return -1
        line_end = view.find(b"\n", after, after + MAX_TRANSPORT_PADDING + 2)
        if line_end < 0:
            if len(view) - after > MAX_TRANSPORT_PADDING + 1:
                raise _fail("a MIME boundary delimiter is followed by text instead of a line end")
            return None
        padding = bytes(view[after:line_end]).rstrip(b"\r")
        if padding.strip(b" \t"):
            raise _fail("a MIME boundary delimiter is followed by text instead of a line end")
        self._part_index += 1
        if self._part_index >= self._max_parts:
            raise _fail(f"the message has more than {self._max_parts} MIME parts")
        return line_end + 1

    def _headers(self, view: bytes | bytearray, pos: int, events: list[MimeEvent]) -> int | None:
        if view[pos : pos + 2] == _CRLF or view[pos : pos + 1] == b"\n":
            raise _fail(f"MIME part {self._part_index + 1} has no header fields")
        start = max(pos, self._scan - 2)
        crlf = view.find(b"\n\r\n", start)
        # a bare-LF blank line counts only before the first CRLF one: an unbounded search scans the whole body
        lf = view.find(b"\n\n", start, crlf + 1 if crlf >= 0 else len(view))
        ends = [(e, w) for e, w in ((lf, 2), (crlf, 3)) if e >= 0]
        if not ends:
            if len(view) - pos > MAX_PART_HEADER_BYTES:
                raise _fail(
                    f"the header block of MIME part {self._part_index + 1} exceeds {MAX_PART_HEADER_BYTES} bytes "
                    "or has no blank line before the content"
                )
            self._scan = len(view)
            return None
        end, width = min(ends)
        if end + width - pos > MAX_PART_HEADER_BYTES:
            raise _fail(
                f"the header block of MIME part {self._part_index + 1} exceeds {MAX_PART_HEADER_BYTES} bytes"
            )
        lines = _header_lines(bytes(view[pos : end + 1]))
        if len(lines) > MAX_PART_HEADERS:
            raise _fail(f"MIME part {self._part_index + 1} has more than {MAX_PART_HEADERS} header fields")
        headers = []
        seen: set[bytes] = set()
        fields: dict[bytes, str] = {}  # the first value of each field, by lower-case name
        for line in lines:
            name, colon, value = line.partition(b":")
            if not colon or _FIELD_NAME.fullmatch(name) is None:
                raise _fail(
                    f"the header block of MIME part {self._part_index + 1} has a line that is not a header field"
                )
            key = name.lower()
            if key in seen and key in _SINGLE_FIELDS:
                raise _fail(
                    f"MIME part {self._part_index + 1} has more than one {name.decode('ascii')} header field; "
                    "a part may carry it once"
                )
            seen.add(key)
            text = value.strip().decode("latin-1")
            fields.setdefault(key, text)
            headers.append((name.decode("ascii"), text))
        started = PartStarted(self._part_index, tuple(headers))
        repeated = _parsed(fields.get(b"content-type", "").strip())[2]
        if repeated:
            raise _repeated_parameter(f"the Content-Type of MIME part {self._part_index + 1}", repeated)
        encoding = fields.get(b"content-transfer-encoding", "binary").strip().lower()
        if encoding == "base64":
            self._base64 = bytearray()
        elif encoding in ("binary", "8bit", "7bit"):
            self._base64 = None
        else:
            raise EbmsError(
                EbmsCode.FEATURE_NOT_SUPPORTED_UNPACKAGING,
                f"Content-Transfer-Encoding {encoding!r} of MIME part {self._part_index + 1} is not supported "
                "(binary, 8bit, 7bit and base64 are)",
                envelope_unreadable=True,
            )
        self._part_size = 0
        events.append(started)
        return end + width

    def _body(
        self, view: bytes | bytearray, pos: int, events: list[MimeEvent], *, final: bool
    ) -> tuple[int, bool]:
        """Emit content up to the next delimiter: (new position, True) at a delimiter, else (kept from, False)."""
        search = max(pos, self._scan)
        while True:
            found = view.find(self._delimiter, search)
            if found < 0:
                break
            after = found + len(self._delimiter)
            content_end = found - 1 if found > pos and view[found - 1] == 0x0D else found
            if len(view) < after + 2:
                if final:
                    break
                self._emit(view, pos, content_end, events)
                self._scan = content_end
                return content_end, False
            follow = view[after : after + 1]
            if follow in (b"-", b"\r", b"\n", b" ", b"\t") and (follow != b"-" or view[after + 1] == 0x2D):
                self._emit(view, pos, content_end, events)
                return found + 1, True
            search = found + 1
        safe = max(pos, len(view) - len(self._delimiter) - 1)
        self._emit(view, pos, safe, events)
        self._scan = safe
        return safe, False

    def _emit(self, view: bytes | bytearray, start: int, end: int, events: list[MimeEvent]) -> None:
        if end <= start:
            return
        data: bytes | memoryview
        if self._base64 is not None:
            data = self._decode_base64(bytes(memoryview(view)[start:end]))
            if not data:
                return
        elif isinstance(view, bytes):  # a whole body handed over as bytes: view it, a large part is not copied
            data = memoryview(view)[start:end]
        else:  # the reader's own buffer, which is reused: copy
            data = bytes(memoryview(view)[start:end])
        self._part_size += len(data)
        if self._part_size > self._max_part_bytes:
            raise _fail(f"MIME part {self._part_index + 1} exceeds the limit of {self._max_part_bytes} bytes")
        events.append(PartData(data))

    def _decode_base64(self, data: bytes) -> bytes:
        assert self._base64 is not None
        self._base64 += b"".join(data.split())
        usable = len(self._base64) - len(self._base64) % 4
        if not usable:
            return b""
        block = bytes(self._base64[:usable])
        del self._base64[:usable]
        try:
            return binascii.a2b_base64(block, strict_mode=True)
        except binascii.Error:
            raise _fail(f"MIME part {self._part_index + 1} is declared base64 but is not valid base64") from None


class PackageAssembler:
    """Collects ``MimeReader`` events into a ``Package``; parts above ``spool_threshold`` go to ``spool()``.

    The root part (named by the ``start`` parameter, else the first) is the SOAP envelope: it is never
    spooled and may not exceed ``MAX_ROOT_PART_BYTES``.
    """

    def __init__(
        self, content_type: str, *, spool: Spool = in_memory_spool, spool_threshold: int | None = None
    ) -> None:
        self._reader = MimeReader(content_type)
        start = self._reader.params.get("start")
        self._start = content_id_of_header(start) if start is not None else None
        self._type = (self._reader.params.get("type") or "").strip().lower() or None
        self._spool = spool
        self._threshold = spool_threshold
        self._parts: list[MimePart] = []
        self._root_index: int | None = None
        self._current: PartStarted | None = None
        self._current_id = ""
        self._chunks: list[bytes | memoryview] = []
        self._size = 0
        self._file: BinaryIO | None = None
        self._is_root = False

    def feed(self, chunk: bytes) -> None:
        for event in self._reader.feed(chunk):
            self._on(event)

    def close(self) -> Package:
        for event in self._reader.close():
            self._on(event)
        return self._assemble()

    def _on(self, event: MimeEvent) -> None:
        if isinstance(event, PartStarted):
            self._current = event
            self._current_id = event.content_id  # read once: a header lookup each time
            self._chunks, self._size, self._file = [], 0, None
            self._is_root = (self._start is None and event.index == 0) or (
                self._start is not None and self._current_id == self._start
            )
        elif isinstance(event, PartData):
            self._size += len(event.data)
            if self._is_root:
                if self._size > MAX_ROOT_PART_BYTES:
                    raise EbmsError(
                        EbmsCode.INVALID_HEADER,
                        f"the SOAP envelope part exceeds the limit of {MAX_ROOT_PART_BYTES} bytes",
                        envelope_unreadable=True,
                    )
                self._chunks.append(event.data)
            elif self._file is not None:
                self._file.write(event.data)
            elif self._threshold is not None and self._size > self._threshold:
                self._file = self._spool()
                for pending in self._chunks:
                    self._file.write(pending)
                self._file.write(event.data)
                self._chunks = []
            else:
                self._chunks.append(event.data)
        else:
            assert self._current is not None
            started = self._current
            if self._file is not None:
                self._file.flush()
                body = PartBody(file=self._file, size=self._size)
            else:
                body = PartBody(self._chunks)
            if self._is_root:
                if self._root_index is not None:
                    raise _fail(f"two MIME parts carry the start Content-ID <{self._start}>")
                self._root_index = len(self._parts)
            self._parts.append(
                MimePart(
                    content_id=self._current_id,
                    content_type=started.content_type,
                    body=body,
                    headers=started.headers,
                )
            )
            self._current = None

    def _assemble(self) -> Package:
        if not self._parts:
            raise _fail("the multipart body has no parts")
        if self._root_index is None:
            raise _fail(f"the start parameter <{self._start}> names no MIME part")
        root = self._parts[self._root_index]
        media_type = root.media_type
        if media_type not in (SOAP12_CONTENT_TYPE, SOAP11_CONTENT_TYPE):
            raise _fail(
                f"the root MIME part has Content-Type {root.content_type!r}, not {SOAP12_CONTENT_TYPE} "
                f"or {SOAP11_CONTENT_TYPE}"
            )
        if self._type is not None and self._type != media_type:
            raise _fail(
                f"the multipart type parameter {self._type!r} does not match the root part's "
                f"Content-Type {media_type!r}"
            )
        attachments: dict[str, MimePart] = {}
        for index, part in enumerate(self._parts):
            if index == self._root_index:
                continue
            if not part.content_id:
                raise _fail(f"MIME part {index + 1} has no Content-ID")
            if _CONTENT_ID.fullmatch(part.content_id) is None:
                raise _fail(f"MIME part {index + 1} has an unusable Content-ID {part.content_id!r}")
            if part.content_id in attachments or part.content_id == root.content_id:
                raise _fail(f"Content-ID <{part.content_id}> appears on two MIME parts")
            attachments[part.content_id] = part
        return Package(envelope=root.body.read(), attachments=attachments, envelope_content_type=media_type)


def parse(
    content_type: str, body: bytes, *, spool: Spool = in_memory_spool, spool_threshold: int | None = None
) -> Package:
    """Split an incoming body into envelope and attachments; EBMS:0007 says what is inconsistent."""
    media_type, _ = received_content_type(content_type, "the HTTP Content-Type")
    if media_type in (SOAP12_CONTENT_TYPE, SOAP11_CONTENT_TYPE):
        return Package(envelope=body, envelope_content_type=media_type)
    if media_type != "multipart/related":
        raise _fail(
            f"Content-Type {media_type!r} is neither {SOAP12_CONTENT_TYPE}, {SOAP11_CONTENT_TYPE} nor multipart/related"
        )
    assembler = PackageAssembler(content_type, spool=spool, spool_threshold=spool_threshold)
    assembler.feed(body)
    return assembler.close()


def _header_lines(raw: bytes) -> list[bytes]:
    """Logical header lines: folded continuations joined (RFC 5322 unfolding), line ends dropped."""
    lines: list[bytes] = []
    for line in raw.split(b"\n"):
        line = line.removesuffix(b"\r")
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and lines:
            lines[-1] += line
        else:
            lines.append(line)
    return lines


def _fail(detail: str) -> EbmsError:
    return EbmsError(EbmsCode.MIME_INCONSISTENCY, detail, envelope_unreadable=True)


def _repeated_parameter(where: str, name: str) -> EbmsError:
    return _fail(f"{where} gives the parameter {name!r} more than once; each parameter may appear once")
