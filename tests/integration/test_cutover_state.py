"""`migration.cutover_state.completed_cutover` on a real PostgreSQL 15 server: it reads the run's cutover
journal and nothing else, creates nothing, and answers None until `target_open` is recorded for this run.
Nothing is stood in."""

from __future__ import annotations

import psycopg
import pytest

from migration.cutover_state import ALREADY_CUT_OVER, completed_cutover
from migration.journal import CutoverJournal

pytestmark = pytest.mark.integration

SCHEMA = "migration_control"


@pytest.fixture(scope="module")
def target(pg_servers):
    server = pg_servers.new("cutover_state")
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        yield conn


def test_a_target_without_a_journal_has_no_completed_cutover_and_gets_none(target):
    schema = "control_never_created"
    assert completed_cutover(target, control_schema=schema, migration_id="m", run_id="manual__1") is None
    created = target.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()[0]
    assert created == 0, "the check must create nothing"


def test_only_target_open_of_this_run_counts(target):
    journal = CutoverJournal(conn=target, control_schema=SCHEMA, migration_id="m", run_id="manual__1").ensure()
    journal.step("block_writes", "done")
    journal.write("commit_point", "passed", {"final_lsn": "0/1"})
    # Past the commit point but not open: a rerun of the cutover must still open the target, so it is not done.
    assert completed_cutover(target, control_schema=SCHEMA, migration_id="m", run_id="manual__1") is None
    journal.write("target_open", "done", {"databases": ["app", "crm"], "opener": "local"})
    done = completed_cutover(target, control_schema=SCHEMA, migration_id="m", run_id="manual__1")
    assert done is not None and done.databases == ["app", "crm"] and done.run_id == "manual__1"
    message = done.message("wait_in_sync.wait_cdc_lag")
    assert message.startswith(f"{ALREADY_CUT_OVER}: run manual__1 of migration m opened the target for app, crm at ")
    assert "wait_in_sync.wait_cdc_lag changes nothing" in message
    # Another run, or another migration, has not cut over.
    assert completed_cutover(target, control_schema=SCHEMA, migration_id="m", run_id="manual__2") is None
    assert completed_cutover(target, control_schema=SCHEMA, migration_id="other", run_id="manual__1") is None
