-- The aggregate tables are rewritten in place all day: every flush updates
-- the current minute, hour and day of each merchant it carries, so at a
-- peak hour_agg and day_agg counted "10% of the table changed" every one or
-- two minutes and minute_agg every five, and autovacuum re-analyzed them:
-- a second or three of reading the tables (over 100 MB/s) and 0.3–0.6 s of
-- CPU, on the machine the stream's flushes wait for. Their distributions
-- barely move between those analyzes (a day's rows among eight days'), and
-- every query riskwatch makes of them is a key or index range. Analyzing
-- after twice the table's rows changed re-analyzes them about every half
-- hour at a 5,000 TPS peak and every few days at the average rate.
-- Vacuum is left at its defaults: the dead rows still have to go.
ALTER TABLE minute_agg SET (autovacuum_analyze_scale_factor = 2);
ALTER TABLE hour_agg SET (autovacuum_analyze_scale_factor = 2);
ALTER TABLE day_agg SET (autovacuum_analyze_scale_factor = 2);
