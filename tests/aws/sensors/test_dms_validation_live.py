"""DMS validation on a live source (issue 13 item 5): rows DMS could not validate because they changed
while it compared them (suspended, or recorded as failures mid-change) are compared again and allowed
to settle; only a difference that persists while the source row stays unchanged fails.

Stand-ins, and why:
- AWS is moto server with the DMS extension of tests/aws/dms_fixtures.py; describe_table_statistics
  (not in moto) answers what the test sets, as DMS would report it for a table under constant update.
- DMS itself does not run. A stand-in applier plays it: it copies each change of the source's hot row
  to the target a moment later and confirms the source slot up to the last transaction it applied
  (pg_logical_slot_peek_changes + pg_replication_slot_advance), as DMS does.
- <control_schema>.awsdms_validation_failures_v1 is created with DMS's documented columns, and the test
  writes the rows DMS would record.
PostgreSQL is never stood in (two real servers); the project's own code is never stood in.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from dms_fixtures import dms_moto, running_cdc_task  # noqa: F401 - fixture

from migration.dms import errors as dms_errors
from migration.dms.monitoring import validation_state

pytestmark = [pytest.mark.aws, pytest.mark.integration]

DATABASE = "app"
SLOT = "mig_live_app"
CONTROL = "migration_control"
FAILURES_TABLE_DDL = """
CREATE TABLE migration_control.awsdms_validation_failures_v1 (
    "TASK_NAME" varchar(128) NOT NULL, "TABLE_OWNER" varchar(128) NOT NULL, "TABLE_NAME" varchar(128) NOT NULL,
    "FAILURE_TIME" timestamp(3) NOT NULL, "KEY_TYPE" varchar(128) NOT NULL, "KEY" text NOT NULL,
    "FAILURE_TYPE" varchar(128) NOT NULL, "DETAILS" varchar(8000) NOT NULL
)
"""


@pytest.fixture(scope="module")
def servers(pg_servers):
    source, target = pg_servers.new("live-source"), pg_servers.new("live-target")
    for server in (source, target):
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        with psycopg.connect(server.conninfo(DATABASE), autocommit=True) as conn:
            conn.execute("CREATE SCHEMA dms_sample")
            conn.execute("CREATE TABLE dms_sample.orders (id bigint PRIMARY KEY, note text, n bigint)")
            conn.execute(f"CREATE SCHEMA {CONTROL}")
    with psycopg.connect(target.conninfo(DATABASE), autocommit=True) as conn:
        conn.execute(FAILURES_TABLE_DDL)
    return {"source": source, "target": target}


@pytest.fixture
def pg(servers):
    source = psycopg.connect(servers["source"].conninfo(DATABASE), autocommit=True,
                             options="-c synchronous_commit=on")
    target = psycopg.connect(servers["target"].conninfo(DATABASE), autocommit=True)
    source.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                   (SLOT,))
    for conn in (source, target):
        conn.execute("TRUNCATE dms_sample.orders")
        conn.execute("INSERT INTO dms_sample.orders SELECT i, 'row ' || i, 0 FROM generate_series(1, 5) i")
    source.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (SLOT,))
    target.execute(f"TRUNCATE {CONTROL}.awsdms_validation_failures_v1")
    yield {"source": source, "target": target, "servers": servers}
    source.close()
    target.close()


def dms_client():
    return AwsBaseHook(aws_conn_id="aws_target", client_type="dms").get_conn()


class LiveApplier:
    """Updates row 1 on the source without pause; copies each change to the target a moment later and
    confirms the slot past it, as DMS would."""

    def __init__(self, servers):
        self.source = psycopg.connect(servers["source"].conninfo(DATABASE), autocommit=True,
                                      options="-c synchronous_commit=on")
        self.target = psycopg.connect(servers["target"].conninfo(DATABASE), autocommit=True)
        self.stop = threading.Event()
        self.updates = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            n = self.source.execute("UPDATE dms_sample.orders SET n = n + 1 WHERE id = 1 RETURNING n").fetchone()[0]
            self.updates += 1
            time.sleep(0.002)  # DMS applies a little later
            self.target.execute("UPDATE dms_sample.orders SET n = %s WHERE id = 1", (n,))
            self.confirm()

    def confirm(self):
        rows = self.source.execute("SELECT lsn::text FROM pg_logical_slot_peek_changes(%s, NULL, NULL) "
                                   "WHERE data LIKE 'COMMIT%%'", (SLOT,)).fetchall()
        if rows:
            self.source.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (SLOT, rows[-1][0]))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        self.confirm()
        self.source.close()
        self.target.close()


def table_stats(state: str, suspended: int = 0, failed: int = 0) -> list[dict]:
    return [{"SchemaName": "dms_sample", "TableName": "orders", "ValidationState": state, "Inserts": 0,
             "Updates": 500, "Deletes": 0, "Ddls": 0, "FullLoadRows": 0, "ValidationPendingRecords": 0,
             "ValidationFailedRecords": failed, "ValidationSuspendedRecords": suspended}]


def record_failure(conn, task_name: str, key: str, kind: str = "RECORD_DIFF") -> None:
    conn.execute(f"INSERT INTO {CONTROL}.awsdms_validation_failures_v1 VALUES "
                 "(%s, 'dms_sample', 'orders', now(), 'Row', %s, %s, '{}')", (task_name, key, kind))


def check(task, pg, **kwargs):
    return validation_state(dms=dms_client(), target_conn=pg["target"], source_conn=pg["source"],
                            replication_task_arn=task["arn"], control_schema=CONTROL, slot_name=SLOT,
                            cdc_wait_s=0.5, database=DATABASE, **kwargs)


def test_rows_changing_during_validation_settle_and_pass_once_the_source_is_quiet(dms_moto, pg):  # noqa: F811
    task = running_cdc_task(dms_client())
    # What DMS reports for a table whose row 1 changes continuously: suspended, and a row recorded mid-change.
    dms_moto.set_table_statistics(task["arn"], table_stats("Suspended records", suspended=1, failed=1))
    record_failure(pg["target"], task["resource_id"], '{"id": 1}')
    record_failure(pg["target"], task["resource_id"], '{"id": "1"}', "MISSING_TARGET")  # the key DMS may quote
    with LiveApplier(pg["servers"]) as applier:
        deadline = time.monotonic() + 3
        seen = []
        while time.monotonic() < deadline:
            done, payload = check(task, pg)  # never fails while the row is in flux
            seen.append(payload["reason"])
        assert applier.updates > 10 and seen
    done, payload = check(task, pg)
    assert done is True, payload
    assert payload["rechecked"] == {"settled": 2, "persistent": 0, "in_flux": 0, "cdc_behind": 0}
    assert payload["reason"] == ("all 1 table(s) validated; the 2 row(s) DMS recorded while they changed match on "
                                 "source and target now")
    # 500 updates less DMS's 1 failed and 1 suspended
    assert payload["database"] == DATABASE and payload["rows_compared"] == 498


def test_a_difference_that_persists_on_a_quiet_source_fails_naming_the_key(dms_moto, pg):  # noqa: F811
    task = running_cdc_task(dms_client())
    dms_moto.set_table_statistics(task["arn"], table_stats("Mismatched records", failed=1))
    pg["target"].execute("UPDATE dms_sample.orders SET note = 'lost update' WHERE id = 2")
    record_failure(pg["target"], task["resource_id"], '{"id": 2}')
    with pytest.raises(dms_errors.DmsValidationFailed,
                       match=r"1 row\(s\) recorded in migration_control\."
                             r"awsdms_validation_failures_v1 still differ on a quiet "
                             r'source: dms_sample.orders \{"id": 2\} \(differs while '
                             r"the source row stayed unchanged and CDC applied past it"):
        check(task, pg)


def test_a_suspended_table_without_recorded_keys_waits_for_dms(dms_moto, pg):  # noqa: F811
    task = running_cdc_task(dms_client())
    dms_moto.set_table_statistics(task["arn"], table_stats("Suspended records", suspended=3))
    done, payload = check(task, pg)
    assert done is False
    assert payload["reason"] == ("dms_sample.orders is Suspended records (3 suspended) with no settled key "
                                 "recorded: waiting for DMS to revalidate it")
    dms_moto.set_table_statistics(task["arn"], table_stats("Validated"))
    assert check(task, pg)[0] is True
