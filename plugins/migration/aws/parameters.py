"""Parameter groups: reading and setting ``rds.logical_replication``, and the writer's reboot."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from migration.aws.common import AwsMigrationError, DbDescription, db_kind, require_db

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


def wait_until_pending_reboot(rds: Any, *, db_type: str, identifier: str, timeout: float = 600.0,
                              poll_interval: float = 15.0, clock: Callable[[], float] = time.monotonic,
                              sleep: Callable[[float], None] = time.sleep) -> DbDescription:
    """After modify_db_(cluster_)parameter_group, wait until RDS reports the writer 'pending-reboot'.

    RDS first shows the change as 'applying'; a reboot before 'pending-reboot' restarts with the old
    value and leaves the change pending, so a later wait for 'in-sync' could only time out.
    """
    kind = db_kind(db_type)
    started = clock()
    while True:
        desc = require_db(rds, db_type=db_type, identifier=identifier, field="db_identifier")
        if desc.parameter_apply_status in ("pending-reboot", None):
            return desc
        if clock() - started >= timeout:
            raise AwsMigrationError(
                f"the parameter change of {kind.label} {identifier} (group {desc.parameter_group}) is still "
                f"{desc.parameter_apply_status!r} after {timeout:.0f} s, not 'pending-reboot': a reboot now would not "
                f"apply it; check the group's parameters and rerun")
        sleep(poll_interval)
