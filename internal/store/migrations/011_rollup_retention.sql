-- Pruning daily rollups by day (retention_days) without reading the whole
-- table: day_agg's key starts with the merchant.
CREATE INDEX day_agg_day ON day_agg USING brin (day) WITH (autosummarize = on);
