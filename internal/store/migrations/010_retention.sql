-- Retention of alerts, evaluations, the outbox and dead letters. Pruning
-- finds old rows by time, and deleting an alert or a notification checks
-- the rows that reference it, which had no index on the referencing column.
-- Evaluations and notifications arrive in time order, so block-range
-- indexes find the old pages at a fraction of a B-tree's size and upkeep.
CREATE INDEX alert_evaluations_minute ON alert_evaluations USING brin (minute) WITH (autosummarize = on);
CREATE INDEX notifications_created_at ON notifications USING brin (created_at) WITH (autosummarize = on);
CREATE INDEX notifications_alert ON notifications (alert_id);
CREATE INDEX deliveries_notification ON deliveries (notification_id);
