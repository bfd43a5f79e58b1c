-- The default source schema of SPEC §2, with the indexes a gateway has.
CREATE TABLE merchants (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE payments (
    id bigint PRIMARY KEY, merchant_id bigint NOT NULL, amount bigint NOT NULL,
    status text NOT NULL, approved_at timestamptz NOT NULL);
CREATE INDEX payments_approved_at ON payments (approved_at);
CREATE TABLE payment_cancels (
    id bigint PRIMARY KEY, payment_id bigint NOT NULL, merchant_id bigint NOT NULL,
    cancel_amount bigint NOT NULL, canceled_at timestamptz NOT NULL);
CREATE INDEX payment_cancels_canceled_at ON payment_cancels (canceled_at);
CREATE SEQUENCE ids;
