"""What every phase builder needs to know about the config, named for what it means."""

from __future__ import annotations

from dataclasses import dataclass

from dag_phases.task_ids import WAIT_CLONE_AVAILABLE, run_setting, xcom
from migration.config import MigrationConfig


@dataclass(frozen=True)
class BuildContext:
    """One config's connection ids, path flags and the run-time templates shared by the phases."""

    config: MigrationConfig

    @property
    def src(self) -> str:
        return self.config.source.conn_id

    @property
    def tgt(self) -> str:
        return self.config.target.conn_id

    @property
    def on_aws(self) -> bool:
        return self.config.platform == "aws"

    @property
    def uses_dms(self) -> bool:
        return self.config.cdc_engine == "dms"

    @property
    def is_aurora_clone(self) -> bool:
        return self.config.initial_load == "aurora_clone"

    @property
    def first_db(self) -> str:
        """The run's first database: where run-wide tasks connect."""
        return run_setting("databases", "[0]")

    @property
    def target_host(self) -> str | None:
        """On AWS the target's endpoint is read at run time from the clone; locally it is the connection's own."""
        return xcom(WAIT_CLONE_AVAILABLE, "host") if self.on_aws else None

    @property
    def target_port(self) -> str | None:
        return xcom(WAIT_CLONE_AVAILABLE, "port") if self.on_aws else None

    @property
    def db_type(self) -> str:
        """The source's kind; on the clone and snapshot paths the target's too. On the pg_dump path the
        source's own identifier says it (an Aurora source may load into an RDS instance and back)."""
        if self.config.initial_load == "pg_dump":
            return "cluster" if self.config.source.cluster_identifier else "instance"
        return "cluster" if self.is_aurora_clone else "instance"

    @property
    def source_identifier(self) -> str:
        source = self.config.source
        return source.cluster_identifier if self.db_type == "cluster" else source.instance_identifier

    @property
    def target_identifier(self) -> str | None:
        """The name the load creates in the target account; None on the pg_dump path, whose target exists."""
        if self.config.initial_load == "pg_dump":
            return None
        target = self.config.target
        return target.cluster_identifier if self.is_aurora_clone else target.instance_identifier
