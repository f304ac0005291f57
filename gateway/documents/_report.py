"""The outcome of validating one document, in one structure for every face (REST, folder, SOAP, CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from gateway.documents._findings import Finding
from gateway.documents._model import PermitDocument
from gateway.documents.types import DocumentType


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationReport:
    """What validation found. ``document`` is set when no finding is an error; ``document_type`` and
    ``number`` are known as far as the document could be read."""

    findings: tuple[Finding, ...]
    document: PermitDocument | None
    document_type: DocumentType | None
    number: str | None
    as_of: date | None
    context_used: bool
    reference_version: str
    source: str | None = None

    @property
    def valid(self) -> bool:
        return self.document is not None

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == "warning")

    def rule_ids(self) -> tuple[str, ...]:
        """The ids of the rules reported, each once, in the order first reported; notes excluded."""
        return tuple(dict.fromkeys(f.rule for f in self.findings if f.severity != "info"))

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "valid": self.valid,
            "document_type": self.document_type.value if self.document_type else None,
            "number": self.number,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "context_used": self.context_used,
            "reference_version": self.reference_version,
            "errors": self.errors,
            "warnings": self.warnings,
            "rules": list(self.rule_ids()),
            "findings": [f.to_json() for f in self.findings],
        }

    def to_text(self) -> str:
        """A headline, then one finding per line, each as a compiler would print it."""
        what = " ".join(part for part in (self.document_type, self.number) if part) or "document"
        verdict = "valid" if self.valid else "REJECTED"
        head = f"{self.source}: " if self.source else ""
        lines = [f"{head}{verdict}: {what} ({self.errors} error(s), {self.warnings} warning(s))"]
        lines += [f"  {f}" for f in self.findings]
        return "\n".join(lines)
