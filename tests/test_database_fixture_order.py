"""A test's PostgreSQL databases are dropped ``WITH (FORCE)`` when ``pg_databases`` is torn down, and pytest tears
fixtures down in the reverse order it set them up: a test that requests the harness before its database has the
database dropped under the gateways the harness still runs, which then log connection errors and tracebacks while
they stop (or the drop fails). Each test and fixture here must list its database before its harness."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

TESTS = Path(__file__).resolve().parent
DATABASES = {"store_url", "pg_url", "pg_databases"}
GATEWAYS = {"harness"}

Function = ast.FunctionDef | ast.AsyncFunctionDef


@cache
def _functions() -> tuple[tuple[Path, Function], ...]:
    return tuple(
        (path, node)
        for path in sorted(TESTS.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    )


def _is_fixture(function: Function) -> bool:
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            return True
    return False


@cache
def _requested(function: Function) -> tuple[str, ...]:
    """The fixtures ``function`` asks for: its parameters, then those it gets with ``request.getfixturevalue``."""
    looked_up = [
        node.args[0].value
        for node in ast.walk(function)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "getfixturevalue"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ]
    return (*(a.arg for a in function.args.args), *looked_up)


def _closure(seed: set[str], fixtures: list[Function]) -> set[str]:
    """``seed`` and every fixture that asks for one of them, however indirectly."""
    found = set(seed)
    grew = True
    while grew:
        grew = False
        for fixture in fixtures:
            if fixture.name not in found and found & set(_requested(fixture)):
                found.add(fixture.name)
                grew = True
    return found


def _out_of_order() -> list[str]:
    functions = list(_functions())
    fixtures = [f for _, f in functions if _is_fixture(f)]
    databases, gateways = _closure(DATABASES, fixtures), _closure(GATEWAYS, fixtures)
    found = []
    for path, function in functions:
        if not (function.name.startswith("test_") or _is_fixture(function)):
            continue
        names = [a.arg for a in function.args.args]
        first_gateway = next((i for i, n in enumerate(names) if n in gateways and n not in databases), None)
        last_database = max((i for i, n in enumerate(names) if n in databases), default=None)
        if first_gateway is not None and last_database is not None and first_gateway < last_database:
            found.append(
                f"{path.relative_to(TESTS.parent)}:{function.lineno} {function.name} asks for "
                f"{names[first_gateway]!r} before {names[last_database]!r}: its database would be dropped while "
                f"the gateways still run; list {names[last_database]!r} first"
            )
    return found


def test_every_test_asks_for_its_database_before_the_harness_so_it_is_dropped_after_the_gateways() -> None:
    assert _out_of_order() == []


def test_the_check_sees_a_database_asked_for_through_a_fixture_and_a_gateway_through_another() -> None:
    """The closures reach the fixtures the rule is about: without them the check above passes on anything."""
    fixtures = [f for _, f in _functions() if _is_fixture(f)]
    assert {"pg_url", "be_store", "store"} <= _closure(DATABASES, fixtures)
    assert {"harness", "answerer", "store_outage"} <= _closure(GATEWAYS, fixtures)
