-- The default source schema of SPEC §2, with the indexes a gateway has.
CREATE TABLE IF NOT EXISTS merchants (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS payments (
    id bigint PRIMARY KEY, merchant_id bigint NOT NULL, amount bigint NOT NULL,
    status text NOT NULL, approved_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS payments_approved_at ON payments (approved_at);
CREATE TABLE IF NOT EXISTS payment_cancels (
    id bigint PRIMARY KEY, payment_id bigint NOT NULL, merchant_id bigint NOT NULL,
    cancel_amount bigint NOT NULL, canceled_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS payment_cancels_canceled_at ON payment_cancels (canceled_at);
CREATE SEQUENCE IF NOT EXISTS ids;
-- What the simulator generated, so that `sim live` continues what `sim
-- history` started (same seed, scale and incidents).
CREATE TABLE IF NOT EXISTS sim_meta (
    id             int         PRIMARY KEY CHECK (id = 1),
    seed           bigint      NOT NULL,
    merchants      int         NOT NULL,
    payments_day   int         NOT NULL,
    anchor         timestamptz NOT NULL,
    history_from   timestamptz NOT NULL,
    incidents      boolean     NOT NULL,
    large_amount   bigint      NOT NULL,
    written_until  timestamptz NOT NULL
);
-- Added later; ADD COLUMN IF NOT EXISTS upgrades a database an older
-- `sim history` made ('' and NULL: the default profile, no scored day).
ALTER TABLE sim_meta ADD COLUMN IF NOT EXISTS profile text NOT NULL DEFAULT '';
ALTER TABLE sim_meta ADD COLUMN IF NOT EXISTS scored_day timestamptz;
