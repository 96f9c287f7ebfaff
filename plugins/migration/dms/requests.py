"""DMS input checks and request builders: table mappings, task settings, endpoint requests. Pure: no I/O.

Bad input raises DmsInputError naming the field, before anything is sent to AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from migration.dms.errors import DmsInputError
from migration.naming import SLOT_NAME_RE, is_aws_identifier, pg_name_problem

# Tag carrying the migration id on every DMS resource a migration creates: cleanup deletes only those.
OWNER_TAG = "pg-migration:created-for"
PLUGIN_NAMES = {"test_decoding": "test-decoding", "pglogical": "pglogical"}

# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------



def check_identifier(value: Any, field: str, *, limit: int = 255) -> str:
    """A DMS identifier: starts with a letter; letters, digits and single hyphens; no trailing hyphen."""
    if not is_aws_identifier(value, max_length=limit):
        raise DmsInputError(
            f"{field}: expected a DMS identifier (a letter first, then letters, digits and single hyphens, "
            f"no trailing hyphen, at most {limit} characters), got {value!r}"
        )
    return value


def check_slot_name(value: Any, field: str = "slot_name") -> str:
    if not isinstance(value, str) or not SLOT_NAME_RE.match(value):
        raise DmsInputError(f"{field}: expected a replication slot name (1 to 63 of a-z, 0-9, _), got {value!r}")
    return value


def check_pg_name(value: Any, field: str) -> str:
    if pg_name_problem(value):
        raise DmsInputError(f"{field}: expected a PostgreSQL name of 1 to 63 bytes, got {value!r}")
    return value


def check_arn(value: Any, field: str, resource: str) -> str:
    if not isinstance(value, str) or not re.match(rf"^arn:aws[a-z-]*:dms:[a-z0-9-]+:\d{{12}}:{resource}:\S+$", value):
        raise DmsInputError(f"{field}: expected a DMS {resource} ARN (arn:aws:dms:<region>:<account>:{resource}:...), "
                            f"got {value!r}")
    return value


def check_positive(value: Any, field: str, *, minimum: int = 1) -> int:
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
    check_positive(validation_threads, "validation_threads")
    check_positive(lob_max_size_kb, "lob_max_size_kb")
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
    check_positive(heartbeat_minutes, "heartbeat_minutes")
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


def dumps_settings(settings: dict[str, Any]) -> str:
    """ReplicationTaskSettings as DMS takes it (a JSON string)."""
    return json.dumps(settings, sort_keys=True)
