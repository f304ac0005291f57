"""The only way the gateway parses XML: hardened parsers and compiled schemas.

No DTD loading, no entity resolution, no network, no huge trees, and a size cap checked before libxml2 sees
a byte. ``gateway.as4`` and ``gateway.documents`` both parse through here; a test greps the tree for stray
parser construction.
"""

from __future__ import annotations

import threading
from functools import cache
from importlib import resources
from pathlib import Path

from lxml import etree

from gateway.errors import GatewayError

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
_CATALOG_NS = "{urn:oasis:names:tc:entity:xmlns:xml:catalog}"
_PER_THREAD = threading.local()


class XmlInputError(GatewayError):
    """Input is not acceptable XML: too large, not well-formed, or carries a DTD."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.reason = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return f"{self.reason} (line {self.line}, column {self.column})" if self.line else self.reason


def safe_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,  # a comment splits a text node that canonicalization joins: read what was signed
        dtd_validation=False,
    )


def _thread_parser() -> etree.XMLParser:
    """This thread's hardened parser: lxml parsers must not be shared between threads, and making one for
    each document costs about a tenth of parsing a small envelope."""
    parser: etree.XMLParser | None = getattr(_PER_THREAD, "parser", None)
    if parser is None:
        parser = _PER_THREAD.parser = safe_parser()
    return parser


def parse_xml(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, what: str = "document") -> etree._Element:
    """Parse ``data`` with the hardened parser; refuse oversize input and any DOCTYPE."""
    if len(data) > max_bytes:
        raise XmlInputError(f"{what} is {len(data)} bytes, over the limit of {max_bytes} bytes")
    try:
        root = etree.fromstring(bytes(data), _thread_parser())  # lxml misreads an empty bytearray (IndexError)
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        reason = exc.msg.removesuffix(f", line {line}, column {column}")  # the position travels on its own
        raise XmlInputError(f"{what} is not well-formed XML: {reason}", line=line, column=column) from None
    tree = root.getroottree()
    docinfo = tree.docinfo
    if getattr(docinfo, "doctype", "") or getattr(docinfo, "internalDTD", None) is not None:
        raise XmlInputError(f"{what} carries a DOCTYPE; DTDs are refused")
    return root


def schema_root() -> Path:
    """The ``schemas/xsd`` folder: inside the installed wheel, or at the top of a source checkout."""
    packaged = resources.files("gateway") / "_schemas" / "xsd"
    if packaged.is_dir():
        return Path(str(packaged))
    source = Path(__file__).resolve().parent.parent / "schemas" / "xsd"
    if source.is_dir():
        return source
    raise GatewayError(f"schema folder not found: neither {packaged} nor {source} exists")


class _CatalogResolver(etree.Resolver):
    """Maps the remote schemaLocations of the standards' XSDs to our local copies (catalog.xml)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        catalog = etree.parse(str(root / "catalog.xml"), safe_parser()).getroot()
        self._map = {
            el.get("name"): str(root / str(el.get("uri"))) for el in catalog if el.tag == f"{_CATALOG_NS}uri"
        }

    def resolve(self, system_url: str, public_id: str, context: object) -> object:  # type: ignore[override]
        target = self._map.get(system_url)
        return self.resolve_filename(target, context) if target else None


@cache
def load_schema(relative_path: str) -> etree.XMLSchema:
    """Compile an XSD under ``schema_root()`` once per process; imports resolve through catalog.xml."""
    root = schema_root()
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
    parser.resolvers.add(_CatalogResolver(root))
    doc = etree.parse(str(root / relative_path), parser)
    return etree.XMLSchema(doc)
