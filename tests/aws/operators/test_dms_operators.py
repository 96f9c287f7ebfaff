"""DMS operators against moto server: exact requests, reruns without duplicates, cleanup, failures.

Stand-ins, and why (AWS only; nothing of the project's code is stood in):
- moto server (tests/aws/conftest.py) is AWS: DMS, STS (the target account 222222222222 is reached by
  assume role through the ``aws_target`` connection) and CloudWatch.
- moto 5.2.5's DMS gaps are closed by the extension in tests/aws/dms_fixtures.py (its docstring has
  the details): tasks move creating -> ready -> starting -> running -> stopping -> stopped and
  deleting -> gone as DMS documents (moto: stuck in 'creating'); task ARNs end in a resource id;
  CdcStartPosition and StartReplicationTaskType are kept (moto drops them); describe_table_statistics
  and modify_endpoint exist (moto: not implemented); describes matching nothing raise
  ResourceNotFoundFault (moto: empty list, which hangs DmsDeleteTaskOperator); endpoints are 'active'
  and unique by identifier; test_connection can be repeated (moto crashes) and can fail with a message;
  every DMS request is recorded so tests assert the exact requests sent.
- Endpoint hosts are never dialled (DMS would; moto does not), so no PostgreSQL is needed here.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging

import pytest
from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from dms_fixtures import dms_moto  # noqa: F401 - fixture

from migration.dms import cutover as dms_cutover
from migration.dms import errors as dms_errors
from migration.dms import monitoring as dms_monitoring
from migration.dms import requests as dms_requests
from migration.dms import resources as dms_resources
from migration.dms.cutover import DmsCdcDatabase, DmsCdcEngine
from migration.lsn import LSNError
from migration.naming import dms_endpoint_id, dms_instance_id, dms_task_id
from operators.dms import (
    DmsCreateCdcTaskOperator,
    DmsDeleteCdcTaskOperator,
    DmsDeleteEndpointsOperator,
    DmsDeleteReplicationInstanceOperator,
    DmsEnsurePostgresEndpointOperator,
    DmsEnsureReplicationInstanceOperator,
    DmsStartCdcTaskOperator,
    DmsTestConnectionOperator,
)
from sensors.dms import DmsTaskRunningSensor

pytestmark = pytest.mark.aws

TARGET = "222222222222"
MIGRATION = "orders_mig"
DATABASE = "app"
PASSWORD = "s3cret-Pa55-never-logged"
START_LSN = "1/87F75B28"


@pytest.fixture
def pg_connections(monkeypatch):
    """Airflow Postgres connections for the source and the clone (hosts are only written into endpoints)."""
    monkeypatch.setenv("AIRFLOW_CONN_SOURCE_PG", json.dumps({
        "conn_type": "postgres", "host": "source.cluster.example", "port": 5432, "login": "dms_user",
        "password": PASSWORD, "schema": "postgres"}))
    monkeypatch.setenv("AIRFLOW_CONN_TARGET_PG", json.dumps({
        "conn_type": "postgres", "host": "configured-but-replaced.example", "port": 5432, "login": "dms_user",
        "password": PASSWORD, "schema": "postgres"}))


def client(service: str = "dms"):
    return AwsBaseHook(aws_conn_id="aws_target", client_type=service).get_conn()


def run_trigger(trigger):
    """Rebuild the trigger from serialize() (as the triggerer does) and run it to its first event."""
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))

    async def first():
        async for event in rebuilt.run():
            return event

    return asyncio.run(first())


def ensure_instance(**kwargs):
    op = DmsEnsureReplicationInstanceOperator(
        task_id="ensure_replication_instance", aws_conn_id="aws_target", migration_id=MIGRATION,
        replication_instance_identifier=dms_instance_id(MIGRATION), instance_class="dms.r5.large",
        allocated_storage_gb=100, subnet_group="dms-subnets", security_group_ids=["sg-0123abcd"], multi_az=True,
        poll_interval=0.05, **kwargs)
    return op.execute({})


def source_endpoint(**kwargs):
    settings = kwargs.pop("postgresql_settings", None) or dms_requests.source_postgres_settings(
        slot_name="mig_orders_mig_app", control_schema="migration_control")
    return DmsEnsurePostgresEndpointOperator(
        task_id="ensure_source_endpoint", aws_conn_id="aws_target", migration_id=MIGRATION,
        endpoint_identifier=dms_endpoint_id(MIGRATION, DATABASE, "source"), endpoint_type="source",
        database=DATABASE, postgres_conn_id="source_pg", postgresql_settings=settings, **kwargs).execute({})


def target_endpoint(host="clone-1.cluster.example", port="5432"):
    return DmsEnsurePostgresEndpointOperator(
        task_id="ensure_target_endpoint", aws_conn_id="aws_target", migration_id=MIGRATION,
        endpoint_identifier=dms_endpoint_id(MIGRATION, DATABASE, "target"), endpoint_type="target",
        database=DATABASE, postgres_conn_id="target_pg", host=host, port=port,
        postgresql_settings=dms_requests.target_postgres_settings(session_replication_role_replica=True)).execute({})


def create_task(instance, source, target, lsn=START_LSN):
    return DmsCreateCdcTaskOperator(
        task_id="create_cdc_task", aws_conn_id="aws_target", replication_task_id=dms_task_id(MIGRATION, DATABASE),
        source_endpoint_arn=source["arn"], target_endpoint_arn=target["arn"],
        replication_instance_arn=instance["arn"],
        table_mappings=dms_requests.table_mappings(["dms_sample", "billing"]), cdc_start_position=lsn,
        replication_task_settings=dms_requests.cdc_task_settings(
            control_schema="migration_control", validation_threads=8, lob_max_size_kb=64)).execute({})


def start_task(arn, lsn=START_LSN):
    return DmsStartCdcTaskOperator(task_id="start_cdc_task", aws_conn_id="aws_target", replication_task_arn=arn,
                                   cdc_start_position=lsn).execute({})


@pytest.fixture
def cdc_task(dms_moto, pg_connections):  # noqa: F811 - fixture
    instance = ensure_instance()
    source = source_endpoint()
    target = target_endpoint()
    arn = create_task(instance, source, target)
    return {"instance": instance, "source": source, "target": target, "arn": arn, "moto": dms_moto}


# -- replication instance ------------------------------------------------------------------------

def test_instance_is_created_once_with_the_configured_shape_and_found_on_rerun(dms_moto):  # noqa: F811
    first = ensure_instance()
    second = ensure_instance()
    assert first == second
    assert first["created"] is True and first["status"] == "available"
    assert first["identifier"] == dms_instance_id(MIGRATION)
    (request,) = dms_moto.calls("CreateReplicationInstance")
    assert request == {
        "ReplicationInstanceIdentifier": dms_instance_id(MIGRATION), "ReplicationInstanceClass": "dms.r5.large",
        "AllocatedStorage": 100, "MultiAZ": True, "PubliclyAccessible": False,
        "ReplicationSubnetGroupIdentifier": "dms-subnets", "VpcSecurityGroupIds": ["sg-0123abcd"],
        "Tags": [{"Key": dms_requests.OWNER_TAG, "Value": MIGRATION}]}
    assert [r["account"] for r in dms_moto.requests if r["action"] == "CreateReplicationInstance"] == [TARGET]
    assert len(dms_moto.backend(TARGET).replication_instances) == 1


def test_configured_instance_is_reused_and_never_deleted(dms_moto):  # noqa: F811
    existing = client().create_replication_instance(
        ReplicationInstanceIdentifier="shared-repl", ReplicationInstanceClass="dms.t3.medium")["ReplicationInstance"]
    result = ensure_instance(replication_instance_arn=existing["ReplicationInstanceArn"])
    assert result == {"arn": existing["ReplicationInstanceArn"], "identifier": "shared-repl", "status": "available",
                      "created": False}
    assert len(dms_moto.calls("CreateReplicationInstance")) == 1  # only the test's own
    gone = DmsDeleteReplicationInstanceOperator(
        task_id="delete_replication_instance", aws_conn_id="aws_target", replication_instance_identifier="shared-repl",
        migration_id=MIGRATION).execute({})
    assert gone["deleted"] is False and "not created by migration orders_mig" in gone["reason"]
    assert dms_moto.calls("DeleteReplicationInstance") == []


def test_instance_found_by_identifier_without_our_tag_is_not_ours(dms_moto):  # noqa: F811
    client().create_replication_instance(ReplicationInstanceIdentifier=dms_instance_id(MIGRATION),
                                         ReplicationInstanceClass="dms.t3.medium")
    assert ensure_instance()["created"] is False


def test_unknown_configured_instance_fails_clearly(dms_moto):  # noqa: F811
    with pytest.raises(dms_errors.DmsError, match="replication_instance_arn .* was not found"):
        ensure_instance(replication_instance_arn=f"arn:aws:dms:us-east-1:{TARGET}:rep:nope")
    with pytest.raises(dms_errors.DmsInputError, match="replication_instance_arn"):
        ensure_instance(replication_instance_arn="nope")
    assert dms_moto.calls("CreateReplicationInstance") == []


def test_instance_wait_defers_and_finishes_in_the_trigger(dms_moto):  # noqa: F811
    dms_moto.instance_describes_until_available(3)
    op = DmsEnsureReplicationInstanceOperator(
        task_id="ensure_replication_instance", aws_conn_id="aws_target", migration_id=MIGRATION,
        replication_instance_identifier=dms_instance_id(MIGRATION), poll_interval=0.05)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    assert deferred.value.trigger.serialize()[1]["check"] == "triggers.checks:poll_dms_instance_available"
    event = run_trigger(deferred.value.trigger)
    assert event.payload["status"] == "success", event.payload
    result = op.execute_complete({}, event=event.payload, **deferred.value.kwargs)
    assert result["status"] == "available" and result["created"] is True


# -- endpoints -----------------------------------------------------------------------------------

def test_source_endpoint_request_is_exact_and_the_password_goes_only_to_dms(
        dms_moto, pg_connections, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG, logger="airflow")
    result = source_endpoint()
    (request,) = dms_moto.calls("CreateEndpoint")
    assert request == {
        "EndpointIdentifier": "orders-mig-app-source", "EndpointType": "source", "EngineName": "postgres",
        "DatabaseName": "app", "SslMode": "require", "ServerName": "source.cluster.example", "Port": 5432,
        "Username": "dms_user", "Password": PASSWORD,
        "PostgreSQLSettings": {"SlotName": "mig_orders_mig_app", "PluginName": "test-decoding",
                               "HeartbeatEnable": True, "HeartbeatFrequency": 5,
                               "HeartbeatSchema": "migration_control", "CaptureDdls": False},
        "Tags": [{"Key": dms_requests.OWNER_TAG, "Value": MIGRATION}]}
    assert set(result) == {"arn", "identifier", "created", "modified"} and result["created"] is True
    assert PASSWORD not in json.dumps(result)
    assert PASSWORD not in caplog.text
    assert client().describe_endpoints()["Endpoints"][0]["Status"] == "active"


def test_endpoint_with_a_secret_sends_no_credentials(dms_moto, pg_connections, record_aws_calls):  # noqa: F811
    # Recorded for the IAM check: this call needs iam:PassRole on the secrets role (test_iam_policies.py).
    settings = dms_requests.source_postgres_settings(
        slot_name="mig_orders_mig_app", control_schema="migration_control", plugin="pglogical", capture_ddls=True,
        secrets_manager_secret_id="arn:aws:secretsmanager:us-east-1:222222222222:secret:src-AbCdEf",
        secrets_manager_access_role_arn="arn:aws:iam::222222222222:role/dms-secrets-access")
    source_endpoint(postgresql_settings=settings)
    (request,) = dms_moto.calls("CreateEndpoint")
    assert not {"ServerName", "Port", "Username", "Password"} & set(request)
    assert request["PostgreSQLSettings"] == {
        "SlotName": "mig_orders_mig_app", "PluginName": "pglogical", "HeartbeatEnable": True,
        "HeartbeatFrequency": 5, "HeartbeatSchema": "migration_control", "CaptureDdls": True,
        "DdlArtifactsSchema": "migration_control",
        "SecretsManagerSecretId": "arn:aws:secretsmanager:us-east-1:222222222222:secret:src-AbCdEf",
        "SecretsManagerAccessRoleArn": "arn:aws:iam::222222222222:role/dms-secrets-access"}


def test_endpoints_are_not_duplicated_and_a_moved_clone_updates_the_target(dms_moto, pg_connections,  # noqa: F811
                                                                            record_aws_calls):
    # Recorded for the IAM check: a rerun after the clone moved needs dms:ModifyEndpoint (test_iam_policies.py).
    first = target_endpoint()
    (request,) = dms_moto.calls("CreateEndpoint")
    assert request["ServerName"] == "clone-1.cluster.example" and request["Port"] == 5432
    assert request["PostgreSQLSettings"] == {"AfterConnectScript": "SET session_replication_role = 'replica'"}
    assert target_endpoint() == {**first, "created": False}
    moved = target_endpoint(host="clone-2.cluster.example", port="6543")
    assert moved["arn"] == first["arn"] and moved["modified"] == ["ServerName", "Port"]
    (modify,) = dms_moto.calls("ModifyEndpoint")
    assert modify["ServerName"] == "clone-2.cluster.example" and modify["Port"] == 6543
    assert len(dms_moto.calls("CreateEndpoint")) == 1
    assert len(dms_moto.backend(TARGET).endpoints) == 1
    source_endpoint()
    source_endpoint()
    assert len(dms_moto.calls("CreateEndpoint")) == 2 and len(dms_moto.backend(TARGET).endpoints) == 2


def test_connection_test_succeeds_repeats_and_surfaces_dms_failure(cdc_task):
    ext = cdc_task["moto"]
    for _ in range(2):
        result = DmsTestConnectionOperator(
            task_id="test_source_connection", aws_conn_id="aws_target",
            replication_instance_arn=cdc_task["instance"]["arn"], endpoint_arn=cdc_task["source"]["arn"]).execute({})
        assert result["status"] == "successful"
    assert len(ext.calls("TestConnection")) == 2
    ext.fail_connections_to(cdc_task["target"]["arn"], "FATAL: password authentication failed for user dms_user")
    op = DmsTestConnectionOperator(task_id="test_target_connection", aws_conn_id="aws_target", poll_interval=0.05,
                                   replication_instance_arn=cdc_task["instance"]["arn"],
                                   endpoint_arn=cdc_task["target"]["arn"])
    with pytest.raises(dms_errors.DmsError,
                       match="to endpoint orders-mig-app-target failed: FATAL: password authentication"):
        op.execute({})


def test_running_connection_test_is_awaited_in_the_trigger_and_its_failure_surfaces(cdc_task):
    ext = cdc_task["moto"]
    ext.connection_describes_per_step = 3
    ext.fail_connections_to(cdc_task["target"]["arn"], "could not connect to server: Connection timed out")
    pair = {"replication_instance_arn": cdc_task["instance"]["arn"], "endpoint_arn": cdc_task["target"]["arn"]}
    client().test_connection(ReplicationInstanceArn=pair["replication_instance_arn"], EndpointArn=pair["endpoint_arn"])
    op = DmsTestConnectionOperator(task_id="test_target_connection", aws_conn_id="aws_target", poll_interval=0.05,
                                   **pair)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    # The test already running was waited for, not started again.
    assert len(ext.calls("TestConnection")) == 1
    event = run_trigger(deferred.value.trigger)
    assert event.payload["status"] == "error"
    with pytest.raises(AirflowException, match="to endpoint orders-mig-app-target failed: could not connect"):
        op.execute_complete({}, event=event.payload, **deferred.value.kwargs)


# -- the CDC task --------------------------------------------------------------------------------

def test_create_task_request_is_exact_and_a_rerun_creates_no_duplicate(cdc_task):
    ext, arn = cdc_task["moto"], cdc_task["arn"]
    (request,) = ext.calls("CreateReplicationTask")
    assert request["ReplicationTaskIdentifier"] == "orders-mig-app-cdc"
    assert request["MigrationType"] == "cdc"
    assert request["CdcStartPosition"] == START_LSN
    assert request["SourceEndpointArn"] == cdc_task["source"]["arn"]
    assert request["TargetEndpointArn"] == cdc_task["target"]["arn"]
    assert request["ReplicationInstanceArn"] == cdc_task["instance"]["arn"]
    assert json.loads(request["TableMappings"]) == dms_requests.table_mappings(["dms_sample", "billing"])
    assert json.loads(request["ReplicationTaskSettings"]) == {
        "TargetMetadata": {"SupportLobs": True, "FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": 64},
        "FullLoadSettings": {"TargetTablePrepMode": "DO_NOTHING"},
        "ControlTablesSettings": {"ControlSchema": "migration_control"},
        "ValidationSettings": {"EnableValidation": True, "ThreadCount": 8},
        "Logging": {"EnableLogging": True}}
    assert ext.task(arn).status == "ready" and ext.task(arn).cdc_start_position == START_LSN
    assert create_task(cdc_task["instance"], cdc_task["source"], cdc_task["target"]) == arn
    assert len(ext.calls("CreateReplicationTask")) == 1
    assert len(ext.backend(TARGET).replication_tasks) == 1
    assert len(ext.backend(TARGET).endpoints) == 2 and len(ext.backend(TARGET).replication_instances) == 1


def test_existing_task_with_other_endpoints_is_refused(cdc_task):
    other = dict(cdc_task["target"], arn=cdc_task["source"]["arn"])
    with pytest.raises(dms_errors.DmsError, match="exists with another TargetEndpointArn"):
        create_task(cdc_task["instance"], cdc_task["source"], other)


def test_bad_start_lsn_creates_and_starts_nothing(dms_moto, pg_connections):  # noqa: F811
    instance, source, target = ensure_instance(), source_endpoint(), target_endpoint()
    with pytest.raises(LSNError, match="cdc_start_position"):
        create_task(instance, source, target, lsn="1/87F75B28; DROP")
    assert dms_moto.calls("CreateReplicationTask") == []
    arn = create_task(instance, source, target)
    with pytest.raises(LSNError, match="cdc_start_position"):
        start_task(arn, lsn="")
    assert dms_moto.calls("StartReplicationTask") == []


def test_start_request_is_exact_the_task_runs_and_a_rerun_does_not_replay(cdc_task):
    ext, arn = cdc_task["moto"], cdc_task["arn"]
    result = start_task(arn)
    assert result == {"arn": arn, "status_before": "ready", "cdc_start_position": START_LSN,
                      "start_type": "start-replication"}
    assert ext.calls("StartReplicationTask") == [
        {"ReplicationTaskArn": arn, "StartReplicationTaskType": "start-replication", "CdcStartPosition": START_LSN}]
    sensor = DmsTaskRunningSensor(task_id="wait_cdc_running", aws_conn_id="aws_target", replication_task_arn=arn)
    assert sensor.poke({}) is True
    assert start_task(arn)["start_type"] is None
    assert len(ext.calls("StartReplicationTask")) == 1
    stopped = dms_cutover.stop_task(client(), arn, poll_interval=0.01)
    assert stopped["stopped"] is True and stopped["was"] == "running"
    resumed = start_task(arn)
    assert resumed["status_before"] == "stopped" and resumed["start_type"] == "resume-processing"
    assert ext.calls("StartReplicationTask")[-1] == {"ReplicationTaskArn": arn,
                                                     "StartReplicationTaskType": "resume-processing"}


def test_a_task_that_failed_on_its_first_start_restarts_at_its_original_position_not_resume(cdc_task):
    # Issue 13 item 10: resume-processing is only for tasks that ran before; this one has no checkpoint.
    ext, arn = cdc_task["moto"], cdc_task["arn"]
    start_task(arn)
    ext.fail_task(arn, "Error in slot mig_orders_mig_app: replication slot is active for PID 4242")  # while starting
    assert "RecoveryCheckpoint" not in dms_resources.describe_task(client(), arn)
    restarted = start_task(arn, lsn="1/90000000")  # a later resolution must not move the start point
    assert restarted["status_before"] == "failed" and restarted["start_type"] == "start-replication"
    assert ext.calls("StartReplicationTask")[-1] == {
        "ReplicationTaskArn": arn, "StartReplicationTaskType": "start-replication", "CdcStartPosition": START_LSN}
    sensor = DmsTaskRunningSensor(task_id="wait_cdc_running", aws_conn_id="aws_target", replication_task_arn=arn)
    assert sensor.poke({}) is True
    # Once it ran, DMS keeps a checkpoint: a later failure resumes there, never from the LSN again.
    assert dms_resources.describe_task(client(), arn)["RecoveryCheckpoint"]
    ext.fail_task(arn, "Network error")
    resumed = start_task(arn)
    assert resumed["start_type"] == "resume-processing"
    assert ext.calls("StartReplicationTask")[-1] == {"ReplicationTaskArn": arn,
                                                     "StartReplicationTaskType": "resume-processing"}


def test_failed_task_fails_the_running_sensor_with_dms_message(cdc_task):
    ext, arn = cdc_task["moto"], cdc_task["arn"]
    start_task(arn)
    ext.fail_task(arn, "Error in slot mig_orders_mig_app: requested WAL segment has already been removed")
    sensor = DmsTaskRunningSensor(task_id="wait_cdc_running", aws_conn_id="aws_target", replication_task_arn=arn)
    with pytest.raises(AirflowException, match="failed.*FATAL_ERROR.*requested WAL segment has already been removed"):
        sensor.poke({})


def test_table_statistics_reads_all_pages(cdc_task):
    ext, arn = cdc_task["moto"], cdc_task["arn"]
    tables = [{"SchemaName": "dms_sample", "TableName": f"t{i:03d}", "Inserts": i, "Updates": 1, "Deletes": 0,
               "Ddls": 0, "ValidationState": "Validated" if i % 10 else "Pending records"} for i in range(620)]
    ext.set_table_statistics(arn, tables)
    read = dms_monitoring.table_statistics(client(), arn)
    assert [t["TableName"] for t in read] == [t["TableName"] for t in tables]
    assert len(ext.calls("DescribeTableStatistics")) == 2


def test_engine_prepare_and_stop_every_task(cdc_task):
    ext, arn = cdc_task["moto"], cdc_task["arn"]
    engine = DmsCdcEngine(links=[DmsCdcDatabase(DATABASE, arn, "mig_orders_mig_app")], dms=client(), poll_interval=0.01)
    with pytest.raises(dms_errors.DmsError, match="database app: replication task .* is ready, not running"):
        engine.prepare(source_conn=object())
    start_task(arn)
    result = engine.stop()
    assert result == {DATABASE: {"arn": arn, "stopped": True, "was": "running", "status": "stopped",
                                 "stop_reason": "STOPPED_BY_USER",
                                 "waited_seconds": result[DATABASE]["waited_seconds"]}}
    assert ext.calls("StopReplicationTask") == [{"ReplicationTaskArn": arn}]
    assert engine.stop()[DATABASE]["was"] == "stopped"
    assert len(ext.calls("StopReplicationTask")) == 1


# -- cleanup -------------------------------------------------------------------------------------

def test_cleanup_deletes_task_endpoints_and_own_instance_and_reruns_cleanly(cdc_task):
    ext = cdc_task["moto"]
    start_task(cdc_task["arn"])
    endpoint_ids = [cdc_task["source"]["identifier"], cdc_task["target"]["identifier"]]

    def cleanup():
        task = DmsDeleteCdcTaskOperator(task_id="delete_cdc_task", aws_conn_id="aws_target",
                                        replication_task_id=dms_task_id(MIGRATION, DATABASE),
                                        stop_poll_interval=0.01).execute({})
        endpoints = DmsDeleteEndpointsOperator(task_id="delete_endpoints", aws_conn_id="aws_target",
                                               endpoint_identifiers=endpoint_ids).execute({})
        instance = DmsDeleteReplicationInstanceOperator(
            task_id="delete_replication_instance", aws_conn_id="aws_target", poll_interval=0.05,
            replication_instance_identifier=dms_instance_id(MIGRATION), migration_id=MIGRATION).execute({})
        return task, endpoints, instance

    task, endpoints, instance = cleanup()
    assert task == {"identifier": "orders-mig-app-cdc", "arn": cdc_task["arn"], "deleted": True}
    assert ext.calls("StopReplicationTask") == [{"ReplicationTaskArn": cdc_task["arn"]}]
    assert endpoints == {"deleted": endpoint_ids, "absent": []}
    assert instance["deleted"] is True and instance["status"] == "deleted"
    backend = ext.backend(TARGET)
    assert not backend.replication_tasks and not backend.endpoints and not backend.replication_instances

    task, endpoints, instance = cleanup()
    assert task["deleted"] is False and endpoints == {"deleted": [], "absent": endpoint_ids}
    assert instance == {"identifier": dms_instance_id(MIGRATION), "deleted": False, "reason": "absent"}
    assert len(ext.calls("DeleteReplicationTask")) == 1 and len(ext.calls("DeleteEndpoint")) == 2
    assert len(ext.calls("DeleteReplicationInstance")) == 1


# -- wiring --------------------------------------------------------------------------------------

def test_operators_wire_into_a_mapped_per_database_group_and_serialize():
    """The DMS path as the DAG factory would build it: one instance, a task group mapped over databases,
    XCom-templated ARNs and the clone's host; the DAG must serialize as the scheduler needs it."""
    from airflow.sdk import DAG, task_group
    from airflow.serialization.serialized_objects import DagSerialization

    from sensors.dms import DmsCdcLatencySensor, DmsValidationSensor

    def pull(task_id: str, key: str) -> str:
        return f"{{{{ ti.xcom_pull(task_ids='{task_id}', map_indexes=ti.map_index)['{key}'] }}}}"

    with DAG(dag_id="dms_wiring", schedule=None) as dag:
        instance = DmsEnsureReplicationInstanceOperator(
            task_id="ensure_replication_instance", aws_conn_id="aws_target", migration_id=MIGRATION,
            replication_instance_identifier=dms_instance_id(MIGRATION))
        instance_arn = "{{ ti.xcom_pull(task_ids='ensure_replication_instance')['arn'] }}"

        @task_group(group_id="start_cdc")
        def start_cdc(database: str, slot_name: str, task_id: str, source_endpoint_id: str, target_endpoint_id: str):
            source = DmsEnsurePostgresEndpointOperator(
                task_id="ensure_source_endpoint", aws_conn_id="aws_target", endpoint_identifier=source_endpoint_id,
                endpoint_type="source", database=database, postgres_conn_id="source_pg", migration_id=MIGRATION,
                postgresql_settings={"SlotName": slot_name, "PluginName": "test-decoding"})
            target = DmsEnsurePostgresEndpointOperator(
                task_id="ensure_target_endpoint", aws_conn_id="aws_target", endpoint_identifier=target_endpoint_id,
                endpoint_type="target", database=database, postgres_conn_id="target_pg", migration_id=MIGRATION,
                host="{{ ti.xcom_pull(task_ids='wait_clone')['host'] }}",
                port="{{ ti.xcom_pull(task_ids='wait_clone')['port'] }}")
            tests = [DmsTestConnectionOperator(task_id=f"test_{side}_connection", aws_conn_id="aws_target",
                                               replication_instance_arn=instance_arn,
                                               endpoint_arn=pull(f"start_cdc.ensure_{side}_endpoint", "arn"))
                     for side in ("source", "target")]
            create = DmsCreateCdcTaskOperator(
                task_id="create_cdc_task", aws_conn_id="aws_target", replication_task_id=task_id,
                source_endpoint_arn=pull("start_cdc.ensure_source_endpoint", "arn"),
                target_endpoint_arn=pull("start_cdc.ensure_target_endpoint", "arn"),
                replication_instance_arn=instance_arn, table_mappings=dms_requests.table_mappings(["dms_sample"]),
                cdc_start_position=pull("start_cdc.resolve_start_lsn", "start_lsn"),
                replication_task_settings=dms_requests.cdc_task_settings(control_schema="migration_control"))
            task_arn = "{{ ti.xcom_pull(task_ids='start_cdc.create_cdc_task', map_indexes=ti.map_index) }}"
            start = DmsStartCdcTaskOperator(task_id="start_cdc_task", aws_conn_id="aws_target",
                                            replication_task_arn=task_arn,
                                            cdc_start_position=pull("start_cdc.resolve_start_lsn", "start_lsn"))
            running = DmsTaskRunningSensor(task_id="wait_cdc_running", aws_conn_id="aws_target",
                                           replication_task_arn=task_arn)
            latency = DmsCdcLatencySensor(task_id="wait_cdc_latency", aws_conn_id="aws_target",
                                          replication_task_arn=task_arn,
                                          replication_instance_id="{{ ti.xcom_pull(task_ids='ensure_replication_"
                                                                  "instance')['identifier'] }}",
                                          source_conn_id="source_pg", database=database, slot_name=slot_name)
            valid = DmsValidationSensor(task_id="wait_validation", aws_conn_id="aws_target",
                                        replication_task_arn=task_arn, target_conn_id="target_pg", database=database,
                                        control_schema="migration_control",
                                        target_host="{{ ti.xcom_pull(task_ids='wait_clone')['host'] }}")
            source >> tests[0]
            target >> tests[1]
            tests >> create >> start >> running >> latency >> valid

        instance >> start_cdc.expand_kwargs([
            {"database": db, "slot_name": f"mig_orders_mig_{db}", "task_id": dms_task_id(MIGRATION, db),
             "source_endpoint_id": dms_endpoint_id(MIGRATION, db, "source"),
             "target_endpoint_id": dms_endpoint_id(MIGRATION, db, "target")} for db in ("app", "billing")])

    serialized = DagSerialization.to_dict(dag)
    assert DagSerialization.from_dict(serialized).task_dict.keys() == dag.task_dict.keys()
    assert "start_cdc.create_cdc_task" in dag.task_dict and dag.task_dict["start_cdc.wait_validation"].deferrable
