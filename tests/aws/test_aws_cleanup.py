"""AWS cleanup as a teardown: it runs when nothing was created yet, keeps going past a failing step,
leaves the target's parameter as the migration set it, and never touches source data.

Stand-ins: none beyond moto itself (no cross-account call is made here).
"""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException
from conftest import TARGET_ACCOUNT, make_world, run_operator

from connections.aws import aws_client
from migration.aws.parameters import get_parameter
from migration.aws.sharing import ensure_resource_share
from operators.aws_cleanup import AwsCleanupOperator

pytestmark = [pytest.mark.aws, pytest.mark.usefixtures("record_aws_calls")]


def cleanup(world, **overrides):
    kwargs = dict(task_id="cleanup_aws", source_aws_conn_id="aws_source", migration_id="orders",
                  target_account_id=TARGET_ACCOUNT, source_kms_key_id=world["source_key_arn"])
    return AwsCleanupOperator(**{**kwargs, **overrides})


def test_cleanup_before_anything_was_created_is_a_no_op(admin, standins):
    world = make_world(admin, db_type="cluster", free_storage_bytes=None)
    policy = admin("kms").get_key_policy(KeyId=world["source_key_id"], PolicyName="default")["Policy"]
    result = run_operator(cleanup(world, source_snapshot_identifier="orders-source"))
    assert result == {"deleted_shares": [], "kms_statement_removed": False, "snapshot_unshared": False}
    assert admin("kms").get_key_policy(KeyId=world["source_key_id"], PolicyName="default")["Policy"] == policy


def test_a_failing_step_does_not_stop_the_others(admin, standins):
    world = make_world(admin, db_type="cluster", free_storage_bytes=None)
    share_arn = ensure_resource_share(aws_client("aws_source", "ram"), name="orders-clone-share",
                                      resource_arn=world["source_arn"], principal=TARGET_ACCOUNT)
    missing_key = world["source_key_arn"].rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    with pytest.raises(AirflowException, match="1 cleanup step.* failed .*remove the key-policy statement"):
        run_operator(cleanup(world, source_kms_key_id=missing_key))
    shares = admin("ram").get_resource_shares(resourceOwner="SELF")["resourceShares"]
    assert [(s["resourceShareArn"], s["status"]) for s in shares] == [(share_arn, "DELETED")]


def test_the_target_parameter_is_left_as_the_migration_set_it(admin, standins):
    world = make_world(admin, db_type="cluster", free_storage_bytes=None)
    target_rds = aws_client("aws_target", "rds")
    admin("rds", TARGET_ACCOUNT).modify_db_cluster_parameter_group(
        DBClusterParameterGroupName=world["target_parameter_group"],
        Parameters=[{"ParameterName": "rds.logical_replication", "ParameterValue": "0",
                     "ApplyMethod": "pending-reboot"}])
    assert "parameter_reverted" not in run_operator(cleanup(world))
    assert get_parameter(target_rds, db_type="cluster", parameter_group=world["target_parameter_group"],
                         name="rds.logical_replication") == "0"
    with pytest.raises(ValueError, match="target_account_id: expected a 12-digit AWS account id"):
        run_operator(cleanup(world, target_account_id="target"))
