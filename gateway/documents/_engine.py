"""What a rule check receives and returns: the draft, its environment, and a hit per violation."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

from lxml import etree

from gateway.documents._extract import At, Draft
from gateway.documents.context import DocumentContext
from gateway.documents.reference import ReferenceData


class Hit(NamedTuple):
    """One violation: the element it is about (for line and path) and the values for the rule's texts."""

    element: etree._Element
    params: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Env:
    """The receiving day, what the gateway knows, and the reference tables: all a check may consult."""

    as_of: date | None
    context: DocumentContext | None
    reference: ReferenceData
    # The estimate checks of a draft (by id), which three rules share; one Env serves one validation.
    estimates: dict[int, list[tuple[str, Hit]]] = field(default_factory=dict)


Check = Callable[[Draft, Env], Iterator[Hit]]


def at(field: At[Any], **params: object) -> Hit:
    return Hit(field.element, params)
