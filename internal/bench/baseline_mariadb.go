package bench

// The SQL-polling job of baseline.go in MariaDB's dialect, for a MariaDB
// source: the same rules, windows and exact comparisons, written with what
// MariaDB 10.11 has. It has no LATERAL, so a candidate's own windows are
// correlated scalar subqueries (each a range scan of the merchant's index
// entries, as PostgreSQL's lateral ones); no FILTER; and no named time
// zones without the server's zone tables, so volume_drop's "before the
// time of day t" over D−7 … D−1 is seven ranges of instants, each from a
// business day's midnight to its wall clock t, computed here with the
// business zone. That is the engine's minute-of-day curve except in the
// hour a daylight-saving change repeats (none in Asia/Seoul, the bench's
// zone). The tables' DATETIME columns are read as UTC wall clocks, which
// is how the bench's simulator writes them (source.time_zone UTC).
//
// Decimal thresholds are written into the statement as decimal literals,
// so MariaDB compares exact DECIMAL products, as PostgreSQL's numeric.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/riskwatch/riskwatch/internal/mysqlserver"
)

// mariaBaselineIndexes: the source schema has payments (merchant_id,
// approved_at) already; amount is added so that the per-merchant sums
// never read the clustered index (MariaDB has no INCLUDE), and
// payment_cancels gets its per-merchant index as on PostgreSQL.
var mariaBaselineIndexes = []string{
	"CREATE INDEX IF NOT EXISTS payments_merchant_approved_amount ON payments (merchant_id, approved_at, amount)",
	"CREATE INDEX IF NOT EXISTS payment_cancels_merchant_canceled_at ON payment_cancels (merchant_id, canceled_at)",
	"ANALYZE TABLE payments, payment_cancels",
}

// mariaJob runs the job on database db of a private server.
type mariaJob struct {
	srv *mysqlserver.Server
	db  string
}

func (s *mariaSource) sqlJob(context.Context) (sqlJob, error) {
	return mariaJob{srv: s.srv, db: "payments"}, nil
}

func (j mariaJob) prepare(ctx context.Context) error {
	for _, stmt := range mariaBaselineIndexes {
		if err := j.srv.Exec(ctx, j.db, stmt); err != nil {
			return fmt.Errorf("preparing the baseline: %s: %w", stmt, err)
		}
	}
	return nil
}

// myTime is t as a DATETIME literal of the UTC wall clock.
func myTime(t time.Time) string { return "'" + t.UTC().Format(myDatetime) + "'" }

// myDecimal is f as the shortest decimal literal that reads back as f.
func myDecimal(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// mariaCancelRateSQL is cancelRateSQL: candidates from one hour of
// cancels; their own windows; the platform's counts over B (a derived
// table MariaDB materializes once, and only when a candidate falls back
// to it).
func mariaCancelRateSQL(p BaselineParams, m time.Time) string {
	mEnd := m.Add(time.Minute)
	h, b, e := myTime(mEnd.Add(-time.Hour)), myTime(mEnd.Add(-time.Hour-7*24*time.Hour)), myTime(mEnd)
	mult, floor := myDecimal(p.Multiplier), myDecimal(p.BaselineFloor)
	return fmt.Sprintf(`
WITH hour_cancels AS (
	SELECT merchant_id, COUNT(*) AS c_h FROM payment_cancels
	WHERE canceled_at >= %[1]s AND canceled_at < %[3]s
	GROUP BY merchant_id HAVING COUNT(*) >= %[4]d
), sums AS (
	SELECT h.merchant_id, h.c_h,
		(SELECT COUNT(*) FROM payments p WHERE p.merchant_id = h.merchant_id AND p.approved_at >= %[1]s AND p.approved_at < %[3]s) AS a_h,
		(SELECT COUNT(*) FROM payments p WHERE p.merchant_id = h.merchant_id AND p.approved_at >= %[2]s AND p.approved_at < %[1]s) AS a_b,
		(SELECT COUNT(*) FROM payment_cancels c WHERE c.merchant_id = h.merchant_id AND c.canceled_at >= %[2]s AND c.canceled_at < %[1]s) AS c_b
	FROM hour_cancels h
), platform AS (
	SELECT (SELECT COUNT(*) FROM payments WHERE approved_at >= %[2]s AND approved_at < %[1]s) AS a_b,
	       (SELECT COUNT(*) FROM payment_cancels WHERE canceled_at >= %[2]s AND canceled_at < %[1]s) AS c_b
)
SELECT merchant_id FROM sums s
WHERE CASE WHEN s.a_b >= %[5]d AND s.a_b > 0
	THEN s.c_h * s.a_b >= %[6]s * GREATEST(s.c_b, %[7]s * s.a_b) * GREATEST(s.a_h, %[8]d)
	ELSE (SELECT s.c_h * GREATEST(pl.a_b, 1)
	             >= %[6]s * GREATEST(CASE WHEN pl.a_b > 0 THEN pl.c_b ELSE 0 END, %[7]s * GREATEST(pl.a_b, 1)) * GREATEST(s.a_h, %[8]d)
	      FROM platform pl)
	END
ORDER BY merchant_id`, h, b, e, p.MinCancels, p.MinBaselineApprovals, mult, floor, p.MinApprovals)
}

// mariaVolumeDropSQL is volumeDropSQL, with the seven days' prefixes
// before the time of day t as ranges of instants.
func mariaVolumeDropSQL(p BaselineParams, m time.Time) string {
	local := m.In(p.Location)
	y, mo, d := local.Date()
	hh, mm := local.Hour(), local.Minute()+1 // t: 24:00 for the day's last minute
	var prefix []string
	for k := 1; k <= 7; k++ {
		prefix = append(prefix, fmt.Sprintf("(p.approved_at >= %s AND p.approved_at < %s)",
			myTime(time.Date(y, mo, d-k, 0, 0, 0, 0, p.Location)), myTime(time.Date(y, mo, d-k, hh, mm, 0, 0, p.Location))))
	}
	week, day, end := myTime(time.Date(y, mo, d-7, 0, 0, 0, 0, p.Location)), myTime(time.Date(y, mo, d, 0, 0, 0, 0, p.Location)), myTime(m.Add(time.Minute))
	return fmt.Sprintf(`
WITH large AS (
	SELECT merchant_id, SUM(amount) AS sum7 FROM payments
	WHERE approved_at >= %[1]s AND approved_at < %[2]s
	GROUP BY merchant_id HAVING SUM(amount) >= 7 * %[4]d
), s AS (
	SELECT l.merchant_id, l.sum7,
		(SELECT COALESCE(SUM(amount), 0) FROM payments p WHERE p.merchant_id = l.merchant_id AND (%[5]s)) AS prefix7,
		(SELECT COALESCE(SUM(amount), 0) FROM payments p WHERE p.merchant_id = l.merchant_id AND p.approved_at >= %[2]s AND p.approved_at < %[3]s) AS today
	FROM large l
)
SELECT merchant_id FROM s
WHERE prefix7 > 0 AND prefix7 >= %[6]s * sum7 AND 7 * today <= (1 - %[7]s) * prefix7
ORDER BY merchant_id`, week, day, end, p.LargeDailyAmount, strings.Join(prefix, " OR "), myDecimal(p.MinExpectedFraction), myDecimal(p.DropRatio))
}

// run evaluates both rules for the minute starting at m; SourceCPU is the
// whole mariadbd's CPU meanwhile (p.ServerPID is not used: the server's
// process is known).
func (j mariaJob) run(ctx context.Context, p BaselineParams, m time.Time) (BaselineRun, error) {
	run := BaselineRun{Minute: m}
	if err := p.check(m); err != nil {
		return run, err
	}
	pid := j.srv.PID()
	cpu0, err := ProcCPU(pid)
	if err != nil {
		return run, fmt.Errorf("baseline: server cpu: %w", err)
	}
	if run.CancelFiring, run.CancelDur, err = j.firing(ctx, mariaCancelRateSQL(p, m)); err != nil {
		return run, fmt.Errorf("baseline: cancel_rate_spike at %s: %w", m.Format(time.RFC3339), err)
	}
	if run.VolumeFiring, run.VolumeDur, err = j.firing(ctx, mariaVolumeDropSQL(p, m)); err != nil {
		return run, fmt.Errorf("baseline: volume_drop at %s: %w", m.Format(time.RFC3339), err)
	}
	cpu1, err := ProcCPU(pid)
	if err != nil {
		return run, fmt.Errorf("baseline: server cpu: %w", err)
	}
	run.SourceCPU = cpu1 - cpu0
	return run, nil
}

// firing runs one rule's statement and returns the merchant ids it yields
// and its wall time, connecting and reading the rows included.
func (j mariaJob) firing(ctx context.Context, sql string) ([]int64, time.Duration, error) {
	start := time.Now()
	r, err := j.srv.Query(ctx, j.db, sql)
	if err != nil {
		return nil, 0, err
	}
	defer r.Close()
	ids := []int64{}
	for i := range r.RowNumber() {
		id, err := r.GetInt(i, 0)
		if err != nil {
			return nil, 0, err
		}
		ids = append(ids, id)
	}
	return ids, time.Since(start), nil
}
