"""Which failures mean "the database is out of reach, try again": the REST API and /as4 answer those with 503
(the rest stay errors), and asyncpg's broken-protocol error counts as a disconnect, so its connection is
replaced instead of pooled again."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from gateway.store import create_engine, is_unavailable
from gateway.store.store import _broken_protocol_is_a_disconnect


def _dbapi_error(kind: type[DBAPIError], *, invalidated: bool = False) -> DBAPIError:
    return kind("SELECT 1", {}, Exception("driver error"), connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), True),  # asyncpg cannot connect at all
        (_dbapi_error(OperationalError), True),  # SQLite busy past its time-out, a server shutting down
        (_dbapi_error(InterfaceError), True),
        (_dbapi_error(DBAPIError, invalidated=True), True),  # the server ended the session
        (_dbapi_error(DBAPIError), False),
        (_dbapi_error(IntegrityError), False),  # a broken rule is no outage
        (ValueError("a bug"), False),
    ],
    ids=["refused", "operational", "interface", "invalidated", "other-dbapi", "integrity", "bug"],
)
def test_what_counts_as_the_store_being_unavailable(error: BaseException, unavailable: bool) -> None:
    assert is_unavailable(error) is unavailable


async def test_asyncpgs_broken_protocol_error_counts_as_a_disconnect() -> None:
    engine = create_engine("postgresql+asyncpg://gateway@127.0.0.1:1/none")  # no connection is made
    assert event.contains(engine.sync_engine, "handle_error", _broken_protocol_is_a_disconnect)
    dbapi = engine.dialect.dbapi
    assert dbapi is not None
    broken = dbapi.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
    other = dbapi.InternalClientError("something else")
    for error, expected in ((broken, True), (other, False)):
        context = SimpleNamespace(original_exception=error, is_disconnect=False)
        _broken_protocol_is_a_disconnect(context)  # type: ignore[arg-type]
        assert context.is_disconnect is expected
    await engine.dispose()
