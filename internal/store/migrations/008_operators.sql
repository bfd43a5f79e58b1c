-- What operators did, who and from where: acknowledgements, comments on
-- alerts, silences created and expired, each written in the transaction
-- of the action itself. actor is the person recorded (an SSO proxy's
-- user, an HTTP Basic username, a name typed where neither is known, or
-- the CLI's --by); via says which. peer is the TCP peer of an API request
-- and forwarded_for the X-Forwarded-For a trusted proxy passed (NULL from
-- the CLI or an untrusted peer). The alert and silence keep their ids when
-- a row they point to is pruned, with merchant and rule beside them.
CREATE TABLE operator_actions (
    id            bigserial   PRIMARY KEY,
    at            timestamptz NOT NULL,
    actor         text        NOT NULL,
    via           text        NOT NULL CHECK (via IN ('proxy', 'basic', 'typed', 'cli')),
    email         text,
    action        text        NOT NULL CHECK (action IN ('ack', 'comment', 'silence_create', 'silence_expire')),
    alert_id      bigint,
    silence_id    bigint,
    merchant_id   bigint,
    rule          text,
    comment       text        NOT NULL DEFAULT '',
    peer          text,
    forwarded_for text,
    CHECK (action NOT IN ('ack', 'comment') OR alert_id IS NOT NULL),
    CHECK (action NOT IN ('silence_create', 'silence_expire') OR silence_id IS NOT NULL)
);
CREATE INDEX operator_actions_alert ON operator_actions (alert_id, id) WHERE alert_id IS NOT NULL;
CREATE INDEX operator_actions_silence ON operator_actions (silence_id) WHERE silence_id IS NOT NULL;
CREATE INDEX operator_actions_at ON operator_actions (at);
