"""What the cutover of one migration is: the settings its critical section and teardown are built from.

The DAG factory builds one ``CutoverSpec`` from the migration's YAML (``dag_phases.cutover.cutover_spec``);
``operators.cutover`` turns it into the fence, CDC engine, proof and target opener of
``migration.cutover.run_cutover``. Only what is known when the DAG is built is here: what a run decides
(its databases and schemas, the clone's endpoint, the DMS tasks, the run id) reaches the operators as
templated arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WRITE_BLOCKS = ("roles", "security_group")
CDC_ENGINES = ("native", "dms")


@dataclass(frozen=True)
class SecurityGroupFence:
    """Writes are blocked by revoking the source's security-group ingress (``write_block: security_group``)."""

    aws_conn_id: str | None
    security_group_ids: tuple[str, ...]
    # Rules that admit these groups or CIDRs stay (the DMS instance, the Airflow workers).
    keep_security_group_ids: tuple[str, ...] = ()
    keep_cidrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _tuples(self, "security_group_ids", "keep_security_group_ids", "keep_cidrs")


@dataclass(frozen=True)
class DmsCdc:
    """CDC is an AWS DMS task per database (``cdc_engine: dms``), in the target account."""

    aws_conn_id: str | None
    plugin: str = "test_decoding"


@dataclass(frozen=True)
class DnsSwitch:
    """The target opens by pointing a Route53 CNAME at it (``cutover.dns_*``)."""

    aws_conn_id: str | None
    zone_id: str
    record_name: str
    ttl: int = 30


@dataclass(frozen=True)
class CutoverSpec:
    """One migration's cutover. Without ``security_groups`` writes are blocked by roles; without ``dms`` CDC is
    native logical replication; without ``dns`` the target opens in place (local platform)."""

    migration_id: str
    control_schema: str = "migration_control"
    # The role fence: these roles and their members; empty means every login role but the kept ones.
    application_roles: tuple[str, ...] = ()
    # Logins the role fence keeps able to connect (read-only in the migrated databases).
    exclude_roles: tuple[str, ...] = ()
    drain_timeout_seconds: float = 60
    max_write_block_seconds: float = 60
    sync_sequences: bool = True
    enable_triggers: bool = True
    security_groups: SecurityGroupFence | None = None
    dms: DmsCdc | None = None
    dns: DnsSwitch | None = None

    def __post_init__(self) -> None:
        if not self.migration_id:
            raise ValueError("migration_id: required (the journal and every derived name are keyed by it)")
        _tuples(self, "application_roles", "exclude_roles")

    @property
    def write_block(self) -> str:
        return "security_group" if self.security_groups else "roles"

    @property
    def cdc_engine(self) -> str:
        return "dms" if self.dms else "native"


def _tuples(record: object, *names: str) -> None:
    """Lists given for the tuple fields are kept as tuples, so a spec stays immutable (and hashable)."""
    for name in names:
        value: Sequence[str] | None = getattr(record, name)
        object.__setattr__(record, name, tuple(v for v in (value or ()) if v))
