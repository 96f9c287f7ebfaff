CREATE_REPLICATION_SLOT {slot_name} LOGICAL pgoutput (SNAPSHOT 'export');
