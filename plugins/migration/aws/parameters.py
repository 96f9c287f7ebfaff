"""Parameter groups: reading and setting ``rds.logical_replication``, and the writer's reboot."""

from __future__ import annotations

from typing import Any

from migration.aws.common import AwsMigrationError, DbDescription, db_kind

LOGICAL_REPLICATION = "rds.logical_replication"


def get_parameter(rds: Any, *, db_type: str, parameter_group: str, name: str) -> str | None:
    """A parameter's value in a DB cluster (Aurora) or DB (RDS) parameter group; None when unset."""
    for parameter in db_kind(db_type).parameters(rds, parameter_group):
        if parameter.get("ParameterName") == name:
            return parameter.get("ParameterValue")
    return None


def set_parameter(rds: Any, *, db_type: str, parameter_group: str, name: str, value: str) -> str | None:
    """Set a static parameter (applied at the next reboot); returns the value it had before.

    Nothing is modified when the group already holds ``value``.
    """
    kind = db_kind(db_type)
    if parameter_group.startswith("default."):
        raise AwsMigrationError(
            f"parameter group {parameter_group} is an RDS default group, which cannot be modified: create a custom "
            f"{kind.parameter_group_label}, attach it, and name it in the config"
        )
    previous = get_parameter(rds, db_type=db_type, parameter_group=parameter_group, name=name)
    if previous == value:
        return previous
    kind.modify_parameters(rds, parameter_group,
                           [{"ParameterName": name, "ParameterValue": value, "ApplyMethod": "pending-reboot"}])
    return previous


def parameter_group_exists(rds: Any, *, db_type: str, parameter_group: str) -> bool:
    return db_kind(db_type).parameter_group_exists(rds, parameter_group)


def reboot_writer(rds: Any, desc: DbDescription) -> str:
    """Reboot the writer (static parameters take effect); returns the rebooted instance id."""
    if not desc.writer_instance:
        raise AwsMigrationError(f"{desc.kind.label} {desc.identifier} has no writer instance to reboot: add one first")
    rds.reboot_db_instance(DBInstanceIdentifier=desc.writer_instance)
    return desc.writer_instance
