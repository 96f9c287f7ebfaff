"""Sharing with the target account: RAM resource shares (Aurora clusters) and the KMS key policy."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from migration.aws.common import AwsMigrationError, check_account_id, describe_kms_key, error_code, parse_arn

# What the target account may do with the source's key: AWS's key policy for sharing encrypted
# snapshots (RDS User Guide, "Allowing access to an AWS KMS key"), RetireGrant included, so that RDS
# in the target account can decrypt the shared snapshot while it copies it and retire its grant after.
KMS_SHARE_ACTIONS = ("kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt",
                     "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:RetireGrant")


def find_resource_shares(ram: Any, *, name: str) -> list[dict[str, Any]]:
    """Active or pending resource shares this account owns with exactly this name."""
    found = []
    for page in ram.get_paginator("get_resource_shares").paginate(resourceOwner="SELF", name=name):
        for share in page.get("resourceShares", []):
            if share.get("name") == name and share.get("status") in ("ACTIVE", "PENDING"):
                found.append(share)
    return found


def _associated(ram: Any, share_arn: str, association_type: str) -> set[str]:
    entities = set()
    pages = ram.get_paginator("get_resource_share_associations").paginate(
        associationType=association_type, resourceShareArns=[share_arn])
    for page in pages:
        for item in page.get("resourceShareAssociations", []):
            if item.get("status") in ("ASSOCIATED", "ASSOCIATING"):
                entities.add(item.get("associatedEntity"))
    return entities


def ensure_resource_share(ram: Any, *, name: str, resource_arn: str, principal: str) -> str:
    """The ARN of the RAM share ``name`` sharing ``resource_arn`` with account ``principal`` (made if missing)."""
    check_account_id(principal, field="target account id")
    parse_arn(resource_arn, field="resource_arn")
    if not name or len(name) > 255:
        raise ValueError(f"share name: expected 1 to 255 characters, got {name!r}")
    shares = find_resource_shares(ram, name=name)
    if len(shares) > 1:
        arns = ", ".join(s["resourceShareArn"] for s in shares)
        raise AwsMigrationError(f"several RAM shares are named {name}: {arns}; delete all but one and rerun")
    if shares:
        arn = shares[0]["resourceShareArn"]
        missing = []
        if resource_arn not in _associated(ram, arn, "RESOURCE"):
            missing.append(resource_arn)
        if principal not in _associated(ram, arn, "PRINCIPAL"):
            missing.append(f"account {principal}")
        if missing:
            raise AwsMigrationError(
                f"RAM share {name} ({arn}) exists but does not share {' and '.join(missing)}: delete it "
                f"(aws ram delete-resource-share --resource-share-arn {arn}) and rerun")
        return arn
    response = ram.create_resource_share(name=name, resourceArns=[resource_arn], principals=[principal],
                                         allowExternalPrincipals=True)
    return response["resourceShare"]["resourceShareArn"]


def accept_resource_share(ram: Any, *, share_arn: str, wait_seconds: float = 120.0, poll_interval: float = 5.0,
                          clock: Callable[[], float] = time.monotonic,
                          sleep: Callable[[float], None] = time.sleep) -> str:
    """Accept the target account's invitation to ``share_arn``; returns ACCEPTED or ASSOCIATED.

    Inside one AWS Organization with RAM sharing enabled there is no invitation: the share is
    already visible, which reads as ASSOCIATED. Seconds after create_resource_share neither may
    exist yet, so both are looked for again every ``poll_interval`` for up to ``wait_seconds``.
    """
    parse_arn(share_arn, field="share_arn")
    started = clock()
    while True:
        status = _accept_once(ram, share_arn)
        if status is not None:
            return status
        if clock() - started >= wait_seconds:
            raise AwsMigrationError(
                f"no invitation to RAM share {share_arn} reached the target account, and the share is not "
                f"ASSOCIATED there, after {wait_seconds:.0f} s: check that the share names the target account and "
                f"allows external principals (or that both accounts are in one AWS Organization with RAM sharing "
                f"enabled), then rerun")
        sleep(poll_interval)


def _accept_once(ram: Any, share_arn: str) -> str | None:
    """ACCEPTED or ASSOCIATED when the share is usable (accepting a pending invitation); None when not yet seen."""
    invitations = []
    for page in ram.get_paginator("get_resource_share_invitations").paginate(resourceShareArns=[share_arn]):
        invitations.extend(page.get("resourceShareInvitations", []))
    if invitations:
        statuses = {inv.get("status") for inv in invitations}
        if "ACCEPTED" in statuses:
            return "ACCEPTED"
        pending = [inv for inv in invitations if inv.get("status") == "PENDING"]
        if pending:
            ram.accept_resource_share_invitation(
                resourceShareInvitationArn=pending[0]["resourceShareInvitationArn"])
            return "ACCEPTED"
        raise AwsMigrationError(
            f"the invitation to RAM share {share_arn} is {', '.join(sorted(statuses))}: delete the share in the "
            f"source account and rerun, so a fresh invitation is sent")
    for page in ram.get_paginator("get_resource_shares").paginate(resourceOwner="OTHER-ACCOUNTS",
                                                                   resourceShareArns=[share_arn]):
        if any(s.get("resourceShareArn") == share_arn and s.get("status") == "ACTIVE"
               for s in page.get("resourceShares", [])):
            return "ASSOCIATED"
    return None


def kms_statement_sid(account_id: str) -> str:
    """The fixed Sid of the one statement this migration adds to a key policy for a target account."""
    return f"PgAccountMigrationAllow{check_account_id(account_id)}"


def _key_statement(partition: str, account_id: str) -> dict[str, Any]:
    return {
        "Sid": kms_statement_sid(account_id),
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
        "Action": list(KMS_SHARE_ACTIONS),
        "Resource": "*",
    }


def _canonical(statement: dict[str, Any]) -> str:
    normal = copy.deepcopy(statement)
    if isinstance(normal.get("Action"), list):
        normal["Action"] = sorted(normal["Action"])
    return json.dumps(normal, sort_keys=True)


def _key_policy(kms: Any, key_id: str) -> tuple[str, dict[str, Any]]:
    key = describe_kms_key(kms, key_id)
    if key is None:
        raise AwsMigrationError(f"KMS key {key_id} was not found with the source connection: check source.kms_key_id")
    policy = json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    return key["Arn"], policy


def grant_key_to_account(kms: Any, *, key_id: str, account_id: str) -> bool:
    """Add (or repair) this migration's one statement letting ``account_id`` use the key; True if changed.

    Every other statement is kept as it is, and the statement is never duplicated.
    """
    key_arn, policy = _key_policy(kms, key_id)
    wanted = _key_statement(parse_arn(key_arn).partition, account_id)
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    ours = [s for s in statements if s.get("Sid") == wanted["Sid"]]
    if len(ours) == 1 and _canonical(ours[0]) == _canonical(wanted):
        return False
    kept = [s for s in statements if s.get("Sid") != wanted["Sid"]]
    policy["Statement"] = [*kept, wanted]
    kms.put_key_policy(KeyId=key_arn, PolicyName="default", Policy=json.dumps(policy))
    return True


def revoke_key_from_account(kms: Any, *, key_id: str, account_id: str) -> bool:
    """Remove only the statement grant_key_to_account added; True if the policy changed."""
    sid = kms_statement_sid(account_id)
    key_arn, policy = _key_policy(kms, key_id)
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    kept = [s for s in statements if s.get("Sid") != sid]
    if len(kept) == len(statements):
        return False
    policy["Statement"] = kept
    kms.put_key_policy(KeyId=key_arn, PolicyName="default", Policy=json.dumps(policy))
    return True


def delete_resource_share(ram: Any, *, name: str) -> list[str]:
    """Delete the shares named ``name`` (what ensure_resource_share made); returns the deleted ARNs."""
    deleted = []
    for share in find_resource_shares(ram, name=name):
        try:
            ram.delete_resource_share(resourceShareArn=share["resourceShareArn"])
        except ClientError as exc:
            if error_code(exc) != "UnknownResourceException":
                raise
        deleted.append(share["resourceShareArn"])
    return deleted
