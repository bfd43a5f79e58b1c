-- What an alert means to a person (SPEC §7a): its priority (1 = P1 … 3 =
-- P3; the most urgent it reached while open), the most urgent priority a
-- notification of it was routed at, the earlier alert it continues (a
-- re-fire within the repeat interval) and what that one was routed at, and
-- the priority an acknowledgement covered. Alerts opened before priorities
-- existed keep NULL until their first firing evaluation gives them one
-- (without a notification); their acknowledgements cover any priority.
ALTER TABLE alerts
    ADD COLUMN priority           smallint CHECK (priority BETWEEN 1 AND 3),
    ADD COLUMN notified_priority  smallint CHECK (notified_priority BETWEEN 1 AND 3),
    ADD COLUMN continues          bigint,
    ADD COLUMN continues_notified smallint CHECK (continues_notified BETWEEN 1 AND 3),
    ADD COLUMN ack_priority       smallint CHECK (ack_priority BETWEEN 1 AND 3);

-- The open-alert list sorts by priority, then money at stake.
CREATE INDEX alerts_open_priority ON alerts (priority, active_at DESC) WHERE state = 'firing';
-- A restart finds the alerts a re-fire could still continue.
CREATE INDEX alerts_resolved_at ON alerts (resolved_at DESC) WHERE state = 'resolved';

-- Notifications of an escalation and of a continuation.
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('firing', 'repeat', 'resolved', 'escalated', 'continued'));
