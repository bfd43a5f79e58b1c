-- The rules' restore reads a week of the hourly rollup by hour across all
-- merchants. The rollup is never pruned, so without an index the read scans
-- every hour ever recorded and a restart slows down with the sink's age.
-- Rows arrive in hour order, so a block-range index finds the week's pages
-- at a fraction of a B-tree's size and upkeep (a B-tree on hour measured
-- slower than a sequential scan at full scale: the read fetched rows one by
-- one). autosummarize lets autovacuum cover the ranges the stream fills.
CREATE INDEX hour_agg_hour ON hour_agg USING brin (hour) WITH (autosummarize = on);
