"""The DMS task's reuse and start rules (migration.dms.resources.existing_cdc_task, cdc_start).

Stand-ins, and why: DMS is botocore's Stubber on a real boto3 client. Each test queues the one
describe_replication_tasks answer DMS would give (checked against DMS's API model by the Stubber)
and the exact request the rule must send; any other call fails the test. The rules only read a
task, so no AWS account or moto server is needed. The project's own code is never stood in.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from migration.dms.errors import DmsError, DmsInputError
from migration.dms.resources import CdcStart, ExistingTask, cdc_start, existing_cdc_task
from migration.lsn import LSN

PREFIX = "arn:aws:dms:us-east-1:222222222222"
TASK_ID = "orders-mig-app-cdc"
TASK_ARN = f"{PREFIX}:task:ABCDEF"
SOURCE = f"{PREFIX}:endpoint:SOURCE"
TARGET = f"{PREFIX}:endpoint:TARGET"
INSTANCE = f"{PREFIX}:rep:INSTANCE"
START = LSN.parse("1/87F75B28")


@pytest.fixture
def dms():
    client = boto3.client("dms", region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        client.stubber = stubber
        yield client
        stubber.assert_no_pending_responses()


def task(status: str, **overrides: str) -> dict:
    return {"ReplicationTaskIdentifier": TASK_ID, "ReplicationTaskArn": TASK_ARN, "SourceEndpointArn": SOURCE,
            "TargetEndpointArn": TARGET, "ReplicationInstanceArn": INSTANCE, "MigrationType": "cdc",
            "Status": status, **overrides}


def answer(dms, found: dict | None, *, by: str = "replication-task-id", value: str = TASK_ID) -> None:
    """Queue DMS's answer to the one describe_replication_tasks call the rule must make."""
    expected = {"Filters": [{"Name": by, "Values": [value]}], "WithoutSettings": True}
    if found is None:  # DMS answers a filter that matches nothing with ResourceNotFoundFault
        dms.stubber.add_client_error("describe_replication_tasks", "ResourceNotFoundFault",
                                     expected_params=expected)
    else:
        dms.stubber.add_response("describe_replication_tasks", {"ReplicationTasks": [found]}, expected)


def answer_by_arn(dms, found: dict | None) -> None:
    answer(dms, found, by="replication-task-arn", value=TASK_ARN)


def existing(dms) -> ExistingTask | None:
    return existing_cdc_task(dms, identifier=TASK_ID, source_endpoint_arn=SOURCE, target_endpoint_arn=TARGET,
                             replication_instance_arn=INSTANCE)


# -- reuse ---------------------------------------------------------------------------------------

def test_no_task_means_create_one(dms):
    answer(dms, None)
    assert existing(dms) is None


@pytest.mark.parametrize("status", ["ready", "running", "stopped", "failed"])
def test_a_task_joining_the_same_endpoints_and_instance_is_reused_as_it_is(dms, status):
    answer(dms, task(status))
    assert existing(dms) == ExistingTask(arn=TASK_ARN, status=status, wait_until_ready=False)


def test_a_task_still_creating_is_reused_once_ready(dms):
    answer(dms, task("creating"))
    assert existing(dms) == ExistingTask(arn=TASK_ARN, status="creating", wait_until_ready=True)


@pytest.mark.parametrize(("field", "value"), [
    ("SourceEndpointArn", f"{PREFIX}:endpoint:OTHER"),
    ("TargetEndpointArn", SOURCE),
    ("ReplicationInstanceArn", f"{PREFIX}:rep:OTHER"),
    ("MigrationType", "full-load-and-cdc"),
])
def test_a_task_joining_anything_else_is_refused_naming_what_differs(dms, field, value):
    answer(dms, task("ready", **{field: value}))
    with pytest.raises(DmsError, match=rf"replication task {TASK_ID} exists with another {field}; delete it"):
        existing(dms)


def test_a_task_being_deleted_is_refused(dms):
    answer(dms, task("deleting"))
    with pytest.raises(DmsError, match=f"replication task {TASK_ID} is being deleted; rerun when gone"):
        existing(dms)


def test_a_bad_identifier_is_refused_before_any_call(dms):
    with pytest.raises(DmsInputError, match="replication_task_id: expected a DMS identifier"):
        existing_cdc_task(dms, identifier="orders_mig--app", source_endpoint_arn=SOURCE, target_endpoint_arn=TARGET,
                          replication_instance_arn=INSTANCE)


# -- start -----------------------------------------------------------------------------------------

def test_a_ready_task_starts_from_the_resolved_lsn(dms):
    answer_by_arn(dms, task("ready"))
    assert cdc_start(dms, TASK_ARN, START, start_kwargs={"CdcStopPosition": "server_time:2030-01-01T00:00:00"}) \
        == CdcStart("ready", "start-replication",
                    {"CdcStopPosition": "server_time:2030-01-01T00:00:00", "CdcStartPosition": "1/87F75B28"})


@pytest.mark.parametrize("status", ["running", "starting"])
def test_a_running_or_starting_task_is_left_alone(dms, status):
    answer_by_arn(dms, task(status))
    assert cdc_start(dms, TASK_ARN, START) == CdcStart(status, None, {})


@pytest.mark.parametrize("status", ["stopped", "failed"])
def test_a_stopped_or_failed_task_resumes_from_its_checkpoint_never_from_the_lsn(dms, status):
    answer_by_arn(dms, task(status, RecoveryCheckpoint="checkpoint:V1#1#1/87F75B28:0#0#0#*#0#0"))
    assert cdc_start(dms, TASK_ARN, START, start_kwargs={"CdcStartPosition": "0/1"}) \
        == CdcStart(status, "resume-processing", {})


@pytest.mark.parametrize("status", ["creating", "stopping", "deleting", "moving"])
def test_a_task_in_any_other_status_is_not_started(dms, status):
    answer_by_arn(dms, task(status))
    with pytest.raises(DmsError, match=f"is {status}; it can be started when ready, stopped or failed"):
        cdc_start(dms, TASK_ARN, START)


def test_a_missing_task_is_not_started(dms):
    answer_by_arn(dms, None)
    with pytest.raises(DmsError, match=f"replication task {TASK_ARN} was not found; create it first"):
        cdc_start(dms, TASK_ARN, START)
