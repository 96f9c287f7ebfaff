"""The DMS engine's pure parts: task settings, table mappings, endpoint requests, latency rule, input checks.

No stand-ins: these functions take plain values and make no calls.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from migration.dms import errors as dms_errors
from migration.dms import monitoring as dms_monitoring
from migration.dms import requests as dms_requests
from migration.dms.cutover import DmsCdcDatabase, DmsCdcEngine
from migration.lsn import LSNError
from migration.naming import dms_endpoint_id, dms_instance_id, dms_task_id

pytestmark = pytest.mark.aws


def test_cdc_task_settings_carry_control_schema_validation_limited_lobs_and_logging():
    settings = dms_requests.cdc_task_settings(control_schema="dms_control_schema", validation_threads=8,
                                              lob_max_size_kb=64)
    assert settings["ControlTablesSettings"] == {"ControlSchema": "dms_control_schema"}
    assert settings["ValidationSettings"] == {"EnableValidation": True, "ThreadCount": 8}
    assert settings["TargetMetadata"] == {"SupportLobs": True, "FullLobMode": False, "LimitedSizeLobMode": True,
                                          "LobMaxSize": 64}
    assert settings["Logging"] == {"EnableLogging": True}
    assert settings["FullLoadSettings"] == {"TargetTablePrepMode": "DO_NOTHING"}
    assert json.loads(dms_requests.dumps_settings(settings)) == settings


def test_table_mappings_include_every_table_of_each_schema():
    mappings = dms_requests.table_mappings(["dms_sample", "Sales"])
    assert mappings == {"rules": [
        {"rule-type": "selection", "rule-id": "1", "rule-name": "include-schema-1",
         "object-locator": {"schema-name": "dms_sample", "table-name": "%"}, "rule-action": "include"},
        {"rule-type": "selection", "rule-id": "2", "rule-name": "include-schema-2",
         "object-locator": {"schema-name": "Sales", "table-name": "%"}, "rule-action": "include"},
    ]}


@pytest.mark.parametrize(("schemas", "message"), [
    ([], "schemas: expected at least one"),
    (["ok", "a%b"], "wildcard"),
    (["x" * 64], "1 to 63 bytes"),
])
def test_table_mappings_refuse_bad_schemas(schemas, message):
    with pytest.raises(dms_errors.DmsInputError, match=message):
        dms_requests.table_mappings(schemas)


def test_source_settings_name_the_slot_plugin_heartbeat_and_ddl_capture():
    assert dms_requests.source_postgres_settings(slot_name="mig_orders_app", control_schema="ctl") == {
        "SlotName": "mig_orders_app", "PluginName": "test-decoding", "HeartbeatEnable": True,
        "HeartbeatFrequency": 5, "HeartbeatSchema": "ctl", "CaptureDdls": False}
    settings = dms_requests.source_postgres_settings(
        slot_name="mig_orders_app", control_schema="ctl", plugin="pglogical", heartbeat_minutes=2,
        capture_ddls=True, secrets_manager_secret_id="arn:aws:secretsmanager:us-east-1:1:secret:src",
        secrets_manager_access_role_arn="arn:aws:iam::1:role/dms-secrets")
    assert settings["PluginName"] == "pglogical"
    assert settings["CaptureDdls"] is True and settings["DdlArtifactsSchema"] == "ctl"
    assert settings["SecretsManagerSecretId"].endswith(":secret:src")
    assert settings["SecretsManagerAccessRoleArn"].endswith("role/dms-secrets")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"slot_name": "Bad-Slot"}, "slot_name"),
    ({"slot_name": "ok", "plugin": "pgoutput"}, "plugin"),
    ({"slot_name": "ok", "heartbeat_minutes": 0}, "heartbeat_minutes"),
    ({"slot_name": "ok", "secrets_manager_secret_id": "s"}, "secrets_manager_access_role_arn"),
])
def test_source_settings_refuse_bad_input(kwargs, message):
    with pytest.raises(dms_errors.DmsInputError, match=message):
        dms_requests.source_postgres_settings(control_schema="ctl", **kwargs)


def test_target_settings_set_replica_role_only_when_asked():
    assert dms_requests.target_postgres_settings() == {}
    assert dms_requests.target_postgres_settings(session_replication_role_replica=True) == {
        "AfterConnectScript": "SET session_replication_role = 'replica'"}


def test_endpoint_request_has_no_password_and_a_secret_replaces_host_and_user():
    request = dms_requests.endpoint_request(endpoint_identifier="orders-app-source", endpoint_type="source",
                                            database="app", postgresql_settings={"SlotName": "s"},
                                            server_name="db.example", port="5433", username="dms_user",
                                            tags={"k": "v"})
    assert request == {"EndpointIdentifier": "orders-app-source", "EndpointType": "source", "EngineName": "postgres",
                       "DatabaseName": "app", "SslMode": "require", "ServerName": "db.example", "Port": 5433,
                       "Username": "dms_user", "PostgreSQLSettings": {"SlotName": "s"},
                       "Tags": [{"Key": "k", "Value": "v"}]}
    secret = dms_requests.endpoint_request(
        endpoint_identifier="orders-app-source", endpoint_type="source", database="app",
        postgresql_settings={"SecretsManagerSecretId": "x", "SecretsManagerAccessRoleArn": "r"})
    assert not {"ServerName", "Port", "Username", "Password"} & set(secret)
    with pytest.raises(dms_errors.DmsInputError, match="host: a Secrets Manager secret"):
        dms_requests.endpoint_request(
            endpoint_identifier="e", endpoint_type="target", database="app", server_name="h",
            postgresql_settings={"SecretsManagerSecretId": "x", "SecretsManagerAccessRoleArn": "r"})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"endpoint_identifier": "1abc"}, "endpoint_identifier"),
    ({"endpoint_identifier": "a--b"}, "endpoint_identifier"),
    ({"endpoint_identifier": "ab-"}, "endpoint_identifier"),
    ({"endpoint_type": "both"}, "endpoint_type"),
    ({"port": "x"}, "port"),
    ({"port": 70000}, "port"),
    ({"server_name": None}, "host"),
    ({"username": None}, "username"),
    ({"ssl_mode": "prefer"}, "ssl_mode"),
])
def test_endpoint_request_refuses_bad_input(kwargs, message):
    base = {"endpoint_identifier": "ok-id", "endpoint_type": "source", "database": "app", "server_name": "h",
            "port": 5432, "username": "u"}
    with pytest.raises(dms_errors.DmsInputError, match=message):
        dms_requests.endpoint_request(**{**base, **kwargs})


def test_derived_names_are_valid_dms_identifiers():
    for name in (dms_task_id("orders_mig", "App DB"), dms_endpoint_id("orders_mig", "app", "source"),
                 dms_instance_id("orders_mig")):
        assert dms_requests.check_identifier(name, "name") == name


def test_task_resource_id_is_the_arns_last_part():
    assert dms_requests.task_resource_id("arn:aws:dms:us-east-1:222222222222:task:ABCDEF123") == "ABCDEF123"
    with pytest.raises(dms_errors.DmsInputError, match="replication_task_arn"):
        dms_requests.task_resource_id("orders-app-cdc")


def _points(start: datetime, values: list[float]) -> list[tuple[datetime, float]]:
    return [(start + timedelta(minutes=i), v) for i, v in enumerate(values)]


def test_latency_rule_needs_n_recent_datapoints_under_the_threshold():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    source = _points(t0, [30, 2, 1, 1])
    target = _points(t0, [30, 1, 1, 2])
    ready, info = dms_monitoring.evaluate_latency(source, target, max_latency_seconds=3, consecutive_datapoints=3)
    assert ready, info
    assert [p["latency_seconds"] for p in info["datapoints"]] == [3, 2, 3]
    ready, info = dms_monitoring.evaluate_latency(source, target, max_latency_seconds=3, consecutive_datapoints=4)
    assert not ready and "60.0 s is over 3" in info["reason"]
    ready, info = dms_monitoring.evaluate_latency(source[:2], target, max_latency_seconds=3, consecutive_datapoints=3)
    assert not ready and info["reason"] == "2 of 3 latency datapoints so far"


def test_latency_rule_ignores_periods_missing_one_of_the_two_metrics():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ready, info = dms_monitoring.evaluate_latency(_points(t0, [0, 0, 0]), _points(t0, [0])[:1], max_latency_seconds=1,
                                       consecutive_datapoints=2)
    assert not ready and info["reason"] == "1 of 2 latency datapoints so far"


def test_engine_refuses_bad_input_before_any_call():
    arn = "arn:aws:dms:us-east-1:222222222222:task:ABC"
    with pytest.raises(dms_errors.DmsInputError, match="links"):
        DmsCdcEngine(links=[])
    with pytest.raises(dms_errors.DmsInputError, match="replication_task_arn"):
        DmsCdcEngine(links=[DmsCdcDatabase("app", "not-an-arn", "s")])
    with pytest.raises(dms_errors.DmsInputError, match="slot_name"):
        DmsCdcEngine(links=[DmsCdcDatabase("app", arn, "Bad Slot")])
    engine = DmsCdcEngine(links=[DmsCdcDatabase("app", arn, "s")])
    with pytest.raises(LSNError, match="final_lsn"):
        engine.drain("banana", timeout=1, source_conn=object())
    with pytest.raises(dms_errors.DmsInputError, match="source_conn"):
        engine.drain("0/1", timeout=1)
    with pytest.raises(dms_errors.DmsInputError, match="dms: stop needs a DMS client"):
        engine.stop()
