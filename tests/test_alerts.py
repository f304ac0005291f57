"""The shipped Prometheus alerting rules (config/alerts.yml) are PromQL and ask only for metrics, labels and
label values the gateway exports: an alert on a misspelt series never fires, and nobody notices until a permit
is lost."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client.metrics import MetricWrapperBase
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
