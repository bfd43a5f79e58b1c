-- Scale-out on Kafka (riskwatch capture / worker). One row per topic
-- partition: where its consumer resumes, the source position it has applied
-- (duplicates from at-least-once publishing are at or below it), the source
-- commit time up to which everything in it is applied, and the newest minute
-- whose rules ran for its merchants. The row moves in the same transaction as
-- the aggregates or alerts it covers. epoch fences a worker that lost the
-- partition: every write checks it.
CREATE TABLE kafka_partitions (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    epoch       bigint      NOT NULL DEFAULT 0,
    owner       text        NOT NULL DEFAULT '',
    next_offset bigint      NOT NULL,
    pos_commit  bigint      NOT NULL DEFAULT 0,
    pos_lsn     bigint      NOT NULL DEFAULT 0,
    watermark   timestamptz NOT NULL,
    last_closed timestamptz NOT NULL,
    -- The first snapshot the row was started from (capture re-initialises
    -- rows of an older one).
    snapshot_lsn bigint     NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- Each worker's ranking of its own merchants at its newest closed minute;
-- the dashboard merges them.
CREATE TABLE worker_rankings (
    member     text        PRIMARY KEY,
    as_of      timestamptz NOT NULL,
    body       jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
