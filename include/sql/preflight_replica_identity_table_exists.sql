SELECT to_regclass(format('%%I.replica_identity_changes', %(schema)s::text)) IS NOT NULL AS present;
