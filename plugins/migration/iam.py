"""The least-privilege IAM policies of include/iam/, filled in for one migration.

The templates name the resources a migration changes by placeholder: the source's KMS key (its key
policy gets the target account's statement), the source's security groups (the write fence revokes
and restores their ingress rules) and the role DMS assumes to read the Secrets Manager secret
(passed to DMS with the source endpoint). ``render_policies`` replaces each placeholder with the
configured resource's ARN, so those changes are allowed on exactly those resources; a statement
whose resource the config does not use is left out.

Run ``python -m migration.iam include/migrations/<id>.yaml`` to print both policies.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

from migration.config import MigrationConfig

IAM_DIR = Path(__file__).resolve().parents[2] / "include" / "iam"
TEMPLATES = {"source": IAM_DIR / "source-account-policy.json", "target": IAM_DIR / "target-account-policy.json"}
PLACEHOLDER = re.compile(r"^<([a-z_]+)>$")
_KEY_ARN = re.compile(r"^arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):key/([A-Za-z0-9-]+)$")
_ALIAS_ARN = re.compile(r"^arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):(alias/.+)$")


def template(side: str) -> dict[str, Any]:
    """The policy template of one account ("source" or "target"), placeholders unfilled."""
    return json.loads(TEMPLATES[side].read_text())


def placeholders(document: dict[str, Any]) -> set[str]:
    """Names of the placeholders a policy document still holds."""
    found = set()
    for statement in document["Statement"]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        found |= {m.group(1) for r in resources if (m := PLACEHOLDER.match(r))}
    return found


def kms_key_scope(key_id: str, *, region: str, account_id: str) -> tuple[str, dict[str, Any] | None]:
    """(Resource, Condition) that allow exactly one KMS key, named by ARN, key id or alias.

    IAM names keys only by key ARN; an alias is matched with the kms:ResourceAliases condition.
    """
    if _KEY_ARN.match(key_id):
        return key_id, None
    alias = _ALIAS_ARN.match(key_id)
    if alias:
        partition, region, account_id, name = alias.groups()
        return (f"arn:{partition}:kms:{region}:{account_id}:key/*",
                {"ForAnyValue:StringEquals": {"kms:ResourceAliases": name}})
    if key_id.startswith("alias/"):
        return (f"arn:aws:kms:{region}:{account_id}:key/*",
                {"ForAnyValue:StringEquals": {"kms:ResourceAliases": key_id}})
    return f"arn:aws:kms:{region}:{account_id}:key/{key_id}", None


def _values(config: MigrationConfig) -> dict[str, list[str]]:
    src = config.source
    groups = [f"arn:aws:ec2:{src.region}:{src.account_id}:security-group/{g}" for g in src.security_group_ids]
    return {
        "source_security_group_arns": groups if config.cutover.write_block == "security_group" else [],
        "dms_secrets_manager_access_role_arn": [config.dms.secrets_manager_access_role_arn]
        if config.cdc_engine == "dms" and config.dms.secrets_manager_access_role_arn else [],
    }


def render_policies(config: MigrationConfig) -> dict[str, dict[str, Any]]:
    """Both accounts' policies for this migration ({"source": ..., "target": ...})."""
    if config.platform != "aws":
        raise ValueError(f"{config.path}: platform: IAM policies are for platform aws, not {config.platform}")
    values = _values(config)
    rendered = {}
    for side in TEMPLATES:
        document = template(side)
        statements = []
        for statement in copy.deepcopy(document["Statement"]):
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            names = {m.group(1) for r in resources if (m := PLACEHOLDER.match(r))}
            if "source_kms_key_arn" in names:
                resource, condition = kms_key_scope(config.source.kms_key_id or "", region=config.source.region or "",
                                                    account_id=config.source.account_id or "")
                statement["Resource"] = resource
                if condition:
                    statement["Condition"] = condition
            elif names:
                filled = [v for r in resources for v in
                          (values[PLACEHOLDER.match(r).group(1)] if PLACEHOLDER.match(r) else [r])]
                if not filled:
                    continue  # this migration never makes these calls
                statement["Resource"] = filled if len(filled) > 1 else filled[0]
            statements.append(statement)
        rendered[side] = {**document, "Statement": statements}
    return rendered


def main(argv: list[str]) -> int:
    from migration.config import load_config

    if len(argv) != 1:
        print("usage: python -m migration.iam include/migrations/<id>.yaml", file=sys.stderr)
        return 2
    print(json.dumps(render_policies(load_config(argv[0])), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
