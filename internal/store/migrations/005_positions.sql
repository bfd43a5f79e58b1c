-- Source positions are the source's own text, whatever the source database
-- (a PostgreSQL LSN, a MySQL binlog file and offset or GTID set), and a
-- writer is fenced by an epoch instead of by comparing positions, which a
-- GTID set cannot always be. Existing sinks keep their positions: a bigint
-- LSN becomes PostgreSQL's own text form of it.
CREATE OR REPLACE FUNCTION pg_temp.lsn_text(lsn bigint) RETURNS text LANGUAGE sql IMMUTABLE AS
$$SELECT upper(to_hex(lsn >> 32)) || '/' || upper(to_hex(lsn & 4294967295))$$;

ALTER TABLE checkpoint ADD COLUMN position text, ADD COLUMN snapshot_position text,
    ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
UPDATE checkpoint SET position = pg_temp.lsn_text(lsn), snapshot_position = pg_temp.lsn_text(snapshot_lsn);
ALTER TABLE checkpoint ALTER COLUMN position SET NOT NULL, ALTER COLUMN snapshot_position SET NOT NULL,
    DROP COLUMN lsn, DROP COLUMN snapshot_lsn;

ALTER TABLE dead_letters ADD COLUMN position text;
UPDATE dead_letters SET position = pg_temp.lsn_text(lsn) WHERE lsn IS NOT NULL;
ALTER TABLE dead_letters DROP COLUMN lsn;

-- A partition's newest applied source position orders the changes in it
-- (duplicates from at-least-once publishing are at or below it): bytes that
-- compare in the source's order. For PostgreSQL: the commit LSN and the
-- change's LSN, eight bytes each, big-endian.
ALTER TABLE kafka_partitions ADD COLUMN source_pos bytea NOT NULL DEFAULT '\x',
    ADD COLUMN snapshot_position text NOT NULL DEFAULT '';
UPDATE kafka_partitions SET
    source_pos = CASE WHEN pos_commit = 0 AND pos_lsn = 0 THEN '\x'::bytea
        ELSE int8send(pos_commit) || int8send(pos_lsn) END,
    snapshot_position = CASE WHEN snapshot_lsn = 0 THEN '' ELSE pg_temp.lsn_text(snapshot_lsn) END;
ALTER TABLE kafka_partitions DROP COLUMN pos_commit, DROP COLUMN pos_lsn, DROP COLUMN snapshot_lsn;
