"""The local platform end to end: real servers, a live writer, the real DAG run by dag.test()."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from migration import sample
from migration.local_clone import clone_logfile

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
    steps = [s["name"] for s in report["timeline"]]
    # Native CDC: triggers are enabled ahead of the fence (its apply worker fires none of them).
    in_order = ["prepare_fence", "prepare_proof", "check_schema_drift_ahead[app]", "presync_sequences[app]",
                "enable_triggers[app]", "prepare_cdc", "block_writes", "drain_source", "cdc_applied", "stop_cdc",
                "read_sequences[app]", "sync_sequences[app]", "prove_source_quiet", "open_target", "finish_cdc"]
    assert sorted(steps) == sorted([*in_order, "check_schema_drift[app]"]), steps
    assert [name for name in steps if name in in_order] == in_order, steps
    # The drift re-check runs with writes blocked and the source quiet, before the proof.
    assert steps.index("drain_source") < steps.index("check_schema_drift[app]") < steps.index("prove_source_quiet")
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
    """A prepared transaction, which ending sessions does not finish, keeps the source from draining, so the
    drain times out after writes were blocked."""
    migration = local_migration("e2e_abort", cutover={"approval": "auto", "drain_timeout_seconds": 3}, rows=500)
    with migration.source_conn() as src:
        src.execute("ALTER SYSTEM SET max_prepared_transactions = 2")
        roles_before = _role_state(src, sample.APP_ROLE)
    migration.source.stop()
    migration.source.start()
    holding = threading.Event()

    def prepare_transaction_once_cdc_runs():
        # Prepared after the slot exists (slot creation waits for running transactions, as it should).
        wait_for(lambda: migration.clone_dir.exists() and _subscription_enabled(migration), timeout=300)
        with psycopg.connect(migration.source.conninfo("app")) as conn:
            conn.execute("INSERT INTO dms_sample.sport_type VALUES ('curling', 'prepared transaction')")
            conn.execute("PREPARE TRANSACTION 'e2e_abort_held'")
            holding.set()

    blocker = threading.Thread(target=prepare_transaction_once_cdc_runs, daemon=True)
    blocker.start()
    try:
        dagrun = migration.run()
    finally:
        blocker.join(30)
        if holding.is_set():
            with migration.source_conn() as src:
                src.execute("ROLLBACK PREPARED 'e2e_abort_held'")
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



ADMIN_NEEDLE = "Kp4-admin-Sekret-91ab"
REPL_NEEDLE = "Wm2-repl-Sekret-7e3f"


class RunWatcher:
    """Samples while a run goes on: every process's command line (what `ps -eo args` prints, read from
    /proc), the target's pg_subscription.subconninfo, and the users of the source's replication
    connections."""

    def __init__(self, migration):
        self.migration = migration
        self.cmdlines: set[str] = set()
        self.subconninfos: set[str] = set()
        self.replication_users: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RunWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        next_query = 0.0
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    continue
                if text:
                    self.cmdlines.add(text)
            if time.monotonic() >= next_query:
                next_query = time.monotonic() + 0.3
                self._query()
            time.sleep(0.005)

    def _query(self) -> None:
        # Both views are cluster-wide, so the sampler connects to the "postgres" database: a session of the
        # migration's own login on a migrated database during the drain makes the cutover refuse (rightly:
        # the fence cannot keep that login out), which is what the sampler once caused here.
        try:
            with psycopg.connect(self.migration.source.conninfo("postgres"), autocommit=True) as src:
                self.replication_users |= {r[0] for r in src.execute("SELECT usename FROM pg_stat_replication")}
        except psycopg.Error:
            pass
        try:
            with psycopg.connect(f"host=127.0.0.1 port={self.migration.target_port} dbname=postgres user=postgres "
                                 "connect_timeout=2", autocommit=True) as dst:
                self.subconninfos |= {r[0] for r in dst.execute("SELECT subconninfo FROM pg_subscription")}
        except psycopg.Error:
            pass


def _run_records(dag_id: str, run_id: str) -> tuple[list[str], list[str]]:
    """(XCom values, rendered template fields) the metadata database keeps for one run, as JSON text."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        xcoms = session.scalars(select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id))
        xcom_texts = [f"{x.task_id}[{x.map_index}].{x.key}: {json.dumps(x.value, default=str)}" for x in xcoms]
        rendered = session.scalars(select(RenderedTaskInstanceFields).where(
            RenderedTaskInstanceFields.dag_id == dag_id, RenderedTaskInstanceFields.run_id == run_id))
        rendered_texts = [f"{r.task_id}[{r.map_index}]: {json.dumps(r.rendered_fields, default=str)}"
                          for r in rendered]
    return xcom_texts, rendered_texts


@pytest.mark.safety
def test_passwords_stay_out_of_logs_xcom_rendered_fields_reports_catalog_and_ps(local_migration, capfd, caplog):
    """Scenario 13: the source's admin and replication passwords appear nowhere a run leaves text.

    The source requires the replication role's password (scram-sha-256), so the clone and the
    subscription prove they authenticated through password files; both servers log every DDL statement.
    """
    caplog.set_level(logging.DEBUG)
    migration = local_migration("e2e_creds", cutover={"approval": "auto"}, rows=500,
                                admin_password=f"{ADMIN_NEEDLE}:a\\b", replication=("mig_repl", f"{REPL_NEEDLE}'q"))
    with migration.source_conn() as src:
        src.execute("ALTER SYSTEM SET log_statement = 'ddl'")  # the clone inherits it with postgresql.auto.conf
        src.execute("SELECT pg_reload_conf()")
    temp_before = set(Path(tempfile.gettempdir()).glob("pgmig-pass-*"))
    with RunWatcher(migration) as watch:
        dagrun = migration.run()
    states = migration.task_states(dagrun)
    assert dagrun.state == "success", states

    with migration.source_conn() as src, migration.target_conn() as dst:
        result = sample.compare(src, dst, migration.schemas)
        assert (result.lost, result.mismatched, result.extra) == (0, 0, 0), result.details
        assert dst.execute("SELECT count(*) FROM pg_subscription").fetchone()[0] == 0

    # The least-privileged role did the replication work, through password files that are gone now.
    assert watch.replication_users == {"mig_repl"}
    assert watch.subconninfos and all("passfile=" in c for c in watch.subconninfos), watch.subconninfos
    assert not list(migration.clone_dir.glob("*.pgpass")), "the subscription's password file is removed"
    assert set(Path(tempfile.gettempdir()).glob("pgmig-pass-*")) == temp_before
    assert any("pg_basebackup" in line for line in watch.cmdlines), "the sampler saw the copy run"

    captured = capfd.readouterr()
    log_files = [p for p in Path(os.environ["AIRFLOW_HOME"], "logs").rglob("*") if p.is_file()]
    logs = "\n".join([captured.out, captured.err, caplog.text, *(p.read_text(errors="replace") for p in log_files)])
    assert "create_subscription" in logs, "the task logs were captured"
    xcoms, rendered = _run_records(migration.dag_id, dagrun.run_id)
    assert xcoms and rendered
    reports = [p for p in Path(os.environ["MIGRATION_REPORT_DIR"], migration.dag_id).rglob("*") if p.is_file()]
    assert any(p.name == "report.json" for p in reports)
    clone_log = clone_logfile(migration.clone_dir).read_text(errors="replace")
    assert "statement: CREATE" in clone_log, "the target logged DDL statements"
    places = {
        "task logs": logs,
        "XComs": "\n".join(xcoms),
        "rendered fields": "\n".join(rendered),
        "report files": "\n".join(p.read_bytes().decode(errors="replace") for p in reports),
        "ps": "\n".join(watch.cmdlines),
        "pg_subscription": "\n".join(watch.subconninfos),
        "source server log": migration.source.log_text(),
        "target server log": clone_log,
    }
    leaks = {place: needle for place, text in places.items() for needle in (ADMIN_NEEDLE, REPL_NEEDLE)
             if needle in text}
    assert leaks == {}
