"""The least-privilege policies in include/iam/ against the AWS calls the product really makes.

Every test in tests/aws that uses the `record_aws_calls` fixture records each boto3 call product
code makes (botocore's 'provide-client-params' and 'before-call' events, installed on every
botocore session), with the account moto resolves from the caller's access key. Calls made to
arrange moto (`admin`/`setup_client`) and STS calls the Airflow connection makes to assume the
target role are not the product's and are left out. This module runs after those tests (file
order). It fails on any recorded action a policy lacks, and, when every recording test ran and
passed in this session, on any action a policy lists that no test needed.

Some calls need a second permission AWS checks without a second API call; `implied` lists them
(tagging on create, KMS grants when RDS uses a customer managed key the caller names, and
iam:PassRole when a DMS endpoint names the role that reads its Secrets Manager secret).
The policies that change resources (the source key's policy, the source security groups' rules,
passing the secrets role) name them by placeholder; `migration.iam.render_policies` fills in one
migration's ARNs, and the tests below check that those changes are allowed on nothing else.
Stand-ins: none.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import SOURCE_ACCOUNT, TARGET_ACCOUNT

pytestmark = pytest.mark.aws

IAM_DIR = Path(__file__).resolve().parents[2] / "include" / "iam"
POLICIES = {SOURCE_ACCOUNT: IAM_DIR / "source-account-policy.json",
            TARGET_ACCOUNT: IAM_DIR / "target-account-policy.json"}
# AWS's example policy for copying a shared encrypted snapshot (RDS User Guide, "Allowing access to
# an AWS KMS key") lists Decrypt, ReEncrypt*, GenerateDataKey* and RetireGrant besides CreateGrant and
# DescribeKey; the policies name no wildcard action, so ReEncrypt* and GenerateDataKey* are spelled out.
COPY_SHARED_SNAPSHOT_KMS = {"kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                            "kms:GenerateDataKeyWithoutPlaintext", "kms:RetireGrant"}
NOT_PRODUCT = {"sts"}  # the connection's own role assumption, granted by the target role's trust policy


def implied(call: dict) -> set[str]:
    """Permissions AWS checks for this call beyond its own action."""
    params = call["params"]
    extra = set()
    if call["service"] == "rds" and params.get("Tags"):
        extra.add("rds:AddTagsToResource")  # tag-on-create is authorized as AddTagsToResource
    if call["service"] == "dms" and params.get("Tags"):
        extra.add("dms:AddTagsToResource")  # likewise for DMS resources created with tags
    if call["service"] == "rds" and params.get("KmsKeyId"):
        extra |= {"kms:CreateGrant", "kms:DescribeKey"}  # RDS encrypts through a grant on the named key
    if call["service"] == "rds" and call["operation"] == "CopyDBSnapshot" and params.get("KmsKeyId") and \
            str(params.get("SourceDBSnapshotIdentifier", "")).startswith("arn:"):
        extra |= COPY_SHARED_SNAPSHOT_KMS  # a shared encrypted snapshot is re-encrypted under the named key
    if call["service"] == "dms" and call["operation"] in ("CreateEndpoint", "ModifyEndpoint") and \
            (params.get("PostgreSQLSettings") or {}).get("SecretsManagerAccessRoleArn"):
        extra.add("iam:PassRole")  # DMS assumes the named role to read the secret: the caller passes it
    return extra


def needed_by_account(calls: list[dict]) -> dict[str, dict[str, set[str]]]:
    """account -> action -> the tests that needed it."""
    needed: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for call in calls:
        if call["service"] in NOT_PRODUCT:
            continue
        for action in {f"{call['service']}:{call['operation']}", *implied(call)}:
            needed[call["account"]][action].add(call["node"])
    return needed


def policy_actions(path: Path) -> set[str]:
    document = json.loads(path.read_text())
    actions = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow", f"{path.name}: {statement.get('Sid')} must be an Allow statement"
        listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not [a for a in listed if "*" in a], f"{path.name}: {statement.get('Sid')} uses a wildcard action"
        actions |= set(listed)
    return actions


def test_policies_are_valid_iam_documents():
    for path in POLICIES.values():
        document = json.loads(path.read_text())
        assert document["Version"] == "2012-10-17"
        sids = [s["Sid"] for s in document["Statement"]]
        assert len(sids) == len(set(sids)), f"{path.name}: repeated Sid"
        for statement in document["Statement"]:
            assert statement["Resource"], f"{path.name}: {statement['Sid']} names no resource"
        policy_actions(path)


def test_policies_allow_every_recorded_call(aws_call_log):
    recorder, _, _ = aws_call_log
    needed = needed_by_account(recorder.calls)
    assert set(needed) <= set(POLICIES), f"calls in unexpected accounts: {sorted(set(needed) - set(POLICIES))}"
    missing = {
        f"{POLICIES[account].name}: {action} (needed by {sorted(nodes)[0]})"
        for account, actions in needed.items()
        for action, nodes in actions.items()
        if action not in policy_actions(POLICIES[account])
    }
    assert not missing, "actions the product calls but the policy does not allow:\n" + "\n".join(sorted(missing))


def recording_modules() -> set[str]:
    """Test modules in tests/aws that opt in to recording, as pytest node id prefixes."""
    root = IAM_DIR.parents[1]
    return {str(path.relative_to(root)) for path in Path(__file__).parent.glob("test_*.py")
            if path.name != Path(__file__).name and "record_aws_calls" in path.read_text()}


def test_policies_list_nothing_the_product_does_not_need(aws_call_log):
    recorder, recording, passed = aws_call_log
    ran = {node.split("::")[0] for node in recording}
    if not recording_modules() <= ran or not recording <= passed:
        pytest.skip(f"not every recording test in tests/aws ran and passed in this session (modules not run: "
                    f"{sorted(recording_modules() - ran)}, tests not passed: {len(recording - passed)}); run all of "
                    f"tests/aws to check for unneeded actions")
    needed = needed_by_account(recorder.calls)
    unneeded = {
        f"{path.name}: {action}"
        for account, path in POLICIES.items()
        for action in policy_actions(path) - set(needed.get(account, {}))
    }
    assert not unneeded, "actions listed but never needed:\n" + "\n".join(sorted(unneeded))


# --- issue 8, scenario 17: PassRole for the secrets role; changes scoped to the configured resources ---

SCOPED = {"kms:PutKeyPolicy", "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "iam:PassRole"}


def _scoped_statements(document: dict) -> list[dict]:
    return [s for s in document["Statement"] if SCOPED & set(s["Action"] if isinstance(s["Action"], list)
                                                              else [s["Action"]])]


@pytest.mark.safety
def test_an_endpoint_with_a_secrets_role_needs_pass_role_and_the_target_policy_has_it():
    call = {"service": "dms", "operation": "CreateEndpoint", "params": {"PostgreSQLSettings": {
        "SecretsManagerSecretId": "arn:aws:secretsmanager:us-east-1:222222222222:secret:src",
        "SecretsManagerAccessRoleArn": "arn:aws:iam::222222222222:role/dms-secrets-access"}}}
    assert "iam:PassRole" in implied(call)
    assert "iam:PassRole" not in implied({**call, "params": {"PostgreSQLSettings": {"SlotName": "s"}}})
    assert "iam:PassRole" in policy_actions(POLICIES[TARGET_ACCOUNT])


@pytest.mark.safety
def test_key_policy_security_group_and_pass_role_changes_are_scoped_to_the_configured_resources():
    from migration.config import load_config
    from migration.iam import kms_key_scope, placeholders, render_policies, template

    # The templates grant these changes on no wildcard: only on placeholders for configured resources.
    for side in ("source", "target"):
        for statement in _scoped_statements(template(side)):
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert all(r.startswith("<") for r in resources), statement
    config = load_config(IAM_DIR.parent / "migrations" / "aurora_orders.yaml")
    rendered = render_policies(config)
    assert not placeholders(rendered["source"]) and not placeholders(rendered["target"])
    by_action = {a: s for doc in rendered.values() for s in _scoped_statements(doc) for a in s["Action"]}
    assert by_action["kms:PutKeyPolicy"]["Resource"] == config.source.kms_key_id
    sg = config.source.security_group_ids[0]
    for action in ("ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"):
        assert by_action[action]["Resource"] == f"arn:aws:ec2:eu-west-1:{config.source.account_id}:security-group/{sg}"
    assert by_action["iam:PassRole"]["Resource"] == config.dms.secrets_manager_access_role_arn
    assert by_action["iam:PassRole"]["Condition"] == {"StringEquals": {"iam:PassedToService": "dms.amazonaws.com"}}
    # A migration that does not use a secret (native CDC) gets no PassRole at all.
    billing = render_policies(load_config(IAM_DIR.parent / "migrations" / "rds_billing.yaml"))
    assert "iam:PassRole" not in {a for s in billing["target"]["Statement"] for a in s["Action"]}
    # A key named by alias is scoped with kms:ResourceAliases; by key id, with its ARN.
    assert kms_key_scope("alias/orders", region="eu-west-1", account_id="614400000000") == (
        "arn:aws:kms:eu-west-1:614400000000:key/*",
        {"ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/orders"}})
    assert kms_key_scope("1111aaaa", region="eu-west-1", account_id="614400000000") == (
        "arn:aws:kms:eu-west-1:614400000000:key/1111aaaa", None)


def test_copying_a_shared_encrypted_snapshot_needs_the_kms_actions_aws_lists_and_the_target_policy_has_them():
    # Issue 13 item 13: CreateGrant and DescribeKey alone are not what AWS documents for the copy.
    call = {"service": "rds", "operation": "CopyDBSnapshot", "params": {
        "SourceDBSnapshotIdentifier": f"arn:aws:rds:us-east-1:{SOURCE_ACCOUNT}:snapshot:billing-source",
        "TargetDBSnapshotIdentifier": "billing-target", "KmsKeyId": "arn:aws:kms:us-east-1:222222222222:key/k"}}
    needed = implied(call)
    assert COPY_SHARED_SNAPSHOT_KMS | {"kms:CreateGrant", "kms:DescribeKey"} <= needed
    assert COPY_SHARED_SNAPSHOT_KMS <= policy_actions(POLICIES[TARGET_ACCOUNT])
    # A copy inside one account (no ARN) or without a key implies none of them.
    assert not COPY_SHARED_SNAPSHOT_KMS & implied({**call, "params": {**call["params"],
                                                                      "SourceDBSnapshotIdentifier": "s"}})
    # The source key's policy statement for the target account allows what RDS does with it while copying.
    from migration.aws.sharing import KMS_SHARE_ACTIONS

    assert {"kms:CreateGrant", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:RetireGrant"} <= set(
        KMS_SHARE_ACTIONS)
