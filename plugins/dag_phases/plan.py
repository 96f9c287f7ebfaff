"""The per-database plan `validate_run` returns, and one kwargs mapper per mapped task or group.

Each mapper picks from one plan entry only the arguments its task or group takes
(`plan.map(prepare_source_kwargs)`).
"""

from __future__ import annotations

from typing import Any

from migration import naming
from migration.config import MigrationConfig


def per_database_plan(config: MigrationConfig, databases: list[str], schemas: list[str]) -> list[dict[str, Any]]:
    """Arguments of each mapped per-database task group: the database and everything derived from it."""
    plan = []
    for db in databases:
        item = {
            "database": db,
            "schemas": schemas,
            "slot_name": naming.slot_name(config.migration_id, db),
            "publication": naming.publication_name(config.migration_id, db),
            "subscription": naming.subscription_name(config.migration_id, db),
            "dms_task_id": None, "dms_source_endpoint": None, "dms_target_endpoint": None,
            "dms_source_settings": None, "dms_table_mappings": None,
        }
        if config.cdc_engine == "dms":
            from migration.dms import requests as dms

            item.update(
                dms_task_id=naming.dms_task_id(config.migration_id, db),
                dms_source_endpoint=naming.dms_endpoint_id(config.migration_id, db, "source"),
                dms_target_endpoint=naming.dms_endpoint_id(config.migration_id, db, "target"),
                dms_source_settings=dms.source_postgres_settings(
                    slot_name=item["slot_name"], control_schema=config.control_schema, plugin=config.dms.plugin,
                    heartbeat_minutes=config.dms.heartbeat_minutes, capture_ddls=config.dms.capture_ddls,
                    secrets_manager_secret_id=config.dms.secrets_manager_secret_id,
                    secrets_manager_access_role_arn=config.dms.secrets_manager_access_role_arn),
                dms_table_mappings=dms.table_mappings(schemas),
            )
        plan.append(item)
    return plan


def _pick(item: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: item[key] for key in keys}


def preflight_kwargs(item: dict[str, Any]) -> dict[str, Any]:
    """PreflightOperator's mapped arguments from one per-database plan entry."""
    return {"database": item["database"], "schemas": item["schemas"], "slot_names": [item["slot_name"]]}


def apply_source_changes_kwargs(item: dict[str, Any]) -> dict[str, Any]:
    """ApplySourceChangesOperator's mapped arguments from one per-database plan entry."""
    return _pick(item, "database", "schemas")


def prepare_source_kwargs(item: dict[str, Any]) -> dict[str, Any]:
    """The `prepare_source` group's arguments (the publication and schemas serve native CDC only)."""
    return _pick(item, "database", "schemas", "slot_name", "publication")


def prepare_target_kwargs(item: dict[str, Any]) -> dict[str, Any]:
    """The `prepare_target` group's arguments."""
    return _pick(item, "database", "schemas")


def native_start_cdc_kwargs(item: dict[str, Any]) -> dict[str, Any]:
    """The `start_cdc` group's arguments with native logical replication."""
    return _pick(item, "database", "slot_name", "publication", "subscription")


def dms_start_cdc_kwargs(item: dict[str, Any]) -> dict[str, Any]:
    """The `start_cdc` group's arguments with DMS."""
    return _pick(item, "database", "slot_name", "dms_task_id", "dms_source_endpoint", "dms_target_endpoint",
                 "dms_source_settings", "dms_table_mappings")


def native_wait_in_sync_kwargs(item: dict[str, Any]) -> dict[str, Any]:
    """The `wait_in_sync` group's arguments with native logical replication."""
    return _pick(item, "database", "schemas", "slot_name", "subscription")


def dms_wait_in_sync_kwargs(item: dict[str, Any]) -> dict[str, Any]:
    """The `wait_in_sync` group's arguments with DMS."""
    return _pick(item, "database", "slot_name")
