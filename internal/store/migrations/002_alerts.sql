-- Alerts (SPEC §7). One open (firing) alert per rule and merchant.
CREATE TABLE alerts (
    id           bigserial   PRIMARY KEY,
    rule         text        NOT NULL,
    merchant_id  bigint      NOT NULL,
    state        text        NOT NULL CHECK (state IN ('firing', 'resolved')),
    active_at    timestamptz NOT NULL,
    resolved_at  timestamptz,
    last_eval_at timestamptz NOT NULL,
    last_sent_at timestamptz,
    false_count  integer     NOT NULL DEFAULT 0,
    "values"     jsonb       NOT NULL,
    acked_by     text,
    acked_at     timestamptz,
    ack_comment  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (rule, merchant_id) WHERE state = 'firing';
CREATE INDEX alerts_merchant ON alerts (merchant_id, active_at DESC);
CREATE INDEX alerts_active_at ON alerts (active_at DESC);

-- Every evaluation of an open alert, with what the rule reported.
CREATE TABLE alert_evaluations (
    alert_id bigint      NOT NULL REFERENCES alerts (id),
    minute   timestamptz NOT NULL,
    fires    boolean     NOT NULL,
    "values" jsonb       NOT NULL,
    PRIMARY KEY (alert_id, minute)
);

-- The outbox: written in the same transaction as the alert change.
CREATE TABLE notifications (
    id              bigserial   PRIMARY KEY,
    alert_id        bigint      NOT NULL REFERENCES alerts (id),
    kind            text        NOT NULL CHECK (kind IN ('firing', 'repeat', 'resolved')),
    idempotency_key text        NOT NULL UNIQUE,
    payload         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Delivery of each notification to each receiver, at least once.
CREATE TABLE deliveries (
    notification_id bigint      NOT NULL REFERENCES notifications (id),
    receiver        text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'rejected')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz,
    PRIMARY KEY (receiver, notification_id)
);
CREATE INDEX deliveries_pending ON deliveries (receiver, notification_id) WHERE status = 'pending';

-- Operator silences: the rule (or every rule when NULL) is not notified for
-- the merchant until ends_at; alerts are still recorded.
CREATE TABLE silences (
    id          bigserial   PRIMARY KEY,
    merchant_id bigint      NOT NULL,
    rule        text,
    starts_at   timestamptz NOT NULL DEFAULT now(),
    ends_at     timestamptz NOT NULL,
    reason      text        NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX silences_active ON silences (merchant_id, ends_at);
