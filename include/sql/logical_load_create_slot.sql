CREATE_REPLICATION_SLOT {slot_name} LOGICAL {plugin} (SNAPSHOT 'export');
