package grafana

import (
	"context"
	"database/sql/driver"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// OIDs Grafana accepts for a time series' time column: a timestamp, or a
// number of Unix seconds ($__timeGroupAlias yields one).
var timeOIDs = map[uint32]string{
	pgtype.TimestamptzOID: "timestamptz", pgtype.TimestampOID: "timestamp",
	pgtype.Float8OID: "float8", pgtype.NumericOID: "numeric", pgtype.Int8OID: "int8",
}

// result is one query's columns and rows.
type result struct {
	cols []string
	rows [][]any
}

func (r result) col(t *testing.T, name string) int {
	t.Helper()
	i := slices.Index(r.cols, name)
	if i < 0 {
		t.Fatalf("no column %q in %v", name, r.cols)
	}
	return i
}

// sum adds up a column (nulls are nothing).
func (r result) sum(t *testing.T, name string) *big.Rat {
	t.Helper()
	i := r.col(t, name)
	s := new(big.Rat)
	for _, row := range r.rows {
		if v := rat(t, row[i]); v != nil {
			s.Add(s, v)
		}
	}
	return s
}

// rat reads a number exactly (nil for NULL).
func rat(t *testing.T, v any) *big.Rat {
	t.Helper()
	switch x := v.(type) {
	case nil:
		return nil
	case int64:
		return new(big.Rat).SetInt64(x)
	case int32:
		return new(big.Rat).SetInt64(int64(x))
	case float64:
		return new(big.Rat).SetFloat64(x)
	case pgtype.Numeric:
		dv, err := x.Value()
		if err != nil || dv == nil {
			return nil
		}
		r, ok := new(big.Rat).SetString(dv.(string))
		if !ok {
			t.Fatalf("numeric %v", dv)
		}
		return r
	case driver.Valuer:
		dv, _ := x.Value()
		return rat(t, dv)
	}
	t.Fatalf("not a number: %T %v", v, v)
	return nil
}

// timeOf reads a time column's value.
func timeOf(t *testing.T, v any) time.Time {
	t.Helper()
	if tm, ok := v.(time.Time); ok {
		return tm
	}
	f, _ := rat(t, v).Float64()
	return time.Unix(int64(f), 0)
}

// run expands one panel query as Grafana would and runs it as the reader;
// time series must have a time column first, ascending.
func run(t *testing.T, e *env, where, sql, format string, q query) result {
	t.Helper()
	expanded, err := expandSQL(sql, q)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := e.reader.Query(ctx, expanded)
	if err != nil {
		t.Fatalf("%s: %v\n%s", where, err, expanded)
	}
	var r result
	for _, fd := range rows.FieldDescriptions() {
		r.cols = append(r.cols, fd.Name)
	}
	fds := rows.FieldDescriptions()
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		r.rows = append(r.rows, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v\n%s", where, err, expanded)
	}
	if format == "time_series" {
		if len(fds) < 2 || fds[0].Name != "time" {
			t.Fatalf("%s: a time series needs the time column first and a value, got %v", where, r.cols)
		}
		if _, ok := timeOIDs[fds[0].DataTypeOID]; !ok {
			t.Fatalf("%s: time column of type OID %d, want a timestamp or Unix seconds", where, fds[0].DataTypeOID)
		}
		for i := 1; i < len(r.rows); i++ {
			if timeOf(t, r.rows[i][0]).Before(timeOf(t, r.rows[i-1][0])) {
				t.Fatalf("%s: time goes back at row %d", where, i)
			}
		}
	}
	return r
}

// sourceEvent is one source row as the engine should have aggregated it.
type sourceEvent struct {
	merchant int64
	at       time.Time
	minute   time.Time // the minute bucket of at
	amount   int64
	cancel   bool
}

func sourceEvents(t *testing.T, e *env) []sourceEvent {
	t.Helper()
	rows, err := e.admin.Query(context.Background(), `
		SELECT merchant_id, approved_at, amount, false FROM payments WHERE amount >= 0
		UNION ALL SELECT merchant_id, canceled_at, cancel_amount, true FROM payment_cancels`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []sourceEvent
	for rows.Next() {
		var ev sourceEvent
		if err := rows.Scan(&ev.merchant, &ev.at, &ev.amount, &ev.cancel); err != nil {
			t.Fatal(err)
		}
		ev.minute = ev.at.Truncate(time.Minute)
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// counts sums approvals, approved amounts and cancels of events that keep.
func counts(evs []sourceEvent, keep func(sourceEvent) bool) (approvals, amount, cancels int64) {
	for _, ev := range evs {
		if !keep(ev) {
			continue
		}
		if ev.cancel {
			cancels++
		} else {
			approvals++
			amount += ev.amount
		}
	}
	return
}

// between is $__timeFilter's BETWEEN.
func between(tm, from, to time.Time) bool { return !tm.Before(from) && !tm.After(to) }

func wantEqual(t *testing.T, where, what string, got *big.Rat, want int64) {
	t.Helper()
	if got.Cmp(new(big.Rat).SetInt64(want)) != 0 {
		t.Errorf("%s: %s = %s, want %d", where, what, got.RatString(), want)
	}
}

// near compares a decimal the sink computed with an exact ratio.
func near(got, want *big.Rat) bool {
	if got == nil || want == nil {
		return got == nil && want == nil
	}
	d := new(big.Rat).Sub(got, want)
	return d.Abs(d).Cmp(big.NewRat(1, 1_000_000_000)) <= 0
}

func ratio(num, den int64) *big.Rat {
	if den == 0 {
		return nil
	}
	return big.NewRat(num, den)
}

// testSQL runs every SQL query of both dashboards (panels and variables)
// over two time ranges and two merchants, through the reader role, and
// checks the figures against sums over the source tables worked out here.
func testSQL(t *testing.T, e *env) {
	ctx := context.Background()
	evs := sourceEvents(t, e)
	seoul, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		t.Fatal(err)
	}
	merchants := readDashboard(t, "riskwatch-merchants.json")
	pipeline := readDashboard(t, "riskwatch-pipeline.json")

	// The variables, as Grafana resolves them on load.
	vars := map[string]string{}
	var merchantVar string
	for _, v := range merchants.Templating.List {
		switch v.Type {
		case "constant":
			vars[v.Name] = v.Query
		case "query":
			if v.Name == "merchant" {
				merchantVar = v.Query
				continue
			}
			r := run(t, e, "variable "+v.Name, v.Query, "table", query{from: time.Now().Add(-time.Hour), to: time.Now(), maxDataPoints: 1, minInterval: time.Minute})
			if len(r.rows) != 1 {
				t.Fatalf("variable %s: %d rows", v.Name, len(r.rows))
			}
			vars[v.Name] = fmt.Sprint(r.rows[0][0])
		}
	}
	if vars["tz"] != "Asia/Seoul" || vars["multiplier"] != "2" || vars["baseline_floor"] != "0.002" || vars["min_baseline_approvals"] != "100" || vars["drop_ratio"] != "0.5" {
		t.Fatalf("variables %v", vars)
	}
	// $merchant's search: empty (Grafana's %), a name, the start of an id.
	search := func(typed string) []string {
		filter := "%"
		if typed != "" {
			filter = typed + "%"
		}
		r := run(t, e, "variable merchant ("+typed+")", merchantVar, "table", query{from: time.Now().Add(-time.Hour), to: time.Now(), maxDataPoints: 1, minInterval: time.Minute,
			vars: map[string]string{"__searchFilter": filter}})
		var out []string
		for _, row := range r.rows {
			out = append(out, fmt.Sprint(row[r.col(t, "__value")])+"="+fmt.Sprint(row[r.col(t, "__text")]))
		}
		return out
	}
	all := search("")
	if len(all) != ordinaryShops+2 || all[0] != "101=Acme Books (#101)" || all[1] != "103=Quiet Corner (#103)" {
		t.Errorf("merchant variable, nothing typed (alerting merchants first): %d %v", len(all), all[:min(len(all), 4)])
	}
	if got := search("acme"); !slices.Equal(got, []string{"101=Acme Books (#101)"}) {
		t.Errorf("merchant variable, typed acme: %v", got)
	}
	if got := search("103"); !slices.Contains(got, "103=Quiet Corner (#103)") {
		t.Errorf("merchant variable, typed 103: %v", got)
	}

	now := time.Now()
	ranges := []struct {
		name     string
		from, to time.Time
	}{{"6h", now.Add(-6 * time.Hour), now}, {"7d", now.Add(-7 * 24 * time.Hour), now}}
	for _, rg := range ranges {
		for _, m := range []int64{surgeMerchant, quietMerchant} {
			qv := map[string]string{"merchant": strconv.FormatInt(m, 10)}
			for k, v := range vars {
				qv[k] = v
			}
			for _, d := range []dashboardJSON{merchants, pipeline} {
				for _, p := range d.allPanels() {
					if p.Datasource == nil || p.Datasource.UID != sinkUID {
						continue
					}
					minIv := time.Minute
					if p.Interval != "" {
						if minIv, err = parseInterval(p.Interval); err != nil {
							t.Fatal(err)
						}
					}
					q := query{from: rg.from, to: rg.to, maxDataPoints: 1000, minInterval: minIv, vars: qv}
					for _, tg := range p.Targets {
						where := fmt.Sprintf("%s / %s (%s, merchant %d)", d.UID, p.Title, rg.name, m)
						r := run(t, e, where, tg.RawSQL, tg.Format, q)
						if len(r.rows) == 0 {
							t.Errorf("%s: no rows", where)
							continue
						}
						checkPanel(t, e, where, p.Title, r, q, m, evs, seoul)
					}
				}
			}
		}
	}
	var firing int
	if err := e.admin.QueryRow(ctx, `SELECT count(*) FROM riskwatch.alerts WHERE state = 'firing'`).Scan(&firing); err != nil || firing < 2 {
		t.Fatalf("firing alerts %d, %v", firing, err)
	}
}

// checkPanel compares a panel's figures with the source's.
func checkPanel(t *testing.T, e *env, where, title string, r result, q query, merchant int64, evs []sourceEvent, loc *time.Location) {
	ctx := context.Background()
	adminCount := func(sql string, args ...any) int64 {
		var n int64
		if err := e.admin.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	inRange := func(m int64) func(sourceEvent) bool {
		return func(ev sourceEvent) bool {
			return (m == 0 || ev.merchant == m) && between(ev.minute, q.from, q.to)
		}
	}
	switch title {
	case "Platform approvals and cancellations":
		a, _, c := counts(evs, inRange(0))
		wantEqual(t, where, "approvals", r.sum(t, "approvals"), a)
		wantEqual(t, where, "cancels", r.sum(t, "cancels"), c)
		iv := q.interval()
		for _, row := range r.rows {
			if tm := timeOf(t, row[0]); tm.UnixNano()%int64(iv) != 0 {
				t.Fatalf("%s: bucket %s is not on a %s boundary", where, tm, iv)
			}
		}
	case "Platform amounts (KRW)":
		_, amt, _ := counts(evs, inRange(0))
		wantEqual(t, where, "approved_amount", r.sum(t, "approved_amount"), amt)
	case "Minutes: approvals and cancellations":
		a, _, c := counts(evs, inRange(merchant))
		wantEqual(t, where, "approvals", r.sum(t, "approvals"), a)
		wantEqual(t, where, "cancels", r.sum(t, "cancels"), c)
	case "Minutes: amounts (KRW)":
		_, amt, _ := counts(evs, inRange(merchant))
		wantEqual(t, where, "approved_amount", r.sum(t, "approved_amount"), amt)
	case "Hours":
		a, amt, c := counts(evs, func(ev sourceEvent) bool {
			lt := ev.at.In(loc)
			hour := time.Date(lt.Year(), lt.Month(), lt.Day(), lt.Hour(), 0, 0, 0, loc)
			return ev.merchant == merchant && between(hour, q.from, q.to)
		})
		wantEqual(t, where, "approvals", r.sum(t, "approvals"), a)
		wantEqual(t, where, "cancels", r.sum(t, "cancels"), c)
		wantEqual(t, where, "approved_amount", r.sum(t, "approved_amount"), amt)
	case "Days (business time zone)":
		day := func(tm time.Time) string { return tm.In(loc).Format(time.DateOnly) }
		a, amt, _ := counts(evs, func(ev sourceEvent) bool {
			return ev.merchant == merchant && day(ev.at) >= day(q.from) && day(ev.at) <= day(q.to)
		})
		wantEqual(t, where, "approvals", r.sum(t, "approvals"), a)
		wantEqual(t, where, "approved_amount", r.sum(t, "approved_amount"), amt)
	case "1-hour cancel rate against its baselines (cancel_rate_spike)":
		checkCancelRate(t, where, r, q, merchant, evs)
	case "Today's cumulative approved amount against the expected curve (volume_drop)":
		checkCumulative(t, where, r, merchant, evs, loc)
	case "Open alerts by priority":
		wantEqual(t, where, "open alerts", r.sum(t, "open_alerts"), adminCount(`SELECT count(*) FROM riskwatch.alerts WHERE state = 'firing'`))
	case "Open alerts":
		if n := adminCount(`SELECT count(*) FROM riskwatch.alerts WHERE state = 'firing'`); int64(len(r.rows)) != n {
			t.Errorf("%s: %d rows, want %d", where, len(r.rows), n)
		}
	case "Alert history":
		for _, row := range r.rows {
			if row[r.col(t, "rule")] != "cancel_rate_spike" {
				t.Errorf("%s: %v", where, row)
			}
		}
	case "Checkpoint":
		if len(r.rows) != 1 || r.rows[0][0] != e.slot {
			t.Errorf("%s: %v", where, r.rows)
		}
	case "Dead letters recorded (sink)":
		wantEqual(t, where, "dead letters", r.sum(t, "dead_letters"), adminCount(`SELECT count(*) FROM riskwatch.dead_letters`))
	case "Latest dead letters":
		if len(r.rows) != 1 || r.rows[0][r.col(t, "reason")] != "negative_amount" {
			t.Errorf("%s: %v", where, r.rows)
		}
	case "Outbox by receiver (sink)":
		if len(r.rows) != 1 || r.rows[0][0] != "oncall" {
			t.Fatalf("%s: %v", where, r.rows)
		}
		wantEqual(t, where, "delivered", r.sum(t, "delivered_in_range"), adminCount(`SELECT count(*) FROM riskwatch.deliveries WHERE status = 'delivered'`))
	case "Notifications created by kind (sink)":
		wantEqual(t, where, "notifications", r.sum(t, "notifications"), adminCount(`SELECT count(*) FROM riskwatch.notifications`))
	default:
		t.Errorf("%s: no check for this panel", where)
	}
}

// checkCancelRate works SPEC §5's figures out at every point of the
// panel from the source rows: H = the minutes M−59…M, B = the 7 days
// before H, the merchant's own baseline with at least 100 approvals in B,
// else the platform's, never below 0.002; the line at 2×.
func checkCancelRate(t *testing.T, where string, r result, q query, merchant int64, evs []sourceEvent) {
	if n := len(r.rows); n < 2 || timeOf(t, r.rows[n-1][0]).Before(q.to.Truncate(time.Minute).Add(-q.interval())) {
		t.Fatalf("%s: %d points, the last should be within an interval of the range's end", where, n)
	}
	col := func(name string) int { return r.col(t, name) }
	for _, row := range r.rows {
		m := timeOf(t, row[0])
		hFrom := m.Add(-59 * time.Minute)
		bFrom := hFrom.Add(-7 * 24 * time.Hour)
		aH, _, cH := counts(evs, func(ev sourceEvent) bool {
			return ev.merchant == merchant && between(ev.minute, hFrom, m)
		})
		aB, _, cB := counts(evs, func(ev sourceEvent) bool {
			return ev.merchant == merchant && !ev.minute.Before(bFrom) && ev.minute.Before(hFrom)
		})
		pa, _, pc := counts(evs, func(ev sourceEvent) bool {
			return !ev.minute.Before(bFrom) && ev.minute.Before(hFrom)
		})
		base := ratio(pc, pa)
		if aB >= 100 {
			base = ratio(cB, aB)
		}
		eff := big.NewRat(2, 1000)
		if base != nil && base.Cmp(eff) > 0 {
			eff = base
		}
		line := new(big.Rat).Mul(eff, big.NewRat(2, 1))
		for _, c := range []struct {
			name string
			want *big.Rat
		}{{"rate_1h", ratio(cH, aH)}, {"merchant_7d", ratio(cB, aB)}, {"platform_7d", ratio(pc, pa)}, {"effective_baseline", eff}, {"alert_line", line}} {
			if got := rat(t, row[col(c.name)]); !near(got, c.want) {
				t.Fatalf("%s at %s: %s = %v, want %v (H %d/%d, B %d/%d, platform %d/%d)", where, m.UTC(), c.name, got, c.want, cH, aH, cB, aB, pc, pa)
			}
		}
	}
}

// checkCumulative works SPEC §6's curves out for the current business day
// from the source rows: today's approved amount up to each minute, and the
// mean of the 7 days before up to the same time of day.
func checkCumulative(t *testing.T, where string, r result, merchant int64, evs []sourceEvent, loc *time.Location) {
	day0 := timeOf(t, r.rows[0][0]).In(loc)
	if day0.Hour() != 0 || day0.Minute() != 0 {
		t.Fatalf("%s: the day starts at %s", where, day0)
	}
	last := timeOf(t, r.rows[len(r.rows)-1][0])
	if now := time.Now(); last.After(now) || now.Sub(last) > 5*time.Minute {
		t.Fatalf("%s: the curve ends at %s, now is %s", where, last, now)
	}
	col := func(name string) int { return r.col(t, name) }
	var mine []sourceEvent
	for _, ev := range evs {
		if ev.merchant == merchant && !ev.at.Before(day0.AddDate(0, 0, -7)) {
			mine = append(mine, ev)
		}
	}
	for i, row := range r.rows {
		tm := timeOf(t, row[0])
		if want := day0.Add(time.Duration(i) * time.Minute); !tm.Equal(want) {
			t.Fatalf("%s: row %d at %s, want %s", where, i, tm, want)
		}
		lt := tm.In(loc)
		mod := lt.Hour()*60 + lt.Minute()
		_, today, _ := counts(mine, func(ev sourceEvent) bool {
			return !ev.at.Before(day0) && ev.at.Before(tm.Add(time.Minute))
		})
		_, week, _ := counts(mine, func(ev sourceEvent) bool {
			l := ev.at.In(loc)
			return ev.at.Before(day0) && l.Hour()*60+l.Minute() <= mod
		})
		expected := big.NewRat(week, 7)
		for _, c := range []struct {
			name string
			want *big.Rat
		}{{"today", new(big.Rat).SetInt64(today)}, {"expected", expected}, {"alert_line", new(big.Rat).Mul(expected, big.NewRat(1, 2))}} {
			if got := rat(t, row[col(c.name)]); !near(got, c.want) {
				t.Fatalf("%s at %s: %s = %v, want %v", where, lt, c.name, got.FloatString(3), c.want.FloatString(3))
			}
		}
	}
}
