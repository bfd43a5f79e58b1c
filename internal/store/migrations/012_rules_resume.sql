-- A restart resumes the rules state from an image of it instead of reading
-- a week of hourly rows. The image is the state's sums over the 7-day
-- baseline and the exposure window after one flush (numbered from
-- flush_seq); every change a later flush makes to a minute that was
-- already evaluated is logged in late_deltas, so the image plus the log
-- plus the minutes that entered and left the windows since is exactly what
-- a full read would give.
CREATE SEQUENCE flush_seq;

CREATE TABLE late_deltas (
    seq             bigint      NOT NULL,
    merchant_id     bigint      NOT NULL,
    minute          timestamptz NOT NULL,
    approvals       bigint      NOT NULL,
    approved_amount bigint      NOT NULL,
    cancels         bigint      NOT NULL,
    canceled_amount bigint      NOT NULL
);
CREATE INDEX late_deltas_seq ON late_deltas (seq);

CREATE TABLE rules_resume (
    slot              text        PRIMARY KEY,
    last_closed       timestamptz NOT NULL,
    seq               bigint      NOT NULL,
    exposure_minutes  integer     NOT NULL,
    business_timezone text        NOT NULL,
    merchants         integer     NOT NULL,
    data              bytea       NOT NULL,
    written_at        timestamptz NOT NULL DEFAULT now()
);
-- The image is already compact varints: compressing it again costs the
-- write and gains little.
ALTER TABLE rules_resume ALTER COLUMN data SET STORAGE EXTERNAL;
