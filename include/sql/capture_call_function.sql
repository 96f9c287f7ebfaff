SELECT {schema}.{function}()::text AS lsn;
