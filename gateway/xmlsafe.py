"""The only way the gateway parses XML: hardened parsers and compiled schemas.

No DTD loading, no entity resolution, no network, no huge trees, and a size cap checked before libxml2 sees
a byte. ``gateway.as4`` and ``gateway.documents`` both parse through here; a test greps the tree for stray
parser construction.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
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

    def __init__(
        self, message: str, *, line: int | None = None, column: int | None = None, fix: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason = message
        self.line = line
        self.column = column
        self.fix = fix

    def __str__(self) -> str:
        if not self.line:
            return self.reason
        column = f", column {self.column}" if self.column else ""
        return f"{self.reason} (line {self.line}{column})"


@dataclass(frozen=True, slots=True)
class TreeLimits:
    """The shape a document may have, checked while streaming through it before its tree is built: a tree of
    millions of nodes costs memory to build and time in every later pass (the XSD validator's among them)."""

    max_elements: int
    max_attributes: int
    """On any one element."""
    max_children: int
    """Child elements of any one element: the XSD validator's work on each child grows with their number."""


def safe_parser(*, remove_pis: bool = False) -> etree.XMLParser:
    # remove_comments: a comment splits a text node that canonicalization joins: read what was signed
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=remove_pis,
        dtd_validation=False,
    )


def _thread_parser(remove_pis: bool) -> etree.XMLParser:
    """This thread's hardened parser: lxml parsers must not be shared between threads, and making one for
    each document costs about a tenth of parsing a small envelope."""
    name = "parser_without_pis" if remove_pis else "parser"
    parser: etree.XMLParser | None = getattr(_PER_THREAD, name, None)
    if parser is None:
        parser = safe_parser(remove_pis=remove_pis)
        setattr(_PER_THREAD, name, parser)
    return parser


def parse_xml(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    what: str = "document",
    limits: TreeLimits | None = None,
    remove_pis: bool = False,
) -> etree._Element:
    """Parse ``data`` with the hardened parser; refuse oversize input, any DOCTYPE and, with ``limits``, a
    document of another shape (streamed through first, so that no tree is built for it). ``remove_pis``
    drops processing instructions, joining the text they split, as comments always are."""
    if len(data) > max_bytes:
        raise XmlInputError(f"{what} is {len(data)} bytes, over the limit of {max_bytes} bytes")
    data = bytes(data)  # lxml misreads an empty bytearray (IndexError)
    if limits is not None:
        _check_shape(data, limits, what)
    try:
        root = etree.fromstring(data, _thread_parser(remove_pis))
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, what) from None
    tree = root.getroottree()
    docinfo = tree.docinfo
    if getattr(docinfo, "doctype", "") or getattr(docinfo, "internalDTD", None) is not None:
        raise XmlInputError(f"{what} carries a DOCTYPE; DTDs are refused")
    return root


def _syntax_error(exc: etree.XMLSyntaxError, what: str) -> XmlInputError:
    line, column = exc.position
    reason = exc.msg.removesuffix(f", line {line}, column {column}")  # the position travels on its own
    return XmlInputError(f"{what} is not well-formed XML: {reason}", line=line, column=column)


def _check_shape(data: bytes, limits: TreeLimits, what: str) -> None:
    """Stream through ``data`` keeping only the open elements, and refuse it at the first node over a limit."""
    elements = 0
    children = [0]  # of each open element, the document node's first
    try:
        stream = etree.iterparse(
            io.BytesIO(data),
            events=("start", "end"),
            resolve_entities=False,
            load_dtd=False,
            no_network=True,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            dtd_validation=False,
        )  # the hardened parser's settings
        for event, node in stream:
            if event == "start":
                elements += 1
                children[-1] += 1
                _check_element(node, elements, children[-1], limits, what)
                children.append(0)
            else:
                children.pop()
                _forget(node)
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, what) from None


def _check_element(element: etree._Element, count: int, position: int, limits: TreeLimits, what: str) -> None:
    """``element`` is the ``count``-th of the document and the ``position``-th child of its parent."""
    if count > limits.max_elements:
        raise XmlInputError(
            f"{what} has more than {limits.max_elements} elements",
            line=element.sourceline,
            fix=f"Send a document of at most {limits.max_elements} elements; no valid one comes near it.",
        )
    if len(element.attrib) > limits.max_attributes:
        raise XmlInputError(
            f"{what}: element {etree.QName(element).localname} has {len(element.attrib)} attributes, over the "
            f"limit of {limits.max_attributes} on one element",
            line=element.sourceline,
            fix="Remove the attributes the schema does not define on this element.",
        )
    parent = element.getparent()
    if position > limits.max_children and parent is not None:
        raise XmlInputError(
            f"{what}: element {etree.QName(parent).localname} has more than {limits.max_children} child elements",
            line=element.sourceline,
            fix=f"Send at most {limits.max_children} child elements in one element (9,999 substance lines and "
            "the document's other elements fit).",
        )


def _forget(element: etree._Element) -> None:
    """Drop a finished element's content and its finished siblings: the stream holds only what is open."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


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
