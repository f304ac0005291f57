"""A second node serving the same SQLite file is told so (a warning, never a refusal), and commands that open the
store briefly neither warn nor mark the file as served."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.clock import FixedClock
from gateway.store import MessageStore, create_engine, upgrade
from tests.conftest import NOW
from tests.store.helpers import new_message

ROOT = Path(__file__).resolve().parents[2]

# A node in a process of its own: it serves from the store until told to stop (a line on stdin), then closes it.
NODE = """
import asyncio, sys
from gateway.clock import SystemClock
from gateway.store import MessageStore, create_engine, upgrade

async def main(url):
    engine = create_engine(url)
    await upgrade(engine)
    store = MessageStore(engine, SystemClock(), serving=True)
    print("serving", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await store.close()

asyncio.run(main(sys.argv[1]))
"""


class Node:
    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", NODE, url],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "serving\n"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        assert self.process.wait(timeout=30) == 0

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=30) == -signal.SIGKILL


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "gateway.db"


@pytest.fixture
def nodes(database: Path) -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        if node.process.poll() is None:
            node.kill()


def url_of(database: Path) -> str:
    return f"sqlite+aiosqlite:///{database}"


async def opened(url: str, *, serving: bool) -> tuple[MessageStore, list[MutableMapping[str, Any]]]:
    engine = create_engine(url)
    await upgrade(engine)
    with capture_logs() as logs:
        store = MessageStore(engine, FixedClock(NOW), serving=serving)
    return store, [entry for entry in logs if entry["log_level"] == "warning"]


async def test_a_second_node_on_one_sqlite_file_is_warned_of_the_first_and_still_serves(
    database: Path, nodes: list[Node]
) -> None:
    first = Node(url_of(database))
    nodes.append(first)

    second, warnings = await opened(url_of(database), serving=True)
    try:
        [warning] = warnings
        assert warning["database"] == str(database)
        assert warning["other_pid"] == first.pid
        assert warning["rule"] == "one node per SQLite store"
        text = warning["event"]
        assert f"another gateway node (pid {first.pid}) already serves the SQLite store {database}" in text
        assert (
            "reduced throughput" in text and "Stop the other node" in text and "PostgreSQL ([store] url)" in text
        )
        _, created = await second.add(new_message("m1@be"))  # a warning, not a refusal
        assert created
    finally:
        await second.close()

    first.stop()
    third, warnings = await opened(url_of(database), serving=True)
    await third.close()
    assert warnings == []


async def test_a_killed_node_leaves_no_stale_mark(database: Path, nodes: list[Node]) -> None:
    first = Node(url_of(database))
    nodes.append(first)
    first.kill()

    second, warnings = await opened(url_of(database), serving=True)
    try:
        assert warnings == []
        assert Path(f"{database}.node-lock").read_text() == str(os.getpid())
    finally:
        await second.close()


async def test_a_store_opened_briefly_neither_warns_nor_marks_the_file(database: Path, nodes: list[Node]) -> None:
    brief, warnings = await opened(url_of(database), serving=False)
    try:
        assert warnings == []
        first = Node(url_of(database))  # a command holding the store open does not make a node's start warn
        nodes.append(first)
        assert Path(f"{database}.node-lock").read_text() == str(first.pid)
        again, warnings = await opened(url_of(database), serving=False)
        await again.close()
        assert warnings == []
    finally:
        await brief.close()


async def test_closing_a_serving_store_lets_the_next_one_serve_unwarned(database: Path) -> None:
    first, _ = await opened(url_of(database), serving=True)
    await first.close()

    second, warnings = await opened(url_of(database), serving=True)
    await second.close()
    assert warnings == []


async def test_only_sqlite_stores_warn_of_a_second_serving_store(store_url: str) -> None:
    first, _ = await opened(store_url, serving=True)
    try:
        second, warnings = await opened(store_url, serving=True)
        await second.close()
    finally:
        await first.close()

    assert len(warnings) == (1 if store_url.startswith("sqlite") else 0)
