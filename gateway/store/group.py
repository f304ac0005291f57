"""Group commit: requests that arrive while a transaction is committing wait, and go together in the next one.

One commit (one fsync on SQLite's WAL or PostgreSQL's) then serves a whole batch, and each caller returns only
after the commit that holds its request: what a caller was told is durable, is. A request the database refuses
(an illegal state move) comes back as that request's exception without failing the others; an error of the
transaction itself (connection lost, deadlock) fails every request of the batch, and none of them is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

T = TypeVar("T")
R = TypeVar("R")

# What a batch's work returns for each request, in order: its result, or the exception to raise for it alone.
Work = Callable[[AsyncConnection, Sequence[T]], Awaitable[list[R | Exception]]]


class GroupCommit(Generic[T, R]):
    def __init__(self, engine: AsyncEngine, work: Work[T, R], *, max_batch: int = 100) -> None:
        self._engine = engine
        self._work = work
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._committer: asyncio.Task[None] | None = None

    async def submit(self, request: T) -> R:
        """Returns (or raises) once the transaction holding ``request`` has committed (or failed)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_all())
        return await future

    async def _commit_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
            try:
                async with self._engine.begin() as conn:
                    outcomes = await self._work(conn, [request for request, _ in batch])
            except Exception as exc:  # the transaction failed: nothing of this batch was kept
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:  # the committer was cancelled (shutdown): its callers must not wait for ever
                for _, future in batch + self._waiting:
                    future.cancel()
                self._waiting = []
                raise
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
