"""``permit-gateway validate``: check permit documents offline, exactly as a submission would.

Exit status: 0 every document is valid, 1 at least one is rejected, 2 wrong usage or unreadable input
(a missing file, a bad date, a bad reference or control table).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from gateway.documents import (
    ControlTables,
    InMemoryContext,
    PermitDocument,
    ReferenceData,
    ReferenceDataError,
    ValidationReport,
    validation_report,
)
from gateway.documents.control import CONTROL_TABLES

EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
PROGRESS_FROM = 10

out = Console(width=max(Console().width, 132), highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class UsageError(Exception):
    """Wrong arguments or unreadable input: exit 2 with the message."""


@dataclass(slots=True)
class Context:
    """The documents and tables the cross-document rules consult, and what was left out of them."""

    tables: ControlTables
    documents: dict[Path, PermitDocument] = field(default_factory=dict)
    ignored: list[ValidationReport] = field(default_factory=list)
    everything: InMemoryContext = field(default_factory=InMemoryContext)

    def for_file(self, path: Path) -> InMemoryContext:
        """All of it but the file itself: a document is not checked against itself."""
        own = self.documents.get(path.resolve())
        return self.everything.without(own) if own is not None else self.everything


def register(app: typer.Typer) -> None:
    """Add the ``validate`` command to the ``permit-gateway`` app."""
    app.command("validate")(validate)


def validate(
    paths: Annotated[list[Path], typer.Argument(help="permit documents, or folders of them (*.xml)")],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="judge the date rules as on this day (YYYY-MM-DD); default today (UTC)"),
    ] = None,
    context: Annotated[
        list[Path] | None,
        typer.Option(
            "--context",
            help="what the gateway has sent and received: a folder of permit documents and control tables "
            f"({', '.join(CONTROL_TABLES)}), or one such file; repeat for more. Without it the cross-document "
            "rules are not run.",
        ),
    ] = None,
    reference: Annotated[
        Path | None, typer.Option("--reference", help="a folder of newer reference tables to use instead")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object instead of text")] = False,
) -> None:
    """Check permit documents against the XSDs and the treaty rules, as a submission would."""
    try:
        day = _day(as_of)
        tables = ReferenceData.load(reference)
        files, unreadable = _inputs(paths)
        known = _context(context, day, tables) if context else None
    except (UsageError, ReferenceDataError) as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    reports, more_unreadable = _validate_all(files, day, known, tables, progress=not json_output)
    unreadable += more_unreadable
    if json_output:
        typer.echo(json.dumps(_json(reports, unreadable, day, tables, known), indent=2))
    else:
        _print(reports, unreadable, known)
    raise typer.Exit(_exit_code(reports, unreadable))


def _day(text: str | None) -> date:
    if text is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--as-of {text!r} is not a date (YYYY-MM-DD)") from None


def _inputs(paths: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The XML files to check, and the paths that are neither a file nor a folder."""
    files: list[Path] = []
    unreadable: list[tuple[str, str]] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.glob("*.xml") if p.is_file())
            if not found:
                raise UsageError(f"{path} holds no *.xml files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            unreadable.append((str(path), "no such file or folder"))
    return files, unreadable


def _context(paths: list[Path], day: date, reference: ReferenceData) -> Context:
    documents, csvs = _context_files(paths)
    try:
        known = Context(tables=ControlTables.from_files(csvs, reference))
    except ReferenceDataError as exc:
        raise UsageError(str(exc)) from None
    for path in documents:
        report = validation_report(_read(path), as_of=day, reference=reference, source=str(path))
        if report.document is None:
            known.ignored.append(report)
        else:
            known.documents[path.resolve()] = report.document
    known.everything = InMemoryContext(known.documents.values(), known.tables, as_of=day)
    return known


def _context_files(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    documents: list[Path] = []
    csvs: list[Path] = []
    for path in paths:
        if path.is_dir():
            documents += sorted(p for p in path.glob("*.xml") if p.is_file())
            csvs += [path / name for name in CONTROL_TABLES if (path / name).is_file()]
        elif path.is_file() and path.suffix == ".csv":
            csvs.append(path)
        elif path.is_file():
            documents.append(path)
        else:
            raise UsageError(f"--context {path}: no such file or folder")
    return documents, csvs


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None


def _validate_all(
    files: list[Path], day: date, known: Context | None, reference: ReferenceData, *, progress: bool
) -> tuple[list[ValidationReport], list[tuple[str, str]]]:
    reports: list[ValidationReport] = []
    unreadable: list[tuple[str, str]] = []
    with Progress(console=err, transient=True, disable=not progress or len(files) < PROGRESS_FROM) as bar:
        task = bar.add_task("validating", total=len(files))
        for path in files:
            try:
                data = path.read_bytes()
            except OSError as exc:
                unreadable.append((str(path), exc.strerror or str(exc)))
                continue
            finally:
                bar.advance(task)
            context = known.for_file(path) if known else None
            reports.append(
                validation_report(data, as_of=day, context=context, reference=reference, source=str(path))
            )
    return reports, unreadable


def _print(reports: list[ValidationReport], unreadable: list[tuple[str, str]], known: Context | None) -> None:
    for ignored in known.ignored if known else ():
        rules = ", ".join(ignored.rule_ids())
        err.print(f"context: {ignored.source} left out, it is rejected ({rules})", markup=False, soft_wrap=True)
    for report in reports:
        out.print(report.to_text(), markup=False, soft_wrap=True)
    for source, problem in unreadable:
        err.print(f"{source}: unreadable: {problem}", markup=False, soft_wrap=True)
    if len(reports) + len(unreadable) > 1:
        out.print(_summary(reports))
        valid = sum(r.valid for r in reports)
        out.print(
            f"{valid} valid, {len(reports) - valid} rejected, {len(unreadable)} unreadable",
            markup=False,
            soft_wrap=True,
        )


def _summary(reports: list[ValidationReport]) -> Table:
    table = Table(title="Validation summary")
    for column in ("file", "document", "result", "errors", "warnings", "rules"):
        table.add_column(column, no_wrap=column != "rules")
    for report in reports:
        table.add_row(  # file names and document numbers are the documents' words: text, never markup
            Text(Path(report.source or "").name),
            Text(" ".join(part for part in (report.document_type, report.number) if part)),
            Text("valid") if report.valid else Text("rejected", style="red"),
            str(report.errors),
            str(report.warnings),
            Text(", ".join(report.rule_ids())),
        )
    return table


def _json(
    reports: list[ValidationReport],
    unreadable: list[tuple[str, str]],
    day: date,
    reference: ReferenceData,
    known: Context | None,
) -> dict[str, Any]:
    valid = sum(r.valid for r in reports)
    return {
        "as_of": day.isoformat(),
        "reference": [t.to_json() for t in reference.tables],
        "context": {
            "documents": len(known.documents),
            "tables": [t.to_json() for t in known.tables.tables],
            "ignored": [{"source": r.source, "rules": list(r.rule_ids())} for r in known.ignored],
        }
        if known
        else None,
        "documents": [r.to_json() for r in reports],
        "unreadable": [{"source": s, "problem": p} for s, p in unreadable],
        "summary": {"valid": valid, "rejected": len(reports) - valid, "unreadable": len(unreadable)},
    }


def _exit_code(reports: list[ValidationReport], unreadable: list[tuple[str, str]]) -> int:
    if unreadable:
        return EXIT_USAGE
    return EXIT_VALID if all(r.valid for r in reports) else EXIT_INVALID
