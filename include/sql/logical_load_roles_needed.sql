-- Roles that own or are granted on anything in the schemas, and every role that is a member of one
-- of them at any depth (the logins that use those privileges).
WITH RECURSIVE objs AS (
    SELECT n.nspowner AS owner, n.nspacl AS acl FROM pg_namespace n WHERE n.nspname = ANY(%(schemas)s)
    UNION ALL
    SELECT c.relowner, c.relacl FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY(%(schemas)s)
    UNION ALL
    SELECT c.relowner, a.attacl FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY(%(schemas)s) AND a.attacl IS NOT NULL
    UNION ALL
    SELECT p.proowner, p.proacl FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = ANY(%(schemas)s)
    UNION ALL
    SELECT t.typowner, t.typacl FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = ANY(%(schemas)s)
), direct AS (
    SELECT owner AS id FROM objs
    UNION SELECT (aclexplode(acl)).grantee FROM objs WHERE acl IS NOT NULL
), members AS (
    SELECT id FROM direct
    UNION SELECT m.member FROM pg_auth_members m JOIN members ON m.roleid = members.id
)
SELECT DISTINCT r.rolname::text FROM members JOIN pg_roles r ON r.oid = members.id ORDER BY 1;
