"""XML we sign, written as exclusive-C14N text (W3C xml-exc-c14n) instead of built as a tree.

Building eb:Messaging, the Body and ds:SignedInfo as lxml trees, canonicalizing them for their digests
and then serializing the envelope costs more than the RSA signature of a small message. These elements
have a fixed shape, so the sender writes them once, already canonical: the digest is taken over the very
text that goes into the envelope, and canonical XML parsed and canonicalized again gives the same text
back. That holds when each element written here

* declares on itself the namespaces it uses, sorted by prefix, and its descendants use no others;
* lists attributes unqualified ones first by name, then qualified ones by namespace URI and name;
* writes empty elements as start and end tag, and escapes text and attribute values as C14N does.

``tests/as4/test_canon.py`` checks the writers of ``header`` and ``wss`` against lxml's canonicalization
for arbitrary values.
"""

from __future__ import annotations

import re

# XML 1.0 Char, negated; C14N escapes the rest of what it must, below.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TEXT_SPECIAL = re.compile("[&<>\r]|[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTR_SPECIAL = re.compile('[&<"\t\n\r]|[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]')
_TEXT_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#xD;"}
_ATTR_ESCAPES = {"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#x9;", "\n": "&#xA;", "\r": "&#xD;"}


def _check(value: str) -> None:
    bad = _NOT_XML_CHAR.search(value)
    if bad is not None:
        raise ValueError(
            f"{value[:80]!r} contains {bad.group()!r}, which XML 1.0 cannot carry (control characters other "
            "than tab, line feed and carriage return are not XML characters)"
        )


def text(value: str) -> str:
    """Character content as C14N writes it; ``ValueError`` for characters XML cannot carry."""
    if value.isprintable() and "&" not in value and "<" not in value and ">" not in value:
        return value  # the common case, without a regular expression
    if _TEXT_SPECIAL.search(value) is None:
        return value
    _check(value)
    return "".join(_TEXT_ESCAPES.get(c, c) for c in value)


def attr(name: str, value: str | None) -> str:
    """`` name="value"`` as C14N writes it, or nothing for ``None``."""
    if value is None:
        return ""
    plain = value.isprintable() and "&" not in value and "<" not in value and '"' not in value
    if not plain and _ATTR_SPECIAL.search(value) is not None:
        _check(value)
        value = "".join(_ATTR_ESCAPES.get(c, c) for c in value)
    return f' {name}="{value}"'


def element(name: str, content: str = "", attributes: str = "") -> str:
    """``<name attributes>content</name>``: ``content`` and ``attributes`` are already canonical text."""
    return f"<{name}{attributes}>{content}</{name}>"


def xmlns(prefix: str, uri: str) -> str:
    return f' xmlns:{prefix}="{uri}"'
