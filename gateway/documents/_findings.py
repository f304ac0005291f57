"""What validation reports: findings, and the error that carries them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from lxml import etree

from gateway.documents.types import PERMITS_NAMESPACE, DocumentType
from gateway.errors import DocumentRejected

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One problem in a permit document: which rule, where, and what to do about it."""

    rule: str
    severity: Severity
    message: str
    line: int | None = None
    column: int | None = None
    path: str | None = None
    hint: str
    basis: str | None = None

    def __str__(self) -> str:
        label = self.rule if self.severity == "error" else f"{self.rule} warning"
        basis = f" ({self.basis})" if self.basis else ""
        text = f"[{label}] {self.message.rstrip('.')}{basis}. Fix: {self.hint}"
        where = self.where()
        return f"{where}: {text}" if where else text

    def where(self) -> str:
        """``line 12, column 5 (/ia:ImportAuthorization/ia:Importer)``, or as much of it as is known."""
        position = ", ".join(
            f"{name} {value}" for name, value in (("line", self.line), ("column", self.column)) if value
        )
        path = f"({self.path})" if self.path else ""
        return " ".join(part for part in (position, path) if part)


class PermitDocumentRejected(DocumentRejected):
    """A permit document has at least one error-severity finding; ``findings`` lists all of them."""

    def __init__(self, findings: Iterable[Finding]) -> None:
        self.findings: tuple[Finding, ...] = tuple(findings)
        errors = sum(1 for f in self.findings if f.severity == "error")
        warnings = len(self.findings) - errors
        head = f"permit document rejected: {errors} error(s), {warnings} warning(s)"
        super().__init__("\n".join([head, *(f"  {f}" for f in self.findings)]))


_PREFIXES = {DocumentType.IMPORT_AUTHORIZATION: "ia", DocumentType.EXPORT_AUTHORIZATION: "ea"}
_DSIG_NAMESPACE = "http://www.w3.org/2000/09/xmldsig#"


def path_prefix(document_type: DocumentType) -> str:
    """The namespace prefix findings use for this document type (``ia``, ``ea``)."""
    return _PREFIXES[document_type]


def element_path(element: etree._Element, prefix: str) -> str:
    """An XPath-like location such as ``/ia:ImportAuthorization/ia:SubstanceLine[2]/ia:GrossQuantity``."""
    steps: list[str] = []
    node: etree._Element | None = element
    while node is not None:
        steps.append(_step(node, prefix))
        node = node.getparent()
    return "/" + "/".join(reversed(steps))


def _step(node: etree._Element, prefix: str) -> str:
    qname = etree.QName(node)
    known = {PERMITS_NAMESPACE: prefix, _DSIG_NAMESPACE: "ds"}.get(qname.namespace or "")
    name = f"{known}:{qname.localname}" if known else qname.text
    parent = node.getparent()
    if parent is None:
        return name
    siblings = list(parent.iterchildren(qname.text))
    return f"{name}[{siblings.index(node) + 1}]" if len(siblings) > 1 else name
