"""Native CDC operators: the publication on the source, the subscription on the target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from connections.postgres import connect, conninfo_for
from migration.clone_guard import ensure_target_is_not_source
from migration.endpoints import endpoint_override
from migration.lsn import LSN
from migration.native_cdc import advance_origin, create_publication, create_subscription


class CreatePublicationOperator(BaseOperator):
    """Publish every table of ``schemas`` in one source database; a rerun adds what is missing.

    Run it before the slot is created: pgoutput looks the publication up as of each change it
    decodes, so changes from before the publication existed cannot be sent.
    Returns ``{publication, mode, created, added}``.
    """

    template_fields: Sequence[str] = ("source_conn_id", "database", "publication", "schemas")
    ui_color = "#d9ead3"

    def __init__(self, *, source_conn_id: str, database: str, publication: str, schemas: Sequence[str],
                 by_table: bool | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.database = database
        self.publication = publication
        self.schemas = schemas
        self.by_table = by_table

    def execute(self, context: Context) -> dict[str, Any]:
        with connect(self.source_conn_id, dbname=self.database) as conn:
            return create_publication(conn, self.publication, list(self.schemas), by_table=self.by_table)


class CreateSubscriptionOperator(BaseOperator):
    """Subscribe the target to the source's slot from just after the captured LSN, then enable it.

    The subscription neither creates a slot nor copies data. With ``captured_lsn`` (a clone's
    ``redo done at``) its origin is set to ``origin_position_for(captured_lsn)``, so the last
    transaction the clone holds is not applied again; with ``origin_lsn`` (already a start point:
    a slot's consistent point, Aurora's aurora_volume_logical_start_lsn()) it is used as it is.
    ``replication_conn_id`` (default: the source connection) is the role the target connects as
    (least privilege: REPLICATION and SELECT on the published tables). With ``passfile_directory`` (a
    folder the target server reads: the local platform's data directory) its password goes into a
    0600 password file there and pg_subscription holds only the file's path; otherwise pg_subscription
    holds the password until the subscription is dropped. The statement is never logged with the
    password in it. Returns the origin LSN as text.
    """

    template_fields: Sequence[str] = ("source_conn_id", "target_conn_id", "replication_conn_id", "database",
                                      "subscription", "publication", "slot_name", "captured_lsn", "origin_lsn",
                                      "target_host", "target_port")
    ui_color = "#d9ead3"

    def __init__(self, *, source_conn_id: str, target_conn_id: str, database: str, subscription: str,
                 publication: str, slot_name: str, captured_lsn: str | None = None, origin_lsn: str | None = None,
                 target_host: str | None = None, target_port: int | str | None = None,
                 replication_conn_id: str | None = None, passfile_directory: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.passfile_directory = passfile_directory
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.replication_conn_id = replication_conn_id
        self.database = database
        self.subscription = subscription
        self.publication = publication
        self.slot_name = slot_name
        self.captured_lsn = captured_lsn
        self.origin_lsn = origin_lsn
        self.target_host = target_host
        self.target_port = target_port

    def execute(self, context: Context) -> str:
        captured, origin_lsn = self.captured_lsn or None, self.origin_lsn or None
        # Checked before anything is created: a bad LSN must not leave a half-made subscription behind.
        if (captured is None) == (origin_lsn is None):
            raise ValueError("captured_lsn / origin_lsn: give exactly one of them")
        if captured is not None:
            LSN.parse(captured, field="captured_lsn")
        else:
            LSN.parse(origin_lsn, field="origin_lsn")
        host, port = endpoint_override(self.target_host, self.target_port)
        if not self.replication_conn_id:
            self.log.info("No replication_conn_id: the subscription connects as the source connection %s",
                          self.source_conn_id)
        source_conninfo = conninfo_for(self.replication_conn_id or self.source_conn_id, dbname=self.database)
        with connect(self.target_conn_id, dbname=self.database, host=host, port=port) as target:
            with connect(self.source_conn_id, dbname=self.database) as source:
                ensure_target_is_not_source(target, source, task=self.task_id)
            create_subscription(target, self.subscription, source_conninfo, self.publication, self.slot_name,
                                passfile_directory=self.passfile_directory)
            origin = advance_origin(target, self.subscription, captured, origin_lsn=origin_lsn)
        self.log.info("Subscription %s applies from %s (captured LSN %s, origin LSN %s)", self.subscription, origin,
                      self.captured_lsn, self.origin_lsn)
        return str(origin)
