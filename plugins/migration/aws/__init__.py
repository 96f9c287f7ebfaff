"""The AWS half of a migration, one module per phase, as the operators are split.

- ``common``: errors, input checks, tags, the database-kind record (``DbKind``), describe calls
  and the availability check;
- ``parameters``: parameter groups (``rds.logical_replication``) and the writer's reboot;
- ``preflight``: every AWS precondition, read-only;
- ``sharing``: RAM shares (Aurora clusters) and the KMS key policy;
- ``clone``: the Aurora copy-on-write clone and its writer;
- ``snapshot``: the RDS snapshot path and the RDS log reader;
- ``cutover``: the security-group fence, the Route53 opener and stopping the source.

Functions take boto3 clients and plain values and import nothing from Airflow, so operators, the
triggerer's poll checks (``triggers.checks``) and the tests all run the same code. Every create
checks first for a resource with the name derived from the migration, so a rerun finds what an
earlier try made; resources made here carry the ``pg-account-migration`` tags, and a rerun refuses
to adopt a same-named resource that lacks them.
"""
