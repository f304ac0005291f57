"""the database refuses a state outside the lifecycle, and messages queued before 0007 get an MPC

messages.state and message_events.state take only the lifecycle's states (``gateway.store.lifecycle.State``):
a row written by plain SQL (a manual fix, another tool) with any other word was accepted, and then every
listing that met it failed. A store that already holds such rows is refused before anything changes, naming
them, so the operator corrects them first.

Outbound messages queued before 0007 (mpc NULL, not yet in a final state) were matched by a PullRequest for
any MPC. They get the ebMS default MPC, since nothing in the database tells which MPC each was signed for: the
signed header is kept only in the wire file (a migration reads no payload files), and a partner's pull.mpc is
in its profile, not in the store. Every message pushed was signed for the default MPC, so for them this is
exact. A message queued for a pull partner whose pull.mpc is not the default was signed for that pull.mpc and,
with the default recorded, is no longer offered: it fails at its time to live, naming why, where before it
was offered on whichever MPC the partner pulled (and refused by it if that MPC had changed). Final messages
keep NULL: they are never claimed again. The downgrade keeps the MPCs filled in; 0007's code reads them as
recorded.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.errors import StoreError

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The lifecycle's states as of this revision; a state added later comes with a migration of its own.
STATES = (
    "SUBMITTED",
    "SENDING",
    "RETRY_WAIT",
    "ACKNOWLEDGED",
    "FAILED",
    "RECEIVED",
    "ACCEPTED",
    "REJECTED",
    "DELIVERED",
    "DUPLICATE",
)
FINAL = ("ACKNOWLEDGED", "FAILED", "REJECTED", "DELIVERED", "DUPLICATE")
DEFAULT_MPC = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/defaultMPC"
CHECKS = {"messages": "ck_messages_state", "message_events": "ck_message_events_state"}
KNOWN = "state IN ({})".format(", ".join(f"'{state}'" for state in STATES))


def upgrade() -> None:
    for table in CHECKS:
        _refuse_unknown_states(table)
    messages = sa.table("messages", sa.column("direction"), sa.column("mpc"), sa.column("state"))
    op.execute(
        messages.update()
        .where(messages.c.direction == "out", messages.c.mpc.is_(None), messages.c.state.not_in(FINAL))
        .values(mpc=DEFAULT_MPC)
    )
    for table, name in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            batch.create_check_constraint(name, sa.text(KNOWN))


def downgrade() -> None:
    for table, name in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(name, type_="check")


def _refuse_unknown_states(table: str) -> None:
    rows = sa.table(table, sa.column("id"), sa.column("state"))
    unknown = sa.select(rows.c.state, sa.func.count(), sa.func.min(rows.c.id)).where(rows.c.state.not_in(STATES))
    found = op.get_bind().execute(unknown.group_by(rows.c.state)).all()
    if found:
        listed = "; ".join(f"{state!r} in {n} row(s), the first id {first}" for state, n, first in found)
        raise StoreError(
            f"{table}.state may hold only the lifecycle's states ({', '.join(STATES)}), and the store holds "
            f"{listed}: set each to the state it stands for, then run 'permit-gateway db upgrade' again "
            "(nothing was changed)"
        )
