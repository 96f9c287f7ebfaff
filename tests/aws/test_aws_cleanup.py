"""AWS cleanup as a teardown: it runs when nothing was created yet, keeps going past a failing step,
reverts the target's parameter only on request, and never touches source data.

Stand-ins: none beyond moto itself (no cross-account call is made here).
"""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowException
from conftest import TARGET_ACCOUNT, make_world, run_operator

from connections.aws import aws_client
from migration.aws.parameters import get_parameter
from migration.aws.sharing import ensure_resource_share, grant_key_to_account, kms_statement_sid
from operators.aws_cleanup import AwsCleanupOperator

pytestmark = [pytest.mark.aws, pytest.mark.usefixtures("record_aws_calls")]


def cleanup(world, **overrides):
    kwargs = dict(task_id="cleanup_aws", source_aws_conn_id="aws_source", target_aws_conn_id="aws_target",
                  migration_id="orders", target_account_id=TARGET_ACCOUNT, source_kms_key_id=world["source_key_arn"])
    return AwsCleanupOperator(**{**kwargs, **overrides})


def test_cleanup_before_anything_was_created_is_a_no_op(admin, standins):
    world = make_world(admin, db_type="cluster", free_storage_bytes=None)
    policy = admin("kms").get_key_policy(KeyId=world["source_key_id"], PolicyName="default")["Policy"]
    result = run_operator(cleanup(world, source_snapshot_identifier="orders-source",
                                  parameter_change=None, revert_target_parameters=True))
    assert result == {"deleted_shares": [], "kms_statement_removed": False, "snapshot_unshared": False,
                      "parameter_reverted": False}
    assert admin("kms").get_key_policy(KeyId=world["source_key_id"], PolicyName="default")["Policy"] == policy


def test_a_failing_step_does_not_stop_the_others(admin, standins):
    world = make_world(admin, db_type="cluster", free_storage_bytes=None)
    share_arn = ensure_resource_share(aws_client("aws_source", "ram"), name="orders-clone-share",
                                      resource_arn=world["source_arn"], principal=TARGET_ACCOUNT)
    grant_key_to_account(aws_client("aws_source", "kms"), key_id=world["source_key_arn"], account_id=TARGET_ACCOUNT)
    change = {"db_type": "cluster", "db_identifier": "orders-tgt", "parameter_group": "missing-group",
              "parameter": "rds.logical_replication", "previous": "1", "value": "0", "rebooted": None}
    with pytest.raises(AirflowException, match="1 cleanup step.* failed .*revert the target's parameter change"):
        run_operator(cleanup(world, parameter_change=json.dumps(change), revert_target_parameters=True))
    shares = admin("ram").get_resource_shares(resourceOwner="SELF")["resourceShares"]
    assert [(s["resourceShareArn"], s["status"]) for s in shares] == [(share_arn, "DELETED")]
    policy = json.loads(admin("kms").get_key_policy(KeyId=world["source_key_id"], PolicyName="default")["Policy"])
    assert kms_statement_sid(TARGET_ACCOUNT) not in [s.get("Sid") for s in policy["Statement"]]


def test_target_parameter_is_reverted_only_on_request(admin, standins):
    world = make_world(admin, db_type="cluster", free_storage_bytes=None)
    target_rds = aws_client("aws_target", "rds")
    admin("rds", TARGET_ACCOUNT).modify_db_cluster_parameter_group(
        DBClusterParameterGroupName=world["target_parameter_group"],
        Parameters=[{"ParameterName": "rds.logical_replication", "ParameterValue": "0",
                     "ApplyMethod": "pending-reboot"}])
    change = {"db_type": "cluster", "db_identifier": "orders-tgt", "parameter_group": world["target_parameter_group"],
              "parameter": "rds.logical_replication", "previous": "1", "value": "0", "rebooted": "orders-tgt-writer"}
    assert run_operator(cleanup(world, parameter_change=change))["parameter_reverted"] is False
    assert get_parameter(target_rds, db_type="cluster", parameter_group=world["target_parameter_group"],
                         name="rds.logical_replication") == "0"
    assert run_operator(cleanup(world, parameter_change=change, revert_target_parameters=True))["parameter_reverted"]
    assert get_parameter(target_rds, db_type="cluster", parameter_group=world["target_parameter_group"],
                         name="rds.logical_replication") == "1"
    with pytest.raises(ValueError, match="target_account_id: expected a 12-digit AWS account id"):
        run_operator(cleanup(world, target_account_id="target"))
