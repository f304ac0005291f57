"""With JSON logging every line of the log is one JSON object: the standard library's loggers (APScheduler's
job errors, asyncio) included, with their tracebacks inside the object."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from gateway.interfaces import logs


@pytest.fixture
def json_logs() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logs.configure("INFO", json=True)
    yield
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()


def test_every_line_is_one_json_object_stdlib_tracebacks_included(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        raise RuntimeError("store went away")
    except RuntimeError:
        logging.getLogger("apscheduler.executors.default").exception("Job %r raised an exception", "purge")
    logging.getLogger("asyncio").warning("Executing %s took %.3f seconds", "<Task>", 2.5)
    structlog.get_logger("gateway").warning("delivery failed", message_id="m1@be")
    lines = capsys.readouterr().err.splitlines()

    records = [json.loads(line) for line in lines]
    assert [(r["level"], r["event"]) for r in records] == [
        ("error", "Job 'purge' raised an exception"),
        ("warning", "Executing <Task> took 2.500 seconds"),
        ("warning", "delivery failed"),
    ]
    assert records[0]["logger"] == "apscheduler.executors.default"
    assert "RuntimeError: store went away" in records[0]["exception"]
    assert records[2]["message_id"] == "m1@be" and all("timestamp" in r for r in records)


def test_configuring_again_keeps_one_handler(json_logs: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", json=True)
    logging.getLogger("apscheduler").warning("once")
    assert len(capsys.readouterr().err.splitlines()) == 1
