"""CutoverOperator and UnblockSourceWritesOperator as the DAG runs them, on real servers.

The connections are Airflow connections given as environment variables; names come from
migration.naming, as in the DAG. Nothing is stood in: both servers are real PostgreSQL 15.
"""

from __future__ import annotations

import pytest
from cutover_helpers import (
    AppWriter,
    Replication,
    can_connect,
    connect,
    ids,
    journal_for,
    make_source,
    security_snapshot,
    wait_for,
)

from migration import naming
from migration.drift import SchemaDriftError

pytestmark = pytest.mark.integration

MIGRATION = "opcut"


@pytest.fixture(scope="module")
def source(pg_servers):
    return make_source(pg_servers, "opsrc")


def operators(repl: Replication, run_id: str):
    from migration.cutover_spec import CutoverSpec
    from operators.cutover import CutoverOperator, UnblockSourceWritesOperator

    spec = CutoverSpec(migration_id=MIGRATION, control_schema="migration_control", application_roles=("app_group",),
                       exclude_roles=("monitor",), drain_timeout_seconds=30)
    common = {"spec": spec, "source_conn_id": "cut_source", "target_conn_id": "cut_target",
              "target_host": "127.0.0.1", "target_port": str(repl.target.port), "run_id": run_id}
    cutover = CutoverOperator(task_id="switch_over", databases=["appdb"], schemas=["app"], replication_role="repl",
                              **common)
    unblock = UnblockSourceWritesOperator(task_id="unblock_source_writes", control_database="appdb",
                                          databases=["appdb"], schemas=["app"], **common)
    return cutover, unblock


class Ti:
    """The one thing the operators ask of the task instance: a place to push the timeline on an abort."""

    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


@pytest.mark.safety
def test_drift_fails_the_cutover_before_the_fence_then_the_operators_cut_over_and_keep_the_fence(
        pg_servers, source, monkeypatch):
    repl = Replication(pg_servers, source, "op", slot=naming.slot_name(MIGRATION, "appdb"),
                       subscription=naming.subscription_name(MIGRATION, "appdb"),
                       publication=naming.publication_name(MIGRATION, "appdb"))
    monkeypatch.setenv("AIRFLOW_CONN_CUT_SOURCE", f"postgres://postgres@127.0.0.1:{source.port}/postgres")
    # The target connection's own port is wrong on purpose: the endpoint comes from target_host/port.
    monkeypatch.setenv("AIRFLOW_CONN_CUT_TARGET", "postgres://postgres@127.0.0.1:1/postgres")
    with connect(source, "postgres") as admin:
        before = security_snapshot(admin)
    writer = AppWriter(source.conninfo("appdb", user="app_rw"))
    writer.start()
    wait_for(lambda: len(writer.written) >= 20, 30, "the writer to get going")

    # DDL on the source after the gate: the check ahead of the fence refuses the cutover, so writes are
    # never blocked. (DDL after that check, inside the window: tests/integration/test_cutover.py.)
    with connect(source, "appdb") as src:
        src.execute("CREATE INDEX items_v ON app.items (v)")
    cutover, unblock = operators(repl, "run_drift")
    ti = Ti()
    with pytest.raises(SchemaDriftError, match="items_v"):
        cutover.execute({"ti": ti, "params": {}})
    assert ti.pushed == {}
    with connect(repl.target, "appdb") as tgt:
        state = journal_for(tgt, "run_drift", MIGRATION).read()
        assert state.step("check_schema_drift_ahead[appdb]") == "failed"
        assert state.step("block_writes") is None and not state.fenced
    with connect(source, "postgres") as admin:
        assert security_snapshot(admin) == before
    count = len(writer.written)
    wait_for(lambda: len(writer.written) > count + 10, 30, "the writer to go on writing")
    assert unblock.execute({"params": {}})["restored"] == []

    with connect(source, "appdb") as src:
        src.execute("DROP INDEX app.items_v")
    cutover, unblock = operators(repl, "run_ok")
    timeline = cutover.execute({"ti": Ti(), "params": {}})
    writer.stop()
    assert timeline["status"] == "completed"
    assert {"check_schema_drift_ahead[appdb]", "check_schema_drift[appdb]", "sync_sequences[appdb]",
            "enable_triggers[appdb]", "prove_source_quiet", "open_target", "finish_cdc"} <= set(timeline["durations"])
    order = [step["step"] for step in timeline["steps"]]
    # Native CDC's apply worker fires none of the disabled triggers: they are enabled ahead of the fence.
    assert order.index("enable_triggers[appdb]") < order.index("block_writes")
    with connect(source, "appdb") as src, connect(repl.target, "appdb") as tgt:
        assert ids(src) == ids(tgt)
        assert set(writer.written) <= set(ids(tgt))
        assert tgt.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'audit_item'").fetchone()[0] == "O"
        assert journal_for(tgt, "run_ok", MIGRATION).read().target_open["databases"] == ["appdb"]
    # A rerun of the task changes nothing; the teardown keeps the fence unless forced.
    assert cutover.execute({"ti": Ti(), "params": {}})["note"] == "already cut over by this run"
    assert unblock.execute({"params": {}})["note"] == "the target is open; the source stays fenced"
    assert not can_connect(source, "appdb", "app_rw")
    assert unblock.execute({"params": {"force_restore": True}})["restored"]
    with connect(source, "postgres") as admin:
        assert security_snapshot(admin) == before
    repl.drop_slot()
