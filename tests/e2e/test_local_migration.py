"""The local platform end to end: real servers, a live writer, the real DAG run by dag.test()."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psycopg
import pytest

from migration import sample

pytestmark = pytest.mark.e2e


def wait_for(condition, timeout: float, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


def _role_state(conn: psycopg.Connection, role: str) -> tuple:
    return conn.execute("SELECT rolcanlogin, rolconfig FROM pg_roles WHERE rolname = %s", (role,)).fetchone()


def _can_write_as_app(migration) -> bool:
    try:
        with migration.source_conn(user=sample.APP_ROLE) as conn:
            conn.execute("INSERT INTO dms_sample.person (full_name) VALUES ('after')")
        return True
    except psycopg.Error:
        return False


def _report(dag_id: str) -> dict:
    reports = sorted(Path(os.environ["MIGRATION_REPORT_DIR"], dag_id).glob("*/report.json"))
    assert reports, f"no report was written for {dag_id}"
    return json.loads(reports[-1].read_text())


def test_zero_loss_under_load_with_approval_through_the_api(local_migration, hitl):
    migration = local_migration("e2e_main", cutover={"approval": "manual"})
    writer = sample.Writer(migration.source.conninfo("app", user=sample.APP_ROLE)).start()
    responder = hitl("Approve")
    try:
        dagrun = migration.run(responder=responder)
    finally:
        writer.stop()
    states = migration.task_states(dagrun)
    assert dagrun.state == "success", states
    assert states["cutover.switch_over"] == "success"
    assert responder.answered and responder.answered[0]["chosen_options"] == ["Approve"], responder.errors
    assert "Replication lag" in responder.answered[0]["body"] and "Planned steps" in responder.answered[0]["body"]
    assert writer.committed > 50, "the writer must have been busy during the migration"

    with migration.source_conn() as src, migration.target_conn() as dst:
        result = sample.compare(src, dst, migration.schemas)
        assert result.rows > 10_000 and result.tables == 7
        assert (result.lost, result.mismatched, result.extra) == (0, 0, 0), result.details
        # Sequences (serial, identity, standalone) continue where the source stopped.
        assert sample.sequence_positions(src, migration.schemas) == sample.sequence_positions(dst, migration.schemas)
        # The counting trigger did not fire while changes were applied (counts would have doubled) ...
        assert result.clean
        # ... and it is enabled again: a new purchase on the target counts, with fresh keys everywhere.
        before = dst.execute("SELECT purchases FROM dms_sample.event_purchase_count WHERE event_id = 1").fetchone()
        dst.execute("INSERT INTO dms_sample.ticket_purchase_hist (event_id, purchased_by_id, purchase_price)"
                    " VALUES (1, 1, 9.99)")
        dst.execute("INSERT INTO dms_sample.person (full_name) VALUES ('first on target')")
        dst.execute("INSERT INTO dms_sample.sporting_event (sport_type_name, start_date) VALUES ('baseball', now())")
        after = dst.execute("SELECT purchases FROM dms_sample.event_purchase_count WHERE event_id = 1").fetchone()
        assert after[0] == (before[0] if before else 0) + 1
        # The subscription is gone and the source's slot was cleaned up after the cutover.
        assert dst.execute("SELECT count(*) FROM pg_subscription").fetchone()[0] == 0
        assert src.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
    assert not _can_write_as_app(migration), "after the cutover the source stays fenced for the application"

    report = _report(migration.dag_id)
    assert report["outcome"] == "cut over"
    assert 0 < report["write_blocked_seconds"] < 60
    assert [s["name"] for s in report["timeline"]][:2] == ["prepare_fence", "prepare_drain"]
    assert report["validation"][0]["rows"] > 0


def test_reject_at_the_gate_leaves_the_source_untouched(local_migration, hitl):
    migration = local_migration("e2e_reject", cutover={"approval": "manual"}, rows=500)
    with migration.source_conn() as src:
        roles_before = _role_state(src, sample.APP_ROLE)
        acl_before = src.execute("SELECT datacl FROM pg_database WHERE datname = 'app'").fetchone()
    responder = hitl("Reject")
    dagrun = migration.run(responder=responder)
    states = migration.task_states(dagrun)
    assert responder.answered and responder.answered[0]["chosen_options"] == ["Reject"], responder.errors
    assert states["cutover.switch_over"] == "skipped" and states["cutover.check_guardrails"] == "skipped"
    with migration.source_conn() as src:
        assert _role_state(src, sample.APP_ROLE) == roles_before
        assert src.execute("SELECT datacl FROM pg_database WHERE datname = 'app'").fetchone() == acl_before
        # The slot stays so a later run resumes CDC from it.
        assert src.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 1
    assert _can_write_as_app(migration)
    assert _report(migration.dag_id)["outcome"].startswith("no cutover")


def test_failure_after_writes_are_blocked_restores_them(local_migration):
    """A session the fence does not cover keeps a transaction open, so the drain times out."""
    migration = local_migration("e2e_abort", cutover={"approval": "auto", "drain_timeout_seconds": 3}, rows=500)
    with migration.source_conn() as src:
        src.execute("CREATE ROLE batch_admin LOGIN; GRANT INSERT ON dms_sample.sport_type TO batch_admin; "
                    "GRANT USAGE ON SCHEMA dms_sample TO batch_admin")
        roles_before = _role_state(src, sample.APP_ROLE)
    holding = threading.Event()
    release = threading.Event()

    def hold_transaction_once_cdc_runs():
        # Opened after the slot exists (slot creation waits for open transactions, as it should).
        wait_for(lambda: migration.clone_dir.exists() and _subscription_enabled(migration), timeout=300)
        with psycopg.connect(migration.source.conninfo("app", user="batch_admin")) as conn:
            conn.execute("INSERT INTO dms_sample.sport_type VALUES ('curling', 'open transaction')")
            holding.set()
            release.wait(600)
            conn.rollback()

    blocker = threading.Thread(target=hold_transaction_once_cdc_runs, daemon=True)
    blocker.start()
    try:
        dagrun = migration.run()
    finally:
        release.set()
        blocker.join(30)
    states = migration.task_states(dagrun)
    assert holding.is_set()
    assert dagrun.state == "failed"
    assert states["cutover.switch_over"] == "failed"
    with migration.source_conn() as src:
        assert _role_state(src, sample.APP_ROLE) == roles_before
    assert _can_write_as_app(migration), "writes must be restored after an aborted cutover"
    report = _report(migration.dag_id)
    assert report["outcome"].startswith("aborted at drain_source")
    assert report["write_blocked_seconds"] >= 3


def _subscription_enabled(migration) -> bool:
    try:
        with migration.target_conn() as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL").fetchone()
            return row[0] > 0
    except psycopg.Error:
        return False

