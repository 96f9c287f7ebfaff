"""moto in server mode stands in for AWS (RDS, RAM, KMS, DMS, CloudWatch, Route53, EC2, STS).

Server mode, not the in-process mock, because the deferrable triggers use aiobotocore, which the
in-process mock does not intercept. Airflow AWS connections point at it through `endpoint_url`.
Gaps in moto are closed in the fixtures next to the tests that need them, each named there.
"""

from __future__ import annotations

import json
import os

import pytest
from moto.server import ThreadedMotoServer

from migration.localpg import free_port

# moto's default account; MOTO_ACCOUNT_ID would pin every request to one account, so it stays unset.
SOURCE_ACCOUNT = "123456789012"
TARGET_ACCOUNT = "222222222222"
REGION = "us-east-1"

pytestmark = pytest.mark.aws


@pytest.fixture(scope="session")
def moto_server():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION})
    yield endpoint
    server.stop()
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def moto_reset(moto_server):
    """Empty every moto backend before a test (moto's documented reset endpoint)."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).read()
    return moto_server


def aws_conn_uri(endpoint: str, role_arn: str | None = None) -> str:
    """An Airflow AWS connection (as AIRFLOW_CONN_* JSON) routed to moto, optionally assuming a role."""
    # Assume-role calls ignore the global endpoint_url, so STS gets its own service_config entry.
    extra = {"endpoint_url": endpoint, "region_name": REGION, "service_config": {"sts": {"endpoint_url": endpoint}}}
    if role_arn:
        extra["role_arn"] = role_arn
    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})


@pytest.fixture
def aws_connections(moto_reset, monkeypatch):
    """aws_source acts in the source account, aws_target assumes a role in the target account."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_SOURCE", aws_conn_uri(moto_reset))
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_TARGET",
        aws_conn_uri(moto_reset, role_arn=f"arn:aws:iam::{TARGET_ACCOUNT}:role/migration-target"),
    )
    return {"source": "aws_source", "target": "aws_target", "endpoint": moto_reset}


# ---------------------------------------------------------------------------------------------
# Test-only AWS clients: setup calls go around the IAM recorder
# ---------------------------------------------------------------------------------------------

SETUP_MARKER = "pgmig-test-setup"


def setup_client(endpoint: str, service: str, account: str = SOURCE_ACCOUNT):
    """A boto3 client for arranging moto state in ``account``; its calls are not product calls."""
    import boto3
    from botocore.config import Config

    client = boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                          aws_secret_access_key="testing", config=Config(user_agent_extra=SETUP_MARKER))

    def pin_account(request, **_):
        request.headers["x-moto-account-id"] = account

    client.meta.events.register("before-sign.*.*", pin_account)
    return client


@pytest.fixture
def admin(aws_connections):
    """admin(service, account=SOURCE_ACCOUNT) -> a setup client against the reset moto server."""
    return lambda service, account=SOURCE_ACCOUNT: setup_client(aws_connections["endpoint"], service, account)


# ---------------------------------------------------------------------------------------------
# IAM call recorder: every boto3 call product code makes during an opted-in test, per account
# ---------------------------------------------------------------------------------------------

class AwsCallRecorder:
    """Records (account, service, operation, API params) from botocore's own events.

    'provide-client-params' sees the API parameters, 'before-call' sees the signer (whose access
    key moto maps to an account); both share the call's request context.
    """

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.node: str | None = None

    def provide_params(self, params, context, **_):
        context["pgmig_api_params"] = dict(params)

    def before_call(self, model, params, request_signer, context, **_):
        if self.node is None or SETUP_MARKER in params.get("headers", {}).get("User-Agent", ""):
            return
        from moto.iam.models import get_account_id_from

        creds = request_signer._credentials
        access_key = getattr(creds, "_access_key", None) or creds.access_key
        self.calls.append({"node": self.node, "account": get_account_id_from(access_key),
                           "service": model.service_model.service_name, "operation": model.name,
                           "params": context.get("pgmig_api_params", {})})


RECORDER = AwsCallRecorder()
RECORDING_NODES: set[str] = set()
PASSED_NODES: set[str] = set()


@pytest.fixture(scope="session")
def _recorder_installed():
    import botocore.session

    original = botocore.session.Session.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.register("provide-client-params", RECORDER.provide_params)
        self.register("before-call", RECORDER.before_call)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(botocore.session.Session, "__init__", init)
        yield RECORDER


@pytest.fixture
def record_aws_calls(request, _recorder_installed):
    """Opt a test in: its product AWS calls count for the least-privilege policy check."""
    RECORDER.node = request.node.nodeid
    yield RECORDER
    RECORDER.node = None


@pytest.fixture
def aws_call_log(_recorder_installed):
    """(recorder, nodes that record, nodes that passed) for the policy check at the end of a run."""
    return RECORDER, frozenset(RECORDING_NODES), frozenset(PASSED_NODES)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    # Runs before -k/-m deselection: the full set of recording tests, to tell a complete run from a partial one.
    RECORDING_NODES.update(i.nodeid for i in items if "record_aws_calls" in getattr(i, "fixturenames", ()))


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        PASSED_NODES.add(report.nodeid)


# ---------------------------------------------------------------------------------------------
# moto stand-ins (each named in the docstring of the test modules that rely on it)
# ---------------------------------------------------------------------------------------------

# RAM invitations are not routed by moto 5.2.5; the paths must exist before moto builds RAM's app.
import moto.ram.urls  # noqa: E402
from moto.ram.responses import ResourceAccessManagerResponse  # noqa: E402

moto.ram.urls.url_paths.setdefault("{0}/getresourceshareinvitations$", ResourceAccessManagerResponse.dispatch)
moto.ram.urls.url_paths.setdefault("{0}/acceptresourceshareinvitation$", ResourceAccessManagerResponse.dispatch)


class MotoStandIns:
    """State behind the stand-ins; reset for every test.

    organization: True makes shares visible without invitations (accounts in one AWS Organization).
    backing: moto ARN (cluster, instance, snapshot) -> the real LocalServer that plays its data.
    pg: the ServerFactory that makes those servers (pg_basebackup clones).
    max_portion_bytes: the stand-in's cap per log portion (RDS caps at 1 MB, ends the portion with
    "[Your log message was truncated]" and moves the Marker past the lines that did not fit).
    older_logs: moto ARN -> (name, text, last_written ms) of log files written before the instance existed.
    restore_creating_describes: how many describe_db_clusters a restored cluster answers "creating"
    to; while it does, create_db_instance in it is refused (InvalidDBClusterStateFault), as on AWS.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.organization = False
        # RAM is eventually consistent: a new share's invitation (or, in an organization, the share
        # itself) is not listed for the next `invitations_hidden` looks, and after acceptance RDS still
        # answers DBClusterNotFoundFault to the next `restore_not_found` cross-account restores.
        self.invitations_hidden = 0
        self.restore_not_found = 0
        # Parameter groups: a change to a group in use is 'applying' for `applying_describes` looks, then
        # 'pending-reboot' until the writer reboots; a reboot while still 'applying' does not apply it.
        self.applying_describes = 1
        self.parameter_changes: dict[tuple[str, str], list] = {}  # (account, group) -> [status, looks left]
        self.invitation_status: dict[tuple[str, str], str] = {}
        self.backing: dict[str, object] = {}
        self.log_split: dict[str, int] = {}
        self.pg = None
        self.max_portion_bytes = 1024 * 1024
        self.older_logs: dict[str, list[tuple[str, str, int]]] = {}
        self.restore_creating_describes = 1
        self.cluster_describes: dict[str, tuple[int, int]] = {}  # cluster ARN -> (describes seen, creating for)

    # RDS: a restored cluster is "creating" for a while ------------------------------------
    def cluster_creating(self, arn: str) -> bool:
        seen, creating_for = self.cluster_describes.get(arn, (0, 0))
        return seen <= creating_for and creating_for > 0

    def cluster_described(self, arn: str) -> None:
        if arn in self.cluster_describes:
            seen, creating_for = self.cluster_describes[arn]
            self.cluster_describes[arn] = (seen + 1, creating_for)

    # RDS: parameter groups -------------------------------------------------------------------
    def parameter_changed(self, account: str, group: str, in_use: bool) -> None:
        if in_use:
            self.parameter_changes[(account, group)] = ["applying", self.applying_describes]

    def apply_status(self, account: str, group: str | None) -> str:
        change = self.parameter_changes.get((account, group or ""))
        if change is None:
            return "in-sync"
        if change[0] == "applying":
            if change[1] > 0:
                change[1] -= 1
                return "applying"
            change[0] = "pending-reboot"
        return change[0]

    def rebooted(self, account: str, group: str | None) -> None:
        change = self.parameter_changes.get((account, group or ""))
        if change is not None and change[0] == "pending-reboot":
            del self.parameter_changes[(account, group or "")]

    # RAM -------------------------------------------------------------------------------------
    @staticmethod
    def _shares_for(receiver: str, region: str):
        from moto.ram.models import ram_backends

        for owner, regions in list(ram_backends.items()):
            if owner == receiver or region not in regions:
                continue
            for share in regions[region].resource_shares:
                if share.status == "ACTIVE" and receiver in share.principals:
                    yield owner, share

    def invitations(self, receiver: str, region: str) -> list[dict]:
        from moto.core.utils import unix_time

        if self.organization:
            return []
        if self.invitations_hidden > 0:
            self.invitations_hidden -= 1
            return []
        found = []
        for owner, share in self._shares_for(receiver, region):
            if not share.allow_external_principals:
                continue
            found.append({
                "resourceShareInvitationArn": share.arn.replace(":resource-share/", ":resource-share-invitation/"),
                "resourceShareName": share.name, "resourceShareArn": share.arn, "senderAccountId": owner,
                "receiverAccountId": receiver, "invitationTimestamp": unix_time(share.creation_time),
                "status": self.invitation_status.get((share.arn, receiver), "PENDING"),
            })
        return found

    def visible_shares(self, receiver: str, region: str) -> list[dict]:
        if self.organization and self.invitations_hidden > 0:
            self.invitations_hidden -= 1
            return []
        return [share.describe() for _, share in self._shares_for(receiver, region)
                if self.organization or self.invitation_status.get((share.arn, receiver)) == "ACCEPTED"]

    def require_shared(self, resource_arn: str, receiver: str, region: str) -> None:
        from moto.rds.exceptions import DBClusterNotFoundError

        for _, share in self._shares_for(receiver, region):
            if resource_arn in share.resource_arns and (
                    self.organization or self.invitation_status.get((share.arn, receiver)) == "ACCEPTED"):
                if self.restore_not_found > 0:
                    self.restore_not_found -= 1
                    break
                return
        raise DBClusterNotFoundError(resource_arn, f"The source cluster could not be found or cannot be accessed: "
                                                   f"{resource_arn}")

    # KMS -------------------------------------------------------------------------------------
    @staticmethod
    def require_key_access(key_arn: str | None, receiver: str,
                           actions_needed: frozenset[str] = frozenset({"kms:CreateGrant", "kms:Decrypt"})) -> None:
        """The owner's key policy must let the receiving account use the key (as real KMS enforces)."""
        import json as _json

        from moto.kms.models import kms_backends
        from moto.rds.exceptions import RDSClientError

        if not key_arn or not key_arn.startswith("arn:"):
            return
        _, _, _, region, owner, resource = key_arn.split(":", 5)
        key = kms_backends[owner][region].keys.get(resource.split("/", 1)[1])
        policy = _json.loads(key.policy) if key else {"Statement": []}
        for statement in policy.get("Statement", []):
            principals = statement.get("Principal", {}).get("AWS", [])
            principals = [principals] if isinstance(principals, str) else principals
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            if statement.get("Effect") == "Allow" and any(receiver in p for p in principals) and (
                    "kms:*" in actions or actions_needed <= set(actions)):
                return
        raise RDSClientError("KMSKeyNotAccessibleFault",
                             f"The specified KMS key {key_arn} does not exist, is not enabled or you do not have "
                             f"permissions to access it.")

    @staticmethod
    def mark_aws_managed(account: str, key_id: str, region: str = REGION) -> None:
        from moto.kms.models import kms_backends

        kms_backends[account][region].keys[key_id].key_manager = "AWS"

    # Real PostgreSQL behind moto resources --------------------------------------------------
    def back(self, arn: str, server) -> None:
        self.backing[arn] = server

    def clone_for(self, source_arn: str, new_arn: str, *, start: bool = True):
        server = self.backing.get(source_arn)
        if server is None or self.pg is None:
            return None
        clone = self.pg.clone(server, start=start)
        self.backing[new_arn] = clone
        return clone

    def host_of(self, arn: str) -> str | None:
        return "127.0.0.1" if arn in self.backing else None

    def log_files(self, arn: str) -> list[tuple[str, str, int]]:
        """(name, text, last_written) of the files an instance lists: ``older_logs`` (files of an earlier
        life, written before the instance was created) and the two the backing server's log is split
        into, both written now."""
        import time

        text = self.backing[arn].log_text()
        lines = text.splitlines(keepends=True)
        split = self.log_split.setdefault(arn, max(1, len(lines) // 2))
        now = int(time.time() * 1000)
        return [*self.older_logs.get(arn, []),
                ("error/postgresql.log.2026-12-02-00", "".join(lines[:split]), now - 1),
                ("error/postgresql.log.2026-12-02-01", "".join(lines[split:]), now)]


STANDINS = MotoStandIns()
COPY_KEY_ACTIONS = frozenset({"kms:CreateGrant", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                              "kms:RetireGrant"})


@pytest.fixture(scope="session")
def _standins_installed(moto_server):
    """Patch moto's backend classes in this process (the server thread serves from them)."""
    import copy as _copy
    from types import SimpleNamespace

    from moto.core.responses import ActionResult
    from moto.ram.models import ResourceAccessManagerBackend
    from moto.rds.exceptions import (
        DBInstanceNotFoundError,
        DBSnapshotNotFoundFault,
        InvalidDBClusterStateFault,
        RDSClientError,
    )
    from moto.rds.models import DBCluster, DBInstance, DBSnapshot, RDSBackend, rds_backends
    from moto.rds.responses import RDSResponse

    def _owner(arn: str, backend) -> tuple[str, str, str] | None:
        if not isinstance(arn, str) or not arn.startswith("arn:"):
            return None
        _, _, _, region, account, resource = arn.split(":", 5)
        return (account, region, resource.split(":", 1)[1]) if account != backend.account_id else None

    # RAM: invitations and OTHER-ACCOUNTS listing -------------------------------------------
    def get_resource_share_invitations(self):
        body = self.request_params
        items = STANDINS.invitations(self.current_account, self.region)
        if body.get("resourceShareArns"):
            items = [i for i in items if i["resourceShareArn"] in body["resourceShareArns"]]
        if body.get("resourceShareInvitationArns"):
            items = [i for i in items if i["resourceShareInvitationArn"] in body["resourceShareInvitationArns"]]
        return json.dumps({"resourceShareInvitations": items})

    def accept_resource_share_invitation(self):
        from moto.core.exceptions import JsonRESTError

        arn = self.request_params.get("resourceShareInvitationArn")
        for invitation in STANDINS.invitations(self.current_account, self.region):
            if invitation["resourceShareInvitationArn"] == arn:
                if invitation["status"] != "PENDING":
                    raise JsonRESTError("ResourceShareInvitationAlreadyAcceptedException",
                                        f"The invitation {arn} has already been accepted.")
                STANDINS.invitation_status[(invitation["resourceShareArn"], self.current_account)] = "ACCEPTED"
                return json.dumps({"resourceShareInvitation": {**invitation, "status": "ACCEPTED"}})
        raise JsonRESTError("UnknownResourceException", f"ResourceShareInvitation {arn} could not be found.")

    original_get_shares = ResourceAccessManagerBackend.get_resource_shares

    def get_resource_shares(self, resource_owner):
        if resource_owner == "OTHER-ACCOUNTS":
            return {"resourceShares": STANDINS.visible_shares(self.account_id, self.region_name)}
        return original_get_shares(self, resource_owner)

    # RDS: cross-account clone and snapshot copy; real PostgreSQL behind the results --------
    original_restore_cluster = RDSBackend.restore_db_cluster_to_point_in_time

    def restore_db_cluster_to_point_in_time(self, db_cluster_identifier, source_db_cluster_identifier, **kwargs):
        owner = _owner(source_db_cluster_identifier, self)
        if owner is None:
            cluster = original_restore_cluster(self, db_cluster_identifier, source_db_cluster_identifier, **kwargs)
        else:
            account, region, name = owner
            source = rds_backends[account][region].clusters.get(name)
            STANDINS.require_shared(source_db_cluster_identifier, self.account_id, region)
            if source.storage_encrypted:
                STANDINS.require_key_access(source.kms_key_id, self.account_id)
            props = {}
            for key, value in source.__dict__.items():
                key = key.lstrip("_")
                if key not in ("backend", "db_subnet_group", "vpc_security_group_ids"):
                    props[key] = _copy.copy(value)
            for key in ("restore_type", "use_latest_restorable_time", "restore_to_time"):
                kwargs.pop(key, None)
            props.update(kwargs)
            props["db_cluster_identifier"] = db_cluster_identifier
            props["tags"] = kwargs.get("tags") or []
            cluster = self.create_db_cluster(props)
        clone = STANDINS.clone_for(source_db_cluster_identifier, cluster.arn)
        if clone is not None:
            cluster.port = clone.port
        STANDINS.cluster_describes[cluster.arn] = (0, STANDINS.restore_creating_describes)
        return cluster

    # A restored cluster is "creating" until described often enough; no instance can join it until then.
    original_cluster_status = DBCluster.status
    original_describe_clusters = RDSBackend.describe_db_clusters
    original_create_instance = RDSBackend.create_db_instance

    def cluster_status(self):
        return "creating" if STANDINS.cluster_creating(self.arn) else original_cluster_status.fget(self)

    def set_cluster_status(self, value):
        STANDINS.cluster_describes.pop(self.arn, None)
        original_cluster_status.fset(self, value)

    def describe_db_clusters(self, *args, **kwargs):
        clusters = original_describe_clusters(self, *args, **kwargs)
        for cluster in clusters:
            STANDINS.cluster_described(cluster.arn)
        return clusters

    def create_db_instance(self, db_kwargs):
        cluster = self.clusters.get(db_kwargs.get("db_cluster_identifier") or "")
        if cluster is not None and STANDINS.cluster_creating(cluster.arn):
            raise InvalidDBClusterStateFault(f"DB cluster {cluster.db_cluster_identifier} is not in the "
                                             f"available state: it is creating")
        return original_create_instance(self, db_kwargs)

    original_copy = RDSBackend.copy_db_snapshot

    def copy_db_snapshot(self, source_db_snapshot_identifier, target_db_snapshot_identifier, kms_key_id=None,
                         tags=None, copy_tags=False, **kwargs):
        owner = _owner(source_db_snapshot_identifier, self)
        if owner is None:
            snapshot = original_copy(self, source_db_snapshot_identifier, target_db_snapshot_identifier,
                                     kms_key_id=kms_key_id, tags=tags, copy_tags=copy_tags, **kwargs)
        else:
            account, region, name = owner
            source = rds_backends[account][region].database_snapshots.get(name)
            if source is None or not ({self.account_id, "all"} & set(source.attributes["restore"])):
                raise DBSnapshotNotFoundFault(source_db_snapshot_identifier)
            if source.encrypted:
                # Copying re-encrypts under the caller's key: RDS decrypts and re-encrypts the shared
                # snapshot's data keys through a grant it retires afterwards (RDS User Guide, sharing
                # encrypted snapshots), so the source key's policy must allow all of that.
                STANDINS.require_key_access(source.kms_key_id, self.account_id, COPY_KEY_ACTIONS)
                if not kms_key_id:
                    raise RDSClientError("InvalidParameterValue", "KmsKeyId is required to copy an encrypted "
                                                                  "snapshot shared from another account.")
            if target_db_snapshot_identifier in self.database_snapshots:
                raise RDSClientError("DBSnapshotAlreadyExists", f"{target_db_snapshot_identifier} already exists")
            snapshot = DBSnapshot(self, source.database, target_db_snapshot_identifier, tags=tags,
                                  kms_key_id=kms_key_id, original_created_at=source.original_snapshot_create_time)
            self.database_snapshots[target_db_snapshot_identifier] = snapshot
        if source_db_snapshot_identifier in STANDINS.backing:
            STANDINS.backing[snapshot.arn] = STANDINS.backing[source_db_snapshot_identifier]
        return snapshot

    original_create_snapshot = RDSBackend.create_db_snapshot

    def create_db_snapshot(self, db_instance_identifier, db_snapshot_identifier, *args, **kwargs):
        snapshot = original_create_snapshot(self, db_instance_identifier, db_snapshot_identifier, *args, **kwargs)
        # A snapshot is a stopped physical copy taken now; a restore starts it.
        STANDINS.clone_for(self.databases[db_instance_identifier].arn, snapshot.arn, start=False)
        return snapshot

    original_restore_instance = RDSBackend.restore_db_instance_from_db_snapshot

    def restore_db_instance_from_db_snapshot(self, from_snapshot_id, overrides):
        instance = original_restore_instance(self, from_snapshot_id, overrides)
        snapshot = self.database_snapshots.get(from_snapshot_id.split(":")[-1])
        server = STANDINS.backing.get(snapshot.arn) if snapshot else None
        if server is not None:
            if not server.is_running():
                server.start()
            STANDINS.backing[instance.arn] = server
            instance.port = server.port
        return instance

    # Endpoints of backed resources point at the real servers --------------------------------
    original_cluster_endpoint = DBCluster.endpoint
    original_instance_address = DBInstance.address

    def cluster_endpoint(self):
        return STANDINS.host_of(self.arn) or original_cluster_endpoint.fget(self)

    def instance_address(self):
        return STANDINS.host_of(self.arn) or original_instance_address.fget(self)

    # Log files of backed instances: the real server's log, served in portions ---------------
    original_log_files = RDSBackend.describe_db_log_files

    def describe_db_log_files(self, db_instance_identifier, **params):
        instance = self.databases.get(db_instance_identifier)
        if instance is None:
            raise DBInstanceNotFoundError(db_instance_identifier)
        if instance.arn not in STANDINS.backing:
            return original_log_files(self, db_instance_identifier)
        since = int(params.get("file_last_written") or 0)  # FileLastWritten: files written since then
        return [SimpleNamespace(log_file_name=name, last_written=written, size=len(text.encode()))
                for name, text, written in STANDINS.log_files(instance.arn) if written >= since]

    def download_db_log_file_portion(self):
        params = self.params
        instance = self.backend.databases.get(params.get("DBInstanceIdentifier"))
        if instance is None:
            raise DBInstanceNotFoundError(params.get("DBInstanceIdentifier"))
        files = {name: text for name, text, _ in STANDINS.log_files(instance.arn)} \
            if instance.arn in STANDINS.backing else {}
        name = params.get("LogFileName")
        if name not in files:
            raise RDSClientError("DBLogFileNotFoundFault", f"DBLog File: {name}, is not found on the DB instance")
        lines = files[name].splitlines(keepends=True)
        count = params.get("NumberOfLines") or 10000
        marker = params.get("Marker")
        if marker is None:
            start = max(0, len(lines) - count)  # without a marker RDS returns the newest lines
        elif marker == "0":
            start = 0
        else:
            prefix, _, offset = marker.partition(":")
            if prefix != str(sorted(files).index(name)) or not offset.isdigit():
                raise RDSClientError("InvalidParameterValue", f"Invalid marker {marker!r}")
            start = int(offset)
        end = min(len(lines), start + count)
        data = "".join(lines[start:end]).encode()
        if len(data) > STANDINS.max_portion_bytes:
            # As RDS: the portion is cut at the cap and marked, and the Marker still moves past every
            # line asked for, so what did not fit is skipped.
            data = data[:STANDINS.max_portion_bytes] + b"\n [Your log message was truncated]\n"
        return ActionResult({"LogFileData": data.decode(errors="ignore"),
                             "Marker": f"{sorted(files).index(name)}:{end}",
                             "AdditionalDataPending": end < len(lines)})

    # RDS: parameter-group changes go applying -> pending-reboot -> (reboot) in-sync ------------
    original_modify_pg = RDSBackend.modify_db_parameter_group
    original_modify_cpg = RDSBackend.modify_db_cluster_parameter_group
    original_reboot = RDSBackend.reboot_db_instance
    original_members = DBCluster.db_cluster_members
    original_pg_status = DBInstance.db_parameter_group_status_list

    def modify_db_parameter_group(self, db_parameter_group_name, *args, **kwargs):
        group = original_modify_pg(self, db_parameter_group_name, *args, **kwargs)
        in_use = any(db.db_parameter_group_name == db_parameter_group_name for db in self.databases.values())
        STANDINS.parameter_changed(self.account_id, db_parameter_group_name, in_use)
        return group

    def modify_db_cluster_parameter_group(self, db_cluster_parameter_group_name, *args, **kwargs):
        group = original_modify_cpg(self, db_cluster_parameter_group_name, *args, **kwargs)
        in_use = any(c.parameter_group == db_cluster_parameter_group_name for c in self.clusters.values())
        STANDINS.parameter_changed(self.account_id, db_cluster_parameter_group_name, in_use)
        return group

    def reboot_db_instance(self, db_instance_identifier):
        instance = original_reboot(self, db_instance_identifier)
        cluster = self.clusters.get(getattr(instance, "db_cluster_identifier", None) or "")
        STANDINS.rebooted(self.account_id, cluster.parameter_group if cluster else instance.db_parameter_group_name)
        return instance

    def cluster_members(self):
        members = original_members.fget(self)
        status = STANDINS.apply_status(self.backend.account_id, self.parameter_group)
        for member in members:
            member["DBClusterParameterGroupStatus"] = status
        return members

    def instance_pg_status(self):
        groups = original_pg_status.fget(self)
        for group in groups:
            group.ParameterApplyStatus = STANDINS.apply_status(self.backend.account_id, group.name)
        return groups

    # EC2: in a default VPC a revoke that matches no rule is no error; it is listed in UnknownIpPermissions.
    from moto.ec2.exceptions import InvalidPermissionNotFoundError
    from moto.ec2.responses.security_groups import SecurityGroups

    original_revoke_ingress = SecurityGroups.revoke_security_group_ingress

    def revoke_security_group_ingress(self):
        if "IpPermissions" not in self._get_params():
            return original_revoke_ingress(self)
        self.error_on_dryrun()
        unknown = []
        for args, permission in zip(self._process_rules_from_querystring(), self._get_param("IpPermissions", []),
                                    strict=True):
            del args["sgrule_tags"]
            group = self.ec2_backend.get_security_group_by_name_or_id(args["group_name_or_id"])
            in_default_vpc = group is not None and group.vpc_id == self.ec2_backend.default_vpc.id
            try:
                self.ec2_backend.revoke_security_group_ingress(**args)
            except InvalidPermissionNotFoundError:
                if not in_default_vpc:
                    raise
                unknown.append(permission)
        return ActionResult({"Return": True, **({"UnknownIpPermissions": unknown} if unknown else {})})

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SecurityGroups, "revoke_security_group_ingress", revoke_security_group_ingress)
        mp.setattr(RDSBackend, "modify_db_parameter_group", modify_db_parameter_group)
        mp.setattr(RDSBackend, "modify_db_cluster_parameter_group", modify_db_cluster_parameter_group)
        mp.setattr(RDSBackend, "reboot_db_instance", reboot_db_instance)
        mp.setattr(DBCluster, "db_cluster_members", property(cluster_members))
        mp.setattr(DBInstance, "db_parameter_group_status_list", property(instance_pg_status))
        mp.setattr(ResourceAccessManagerResponse, "get_resource_share_invitations",
                   get_resource_share_invitations, raising=False)
        mp.setattr(ResourceAccessManagerResponse, "accept_resource_share_invitation",
                   accept_resource_share_invitation, raising=False)
        mp.setattr(ResourceAccessManagerBackend, "get_resource_shares", get_resource_shares)
        mp.setattr(RDSBackend, "restore_db_cluster_to_point_in_time", restore_db_cluster_to_point_in_time)
        mp.setattr(RDSBackend, "copy_db_snapshot", copy_db_snapshot)
        mp.setattr(RDSBackend, "describe_db_clusters", describe_db_clusters)
        mp.setattr(RDSBackend, "create_db_instance", create_db_instance)
        mp.setattr(DBCluster, "status", property(cluster_status, set_cluster_status))
        mp.setattr(RDSBackend, "create_db_snapshot", create_db_snapshot)
        mp.setattr(RDSBackend, "restore_db_instance_from_db_snapshot", restore_db_instance_from_db_snapshot)
        mp.setattr(RDSBackend, "describe_db_log_files", describe_db_log_files)
        mp.setattr(RDSResponse, "download_db_log_file_portion", download_db_log_file_portion, raising=False)
        mp.setattr(DBCluster, "endpoint", property(cluster_endpoint))
        mp.setattr(DBInstance, "address", property(instance_address))
        yield STANDINS


@pytest.fixture
def standins(aws_connections, _standins_installed):
    """The moto stand-ins, emptied for this test (moto itself was reset by aws_connections)."""
    STANDINS.reset()
    yield STANDINS
    STANDINS.reset()


# ---------------------------------------------------------------------------------------------
# Running operators and triggers the way Airflow does, without a scheduler
# ---------------------------------------------------------------------------------------------

def run_trigger(trigger):
    """The first event of a trigger, run to completion in an event loop."""
    import asyncio

    async def first():
        async for event in trigger.run():
            return event
        return None

    return asyncio.run(first())


def run_operator(operator, context=None, max_deferrals: int = 5):
    """execute(); on each deferral run its trigger and resume with the event. Returns the result."""
    from airflow.sdk.exceptions import TaskDeferred

    context = context if context is not None else {}
    call = lambda: operator.execute(context)  # noqa: E731
    for _ in range(max_deferrals + 1):
        try:
            return call()
        except TaskDeferred as deferred:
            event = run_trigger(deferred.trigger)
            method = getattr(operator, deferred.method_name)
            kwargs = dict(deferred.kwargs or {})
            call = lambda m=method, e=event, k=kwargs: m(context, event=e.payload, **k)  # noqa: E731
    raise AssertionError(f"{operator.task_id} deferred more than {max_deferrals} times")


# ---------------------------------------------------------------------------------------------
# A source and target world in moto: Aurora cluster or RDS instance, keys, groups, networks
# ---------------------------------------------------------------------------------------------

def postgres_conn_uri(server) -> str:
    """An Airflow Postgres connection (AIRFLOW_CONN_* JSON) to a LocalServer, as the source's credentials."""
    return json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": server.port, "login": "postgres",
                       "schema": "postgres"})


def make_world(admin, *, db_type: str = "cluster", engine_version: str | None = None, logical_replication: str = "1",
               source_id: str | None = None, free_storage_bytes: float | None = 50 * 1024 ** 3) -> dict:
    """Create the source database and everything around it in moto; returns ids and ARNs.

    The target account gets its KMS key and a custom parameter group (rds.logical_replication=1,
    as the clone must start with the copied slots in place).
    """
    from datetime import UTC, datetime, timedelta

    rds, kms, cw = admin("rds"), admin("kms"), admin("cloudwatch")
    trds, tkms = admin("rds", TARGET_ACCOUNT), admin("kms", TARGET_ACCOUNT)
    key = kms.create_key(Description="source CMK")["KeyMetadata"]
    target_key = tkms.create_key(Description="target CMK")["KeyMetadata"]
    world: dict = {"db_type": db_type, "source_key_arn": key["Arn"], "source_key_id": key["KeyId"],
                   "target_key_arn": target_key["Arn"]}
    if db_type == "cluster":
        version = engine_version or "13.7"
        family = f"aurora-postgresql{version.split('.')[0]}"
        group = "src-cluster-params"
        rds.create_db_cluster_parameter_group(DBClusterParameterGroupName=group, DBParameterGroupFamily=family,
                                              Description="source")
        rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=group, Parameters=[
            {"ParameterName": "rds.logical_replication", "ParameterValue": logical_replication,
             "ApplyMethod": "pending-reboot"}])
        trds.create_db_cluster_parameter_group(DBClusterParameterGroupName="tgt-cluster-params",
                                               DBParameterGroupFamily=family, Description="target")
        trds.modify_db_cluster_parameter_group(DBClusterParameterGroupName="tgt-cluster-params", Parameters=[
            {"ParameterName": "rds.logical_replication", "ParameterValue": "1", "ApplyMethod": "pending-reboot"}])
        source_id = source_id or "orders-src"
        cluster = rds.create_db_cluster(
            DBClusterIdentifier=source_id, Engine="aurora-postgresql", EngineVersion=version,
            MasterUsername="postgres", MasterUserPassword="not-a-secret", DBClusterParameterGroupName=group,
            StorageEncrypted=True, KmsKeyId=key["Arn"])["DBCluster"]
        rds.create_db_instance(DBInstanceIdentifier=f"{source_id}-1", DBClusterIdentifier=source_id,
                               Engine="aurora-postgresql", DBInstanceClass="db.r6g.large")
        rds.describe_db_clusters(DBClusterIdentifier=source_id)  # moto reports "creating" exactly once
        world.update(source_id=source_id, source_arn=cluster["DBClusterArn"], writer=f"{source_id}-1",
                     parameter_group=group, target_parameter_group="tgt-cluster-params", metric="FreeLocalStorage")
    else:
        version = engine_version or "15.4"
        family = f"postgres{version.split('.')[0]}"
        group = "src-db-params"
        rds.create_db_parameter_group(DBParameterGroupName=group, DBParameterGroupFamily=family, Description="source")
        rds.modify_db_parameter_group(DBParameterGroupName=group, Parameters=[
            {"ParameterName": "rds.logical_replication", "ParameterValue": logical_replication,
             "ApplyMethod": "pending-reboot"}])
        trds.create_db_parameter_group(DBParameterGroupName="tgt-db-params", DBParameterGroupFamily=family,
                                       Description="target")
        trds.modify_db_parameter_group(DBParameterGroupName="tgt-db-params", Parameters=[
            {"ParameterName": "rds.logical_replication", "ParameterValue": "1", "ApplyMethod": "pending-reboot"}])
        source_id = source_id or "billing-src"
        instance = rds.create_db_instance(
            DBInstanceIdentifier=source_id, Engine="postgres", EngineVersion=version, DBInstanceClass="db.t3.micro",
            MasterUsername="postgres", MasterUserPassword="not-a-secret", DBParameterGroupName=group,
            AllocatedStorage=100, StorageEncrypted=True, KmsKeyId=key["Arn"])["DBInstance"]
        world.update(source_id=source_id, source_arn=instance["DBInstanceArn"], writer=source_id,
                     parameter_group=group, target_parameter_group="tgt-db-params", metric="FreeStorageSpace")
    if free_storage_bytes is not None:
        now = datetime.now(UTC)
        cw.put_metric_data(Namespace="AWS/RDS", MetricData=[
            {"MetricName": world["metric"], "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": world["writer"]}],
             "Value": free_storage_bytes * factor, "Unit": "Bytes", "Timestamp": now - timedelta(minutes=minutes)}
            for minutes, factor in ((10, 1.2), (5, 1.0), (1, 1.1))])
    return world
