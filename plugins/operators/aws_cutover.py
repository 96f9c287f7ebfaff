"""The AWS step after a successful cutover that runs as a task of its own: stop the source.

Inside the critical section the cutover calls migration.aws.cutover directly (SecurityGroupWriteBlock,
Route53TargetOpener); putting source writes back is the cutover's teardown (UnblockSourceWritesOperator).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from connections.aws import aws_client
from migration.aws.common import check_db_type
from migration.aws.cutover import stop_db


class RdsStopSourceOperator(BaseOperator):
    """Stop the source cluster or instance after a successful cutover (nothing is deleted).
    Returns ``{db_identifier, status}``.
    """

    template_fields: Sequence[str] = ("source_aws_conn_id", "db_identifier")
    ui_color = "#d9ead3"

    def __init__(self, *, source_aws_conn_id: str, db_type: str, db_identifier: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_aws_conn_id = source_aws_conn_id
        self.db_type = check_db_type(db_type)
        self.db_identifier = db_identifier

    def execute(self, context: Context) -> dict[str, str]:
        status = stop_db(aws_client(self.source_aws_conn_id, "rds"), db_type=self.db_type,
                         identifier=self.db_identifier)
        return {"db_identifier": self.db_identifier, "status": status}
