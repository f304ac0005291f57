"""Re-package a parsed message in the many shapes other MSHs produce (same parts, different MIME framing)."""

from __future__ import annotations

import base64

from gateway.as4 import mime


def repackage(
    content_type: str,
    body: bytes,
    *,
    newline: bytes = b"\r\n",
    brackets: bool = True,
    start: bool = True,
    type_param: bool = True,
    quote_boundary: bool = True,
    preamble: bytes = b"",
    epilogue: bytes = b"",
    padding: bytes = b"",
    base64_parts: bool = False,
    header_case: str = "Content-ID",
    fold: bool = False,
    boundary: str = "=_Part_0.1234567890/x",
    root_last: bool = False,
) -> tuple[str, bytes]:
    """The same envelope and attachments framed differently: LF-only, bare Content-IDs, no start, ..."""
    package = mime.parse(content_type, body)
    root_id = "root.part@example.test"
    parts = [(root_id, f"{package.envelope_content_type}; charset=UTF-8", package.envelope)]
    parts += [(cid, part.content_type, part.data) for cid, part in package.attachments.items()]
    if root_last:
        parts = parts[1:] + parts[:1]
    chunks = [preamble]
    for cid, ctype, data in parts:
        chunks.append(b"--" + boundary.encode() + padding + newline)
        fold_gap = newline + b"\t" if fold else b" "
        chunks.append(b"Content-Type:" + fold_gap + ctype.encode() + newline)
        shown = f"<{cid}>" if brackets else cid
        chunks.append(f"{header_case}: {shown}".encode() + newline)
        if base64_parts:
            chunks.append(b"Content-Transfer-Encoding: base64" + newline + newline)
            encoded = base64.encodebytes(data).replace(b"\n", newline)
            chunks.append(encoded)
        else:
            chunks.append(b"Content-Transfer-Encoding: binary" + newline + newline)
            chunks.append(data + newline)
    chunks.append(b"--" + boundary.encode() + b"--" + padding + newline + epilogue)
    shown_boundary = f'"{boundary}"' if quote_boundary else boundary
    params = [f"boundary={shown_boundary}"]
    if type_param:
        params.append(f'type="{package.envelope_content_type}"')
    if start:
        params.append(f'start="<{root_id}>"')
    return "multipart/related; " + "; ".join(params), b"".join(chunks)
