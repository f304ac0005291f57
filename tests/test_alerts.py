"""The shipped Prometheus alerting rules (config/alerts.yml) are PromQL and ask only for metrics, labels and
label values the gateway exports: an alert on a misspelt series never fires, and nobody notices until a permit
is lost."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

import gateway.metrics
import gateway.profiles.metrics
from gateway.store import Direction, State

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "config" / "alerts.yml"
SELECTOR = re.compile(r"(permit_gateway_[a-z_]+)(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)\s*=~?\s*"([^"]*)"')
BY = re.compile(r"\bby\s*\(([^)]*)\)")
SUFFIXES = ("_total", "_bucket", "_count", "_sum")
SOURCE = "\n".join(p.read_text() for p in (ROOT / "gateway").rglob("*.py"))


def _metrics() -> dict[str, tuple[str, ...]]:
    """Exported metric name -> its label names, from the gateway's metric modules."""
    found = {}
    for module in (gateway.metrics, gateway.profiles.metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                found[value._name] = tuple(value._labelnames)
    return found


def _rules() -> list[dict[str, Any]]:
    groups = YAML(typ="safe").load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in _metrics():
            return name.removesuffix(suffix)
    return name


def _known_values(label: str) -> set[str] | None:
    if label == "direction":
        return {d.value for d in Direction}
    if label == "state":
        return {s.value for s in State}
    return None


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_each_alert_asks_for_what_the_gateway_exports(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 60
    metrics = _metrics()
    expr = rule["expr"]
    promql_parser.parse(expr)  # raises ValueError naming what is wrong
    grouped = {label.strip() for found in BY.findall(expr) for label in found.split(",") if label.strip()}
    for name, selector in SELECTOR.findall(expr):
        base = _base(name)
        assert base in metrics, f"{rule['alert']}: {name} is not a metric of the gateway"
        labels = metrics[base]
        for label, value in MATCHER.findall(selector):
            assert label in labels, f"{rule['alert']}: {base} has no label {label!r} (it has {labels})"
            known = _known_values(label)
            if known is not None:
                assert value in known, f"{rule['alert']}: {label}={value!r} never occurs (values: {known})"
            else:
                assert f'{label}="{value}"' in SOURCE, f"{rule['alert']}: nothing sets {label}={value!r}"
        assert grouped <= set(labels), f"{rule['alert']}: grouped by {grouped}, {base} has {labels}"


def test_a_label_means_the_same_on_every_metric() -> None:
    """``direction`` and ``state`` take the store's values everywhere, so one selector works on all metrics (an
    alert on failures with direction="out" once matched nothing: they were counted as "outbound")."""
    literal = re.compile(r'\.labels\([^)]*\b(direction|state)="([^"]*)"')
    for label, value in literal.findall(SOURCE):
        known = _known_values(label)
        assert known is not None and value in known, f'a metric is labelled {label}="{value}"; use the store enum'


def test_every_alert_is_named_once() -> None:
    names = [rule["alert"] for rule in _rules()]
    assert len(names) == len(set(names)) and all(n.startswith("PermitGateway") for n in names)


def test_a_store_out_of_reach_alerts_on_a_quiet_node_too() -> None:
    """The store-unavailable counter rises only with requests answered 503, so a node nobody sends to never
    raised it: an alert watches the gauge /metrics sets at each scrape, which it answers through an outage."""
    rule = next(rule for rule in _rules() if "permit_gateway_store_up" in rule["expr"])
    assert rule["expr"].replace(" ", "") == "permit_gateway_store_up==0"
    assert rule["labels"]["severity"] == "critical" and rule["for"] == "2m"


# --- the per-partner alerts, evaluated on the gateway's own /metrics ------------------------------------------

Labels = frozenset[tuple[str, str]]
Vector = dict[Labels, float]
COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def rule_named(name: str) -> dict[str, Any]:
    found = [rule for rule in _rules() if rule["alert"] == name]
    assert found, f"config/alerts.yml has no alert {name}"
    return found[0]


def scraped(text: str | None = None) -> Vector:
    """Every sample of an exposition (the gateway's registry, as /metrics serves it, without one given)."""
    text = generate_latest(gateway.metrics.REGISTRY).decode() if text is None else text
    return {
        frozenset({("__name__", sample.name), *sample.labels.items()}): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def firing(rule: dict[str, Any], samples: Vector) -> set[Labels]:
    """The series ``rule``'s expression gives on ``samples`` at one instant (its ``for:`` aside): the alerts it
    fires once that long. Only what the per-partner rules use: selectors, max/min/sum by, comparisons with a
    number, and/unless on."""
    return set(_evaluate(promql_parser.parse(rule["expr"]), samples))


def _evaluate(expr: Any, samples: Vector) -> Vector:
    if isinstance(expr, promql_parser.ParenExpr):
        return _evaluate(expr.expr, samples)
    if isinstance(expr, promql_parser.VectorSelector):
        wanted = {("__name__", expr.name), *((m.name, m.value) for m in expr.matchers.matchers)}
        assert all(str(m.op) == "MatchOp.Equal" for m in expr.matchers.matchers), expr
        return {labels: value for labels, value in samples.items() if wanted <= labels}
    if isinstance(expr, promql_parser.AggregateExpr):
        by = set(expr.modifier.labels) if expr.modifier is not None else set()
        assert expr.modifier is None or str(expr.modifier.type).endswith("By"), expr
        groups: dict[Labels, list[float]] = {}
        for labels, value in _evaluate(expr.expr, samples).items():
            groups.setdefault(frozenset((k, v) for k, v in labels if k in by), []).append(value)
        combine: Callable[[Iterable[float]], float] = {"max": max, "min": min, "sum": sum}[str(expr.op)]
        return {labels: combine(values) for labels, values in groups.items()}
    if isinstance(expr, promql_parser.BinaryExpr):
        op = str(expr.op)
        if op in COMPARE:
            assert isinstance(expr.rhs, promql_parser.NumberLiteral), expr
            return {k: v for k, v in _evaluate(expr.lhs, samples).items() if COMPARE[op](v, expr.rhs.val)}
        assert op in ("and", "unless"), expr
        on = set(expr.modifier.matching.labels)
        right = {frozenset((k, v) for k, v in labels if k in on) for labels in _evaluate(expr.rhs, samples)}
        left = _evaluate(expr.lhs, samples)
        keep = {k: v for k, v in left.items() if frozenset((n, x) for n, x in k if n in on) in right}
        return keep if op == "and" else {k: v for k, v in left.items() if k not in keep}
    raise AssertionError(f"the test's evaluator does not know {type(expr).__name__}: {expr}")


def _partners(found: set[Labels]) -> set[str]:
    return {dict(labels)["partner"] for labels in found}


EXPOSED = """
permit_gateway_partner_held{partner="ch"} 1
permit_gateway_partner_held{partner="de"} 0
permit_gateway_partner_held{partner="fr"} 0
permit_gateway_outbound_waiting_seconds{partner="ch"} 7200
permit_gateway_outbound_waiting_seconds{partner="de"} 3600
permit_gateway_outbound_waiting_seconds{partner="fr"} 60
"""


def test_a_held_partner_alerts_after_30_minutes_naming_how_to_find_why() -> None:
    rule = rule_named("PermitGatewayPartnerHeld")
    assert rule["for"] == "30m" and "permit-gateway profiles check" in rule["annotations"]["description"]
    assert "timeline" in rule["annotations"]["description"]
    assert _partners(firing(rule, scraped(EXPOSED))) == {"ch"}


def test_a_partner_not_taking_its_due_messages_alerts_once_unless_it_is_held() -> None:
    """A pull partner that stopped pulling leaves its messages SUBMITTED, which PartnerUnreachable (RETRY_WAIT)
    never saw; a held one alerts as held, not twice."""
    rule = rule_named("PermitGatewayPartnerNotTakingPermits")
    assert "transport: pull" in rule["annotations"]["description"]
    assert _partners(firing(rule, scraped(EXPOSED))) == {"de"}


def test_every_partner_starts_not_held_and_not_waiting() -> None:
    gateway.metrics.count_from_zero([("zz-new-partner", "folder")])
    samples = scraped()
    for name in ("permit_gateway_partner_held", "permit_gateway_outbound_waiting_seconds"):
        assert samples[frozenset({("__name__", name), ("partner", "zz-new-partner")})] == 0


def test_a_profile_file_held_back_alerts_until_it_is_fixed() -> None:
    """A file held back at start or in a partial reload moves no 'refused' counter (found by the review: nothing
    alerted while a broken edit left a partner's old certificate trusted, or left the partner out)."""
    rule = rule_named("PermitGatewayProfileHeldBack")
    held = "permit_gateway_profiles_held_back 1\n"
    assert firing(rule, scraped(held)) and not firing(rule, scraped(held.replace(" 1", " 0")))
    assert "NOT taken effect" in rule["annotations"]["description"]
