"""Background asyncio tasks the gateway starts and must stop, and the one thread permit documents are checked on."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_DOCUMENTS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="permit-documents")


async def cancel_all(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended, whatever it raised."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def on_documents_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``func`` (parsing or checking a permit document) off the event loop, on one thread kept for it.

    Not on any pool thread: lxml compiles a schema once per process through a shared import resolver, and a
    compiled schema keeps its error log on itself. Two threads at once compiled a schema without its imports
    (every submission answered 500 until a restart) and could read each other's findings."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_DOCUMENTS, functools.partial(func, *args, **kwargs))
