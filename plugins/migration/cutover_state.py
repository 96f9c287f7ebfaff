"""Whether a run's cutover completed, read from its cutover journal and nothing else.

The journal (`migration.journal`) records ``target_open`` once the target is open for the run's databases.
Every task of the run that leads up to the cutover checks this before it runs (the DAG sets the check on
them): after a completed cutover it changes nothing and says "already cut over". The check only reads: a
target that is not there yet, or has no journal, has no completed cutover.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import psycopg

from migration.journal import CutoverJournal

ALREADY_CUT_OVER = "already cut over"


@dataclass(frozen=True)
class CompletedCutover:
    """The journal's record of a run's completed cutover."""

    migration_id: str
    run_id: str
    databases: list[str]
    target_open_at: str

    def message(self, task_id: str) -> str:
        """What a task says when it does nothing because of this cutover."""
        return (f"{ALREADY_CUT_OVER}: run {self.run_id} of migration {self.migration_id} opened the target for "
                f"{', '.join(self.databases)} at {self.target_open_at} (cutover journal); {task_id} changes nothing "
                "after a completed cutover. A new migration needs a new run.")


def completed_cutover(conn: psycopg.Connection, *, control_schema: str, migration_id: str,
                      run_id: str) -> CompletedCutover | None:
    """This run's completed cutover, or None. ``conn``: an autocommit connection to the target database that
    holds the run's journal (the run's first database). Creates nothing."""
    journal = CutoverJournal(conn=conn, control_schema=control_schema, migration_id=migration_id, run_id=run_id)
    try:
        state = journal.read()
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return None  # no journal on this target yet: nothing was cut over
    opened = state.target_open
    if opened is None:
        return None
    return CompletedCutover(migration_id=migration_id, run_id=run_id, databases=list(opened.get("databases") or []),
                            target_open_at=state.entries["target_open"]["at"])


ASSET_SCHEME = "x-pg-account-migration"


def moved_asset_uri(migration_id: str, database: str) -> str:
    """The Airflow Asset "``database`` moved by migration ``migration_id``":
    ``x-pg-account-migration://<migration_id>/<database>`` (the database percent-encoded).

    Not ``postgres://``: Airflow's postgres provider accepts only ``postgres://host:port/database/schema/table``,
    one table, and the target's host is known only at run time on AWS (the clone's endpoint) while an
    asset is fixed when the DAG is built. A scheme starting with ``x-`` is left as written by Airflow. The
    event's extra carries the target's host and port.
    """
    return f"{ASSET_SCHEME}://{migration_id}/{quote(database, safe='')}"
