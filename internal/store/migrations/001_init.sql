-- Per merchant and minute of transaction time (SPEC §4). Counts fit in
-- integer per minute; amounts are KRW in bigint.
CREATE TABLE minute_agg (
    merchant_id     bigint      NOT NULL,
    minute          timestamptz NOT NULL,
    approvals       integer     NOT NULL,
    approved_amount bigint      NOT NULL,
    cancels         integer     NOT NULL,
    canceled_amount bigint      NOT NULL,
    PRIMARY KEY (merchant_id, minute)
);
-- Range reads across all merchants (export, platform totals, pruning).
CREATE INDEX minute_agg_minute ON minute_agg (minute);

-- Hours and days of the business time zone, maintained in the same
-- transaction as the minutes they sum.
CREATE TABLE hour_agg (
    merchant_id     bigint      NOT NULL,
    hour            timestamptz NOT NULL,
    approvals       bigint      NOT NULL,
    approved_amount bigint      NOT NULL,
    cancels         bigint      NOT NULL,
    canceled_amount bigint      NOT NULL,
    PRIMARY KEY (merchant_id, hour)
);

CREATE TABLE day_agg (
    merchant_id     bigint NOT NULL,
    day             date   NOT NULL,
    approvals       bigint NOT NULL,
    approved_amount bigint NOT NULL,
    cancels         bigint NOT NULL,
    canceled_amount bigint NOT NULL,
    PRIMARY KEY (merchant_id, day)
);

-- Everything up to lsn is in the tables above; written in the same
-- transaction as the aggregates it covers.
CREATE TABLE checkpoint (
    slot              text        PRIMARY KEY,
    lsn               bigint      NOT NULL,
    last_closed       timestamptz NOT NULL,
    progress          timestamptz NOT NULL,
    snapshot_lsn      bigint      NOT NULL,
    bootstrapped_at   timestamptz NOT NULL,
    business_timezone text        NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Rows that could not be aggregated, with why and where they came from.
CREATE TABLE dead_letters (
    id           bigserial   PRIMARY KEY,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    origin       text        NOT NULL CHECK (origin IN ('snapshot', 'stream')),
    source_table text        NOT NULL,
    kind         text        NOT NULL,
    reason       text        NOT NULL,
    detail       text        NOT NULL,
    lsn          bigint,
    commit_time  timestamptz,
    row          jsonb       NOT NULL
);
CREATE INDEX dead_letters_recorded_at ON dead_letters (recorded_at);
