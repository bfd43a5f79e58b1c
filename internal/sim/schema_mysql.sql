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
) ENGINE=InnoDB;
-- What the simulator generated, so that `sim live` continues what `sim
-- history` started (same seed, scale and incidents). Its times, like every
-- row's, are wall clocks in time_zone.
CREATE TABLE IF NOT EXISTS sim_meta (
    id            INT         NOT NULL PRIMARY KEY CHECK (id = 1),
    seed          BIGINT      NOT NULL,
    merchants     INT         NOT NULL,
    payments_day  INT         NOT NULL,
    anchor        DATETIME(6) NOT NULL,
    history_from  DATETIME(6) NOT NULL,
    incidents     BOOLEAN     NOT NULL,
    large_amount  BIGINT      NOT NULL,
    written_until DATETIME(6) NOT NULL,
    profile       VARCHAR(32) NOT NULL DEFAULT '',
    scored_day    DATETIME(6) NULL,
    time_zone     VARCHAR(64) NOT NULL
) ENGINE=InnoDB
