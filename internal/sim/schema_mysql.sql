-- SPEC §2's default source schema for MySQL/MariaDB. Times are DATETIME(6)
-- wall clocks, read in source.time_zone. Every statement is idempotent.
CREATE TABLE IF NOT EXISTS merchants (
    id         BIGINT       NOT NULL PRIMARY KEY,
    name       VARCHAR(200) NOT NULL,
    created_at DATETIME(6)  NOT NULL
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS payments (
    id          BIGINT      NOT NULL PRIMARY KEY,
    merchant_id BIGINT      NOT NULL,
    amount      BIGINT      NOT NULL,
    status      VARCHAR(20) NOT NULL,
    approved_at DATETIME(6) NOT NULL,
    KEY payments_approved_at (approved_at),
    KEY payments_merchant (merchant_id, approved_at)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS payment_cancels (
    id            BIGINT      NOT NULL PRIMARY KEY,
    payment_id    BIGINT      NOT NULL,
    merchant_id   BIGINT      NOT NULL,
    cancel_amount BIGINT      NOT NULL,
    canceled_at   DATETIME(6) NOT NULL,
    KEY payment_cancels_canceled_at (canceled_at)
) ENGINE=InnoDB
