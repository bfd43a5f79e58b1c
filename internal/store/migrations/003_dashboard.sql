-- Platform totals per minute, maintained in the same transaction as the
-- minutes they sum: the overview's chart and the platform-wide baseline of
-- the dashboard's rate lines read a few thousand rows instead of millions.
CREATE TABLE platform_minute (
    minute          timestamptz PRIMARY KEY,
    approvals       bigint NOT NULL,
    approved_amount bigint NOT NULL,
    cancels         bigint NOT NULL,
    canceled_amount bigint NOT NULL
);
INSERT INTO platform_minute
SELECT minute, sum(approvals), sum(approved_amount), sum(cancels), sum(canceled_amount)
FROM minute_agg GROUP BY minute;

-- Merchant names copied from the source's directory table for search and
-- display only; no rule reads them.
CREATE TABLE merchants (
    id         bigint      PRIMARY KEY,
    name       text        NOT NULL,
    synced_at  timestamptz NOT NULL DEFAULT now()
);
