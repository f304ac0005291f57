"""Background asyncio tasks the gateway starts and must stop, the one thread permit documents are checked on, and
the one the registry runs a document's cross-document rules on again as it records it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Collection, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import structlog

log = structlog.get_logger("gateway.tasks")

P = ParamSpec("P")
T = TypeVar("T")

_DOCUMENTS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="permit-documents")
_RECHECKS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="permit-rechecks")


async def cancel_all(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended, whatever it raised."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_to_end(work: Awaitable[T]) -> T:
    """Await ``work`` in a task that cancelling the caller does not cut short: the caller's cancellation takes
    effect once ``work`` has ended, with its result dropped.

    For database transactions: one cancelled mid-statement makes SQLAlchemy close its aiosqlite connection
    with the statement still open, and SQLite then keeps that connection's transaction, and the write lock,
    until the statement is garbage-collected: every other writer of the node waited 30 s on a stopping node."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        if not task.cancelled() and (error := task.exception()) is not None:
            # the caller that would have handled it is gone: said here, once
            log.error("work went on after its caller was cancelled, and failed", reason=repr(error), exc_info=error)
        raise


def to_end(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """``method``, each call run to its end even when its caller is cancelled (see ``run_to_end``)."""

    @functools.wraps(method)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return await run_to_end(method(*args, **kwargs))

    return run


async def on_documents_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``func`` (parsing or checking a permit document) off the event loop, on one thread kept for it.

    Not on any pool thread: lxml compiles a schema once per process through a shared import resolver, and a
    compiled schema keeps its error log on itself. Two threads at once compiled a schema without its imports
    (every submission answered 500 until a restart) and could read each other's findings."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_DOCUMENTS, functools.partial(func, *args, **kwargs))


async def on_recheck_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``func`` (the cross-document rules of a document being recorded) off the event loop, on a thread of
    its own: never queued behind parsing on the documents thread (a second per 4.6 MiB document), since the
    caller holds a registry transaction (on SQLite the one pooled connection, reads included) until it ends.

    ``func`` must not touch a compiled schema, which stays on the documents thread (see ``on_documents_thread``).
    Rules on a 9,999-line export take about 0.3 s: too long to stall the event loop with."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_RECHECKS, functools.partial(func, *args, **kwargs))
