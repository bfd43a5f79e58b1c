-- Which of several `riskwatch run` processes on this sink is the active
-- one: a lease per source (named after its slot), taken for a while and
-- renewed, expiring by this server's clock. epoch moves on at every
-- takeover; every write of the active one checks it in its own
-- transaction, so a superseded process is refused even if it was paused
-- past the expiry. holder_pid and holder_session_start name the holder's
-- lease session here: once it is gone (the process died, which closes it)
-- a standby need not wait for the expiry.
CREATE TABLE lease (
    name                 text        PRIMARY KEY,
    holder               text        NOT NULL,
    epoch                bigint      NOT NULL,
    acquired_at          timestamptz NOT NULL,
    renewed_at           timestamptz NOT NULL,
    expires_at           timestamptz NOT NULL,
    holder_pid           integer     NOT NULL,
    holder_session_start timestamptz NOT NULL
);
