"""AWS DMS as the CDC engine: request builders, boto3-level calls, wait checks and the cutover drain.

Functions take boto3 clients (``dms``, ``cloudwatch``) or psycopg connections and plain values.
Nothing here imports Airflow at module level; the ``check_*`` functions (run by
``triggers.poll.PollTrigger`` in the triggerer) open clients and connections from Airflow
connection ids through the two small helpers ``aws_client`` and ``pg_connect``.

Every name (instance, endpoints, task) is derived by ``migration.naming`` from the migration id
and database, so a rerun finds what an earlier try created instead of creating it again.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from botocore.exceptions import ClientError

from migration import sql as sqlfiles
from migration.lsn import LSN
from migration.native_cdc import slot_positions

NAMESPACE = "AWS/DMS"
# Tag carrying the migration id on every DMS resource a migration creates: cleanup deletes only those.
OWNER_TAG = "pg-migration:created-for"
VALIDATION_FAILURES_TABLE = "awsdms_validation_failures_v1"
DRAIN_MARKER_TABLE = "dms_drain_marker"
PLUGIN_NAMES = {"test_decoding": "test-decoding", "pglogical": "pglogical"}

# ValidationState values (describe_table_statistics) that no amount of waiting turns into "Validated".
VALIDATION_FAILED_STATES = frozenset(
    {"Mismatched records", "Suspended records", "No primary key", "Table error", "Error", "Not enabled"}
)
INSTANCE_FAILED_STATES = frozenset(
    {"deleting", "failed", "incompatible-credentials", "incompatible-network",
     "inaccessible-encryption-credentials", "storage-full"}
)


class DmsError(RuntimeError):
    """A DMS resource is in a state the migration cannot continue from; the message says what to do."""


class DmsInputError(ValueError):
    """Bad input (an identifier, LSN, schema or setting); the message names the field."""


class DmsValidationFailed(DmsError):
    """DMS validation found differences; the message summarises tables, keys and failure types."""


class DmsDrainTimeout(DmsError):
    """CDC did not apply past the source's final LSN in time."""


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------

_DMS_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_SLOT_RE = re.compile(r"^[a-z0-9_]{1,63}$")


def check_identifier(value: Any, field: str, *, limit: int = 255) -> str:
    """A DMS identifier: starts with a letter; letters, digits and single hyphens; no trailing hyphen."""
    if not isinstance(value, str) or not _DMS_ID_RE.match(value) or "--" in value or value.endswith("-") \
            or len(value) > limit:
        raise DmsInputError(
            f"{field}: expected a DMS identifier (a letter first, then letters, digits and single hyphens, "
            f"no trailing hyphen, at most {limit} characters), got {value!r}"
        )
    return value


def check_slot_name(value: Any, field: str = "slot_name") -> str:
    if not isinstance(value, str) or not _SLOT_RE.match(value):
        raise DmsInputError(f"{field}: expected a replication slot name (1 to 63 of a-z, 0-9, _), got {value!r}")
    return value


def check_pg_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or "\x00" in value or len(value.encode()) > 63:
        raise DmsInputError(f"{field}: expected a PostgreSQL name of 1 to 63 bytes, got {value!r}")
    return value


def check_arn(value: Any, field: str, resource: str) -> str:
    if not isinstance(value, str) or not re.match(rf"^arn:aws[a-z-]*:dms:[a-z0-9-]+:\d{{12}}:{resource}:\S+$", value):
        raise DmsInputError(f"{field}: expected a DMS {resource} ARN (arn:aws:dms:<region>:<account>:{resource}:...), "
                            f"got {value!r}")
    return value


def _check_positive(value: Any, field: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DmsInputError(f"{field}: expected a whole number of at least {minimum}, got {value!r}")
    return value


def task_resource_id(replication_task_arn: str) -> str:
    """The task's resource id (the ARN's last part): CloudWatch's ReplicationTaskIdentifier and the
    TASK_NAME in awsdms_validation_failures_v1."""
    return check_arn(replication_task_arn, "replication_task_arn", "task").rsplit(":", 1)[1]


# ---------------------------------------------------------------------------------------------
# Builders (pure)
# ---------------------------------------------------------------------------------------------

def table_mappings(schemas: Iterable[str]) -> dict[str, Any]:
    """Selection rules including every table of each schema, in the order given."""
    schemas = list(schemas)
    if not schemas:
        raise DmsInputError("schemas: expected at least one schema to replicate")
    rules = []
    for number, schema in enumerate(schemas, start=1):
        check_pg_name(schema, "schemas")
        if "%" in schema:
            raise DmsInputError(f"schemas: {schema!r} contains '%', which DMS reads as a wildcard")
        rules.append({
            "rule-type": "selection",
            "rule-id": str(number),
            "rule-name": f"include-schema-{number}",
            "object-locator": {"schema-name": schema, "table-name": "%"},
            "rule-action": "include",
        })
    return {"rules": rules}


def cdc_task_settings(*, control_schema: str, validation_threads: int = 5, lob_max_size_kb: int = 32,
                      enable_validation: bool = True) -> dict[str, Any]:
    """ReplicationTaskSettings for the CDC-only task: control schema, validation, limited LOB mode, logging."""
    check_pg_name(control_schema, "control_schema")
    _check_positive(validation_threads, "validation_threads")
    _check_positive(lob_max_size_kb, "lob_max_size_kb")
    return {
        "TargetMetadata": {
            "SupportLobs": True,
            "FullLobMode": False,
            "LimitedSizeLobMode": True,
            "LobMaxSize": lob_max_size_kb,
        },
        # The clone already holds the data: nothing on the target may be dropped or truncated.
        "FullLoadSettings": {"TargetTablePrepMode": "DO_NOTHING"},
        "ControlTablesSettings": {"ControlSchema": control_schema},
        "ValidationSettings": {"EnableValidation": bool(enable_validation), "ThreadCount": validation_threads},
        "Logging": {"EnableLogging": True},
    }


def source_postgres_settings(*, slot_name: str, control_schema: str, plugin: str = "test_decoding",
                             heartbeat_minutes: int = 5, capture_ddls: bool = False,
                             secrets_manager_secret_id: str | None = None,
                             secrets_manager_access_role_arn: str | None = None) -> dict[str, Any]:
    """PostgreSQLSettings of the source endpoint: the prepared slot and plugin, heartbeat, DDL capture."""
    check_slot_name(slot_name)
    check_pg_name(control_schema, "control_schema")
    if plugin not in PLUGIN_NAMES:
        raise DmsInputError(f"plugin: expected one of {sorted(PLUGIN_NAMES)}, got {plugin!r}")
    _check_positive(heartbeat_minutes, "heartbeat_minutes")
    settings: dict[str, Any] = {
        "SlotName": slot_name,
        "PluginName": PLUGIN_NAMES[plugin],
        "HeartbeatEnable": True,
        "HeartbeatFrequency": heartbeat_minutes,
        "HeartbeatSchema": control_schema,
        "CaptureDdls": bool(capture_ddls),
    }
    if capture_ddls:
        settings["DdlArtifactsSchema"] = control_schema
    settings.update(_secret_settings(secrets_manager_secret_id, secrets_manager_access_role_arn))
    return settings


def target_postgres_settings(*, session_replication_role_replica: bool = False,
                             secrets_manager_secret_id: str | None = None,
                             secrets_manager_access_role_arn: str | None = None) -> dict[str, Any]:
    """PostgreSQLSettings of the target endpoint; optionally every DMS session skips user triggers."""
    settings: dict[str, Any] = {}
    if session_replication_role_replica:
        settings["AfterConnectScript"] = "SET session_replication_role = 'replica'"
    settings.update(_secret_settings(secrets_manager_secret_id, secrets_manager_access_role_arn))
    return settings


def _secret_settings(secret_id: str | None, role_arn: str | None) -> dict[str, str]:
    if bool(secret_id) != bool(role_arn):
        raise DmsInputError("secrets_manager_access_role_arn: a Secrets Manager secret needs both "
                            "secrets_manager_secret_id and secrets_manager_access_role_arn")
    return {"SecretsManagerSecretId": secret_id, "SecretsManagerAccessRoleArn": role_arn} if secret_id else {}


def endpoint_request(*, endpoint_identifier: str, endpoint_type: str, database: str,
                     postgresql_settings: dict[str, Any] | None = None, server_name: str | None = None,
                     port: int | str | None = None, username: str | None = None, ssl_mode: str = "require",
                     engine_name: str = "postgres", tags: dict[str, str] | None = None) -> dict[str, Any]:
    """create_endpoint kwargs for a PostgreSQL endpoint, without the password (it is added at call time).

    With a Secrets Manager secret in the settings, the secret carries host, port, user and password,
    so none of them is sent (DMS refuses both at once).
    """
    check_identifier(endpoint_identifier, "endpoint_identifier")
    if endpoint_type not in ("source", "target"):
        raise DmsInputError(f"endpoint_type: expected 'source' or 'target', got {endpoint_type!r}")
    check_pg_name(database, "database")
    if engine_name not in ("postgres", "aurora-postgresql"):
        raise DmsInputError(f"engine_name: expected 'postgres' or 'aurora-postgresql', got {engine_name!r}")
    if ssl_mode not in ("none", "require", "verify-ca", "verify-full"):
        raise DmsInputError(f"ssl_mode: expected none, require, verify-ca or verify-full, got {ssl_mode!r}")
    settings = dict(postgresql_settings or {})
    request: dict[str, Any] = {
        "EndpointIdentifier": endpoint_identifier,
        "EndpointType": endpoint_type,
        "EngineName": engine_name,
        "DatabaseName": database,
        "SslMode": ssl_mode,
    }
    if "SecretsManagerSecretId" in settings:
        if server_name or port:
            raise DmsInputError(
                "host: a Secrets Manager secret carries its own host and port; leave host/port unset, or use "
                "the Airflow connection (no secret) for an endpoint whose host is known only at run time")
    else:
        if not server_name:
            raise DmsInputError("host: the endpoint needs a host (from the Airflow connection or the host argument)")
        try:
            port_number = int(port) if port not in (None, "") else 5432
        except (TypeError, ValueError):
            raise DmsInputError(f"port: expected a TCP port, got {port!r}") from None
        if not 1 <= port_number <= 65535:
            raise DmsInputError(f"port: expected a TCP port from 1 to 65535, got {port_number}")
        if not username:
            raise DmsInputError("username: the endpoint needs a user (the Airflow connection's login)")
        request.update({"ServerName": server_name, "Port": port_number, "Username": username})
    if settings:
        request["PostgreSQLSettings"] = settings
    if tags:
        request["Tags"] = [{"Key": key, "Value": value} for key, value in sorted(tags.items())]
    return request


# ---------------------------------------------------------------------------------------------
# boto3-level calls
# ---------------------------------------------------------------------------------------------

def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _describe_or_none(call: Callable[..., dict], key: str, **kwargs: Any) -> list[dict]:
    # DMS answers a filter that matches nothing with ResourceNotFoundFault, not an empty list.
    try:
        return call(**kwargs).get(key, [])
    except ClientError as exc:
        if _error_code(exc) == "ResourceNotFoundFault":
            return []
        raise


def find_replication_instance(dms: Any, *, identifier: str | None = None, arn: str | None = None) -> dict | None:
    name, value = ("replication-instance-arn", arn) if arn else ("replication-instance-id", identifier)
    found = _describe_or_none(dms.describe_replication_instances, "ReplicationInstances",
                              Filters=[{"Name": name, "Values": [value]}])
    key = "ReplicationInstanceArn" if arn else "ReplicationInstanceIdentifier"
    found = [item for item in found if item.get(key) == value]
    return found[0] if found else None


def _tags(dms: Any, arn: str) -> dict[str, str]:
    tags = dms.list_tags_for_resource(ResourceArn=arn).get("TagList", [])
    return {tag["Key"]: tag.get("Value", "") for tag in tags}


def owned_by(dms: Any, arn: str, migration_id: str) -> bool:
    """True when the resource carries this migration's ownership tag (it was created by this migration)."""
    return _tags(dms, arn).get(OWNER_TAG) == migration_id


def _instance_result(instance: dict, created: bool) -> dict[str, Any]:
    return {
        "arn": instance["ReplicationInstanceArn"],
        "identifier": instance["ReplicationInstanceIdentifier"],
        "status": instance.get("ReplicationInstanceStatus"),
        "created": created,
    }


def ensure_replication_instance(dms: Any, *, identifier: str, migration_id: str,
                                instance_class: str = "dms.t3.medium", allocated_storage_gb: int = 50,
                                subnet_group: str | None = None, security_group_ids: Iterable[str] = (),
                                multi_az: bool = False, engine_version: str | None = None,
                                publicly_accessible: bool = False) -> dict[str, Any]:
    """Find the replication instance by identifier or create it; ``created`` says whether this migration owns it.

    Ownership is the tag written at creation, so a retry after a crash still knows the instance is its own.
    """
    check_identifier(identifier, "replication_instance_identifier", limit=63)
    _check_positive(allocated_storage_gb, "allocated_storage_gb", minimum=5)
    existing = find_replication_instance(dms, identifier=identifier)
    if existing:
        if existing.get("ReplicationInstanceStatus") == "deleting":
            raise DmsError(f"replication instance {identifier} is being deleted; wait for it to go, then rerun")
        return _instance_result(existing, owned_by(dms, existing["ReplicationInstanceArn"], migration_id))
    request: dict[str, Any] = {
        "ReplicationInstanceIdentifier": identifier,
        "ReplicationInstanceClass": instance_class,
        "AllocatedStorage": allocated_storage_gb,
        "MultiAZ": bool(multi_az),
        "PubliclyAccessible": bool(publicly_accessible),
        "Tags": [{"Key": OWNER_TAG, "Value": migration_id}],
    }
    if subnet_group:
        request["ReplicationSubnetGroupIdentifier"] = subnet_group
    groups = list(security_group_ids or ())
    if groups:
        request["VpcSecurityGroupIds"] = groups
    if engine_version:
        request["EngineVersion"] = engine_version
    instance = dms.create_replication_instance(**request)["ReplicationInstance"]
    return _instance_result(instance, True)


def reuse_replication_instance(dms: Any, arn: str) -> dict[str, Any]:
    """A configured instance: it must exist; it is never ``created`` (so never deleted by cleanup)."""
    check_arn(arn, "replication_instance_arn", "rep")
    existing = find_replication_instance(dms, arn=arn)
    if not existing:
        raise DmsError(f"replication_instance_arn {arn} was not found in this account and region; "
                       "check dms.replication_instance_arn or leave it unset to create one")
    return _instance_result(existing, False)


def replication_instance_state(dms: Any, arn: str) -> tuple[bool, dict[str, Any]]:
    instance = find_replication_instance(dms, arn=arn)
    if not instance:
        raise DmsError(f"replication instance {arn} disappeared while waiting for it")
    status = instance.get("ReplicationInstanceStatus")
    if status in INSTANCE_FAILED_STATES:
        raise DmsError(f"replication instance {instance['ReplicationInstanceIdentifier']} is {status}; "
                       "check its network and KMS settings in the DMS console")
    return status == "available", {"arn": arn, "identifier": instance["ReplicationInstanceIdentifier"],
                                   "status": status}


def tasks_on_instance(dms: Any, arn: str) -> list[str]:
    """Identifiers of the replication tasks that run on the instance ``arn``."""
    found = _describe_or_none(dms.describe_replication_tasks, "ReplicationTasks",
                              Filters=[{"Name": "replication-instance-arn", "Values": [arn]}], WithoutSettings=True)
    return sorted(item["ReplicationTaskIdentifier"] for item in found if item.get("ReplicationInstanceArn") == arn)


def delete_replication_instance_if_owned(dms: Any, *, identifier: str, migration_id: str) -> dict[str, Any]:
    """Delete the instance only when this migration created it (ownership tag) and no replication task
    runs on it any more (those of databases that have not cut over yet keep it); absent is fine."""
    instance = find_replication_instance(dms, identifier=identifier)
    if not instance:
        return {"identifier": identifier, "deleted": False, "reason": "absent"}
    arn = instance["ReplicationInstanceArn"]
    if not owned_by(dms, arn, migration_id):
        return {"identifier": identifier, "arn": arn, "deleted": False,
                "reason": f"not created by migration {migration_id} (no {OWNER_TAG} tag); left in place"}
    remaining = tasks_on_instance(dms, arn)
    if remaining:
        return {"identifier": identifier, "arn": arn, "deleted": False,
                "reason": f"kept: replication task(s) {', '.join(remaining)} still use it (databases that have not "
                          "cut over yet); the cleanup after their cutover deletes it"}
    if instance.get("ReplicationInstanceStatus") != "deleting":
        dms.delete_replication_instance(ReplicationInstanceArn=arn)
    return {"identifier": identifier, "arn": arn, "deleted": True, "reason": "created by this migration"}


def cleanup_scope(plan: Iterable[dict[str, Any]] | None, cutover: dict[str, Any] | None) -> dict[str, Any]:
    """The DMS tasks and endpoints one run's cleanup may delete.

    Only this run's databases (``plan``: the run's per-database entries with ``database``,
    ``dms_task_id``, ``dms_source_endpoint`` and ``dms_target_endpoint``), and only once this run's
    cutover completed (``cutover``: its outcome, ``status`` and, when it names them, ``databases``).
    The migration's other databases (narrowed out of this run, or whose run failed and will resume)
    keep their tasks and endpoints. Returns ``{databases, replication_task_ids, endpoint_identifiers,
    reason}``.
    """
    entries = [dict(item) for item in (plan or [])]
    status = (cutover or {}).get("status")
    if status != "completed":
        return {"databases": [], "replication_task_ids": [], "endpoint_identifiers": [],
                "reason": f"this run's cutover did not complete (status {status!r}): every DMS task and endpoint "
                          "stays so a rerun resumes from it"}
    cut_over = (cutover or {}).get("databases")
    scope = [item for item in entries if cut_over is None or item.get("database") in cut_over]
    tasks, endpoints = [], []
    for i, item in enumerate(scope):
        tasks.append(check_identifier(item.get("dms_task_id"), f"plan[{i}].dms_task_id"))
        endpoints += [check_identifier(item.get(f"dms_{side}_endpoint"), f"plan[{i}].dms_{side}_endpoint")
                      for side in ("source", "target")]
    databases = [item["database"] for item in scope]
    return {"databases": databases, "replication_task_ids": tasks, "endpoint_identifiers": endpoints,
            "reason": f"this run cut over {', '.join(databases) or 'no database'}; only their DMS tasks and "
                      "endpoints are deleted"}


def find_endpoint(dms: Any, identifier: str) -> dict | None:
    found = _describe_or_none(dms.describe_endpoints, "Endpoints",
                              Filters=[{"Name": "endpoint-id", "Values": [identifier]}])
    found = [item for item in found if item.get("EndpointIdentifier") == identifier]
    return found[0] if found else None


_DRIFT_FIELDS = ("ServerName", "Port", "DatabaseName", "Username", "SslMode")


def _endpoint_drift(existing: dict, request: dict) -> list[str]:
    drift = [key for key in _DRIFT_FIELDS if key in request and existing.get(key) != request[key]]
    current = existing.get("PostgreSQLSettings") or {}
    drift += [f"PostgreSQLSettings.{key}" for key, value in (request.get("PostgreSQLSettings") or {}).items()
              if current.get(key) != value]
    return drift


def ensure_postgres_endpoint(dms: Any, request: dict[str, Any], *, password: str | None = None) -> dict[str, Any]:
    """Create the endpoint described by ``request`` (see endpoint_request), or bring an existing one in line.

    The password is sent to DMS and nowhere else: it is not part of the returned value.
    """
    identifier = request["EndpointIdentifier"]
    existing = find_endpoint(dms, identifier)
    secret = password if "ServerName" in request else None
    if existing is None:
        endpoint = dms.create_endpoint(**request, **({"Password": secret} if secret else {}))["Endpoint"]
        return {"arn": endpoint["EndpointArn"], "identifier": identifier, "created": True, "modified": []}
    if existing.get("EndpointType", "").lower() != request["EndpointType"] or \
            existing.get("EngineName") != request["EngineName"]:
        raise DmsError(f"endpoint {identifier} exists as a {existing.get('EngineName')} "
                       f"{existing.get('EndpointType')} endpoint; delete it or choose another migration id")
    drift = _endpoint_drift(existing, request)
    if drift:
        changes = {key: request[key] for key in _DRIFT_FIELDS if key in request}
        if "PostgreSQLSettings" in request:
            changes["PostgreSQLSettings"] = request["PostgreSQLSettings"]
        dms.modify_endpoint(EndpointArn=existing["EndpointArn"], **changes,
                            **({"Password": secret} if secret else {}))
    return {"arn": existing["EndpointArn"], "identifier": identifier, "created": False, "modified": drift}


def delete_endpoint_if_exists(dms: Any, identifier: str) -> bool:
    endpoint = find_endpoint(dms, identifier)
    if endpoint is None:
        return False
    try:
        dms.delete_endpoint(EndpointArn=endpoint["EndpointArn"])
    except ClientError as exc:
        if _error_code(exc) == "ResourceNotFoundFault":
            return False
        if _error_code(exc) == "InvalidResourceStateFault":
            raise DmsError(f"endpoint {identifier} is still used by a replication task; delete the task first "
                           f"({exc.response['Error'].get('Message', '')})") from None
        raise
    return True


def connection_state(dms: Any, *, replication_instance_arn: str, endpoint_arn: str) -> dict | None:
    found = _describe_or_none(dms.describe_connections, "Connections", Filters=[
        {"Name": "endpoint-arn", "Values": [endpoint_arn]},
        {"Name": "replication-instance-arn", "Values": [replication_instance_arn]},
    ])
    found = [item for item in found if item.get("EndpointArn") == endpoint_arn
             and item.get("ReplicationInstanceArn") == replication_instance_arn]
    return found[0] if found else None


def start_connection_test(dms: Any, *, replication_instance_arn: str, endpoint_arn: str) -> dict[str, Any]:
    """Start test_connection unless one is already running for the pair; returns the connection."""
    current = connection_state(dms, replication_instance_arn=replication_instance_arn, endpoint_arn=endpoint_arn)
    if current and current.get("Status") == "testing":
        return current
    return dms.test_connection(ReplicationInstanceArn=replication_instance_arn, EndpointArn=endpoint_arn)["Connection"]


def connection_test_state(dms: Any, *, replication_instance_arn: str, endpoint_arn: str) -> tuple[bool, dict]:
    current = connection_state(dms, replication_instance_arn=replication_instance_arn, endpoint_arn=endpoint_arn)
    if current is None:
        return False, {"endpoint_arn": endpoint_arn, "status": "not-started"}
    status = current.get("Status")
    payload = {"endpoint_arn": endpoint_arn, "endpoint_identifier": current.get("EndpointIdentifier"),
               "status": status}
    if status == "failed":
        raise DmsError(f"test connection from replication instance {current.get('ReplicationInstanceIdentifier')} "
                       f"to endpoint {current.get('EndpointIdentifier')} failed: "
                       f"{current.get('LastFailureMessage') or 'no message from DMS'}")
    return status == "successful", payload


def find_task(dms: Any, identifier: str) -> dict | None:
    found = _describe_or_none(dms.describe_replication_tasks, "ReplicationTasks",
                              Filters=[{"Name": "replication-task-id", "Values": [identifier]}],
                              WithoutSettings=True)
    found = [item for item in found if item.get("ReplicationTaskIdentifier") == identifier]
    return found[0] if found else None


def describe_task(dms: Any, arn: str) -> dict | None:
    found = _describe_or_none(dms.describe_replication_tasks, "ReplicationTasks",
                              Filters=[{"Name": "replication-task-arn", "Values": [arn]}], WithoutSettings=True)
    found = [item for item in found if item.get("ReplicationTaskArn") == arn]
    return found[0] if found else None


def _task_failure(task: dict) -> str:
    details = [f"{field}: {task[field]}" for field in ("StopReason", "LastFailureMessage") if task.get(field)]
    return f" ({'; '.join(details)})" if details else ""


def stop_tasks(dms: Any, arns: Iterable[str], *, timeout: float = 300.0, poll_interval: float = 1.0,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
               ) -> dict[str, dict[str, Any]]:
    """Stop every running task (all stop calls first, then one wait) until each is 'stopped'.

    A task that is not running (ready, failed, already stopped) is left as it is.
    """
    started = clock()
    arns = list(arns)
    tasks: dict[str, dict] = {}
    for arn in arns:
        task = describe_task(dms, arn)
        if task is None:
            raise DmsError(f"replication task {arn} was not found")
        tasks[arn] = task
    was = {arn: task["Status"] for arn, task in tasks.items()}
    requested: set[str] = set()
    while True:
        waiting = []
        for arn, task in tasks.items():
            status = task["Status"]
            if status == "failed" and arn in requested:
                raise DmsError(f"replication task {arn} failed while stopping{_task_failure(task)}")
            if status == "running" and arn not in requested:
                dms.stop_replication_task(ReplicationTaskArn=arn)
                requested.add(arn)
                waiting.append(arn)
            elif status in ("running", "stopping", "starting"):
                waiting.append(arn)
        if not waiting:
            return {arn: {"arn": arn, "stopped": tasks[arn]["Status"] == "stopped", "was": was[arn],
                          "status": tasks[arn]["Status"], "stop_reason": tasks[arn].get("StopReason"),
                          "waited_seconds": round(clock() - started, 3)} for arn in arns}
        if clock() - started >= timeout:
            late = ", ".join(f"{arn} ({tasks[arn]['Status']})" for arn in waiting)
            raise DmsError(f"replication task(s) not stopped after {timeout:g} s: {late}")
        sleep(poll_interval)
        for arn in waiting:
            task = describe_task(dms, arn)
            if task is None:
                raise DmsError(f"replication task {arn} disappeared while stopping")
            tasks[arn] = task


def stop_task(dms: Any, arn: str, *, timeout: float = 300.0, poll_interval: float = 1.0,
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
              ) -> dict[str, Any]:
    """Stop one task and wait for 'stopped' (see stop_tasks)."""
    return stop_tasks(dms, [arn], timeout=timeout, poll_interval=poll_interval, clock=clock, sleep=sleep)[arn]


def table_statistics(dms: Any, arn: str) -> list[dict]:
    """Every table's statistics for the task (all pages)."""
    tables: list[dict] = []
    marker: str | None = None
    while True:
        kwargs: dict[str, Any] = {"ReplicationTaskArn": arn, "MaxRecords": 500}
        if marker:
            kwargs["Marker"] = marker
        page = dms.describe_table_statistics(**kwargs)
        tables.extend(page.get("TableStatistics", []))
        marker = page.get("Marker")
        if not marker:
            return tables


def summarise_table_statistics(tables: list[dict], limit: int = 50) -> dict[str, Any]:
    """A small, JSON-able view of table statistics for XCom and the report."""
    states: dict[str, int] = {}
    for table in tables:
        state = table.get("ValidationState") or "unknown"
        states[state] = states.get(state, 0) + 1
    keep = ("Inserts", "Updates", "Deletes", "Ddls", "ValidationState", "ValidationFailedRecords",
            "ValidationPendingRecords", "ValidationSuspendedRecords", "TableState")
    return {
        "tables": len(tables),
        "validation_states": states,
        "changes": {key: sum(int(t.get(key) or 0) for t in tables) for key in ("Inserts", "Updates", "Deletes", "Ddls")},
        "per_table": [{"table": f"{t.get('SchemaName')}.{t.get('TableName')}",
                       **{key: t.get(key) for key in keep if t.get(key) is not None}} for t in tables[:limit]],
        "truncated": len(tables) > limit,
    }


# ---------------------------------------------------------------------------------------------
# CloudWatch
# ---------------------------------------------------------------------------------------------

LATENCY_METRICS = {"source": "CDCLatencySource", "target": "CDCLatencyTarget", "incoming": "CDCIncomingChanges"}


def cdc_metrics(cloudwatch: Any, *, replication_instance_id: str, task_resource_id: str, now: datetime,
                lookback_seconds: int = 900, period_seconds: int = 60) -> dict[str, list[tuple[datetime, float]]]:
    """CDCLatencySource, CDCLatencyTarget (Maximum) and CDCIncomingChanges per period, newest first."""
    end = datetime.fromtimestamp((int(now.timestamp()) // period_seconds + 1) * period_seconds, UTC)
    start = end - timedelta(seconds=lookback_seconds)
    dimensions = [{"Name": "ReplicationInstanceIdentifier", "Value": replication_instance_id},
                  {"Name": "ReplicationTaskIdentifier", "Value": task_resource_id}]
    queries = [
        {"Id": key, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": NAMESPACE, "MetricName": name, "Dimensions": dimensions},
            "Period": period_seconds, "Stat": "Maximum"}}
        for key, name in LATENCY_METRICS.items()
    ]
    series: dict[str, dict[datetime, float]] = {key: {} for key in LATENCY_METRICS}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end,
                                  "ScanBy": "TimestampDescending"}
        if token:
            kwargs["NextToken"] = token
        page = cloudwatch.get_metric_data(**kwargs)
        for result in page.get("MetricDataResults", []):
            series[result["Id"]].update(zip(result.get("Timestamps", []), result.get("Values", []), strict=False))
        token = page.get("NextToken")
        if not token:
            break
    return {key: sorted(points.items(), key=lambda item: item[0], reverse=True) for key, points in series.items()}


def evaluate_latency(source: list[tuple[datetime, float]], target: list[tuple[datetime, float]], *,
                     max_latency_seconds: float, consecutive_datapoints: int) -> tuple[bool, dict[str, Any]]:
    """Ready when the newest ``consecutive_datapoints`` periods each have source + target latency <= max."""
    target_at = dict(target)
    totals = [(ts, value + target_at[ts]) for ts, value in sorted(source, reverse=True) if ts in target_at]
    recent = totals[:consecutive_datapoints]
    info = {
        "datapoints": [{"at": ts.isoformat(), "latency_seconds": round(total, 3)} for ts, total in recent],
        "max_latency_seconds": max_latency_seconds,
        "consecutive_datapoints": consecutive_datapoints,
    }
    if len(recent) < consecutive_datapoints:
        info["reason"] = f"{len(recent)} of {consecutive_datapoints} latency datapoints so far"
        return False, info
    over = [total for _, total in recent if total > max_latency_seconds]
    if over:
        info["reason"] = f"latency {max(over):.1f} s is over {max_latency_seconds} s"
        return False, info
    info["reason"] = f"latency under {max_latency_seconds} s for {consecutive_datapoints} datapoints"
    return True, info


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------

def slot_position(conn: Any, slot_name: str) -> dict[str, Any] | None:
    """The slot's active flag, confirmed_flush_lsn, the server's current_lsn and lag_bytes, or None if absent."""
    check_slot_name(slot_name)
    return slot_positions(conn, [slot_name]).get(slot_name)


def _require_slot(position: dict[str, Any] | None, slot_name: str) -> dict[str, Any]:
    if position is None:
        raise DmsError(f"replication slot {slot_name} does not exist on the source; DMS cannot continue without "
                       "it (recreate the slot and restart the migration from the initial load)")
    if position["confirmed_flush_lsn"] is None:
        raise DmsError(f"replication slot {slot_name} is not a logical slot")
    return position


def validation_failures(conn: Any, *, control_schema: str, task_name: str, limit: int = 20) -> dict[str, Any]:
    """Rows of <control_schema>.awsdms_validation_failures_v1 for one task: totals by table and type, and
    the first ``limit`` keys. DETAILS (row values) is left in the table, out of logs and XCom."""
    check_pg_name(control_schema, "control_schema")
    with conn.cursor() as cur:
        cur.execute(sqlfiles.load("dms_validation_failures_exists"), {"schema": control_schema})
        if not cur.fetchone()[0]:
            return {"table_present": False, "total": 0, "by_table": [], "sample": []}
        cur.execute(sqlfiles.compose("dms_validation_failures_summary", schema=control_schema),
                    {"task_name": task_name})
        by_table = [{"table": f"{owner}.{table}", "failure_type": kind, "failures": int(count)}
                    for owner, table, kind, count in cur.fetchall()]
        cur.execute(sqlfiles.compose("dms_validation_failures_sample", schema=control_schema),
                    {"task_name": task_name, "limit": limit})
        sample = [{"table": f"{owner}.{table}", "key_type": key_type, "key": _cap(key, 200),
                   "failure_type": kind, "failure_time": at.isoformat() if at else None}
                  for owner, table, key_type, key, kind, at in cur.fetchall()]
    return {"table_present": True, "total": sum(item["failures"] for item in by_table),
            "by_table": by_table, "sample": sample}


def _cap(text: Any, limit: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def write_drain_marker(conn: Any, schema: str, final_lsn: LSN) -> LSN:
    """Commit one small change after the final LSN in a table DMS does not replicate.

    DMS acknowledges (confirms in the slot) only changes it has applied; on a source whose writes are
    blocked there may be nothing after the final LSN for it to acknowledge, and this gives it one.
    """
    check_pg_name(schema, "marker_schema")
    with conn.cursor() as cur:
        cur.execute(sqlfiles.compose("dms_drain_marker_table", schema=schema, table=DRAIN_MARKER_TABLE))
        cur.execute(sqlfiles.compose("dms_drain_marker_write", schema=schema, table=DRAIN_MARKER_TABLE),
                    {"final_lsn": str(final_lsn)})
        return LSN(cur.fetchone()[0])


# ---------------------------------------------------------------------------------------------
# Checks run by PollTrigger (kwargs are JSON; clients and connections are opened here)
# ---------------------------------------------------------------------------------------------

def aws_client(aws_conn_id: str | None, service: str, region_name: str | None = None) -> Any:
    """boto3 client for an Airflow AWS connection (assume-role and endpoint_url included)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook  # here: the module stays Airflow-free

    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type=service, region_name=region_name).get_conn()


def pg_connect(conn_id: str, database: str, host: str | None = None, port: int | str | None = None) -> Any:
    from hooks.postgres import connect  # here: the module stays Airflow-free

    return connect(conn_id, dbname=database, host=host or None, port=int(port) if port not in (None, "") else None)


def check_replication_instance_available(*, aws_conn_id: str | None, replication_instance_arn: str,
                                         region_name: str | None = None) -> tuple[bool, dict[str, Any]]:
    return replication_instance_state(aws_client(aws_conn_id, "dms", region_name), replication_instance_arn)


def check_replication_instance_deleted(*, aws_conn_id: str | None, replication_instance_identifier: str,
                                       region_name: str | None = None) -> tuple[bool, dict[str, Any]]:
    instance = find_replication_instance(aws_client(aws_conn_id, "dms", region_name),
                                         identifier=replication_instance_identifier)
    status = instance.get("ReplicationInstanceStatus") if instance else "deleted"
    return instance is None, {"identifier": replication_instance_identifier, "status": status}


def check_connection_tested(*, aws_conn_id: str | None, replication_instance_arn: str, endpoint_arn: str,
                            region_name: str | None = None) -> tuple[bool, dict[str, Any]]:
    return connection_test_state(aws_client(aws_conn_id, "dms", region_name),
                                 replication_instance_arn=replication_instance_arn, endpoint_arn=endpoint_arn)


def cdc_latency_state(*, dms: Any, cloudwatch: Any, source_conn: Any, replication_task_arn: str,
                      replication_instance_id: str, slot_name: str, max_latency_seconds: float,
                      consecutive_datapoints: int, max_slot_lag_bytes: int, now: datetime,
                      period_seconds: int = 60, lookback_seconds: int = 900) -> tuple[bool, dict[str, Any]]:
    """CDC is caught up when the latency metrics say so AND the source slot agrees.

    The slot check keeps a quiet metric (no datapoints, or a stalled task reporting zeros) from
    passing: the slot's confirmed_flush_lsn must be within ``max_slot_lag_bytes`` of the WAL position.
    """
    task = describe_task(dms, replication_task_arn)
    if task is None:
        raise DmsError(f"replication task {replication_task_arn} was not found")
    status = task["Status"]
    if status in ("failed", "stopped", "stopping", "deleting"):
        raise DmsError(f"replication task {task['ReplicationTaskIdentifier']} is {status}{_task_failure(task)}")
    metrics = cdc_metrics(cloudwatch, replication_instance_id=replication_instance_id,
                          task_resource_id=task_resource_id(replication_task_arn), now=now,
                          lookback_seconds=lookback_seconds, period_seconds=period_seconds)
    metrics_ready, info = evaluate_latency(metrics["source"], metrics["target"],
                                           max_latency_seconds=max_latency_seconds,
                                           consecutive_datapoints=consecutive_datapoints)
    slot = _require_slot(slot_position(source_conn, slot_name), slot_name)
    slot_ready = slot["lag_bytes"] <= max_slot_lag_bytes
    incoming = metrics["incoming"][0][1] if metrics["incoming"] else None
    payload = {
        "task_status": status,
        **info,
        "incoming_changes": incoming,
        "slot": {"slot_name": slot_name, "confirmed_flush_lsn": slot["confirmed_flush_lsn"],
                 "current_lsn": slot["current_lsn"], "lag_bytes": int(slot["lag_bytes"]), "active": slot["active"],
                 "max_lag_bytes": max_slot_lag_bytes},
    }
    if status != "running":
        payload["reason"] = f"task is {status}, not running yet"
        return False, payload
    if metrics_ready and not slot_ready:
        payload["reason"] = (f"metrics are quiet but slot {slot_name} is {int(slot['lag_bytes'])} bytes behind the "
                             f"WAL (max {max_slot_lag_bytes})")
    return metrics_ready and slot_ready, payload


def check_cdc_latency(*, aws_conn_id: str | None, replication_task_arn: str, replication_instance_id: str,
                      source_conn_id: str, database: str, slot_name: str, max_latency_seconds: float = 5,
                      consecutive_datapoints: int = 3, max_slot_lag_bytes: int = 16 * 1024 * 1024,
                      period_seconds: int = 60, lookback_seconds: int = 900, region_name: str | None = None
                      ) -> tuple[bool, dict[str, Any]]:
    with pg_connect(source_conn_id, database) as source_conn:
        return cdc_latency_state(
            dms=aws_client(aws_conn_id, "dms", region_name),
            cloudwatch=aws_client(aws_conn_id, "cloudwatch", region_name),
            source_conn=source_conn, replication_task_arn=replication_task_arn,
            replication_instance_id=replication_instance_id, slot_name=slot_name,
            max_latency_seconds=max_latency_seconds, consecutive_datapoints=consecutive_datapoints,
            max_slot_lag_bytes=max_slot_lag_bytes, now=datetime.now(UTC),
            period_seconds=period_seconds, lookback_seconds=lookback_seconds,
        )


def validation_state(*, dms: Any, target_conn: Any, replication_task_arn: str, control_schema: str,
                     expected_tables: Iterable[str] | None = None, max_reported: int = 20
                     ) -> tuple[bool, dict[str, Any]]:
    """Validation is clean when every table is 'Validated' and the failures table has no row for the task.

    Raises DmsValidationFailed, with table, key and failure type (capped), when it cannot become clean.
    """
    tables = table_statistics(dms, replication_task_arn)
    task_name = task_resource_id(replication_task_arn)
    failures = validation_failures(target_conn, control_schema=control_schema, task_name=task_name,
                                   limit=max_reported)
    by_state: dict[str, list[str]] = {}
    failed_tables = []
    for table in tables:
        name = f"{table.get('SchemaName')}.{table.get('TableName')}"
        state = table.get("ValidationState") or "unknown"
        by_state.setdefault(state, []).append(name)
        if state in VALIDATION_FAILED_STATES:
            failed_tables.append(f"{name} ({state}, {int(table.get('ValidationFailedRecords') or 0)} failed, "
                                 f"{int(table.get('ValidationSuspendedRecords') or 0)} suspended)")
    payload: dict[str, Any] = {
        "task_name": task_name,
        "tables": len(tables),
        "states": {state: len(names) for state, names in sorted(by_state.items())},
        "failures": failures["total"],
    }
    if failed_tables or failures["total"]:
        raise DmsValidationFailed(_validation_message(task_name, control_schema, failed_tables, failures,
                                                      max_reported))
    missing = sorted(set(expected_tables or ()) - {f"{t.get('SchemaName')}.{t.get('TableName')}" for t in tables})
    pending = sorted(name for state, names in by_state.items() if state != "Validated" for name in names)
    if not tables:
        payload["reason"] = "DMS reports no table statistics yet"
    elif missing:
        payload["reason"] = f"{len(missing)} table(s) not reported yet: {', '.join(missing[:max_reported])}"
    elif pending:
        payload["reason"] = f"{len(pending)} table(s) not validated yet: {', '.join(pending[:max_reported])}"
    else:
        payload["reason"] = f"all {len(tables)} table(s) validated, no failure rows"
        return True, payload
    return False, payload


def _validation_message(task_name: str, control_schema: str, failed_tables: list[str], failures: dict,
                        cap: int) -> str:
    parts = [f"DMS validation failed for task {task_name}."]
    if failed_tables:
        shown = "; ".join(failed_tables[:cap]) + (f"; and {len(failed_tables) - cap} more" if len(failed_tables) > cap else "")
        parts.append(f"{len(failed_tables)} table(s) cannot validate: {shown}.")
    if failures["total"]:
        groups = ", ".join(f"{g['table']} {g['failure_type']} x{g['failures']}" for g in failures["by_table"][:cap])
        if len(failures["by_table"]) > cap:
            groups += f", and {len(failures['by_table']) - cap} more table/type group(s)"
        keys = "; ".join(f"{s['table']} [{s['failure_type']}] {s['key_type']} {s['key']}" for s in failures["sample"])
        parts.append(f"{failures['total']} row(s) in {control_schema}.{VALIDATION_FAILURES_TABLE}: {groups}.")
        parts.append(f"First keys: {keys}.")
    parts.append("Compare those rows on source and target, fix them (or reload the tables), revalidate, and "
                 f"clear the task's rows from {control_schema}.{VALIDATION_FAILURES_TABLE} before rerunning.")
    return " ".join(parts)


def check_validation(*, aws_conn_id: str | None, replication_task_arn: str, target_conn_id: str, database: str,
                     control_schema: str, target_host: str | None = None, target_port: int | str | None = None,
                     expected_tables: list[str] | None = None, max_reported: int = 20,
                     region_name: str | None = None) -> tuple[bool, dict[str, Any]]:
    with pg_connect(target_conn_id, database, target_host, target_port) as target_conn:
        return validation_state(dms=aws_client(aws_conn_id, "dms", region_name), target_conn=target_conn,
                                replication_task_arn=replication_task_arn, control_schema=control_schema,
                                expected_tables=expected_tables, max_reported=max_reported)


# ---------------------------------------------------------------------------------------------
# Cutover: the critical section's CDC engine
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DmsLink:
    """One database's CDC: its task, its slot on the source and, for the drain marker, a connection to it."""

    database: str
    replication_task_arn: str
    slot_name: str
    source_conn: Any = None


class DmsCdcEngine:
    """The DMS side of the cutover's write-blocked window (cutover.CdcEngine): prove every task applied
    past the final LSN, then stop them.

    The slot is the proof: DMS confirms a position in its slot only after applying the changes before
    it (it restarts from the slot after a failure, so confirming earlier would lose data). Once every
    slot's confirmed_flush_lsn >= final LSN nothing before it is in flight, which CDCIncomingChanges = 0
    would say only a minute or more later; the metric is read only for the record, while a slot lags.

    ``source_conn`` is any connection to the source server (slots are visible from every database);
    a link's own ``source_conn`` (to its database) lets the drain write its marker there.
    """

    name = "dms"

    def __init__(self, *, links: Iterable[DmsLink], source_conn: Any = None, dms: Any = None, cloudwatch: Any = None,
                 replication_instance_id: str | None = None, marker_schema: str | None = None,
                 poll_interval: float = 0.2, metric_interval: float = 15.0, stop_timeout: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.links = list(links)
        if not self.links:
            raise DmsInputError("links: the engine needs at least one database's task and slot")
        for link in self.links:
            check_arn(link.replication_task_arn, "replication_task_arn", "task")
            check_slot_name(link.slot_name)
        if marker_schema is not None:
            check_pg_name(marker_schema, "marker_schema")
        self.source_conn = source_conn
        self.dms = dms
        self.cloudwatch = cloudwatch
        self.replication_instance_id = replication_instance_id
        self.marker_schema = marker_schema
        self.poll_interval = poll_interval
        self.metric_interval = metric_interval
        self.stop_timeout = stop_timeout
        self.clock = clock
        self.sleep = sleep
        self._owned: list[Any] = []

    def _status_conn(self, source_conn: Any = None) -> Any:
        conn = source_conn or self.source_conn or next((link.source_conn for link in self.links if link.source_conn),
                                                       None)
        if conn is None:
            raise DmsInputError("source_conn: the engine needs a connection to the source server")
        return conn

    def _marker_conn(self, link: DmsLink, status_conn: Any) -> Any:
        if link.source_conn is not None:
            return link.source_conn
        info = getattr(status_conn, "info", None)
        return status_conn if info is not None and info.dbname == link.database else None

    def prepare(self, *, source_conn: Any = None, dms: Any = None) -> dict[str, Any]:
        """Before writes are blocked: every task is running and every slot exists."""
        dms = dms or self.dms
        if dms is None:
            raise DmsInputError("dms: prepare needs a DMS client")
        conn = self._status_conn(source_conn)
        result = {}
        for link in self.links:
            task = describe_task(dms, link.replication_task_arn)
            if task is None or task["Status"] != "running":
                status = task["Status"] if task else "missing"
                raise DmsError(f"database {link.database}: replication task {link.replication_task_arn} is "
                               f"{status}, not running{_task_failure(task or {})}; CDC is not carrying changes")
            slot = _require_slot(slot_position(conn, link.slot_name), link.slot_name)
            result[link.database] = {"task_status": task["Status"], "slot": link.slot_name,
                                     "confirmed_flush_lsn": slot["confirmed_flush_lsn"]}
        return result

    def drain(self, final_lsn: str | int | LSN, timeout: float, *, source_conn: Any = None,
              cloudwatch: Any = None) -> dict[str, Any]:
        """Wait until every slot's confirmed_flush_lsn reaches ``final_lsn``; DmsDrainTimeout after ``timeout`` s.

        With ``marker_schema``, a lagging database gets one marker change committed after the final LSN,
        so an idle source still gives DMS something to confirm.
        """
        final = LSN.parse(final_lsn, field="final_lsn")
        conn = self._status_conn(source_conn)
        cloudwatch = cloudwatch or self.cloudwatch
        started = self.clock()
        checks = 0
        markers: dict[str, str] = {}
        marker_errors: dict[str, str] = {}
        incoming: dict[str, float | None] = {}
        metric_read_at: float | None = None
        while True:
            checks += 1
            positions = slot_positions(conn, [link.slot_name for link in self.links])
            confirmed = {link.database: LSN(_require_slot(positions.get(link.slot_name), link.slot_name)
                                            ["confirmed_flush_lsn"]) for link in self.links}
            behind = [link for link in self.links if confirmed[link.database] < final]
            if not behind:
                return {"drained": True, "proof": "slot", "final_lsn": str(final),
                        "confirmed": {db: str(lsn) for db, lsn in confirmed.items()}, "checks": checks,
                        "markers": markers, "marker_errors": marker_errors, "incoming_changes": incoming,
                        "waited_seconds": round(self.clock() - started, 3)}
            if self.marker_schema:
                for link in behind:
                    if link.database not in markers and link.database not in marker_errors:
                        self._write_marker(link, conn, final, markers, marker_errors)
            if cloudwatch is not None and self.replication_instance_id and \
                    (metric_read_at is None or self.clock() - metric_read_at >= self.metric_interval):
                for link in behind:
                    incoming[link.database] = self._incoming_changes(cloudwatch, link)
                metric_read_at = self.clock()
            if self.clock() - started >= timeout:
                lagging = "; ".join(
                    f"{link.database}: slot {link.slot_name} confirmed {confirmed[link.database]} "
                    f"({final - confirmed[link.database]} bytes behind), CDCIncomingChanges "
                    f"{incoming.get(link.database, 'unknown')}" for link in behind)
                notes = "".join(f" The drain marker was not written in {db} ({error})."
                                for db, error in marker_errors.items())
                raise DmsDrainTimeout(
                    f"DMS has not applied past the source's final LSN {final} within {timeout:g} s: {lagging}.{notes}"
                    " Check the tasks' CloudWatch logs; the cutover restores source writes (abort).")
            self.sleep(self.poll_interval)

    def _write_marker(self, link: DmsLink, status_conn: Any, final: LSN, markers: dict[str, str],
                      errors: dict[str, str]) -> None:
        conn = self._marker_conn(link, status_conn)
        if conn is None:
            errors[link.database] = "no connection to this database was given"
            return
        try:
            markers[link.database] = str(write_drain_marker(conn, self.marker_schema, final))
        except psycopg.Error as exc:
            # The marker only speeds the proof up; without it the drain still waits for DMS.
            errors[link.database] = f"{type(exc).__name__}: {exc}".strip()

    def _incoming_changes(self, cloudwatch: Any, link: DmsLink) -> float | None:
        metrics = cdc_metrics(cloudwatch, replication_instance_id=self.replication_instance_id,
                              task_resource_id=task_resource_id(link.replication_task_arn),
                              now=datetime.now(UTC), lookback_seconds=300)
        return metrics["incoming"][0][1] if metrics["incoming"] else None

    def stop(self, timeout: float | None = None, *, dms: Any = None) -> dict[str, Any]:
        """Stop every task (stop calls first, then one wait) until each is 'stopped'."""
        dms = dms or self.dms
        if dms is None:
            raise DmsInputError("dms: stop needs a DMS client")
        stopped = stop_tasks(dms, [link.replication_task_arn for link in self.links],
                             timeout=self.stop_timeout if timeout is None else timeout,
                             poll_interval=max(self.poll_interval, 0.5), clock=self.clock, sleep=self.sleep)
        return {link.database: stopped[link.replication_task_arn] for link in self.links}

    @classmethod
    def from_connections(cls, *, aws_conn_id: str | None, source_conn_id: str, tasks: Iterable[dict[str, str]],
                         replication_instance_id: str | None = None, marker_schema: str | None = None,
                         region_name: str | None = None, source_host: str | None = None,
                         source_port: int | None = None, **kwargs: Any) -> DmsCdcEngine:
        """An engine with its own DMS/CloudWatch clients and one source connection per database.

        ``tasks``: ``[{"database", "replication_task_arn", "slot_name"}, ...]``. Call ``close()`` after.
        """
        conns = []
        links = []
        try:
            for task in tasks:
                conn = pg_connect(source_conn_id, task["database"], source_host, source_port)
                conns.append(conn)
                links.append(DmsLink(database=task["database"], replication_task_arn=task["replication_task_arn"],
                                     slot_name=task["slot_name"], source_conn=conn))
            engine = cls(links=links, dms=aws_client(aws_conn_id, "dms", region_name),
                         cloudwatch=aws_client(aws_conn_id, "cloudwatch", region_name),
                         replication_instance_id=replication_instance_id, marker_schema=marker_schema, **kwargs)
        except BaseException:
            for conn in conns:
                conn.close()
            raise
        engine._owned = conns
        return engine

    def close(self) -> None:
        for conn in self._owned:
            conn.close()
        self._owned = []


def dumps_settings(settings: dict[str, Any]) -> str:
    """ReplicationTaskSettings as DMS takes it (a JSON string)."""
    return json.dumps(settings, sort_keys=True)
