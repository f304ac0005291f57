"""What validation reports: findings, and the error that carries them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from lxml import etree

from gateway.documents.types import PERMITS_NAMESPACE, RULE_PREFIX, DocumentType
from gateway.errors import DocumentRejected

if TYPE_CHECKING:
    from gateway.documents._report import ValidationReport

# Rules are errors (the document is refused) or warnings; "info" only says what was not checked.
Severity = Literal["error", "warning", "info"]


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
        label = self.rule if self.severity == "error" else f"{self.rule} {self.severity}"
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

    def to_json(self) -> dict[str, Any]:
        """The finding as a JSON object, the same for every face (REST, folder, SOAP, CLI)."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
            "basis": self.basis,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "text": str(self),
        }


class PermitDocumentRejected(DocumentRejected):
    """A permit document has at least one error-severity finding; ``findings`` lists all of them."""

    def __init__(self, findings: Iterable[Finding], *, report: ValidationReport | None = None) -> None:
        self.findings: tuple[Finding, ...] = tuple(findings)
        self.report = report
        errors = sum(1 for f in self.findings if f.severity == "error")
        warnings = sum(1 for f in self.findings if f.severity == "warning")
        head = f"permit document rejected: {errors} error(s), {warnings} warning(s)"
        super().__init__("\n".join([head, *(f"  {f}" for f in self.findings)]))


_DSIG_NAMESPACE = "http://www.w3.org/2000/09/xmldsig#"
MAX_FINDINGS = 100
"""Findings a report lists; the rest are counted in one more. A report names what to fix first, and one of
thousands of entries (a document of 20,000 bad lines) swamps the 422 answer, the .errors.txt file, the
message's last error and the ebMS error sent back."""
_SEVERITY_ORDER: tuple[Severity, ...] = ("error", "warning", "info")


def most_severe(severities: Iterable[Severity]) -> Severity:
    found = set(severities)
    return next(level for level in _SEVERITY_ORDER if level in found)


def more_findings(count: int, severity: Severity, rule: str) -> Finding:
    """The finding that stands for ``count`` findings a report leaves out."""
    return Finding(
        rule=rule,
        severity=severity,
        message=f"{count} more findings not shown (a report lists the first {MAX_FINDINGS})",
        hint="Fix the findings above and check the document again ('permit-gateway validate FILE' offline): "
        "the ones not shown are reported once these are fixed.",
    )


def path_prefix(document_type: DocumentType) -> str:
    """The namespace prefix findings use for this document type (``ia``, ``ea``, ``en``...)."""
    return RULE_PREFIX[document_type].lower()


def element_path(element: etree._Element, prefix: str) -> str:
    """An XPath-like location such as ``/ia:ImportAuthorization/ia:SubstanceLine[2]/ia:GrossQuantity``."""
    tree = element.getroottree()
    root = tree.getroot()
    head = f"/{_named(etree.QName(root).text, prefix)}"
    if element is root:
        return head
    return f"{head}/{_named(tree.getelementpath(element), prefix)}"


def _named(clark: str, prefix: str) -> str:
    """``{urn:...cs-permits:1}Importer`` → ``ia:Importer``; other namespaces stay in Clark notation."""
    return clark.replace(f"{{{PERMITS_NAMESPACE}}}", f"{prefix}:").replace(f"{{{_DSIG_NAMESPACE}}}", "ds:")
