"""RDS snapshot path across two accounts: snapshot, share, copy with the target's KMS key, restore,
deferred waits, and the clone's LSN parsed from the restored instance's log, downloaded in portions.

Stand-ins (moto 5.2.5 lacks these; patches of moto's classes in this process, made in
tests/aws/conftest.py `_standins_installed`, so botocore still validates every request):
- Cross-account snapshot copy: moto cannot resolve another account's snapshot ARN; the stand-in
  resolves it in the owner's backend and, as AWS does, refuses unless the snapshot's "restore"
  attribute names the caller, the source key policy lets the caller's account use the key, and
  a KmsKeyId is given for the encrypted copy.
- Real data behind snapshots: the source instance is played by a real PostgreSQL server;
  create_db_snapshot takes a pg_basebackup of it (not started), a copy refers to the same backup,
  and restore_db_instance_from_db_snapshot starts it, so the restored instance's Endpoint/Port in
  moto point at a server that really recovered from a backup.
- Instance logs: describe_db_log_files returns that server's real log split in two files written
  now (plus, in one test, an older file of an earlier life of the instance), honouring
  FileLastWritten; download_db_log_file_portion (not implemented in moto) serves them in portions
  with opaque markers, honouring NumberOfLines and a byte cap per portion as RDS does (1 MB there):
  past the cap the portion ends with "[Your log message was truncated]" and the Marker skips the
  lines that did not fit.
- A misbehaving log API (AdditionalDataPending with a marker that does not move) cannot be made
  with moto; one test answers through botocore's Stubber, which still validates the parameters.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from botocore.exceptions import ClientError
from conftest import (
    REGION,
    SETUP_MARKER,
    SOURCE_ACCOUNT,
    TARGET_ACCOUNT,
    make_world,
    postgres_conn_uri,
    run_operator,
    run_trigger,
)

from connections.aws import aws_client, rds_log_reader
from connections.postgres import connect
from migration.aws.common import AwsMigrationError
from migration.aws.sharing import kms_statement_sid
from migration.aws.snapshot import ensure_snapshot_copy
from migration.capture import capture_clone_lsn
from migration.lsn import LSN, find_redo_done
from operators.aws_cleanup import AwsCleanupOperator
from operators.aws_clone import RdsSetLogicalReplicationOperator
from operators.aws_snapshot import (
    RdsCaptureRestoredInstanceLsnOperator,
    RdsCopyDbSnapshotToTargetOperator,
    RdsCreateDbSnapshotOperator,
    RdsRestoreDbInstanceOperator,
)
from sensors.aws_rds import RdsDbAvailableSensor, RdsDbSnapshotAvailableSensor

pytestmark = [pytest.mark.aws, pytest.mark.usefixtures("record_aws_calls")]

MIGRATION = "billing"
TARGET = "billing-tgt"


@pytest.fixture(scope="module")
def source_pg(pg_servers):
    server = pg_servers.new("rds-src")
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int PRIMARY KEY, amount numeric NOT NULL)")
        conn.execute("INSERT INTO invoices SELECT g, g FROM generate_series(1, 300) g")
    return server


@pytest.fixture
def world(admin, standins, pg_servers, source_pg, monkeypatch):
    world = make_world(admin, db_type="instance")
    standins.pg = pg_servers
    standins.back(world["source_arn"], source_pg)
    monkeypatch.setenv("AIRFLOW_CONN_PG_SOURCE", postgres_conn_uri(source_pg))
    return world


def current_lsn(server) -> LSN:
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        return LSN(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])


def create_snapshot():
    return RdsCreateDbSnapshotOperator(task_id="create_snapshot", source_aws_conn_id="aws_source",
                                       migration_id=MIGRATION, instance_identifier="billing-src")


def copy_snapshot(world):
    return RdsCopyDbSnapshotToTargetOperator(task_id="copy_snapshot", source_aws_conn_id="aws_source",
                                             target_aws_conn_id="aws_target", migration_id=MIGRATION,
                                             target_account_id=TARGET_ACCOUNT, kms_key_id=world["target_key_arn"])


def restore_instance(world):
    return RdsRestoreDbInstanceOperator(task_id="restore_instance", target_aws_conn_id="aws_target",
                                        migration_id=MIGRATION, instance_identifier=TARGET,
                                        instance_class="db.t3.micro", parameter_group=world["target_parameter_group"])


def test_snapshot_copy_restore_and_lsn_from_the_instance_log(world, admin, standins, source_pg, record_aws_calls):
    lsn_before = current_lsn(source_pg)
    snap = run_operator(create_snapshot())
    lsn_after = current_lsn(source_pg)
    with psycopg.connect(source_pg.conninfo(), autocommit=True) as conn:
        conn.execute("INSERT INTO invoices VALUES (301, 1)")  # after the snapshot: must not be restored
    assert snap["snapshot_identifier"] == "billing-source" and snap["created"] is True and snap["encrypted"] is True

    waited = run_operator(RdsDbSnapshotAvailableSensor(task_id="wait_source_snapshot", aws_conn_id="aws_source",
                                                       snapshot_identifier=snap["snapshot_identifier"]))
    assert waited["status"] == "available" and waited["snapshot_arn"] == snap["snapshot_arn"]

    copy = run_operator(copy_snapshot(world))
    assert copy["source_snapshot_arn"] == f"arn:aws:rds:{REGION}:{SOURCE_ACCOUNT}:snapshot:billing-source"
    assert copy["snapshot_arn"] == f"arn:aws:rds:{REGION}:{TARGET_ACCOUNT}:snapshot:billing-target"
    assert copy["kms_statement_sid"] == kms_statement_sid(TARGET_ACCOUNT)
    described = admin("rds", TARGET_ACCOUNT).describe_db_snapshots(DBSnapshotIdentifier="billing-target")
    assert described["DBSnapshots"][0]["KmsKeyId"] == world["target_key_arn"]
    attributes = admin("rds").describe_db_snapshot_attributes(DBSnapshotIdentifier="billing-source")
    assert attributes["DBSnapshotAttributesResult"]["DBSnapshotAttributes"] == [
        {"AttributeName": "restore", "AttributeValues": [TARGET_ACCOUNT]}]
    run_operator(RdsDbSnapshotAvailableSensor(task_id="wait_copy", aws_conn_id="aws_target",
                                              snapshot_identifier=copy["snapshot_identifier"]))

    restored = run_operator(restore_instance(world))
    assert restored["created"] is True
    endpoint = run_operator(RdsDbAvailableSensor(task_id="wait_instance", aws_conn_id="aws_target",
                                                 db_type="instance", db_identifier=TARGET))
    backing = standins.backing[restored["instance_arn"]]
    assert (endpoint["host"], endpoint["port"]) == ("127.0.0.1", backing.port)
    with connect("pg_source", host=endpoint["host"], port=endpoint["port"]) as conn:
        assert conn.execute("SELECT count(*) FROM invoices").fetchone()[0] == 300

    # The instance log, read through AWS in many small portions, is the server's log as written.
    reader = rds_log_reader("aws_target", TARGET, lines_per_portion=2)
    text = reader()
    assert text and backing.log_text().startswith(text)
    portions = [c["params"] for c in record_aws_calls.calls
                if c["node"] == record_aws_calls.node and c["operation"] == "DownloadDBLogFilePortion"]
    assert len({p["LogFileName"] for p in portions}) == 2
    assert len(portions) > 4 and sum(p["Marker"] != "0" for p in portions) >= 3

    lsn = find_redo_done(text)
    assert lsn is not None and lsn_before <= lsn <= lsn_after
    with connect("pg_source", host=endpoint["host"], port=endpoint["port"]) as conn:
        assert capture_clone_lsn(conn, log_reader=reader, slot_name=None) == {"lsn": str(lsn),
                                                                              "method": "redo_done_at"}
    captured = run_operator(RdsCaptureRestoredInstanceLsnOperator(
        task_id="capture_clone_lsn", target_conn_id="pg_source", database="postgres", target_host=endpoint["host"],
        target_port=str(endpoint["port"]), target_aws_conn_id="aws_target", db_instance_identifier=TARGET))
    assert captured == {"lsn": str(lsn), "method": "redo_done_at"}

    # The copied slots gone, logical replication goes off on the target instance (its own group).
    change = run_operator(RdsSetLogicalReplicationOperator(task_id="disable_lr", aws_conn_id="aws_target",
                                                           db_type="instance", db_identifier=TARGET, enabled=False,
                                                           poll_interval=0.05))
    assert (change["parameter_group"], change["previous"], change["value"], change["rebooted"]) == (
        world["target_parameter_group"], "1", "0", TARGET)

    # Every step reruns and finds what the first run made.
    assert run_operator(create_snapshot()) == {**snap, "created": False, "status": "available"}
    assert run_operator(copy_snapshot(world)) == {**copy, "created": False}
    assert run_operator(restore_instance(world))["created"] is False

    cleanup = AwsCleanupOperator(task_id="cleanup_aws", source_aws_conn_id="aws_source", migration_id=MIGRATION,
                                 target_account_id=TARGET_ACCOUNT, source_kms_key_id=world["source_key_arn"],
                                 source_snapshot_identifier=snap["snapshot_identifier"])
    assert run_operator(cleanup) == {"deleted_shares": [], "kms_statement_removed": True, "snapshot_unshared": True}
    attributes = admin("rds").describe_db_snapshot_attributes(DBSnapshotIdentifier="billing-source")
    assert attributes["DBSnapshotAttributesResult"]["DBSnapshotAttributes"][0]["AttributeValues"] == []
    policy = json.loads(admin("kms").get_key_policy(KeyId=world["source_key_id"], PolicyName="default")["Policy"])
    assert kms_statement_sid(TARGET_ACCOUNT) not in [s.get("Sid") for s in policy["Statement"]]
    # The source snapshot and instance stay: cleanup never touches source data.
    assert admin("rds").describe_db_snapshots(DBSnapshotIdentifier="billing-source")["DBSnapshots"]
    assert run_operator(cleanup)["snapshot_unshared"] is False


def test_log_reader_rereads_portions_rds_truncated(world, standins, source_pg, record_aws_calls):
    # Issue 13 item 9: RDS cuts a portion at 1 MB, marks it and moves the Marker past what did not fit.
    run_operator(create_snapshot())
    run_operator(copy_snapshot(world))
    restored = run_operator(restore_instance(world))
    full = standins.backing[restored["instance_arn"]].log_text()
    longest = max(len(line.encode()) for line in full.splitlines(keepends=True))
    standins.max_portion_bytes = longest  # every line fits, a portion of several lines does not
    reader = rds_log_reader("aws_target", TARGET)
    text = reader()
    assert "truncated" not in text
    assert full.startswith(text) and len(text) >= len(full) - longest  # no line skipped
    assert reader.truncated_reads > 0
    portions = [c["params"] for c in record_aws_calls.calls
                if c["node"] == record_aws_calls.node and c["operation"] == "DownloadDBLogFilePortion"]
    assert portions[0]["NumberOfLines"] == 1000  # about 1,000 lines per call, not 10,000
    assert find_redo_done(text) is not None


def test_log_reader_skips_files_written_before_the_instance_was_created(world, standins, source_pg):
    # Issue 13 item 9: a 'redo done at' of an earlier life of the instance must not be taken as the clone point.
    run_operator(create_snapshot())
    run_operator(copy_snapshot(world))
    restored = run_operator(restore_instance(world))
    standins.older_logs[restored["instance_arn"]] = [
        ("error/postgresql.log.2026-01-01-00", "2026-01-01 00:00:00 UTC [1] LOG:  redo done at 0/1000028 "
                                               "system usage: CPU: user: 0.00 s\n", 1767225600000)]
    text = rds_log_reader("aws_target", TARGET)()
    assert "0/1000028" not in text
    lsn = find_redo_done(text)
    assert lsn is not None and str(lsn) != "0/1000028"
    endpoint = run_operator(RdsDbAvailableSensor(task_id="wait_instance", aws_conn_id="aws_target",
                                                 db_type="instance", db_identifier=TARGET))
    captured = run_operator(RdsCaptureRestoredInstanceLsnOperator(
        task_id="capture_clone_lsn", target_conn_id="pg_source", database="postgres", target_host=endpoint["host"],
        target_port=str(endpoint["port"]), target_aws_conn_id="aws_target", db_instance_identifier=TARGET))
    assert captured == {"lsn": str(lsn), "method": "redo_done_at"}
    with pytest.raises(ValueError, match="instance_identifier: expected an RDS identifier"):
        rds_log_reader("aws_target", "billing_tgt")


def test_copy_needs_the_share_and_a_key(world):
    snap = run_operator(create_snapshot())
    target_rds = aws_client("aws_target", "rds")
    with pytest.raises(ClientError, match="DBSnapshotNotFound"):
        ensure_snapshot_copy(target_rds, migration_id=MIGRATION, source_snapshot_arn=snap["snapshot_arn"],
                             snapshot_identifier="billing-target", kms_key_id=world["target_key_arn"])
    with pytest.raises(ValueError, match="source_snapshot_arn: expected an RDS DB snapshot ARN"):
        ensure_snapshot_copy(target_rds, migration_id=MIGRATION, source_snapshot_arn=world["source_arn"],
                             snapshot_identifier="billing-target", kms_key_id=world["target_key_arn"])


def test_snapshot_waits_fail_clearly(world, admin):
    snap = run_operator(create_snapshot())
    from moto.rds.models import rds_backends

    snapshot = rds_backends[SOURCE_ACCOUNT][REGION].database_snapshots[snap["snapshot_identifier"]]
    snapshot.status = "creating"
    sensor = RdsDbSnapshotAvailableSensor(task_id="wait_source_snapshot", aws_conn_id="aws_source",
                                          snapshot_identifier=snap["snapshot_identifier"], poll_interval=0.05,
                                          timeout=0.3)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    event = run_trigger(deferred.value.trigger).payload
    assert event["status"] == "timeout" and event["payload"]["status"] == "creating"
    with pytest.raises(AirflowException, match="not done after"):
        sensor.execute_complete({}, event=event)

    snapshot.status = "failed"
    with pytest.raises(AwsMigrationError, match="DB snapshot billing-source is 'failed': delete it and rerun"):
        sensor.execute({})
    with pytest.raises(AwsMigrationError, match="DB instance nothing-here does not exist"):
        RdsDbAvailableSensor(task_id="wait_instance", aws_conn_id="aws_target", db_type="instance",
                             db_identifier="nothing-here").execute({})


def test_log_reader_stops_when_the_marker_does_not_move():
    import boto3
    from botocore.config import Config
    from botocore.stub import Stubber

    from migration.aws.snapshot import RdsLogReader

    # Stubbed calls never reach AWS, so they carry the marker that keeps them out of the IAM record.
    rds = boto3.client("rds", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x",
                       config=Config(user_agent_extra=SETUP_MARKER))
    with Stubber(rds) as stub:
        stub.add_response("describe_db_log_files", {"DescribeDBLogFiles": [
            {"LogFileName": "error/postgresql.log.2026-01-01-00", "LastWritten": 1, "Size": 10}]},
            {"DBInstanceIdentifier": TARGET, "FileLastWritten": 1})
        for marker in ("0", "7:10"):
            stub.add_response("download_db_log_file_portion",
                              {"LogFileData": "line\n", "Marker": "7:10", "AdditionalDataPending": True},
                              {"DBInstanceIdentifier": TARGET, "LogFileName": "error/postgresql.log.2026-01-01-00",
                               "Marker": marker, "NumberOfLines": 1000})
        with pytest.raises(AwsMigrationError, match="AdditionalDataPending but the marker did not move"):
            RdsLogReader(rds, TARGET, since_epoch_ms=1)()
