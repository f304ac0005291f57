"""What the cross-document rules may ask about the documents the gateway has sent and received.

The documents package does no I/O: ``validate_document(..., context=...)`` takes any object with these
lookups. ``InMemoryContext`` answers them from a set of validated documents and the control tables (tests,
the CLI); the message store answers them from its database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from gateway.documents._model import DocumentKey, PermitDocument, PermitLine
from gateway.documents.control import ControlTables, Estimate, Prohibition
from gateway.documents.types import DocumentType

IA = DocumentType.IMPORT_AUTHORIZATION
EA = DocumentType.EXPORT_AUTHORIZATION
EN = DocumentType.IMPORT_ENDORSEMENT


class DocumentStatus(StrEnum):
    """Where a known document stands on a given day. CLOSED: an ImportAuthorization fully drawn on, or an
    ExportAuthorization endorsed by the importing country."""

    OPEN = "open"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    CLOSED = "closed"


class DocumentContext(Protocol):
    """Lookups over the documents the gateway has sent and received, and the administrator's tables.

    ``excluding`` leaves one document out of a sum or list: the document under validation, so that checking
    a document that is already known does not count it against itself, and an amendment's replacement is
    checked without the version it replaces.
    """

    def find(self, key: DocumentKey) -> PermitDocument | None:
        """The current version of a document (an amendment's replacement once amended), or None."""
        ...

    def is_duplicate(self, key: DocumentKey, content_sha256: str) -> bool:
        """True when a document with this key but different content was already sent or received."""
        ...

    def status(self, key: DocumentKey, *, as_of: date) -> DocumentStatus | None: ...

    def remaining_base_grams(
        self, import_authorization: DocumentKey, line_number: int, *, excluding: DocumentKey | None = None
    ) -> Decimal | None:
        """Base grams still available on one ImportAuthorization line, or None if the IA or line is unknown."""
        ...

    def exports_against(
        self, import_authorization: DocumentKey, *, excluding: DocumentKey | None = None
    ) -> tuple[DocumentKey, ...]:
        """The ExportAuthorizations, not cancelled, issued against an ImportAuthorization."""
        ...

    def exported_base_grams(self, export_authorization: DocumentKey, line_number: int) -> Decimal | None:
        """Base grams shipped on one ExportAuthorization line: the execution's, else the authorized quantity."""
        ...

    def executed_base_grams(
        self, export_authorization: DocumentKey, line_number: int, *, excluding: DocumentKey | None = None
    ) -> Decimal:
        """Base grams the ExportExecutions of an ExportAuthorization report on one of its lines (0 if none)."""
        ...

    def dispatch_date(self, export_authorization: DocumentKey) -> date | None:
        """The earliest DispatchDate of an ExportAuthorization's ExportExecutions, not cancelled; None when it
        has none, or one whose date is not known."""
        ...

    def endorsements_of(
        self, export_authorization: DocumentKey, *, excluding: DocumentKey | None = None
    ) -> tuple[DocumentKey, ...]:
        """The ImportEndorsements, not cancelled, of an ExportAuthorization."""
        ...

    def authorized_base_grams(
        self,
        document_type: DocumentType,
        importing_country: str,
        substance_id: str,
        year: int,
        *,
        excluding: DocumentKey | None = None,
    ) -> Decimal:
        """Base grams of a substance on the year's documents of a type (not cancelled) for an importing
        country, less their lines for re-export: what counts against its estimate or assessment."""
        ...

    def estimate(self, country: str, substance_id: str, year: int) -> Estimate | None: ...

    def prohibition(self, country: str, substance_id: str) -> Prohibition | None: ...

    def import_authorization_required(self, country: str, treaty: str, schedule: str) -> bool: ...


class InMemoryContext:
    """A ``DocumentContext`` over validated documents held in memory, and the control tables.

    ``as_of`` is the day quantities are counted on, as the registry counts them on its day: a document whose
    Cancellation takes effect later still draws, ships, endorses and counts against its estimate until then.
    Without it, every Cancellation counts whatever its date.

    As in the registry, an endorsed ExportAuthorization cannot be cancelled: one endorsed before its
    Cancellation's date is cancelled only once each such endorsement is (its cancellation reopens the export),
    from the latest of their dates, and never while one of them stands."""

    def __init__(
        self,
        documents: Iterable[PermitDocument] = (),
        tables: ControlTables | None = None,
        *,
        as_of: date | None = None,
    ) -> None:
        self.documents = tuple(documents)
        self.tables = tables or ControlTables()
        self.as_of = as_of
        self._originals: dict[DocumentKey, list[PermitDocument]] = defaultdict(list)
        self._current: dict[DocumentKey, PermitDocument] = {}
        self._cancelled: dict[DocumentKey, date] = {}
        self._cancelled_from: dict[DocumentKey, date | None] = {}
        self._by_reference: dict[tuple[DocumentType, DocumentKey], list[PermitDocument]] = defaultdict(list)
        # per document (by identity), built when first asked: the rules ask line by line, and a 9,999-line
        # document walked once per line is 10^8 steps
        self._line_index: dict[int, dict[int, PermitLine]] = {}
        self._by_referenced_line: dict[int, dict[int, Decimal]] = {}
        self._referencing: dict[int, dict[int, list[PermitLine]]] = {}
        for document in self.documents:
            self._add(document)
        self._authorized: dict[tuple[DocumentType, str, str, int], list[tuple[DocumentKey, Decimal]]] = (
            defaultdict(list)
        )
        for document in self._current.values():
            for ref in (document.import_authorization_ref, document.export_authorization_ref):
                if ref is not None:
                    self._by_reference[(document.document_type, ref.key)].append(document)
        for key, document in self._current.items():  # an export's cancellation asks for its endorsements
            if not self._uncounted(key):
                self._count_authorized(key, document)

    def without(self, document: PermitDocument) -> InMemoryContext:
        """The same context less this very document (by identity, not by key: duplicates stay)."""
        return InMemoryContext((d for d in self.documents if d is not document), self.tables, as_of=self.as_of)

    def find(self, key: DocumentKey) -> PermitDocument | None:
        return self._current.get(key)

    def is_duplicate(self, key: DocumentKey, content_sha256: str) -> bool:
        return any(d.content_sha256 != content_sha256 for d in self._originals.get(key, ()))

    def status(self, key: DocumentKey, *, as_of: date) -> DocumentStatus | None:
        document = self._current.get(key)
        if document is None:
            return None
        cancelled = self._cancellation(key)
        if cancelled is not None and cancelled <= as_of:
            return DocumentStatus.CANCELLED
        if self._closed(document):
            return DocumentStatus.CLOSED
        if document.valid_until is not None and document.valid_until < as_of:
            return DocumentStatus.EXPIRED
        return DocumentStatus.OPEN

    def remaining_base_grams(
        self, import_authorization: DocumentKey, line_number: int, *, excluding: DocumentKey | None = None
    ) -> Decimal | None:
        document = self._current.get(import_authorization)
        line = self._line(document, line_number) if document else None
        if line is None or line.base_quantity_grams is None:
            return None
        drawn = sum(
            (self._drawn(ea, line_number) for ea in self._live_exports(import_authorization, excluding)),
            Decimal(0),
        )
        return line.base_quantity_grams - drawn

    def exports_against(
        self, import_authorization: DocumentKey, *, excluding: DocumentKey | None = None
    ) -> tuple[DocumentKey, ...]:
        return tuple(ea.key for ea in self._live_exports(import_authorization, excluding))

    def exported_base_grams(self, export_authorization: DocumentKey, line_number: int) -> Decimal | None:
        document = self._current.get(export_authorization)
        if document is None:
            return None
        line = self._line(document, line_number)
        if line is None:
            return None
        executions = self._executions(export_authorization)
        return self._reported(executions, line_number) if executions else line.base_quantity_grams

    def executed_base_grams(
        self, export_authorization: DocumentKey, line_number: int, *, excluding: DocumentKey | None = None
    ) -> Decimal:
        executions = self._executions(export_authorization)
        return self._reported([d for d in executions if d.key != excluding], line_number)

    def _executions(self, export_authorization: DocumentKey) -> list[PermitDocument]:
        """The ExportExecutions of an export, less the cancelled ones: those shipped nothing."""
        executions = self._by_reference.get((DocumentType.EXPORT_EXECUTION, export_authorization), [])
        return [d for d in executions if not self._uncounted(d.key)]

    def _endorsements(self, export_authorization: DocumentKey) -> list[PermitDocument]:
        """The ImportEndorsements of an export, less the cancelled ones: cancelling one is how it is corrected
        (EN-005), so it no longer closes the export nor says what it drew."""
        endorsements = self._by_reference.get((DocumentType.IMPORT_ENDORSEMENT, export_authorization), [])
        return [d for d in endorsements if not self._uncounted(d.key)]

    def dispatch_date(self, export_authorization: DocumentKey) -> date | None:
        days = [d.effective_date for d in self._executions(export_authorization)]
        return None if not days or None in days else min(day for day in days if day is not None)

    def endorsements_of(
        self, export_authorization: DocumentKey, *, excluding: DocumentKey | None = None
    ) -> tuple[DocumentKey, ...]:
        return tuple(d.key for d in self._endorsements(export_authorization) if d.key != excluding)

    def authorized_base_grams(
        self,
        document_type: DocumentType,
        importing_country: str,
        substance_id: str,
        year: int,
        *,
        excluding: DocumentKey | None = None,
    ) -> Decimal:
        counted = self._authorized.get((document_type, importing_country, substance_id, year), [])
        return sum((grams for key, grams in counted if key != excluding), Decimal(0))

    def estimate(self, country: str, substance_id: str, year: int) -> Estimate | None:
        return self.tables.estimate(country, substance_id, year)

    def prohibition(self, country: str, substance_id: str) -> Prohibition | None:
        return self.tables.prohibition(country, substance_id)

    def import_authorization_required(self, country: str, treaty: str, schedule: str) -> bool:
        return self.tables.import_authorization_required(country, treaty, schedule)

    def _add(self, document: PermitDocument) -> None:
        self._originals[document.key].append(document)
        self._current.setdefault(document.key, document)
        replacement = document.replacement
        if replacement is not None:
            current = self._current.get(replacement.key)
            if current is None or current.version < replacement.version:
                self._current[replacement.key] = replacement
        subject = document.subject_ref
        if document.document_type is DocumentType.CANCELLATION and subject and document.effective_date:
            earlier = self._cancelled.get(subject.key, document.effective_date)
            self._cancelled[subject.key] = min(earlier, document.effective_date)

    def _count_authorized(self, key: DocumentKey, document: PermitDocument) -> None:
        """Amounts for re-export count against no estimate (1961 Art. 31(1)(b)), on any document."""
        year = document.estimate_year or document.issue_date.year
        for line in document.lines:
            if line.base_quantity_grams is not None and not line.re_export:
                where = (document.document_type, document.importing_country, line.substance_id, year)
                self._authorized[where].append((key, line.base_quantity_grams))

    def _live_exports(
        self, import_authorization: DocumentKey, excluding: DocumentKey | None
    ) -> list[PermitDocument]:
        return [
            ea
            for ea in self._by_reference.get((EA, import_authorization), [])
            if ea.key != excluding and not self._uncounted(ea.key)
        ]

    def _uncounted(self, key: DocumentKey) -> bool:
        """Cancelled by the day quantities are counted on: one cancelled from a later day still counts."""
        cancelled = self._cancellation(key)
        return cancelled is not None and (self.as_of is None or cancelled <= self.as_of)

    def _cancellation(self, key: DocumentKey) -> date | None:
        """The day a document is cancelled from. An export's endorsements issued before its Cancellation's date
        are cancelled first: from the latest of their dates and its own; never while one of them stands."""
        if key in self._cancelled_from:
            return self._cancelled_from[key]
        cancelled = self._cancelled.get(key)
        if cancelled is not None and key.document_type is EA:
            endorsed = self._by_reference.get((EN, key), [])
            holding = [self._cancelled.get(en.key) for en in endorsed if en.issue_date < cancelled]
            cancelled = None if None in holding else max([cancelled, *(d for d in holding if d is not None)])
        self._cancelled_from[key] = cancelled
        return cancelled

    def _drawn(self, export_authorization: PermitDocument, ia_line: int) -> Decimal:
        """What one EA takes from an IA line: the endorsed quantity once endorsed, else what it authorizes."""
        endorsements = self._endorsements(export_authorization.key)
        total = Decimal(0)
        for line in self._lines_on(export_authorization, ia_line):
            endorsed = self._reported(endorsements, line.line_number) if endorsements else None
            total += endorsed if endorsed is not None else line.base_quantity_grams or Decimal(0)
        return total

    def _line(self, document: PermitDocument, line_number: int) -> PermitLine | None:
        index = self._line_index.get(id(document))
        if index is None:
            index = self._line_index[id(document)] = {}
            for line in document.lines:
                index.setdefault(line.line_number, line)
        return index.get(line_number)

    def _lines_on(self, document: PermitDocument, referenced_line: int) -> list[PermitLine]:
        """The document's lines that reference one line of the document it names."""
        index = self._referencing.get(id(document))
        if index is None:
            index = self._referencing[id(document)] = defaultdict(list)
            for line in document.lines:
                if line.reference_line_number is not None:
                    index[line.reference_line_number].append(line)
        return index.get(referenced_line, [])

    def _reported(self, documents: list[PermitDocument], export_line: int) -> Decimal:
        """Base grams executions or endorsements report for one ExportAuthorization line."""
        return sum((self._sums(d).get(export_line, Decimal(0)) for d in documents), Decimal(0))

    def _sums(self, document: PermitDocument) -> dict[int, Decimal]:
        """Base grams of a document's lines per line they reference."""
        sums = self._by_referenced_line.get(id(document))
        if sums is None:
            sums = self._by_referenced_line[id(document)] = defaultdict(Decimal)
            for line in document.lines:
                if line.reference_line_number is not None and line.base_quantity_grams is not None:
                    sums[line.reference_line_number] += line.base_quantity_grams
        return sums

    def _closed(self, document: PermitDocument) -> bool:
        if document.document_type is EA:
            return bool(self._endorsements(document.key))
        if document.document_type is IA:
            remaining = [self.remaining_base_grams(document.key, line.line_number) for line in document.lines]
            return all(r is not None and r <= 0 for r in remaining)
        return False


def _sum(values: Iterable[Decimal | None]) -> Decimal:
    return sum((v for v in values if v is not None), Decimal(0))
