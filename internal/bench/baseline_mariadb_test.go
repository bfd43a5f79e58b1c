package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/mysqlserver"
	"github.com/riskwatch/riskwatch/internal/mysqltest"
	"github.com/riskwatch/riskwatch/internal/sim"
)

// TestMariaDBBaseline runs the MariaDB job over the hand-built dataset of
// TestRunBaseline on a private MariaDB: the same firing merchants as the
// hand-worked answer and as the engine's rule code, at the same minutes
// and thresholds.
func TestMariaDBBaseline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := mysqltest.Start(ctx, mysqlserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	db, err := srv.CreateDB(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	for stmt := range strings.SplitSeq(sim.MySQLSchema, ";") {
		if strings.TrimSpace(stmt) != "" {
			if err := srv.Exec(ctx, db, stmt); err != nil {
				t.Fatal(err)
			}
		}
	}
	loc := seoul(t)
	d := seedDataset(loc)
	var id int64
	insert := func(table, cols string, rows []txRow, status bool) {
		for len(rows) > 0 {
			n := min(len(rows), 1000)
			var values []string
			for _, r := range rows[:n] {
				id++
				extra := fmt.Sprint(id) // payment_cancels.payment_id: any non-null value
				if status {
					extra = "'DONE'"
				}
				values = append(values, fmt.Sprintf("(%d, %d, %d, %s, %s)", id, r.merchant, r.amount, extra, myTime(r.at)))
			}
			if err := srv.Exec(ctx, db, "INSERT INTO "+table+" "+cols+" VALUES "+strings.Join(values, ", ")); err != nil {
				t.Fatal(err)
			}
			rows = rows[n:]
		}
	}
	insert("payments", "(id, merchant_id, amount, status, approved_at)", d.payments, true)
	insert("payment_cancels", "(id, merchant_id, cancel_amount, payment_id, canceled_at)", d.cancels, false)

	job := mariaJob{srv: srv.Server, db: db}
	if err := job.prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := job.prepare(ctx); err != nil {
		t.Fatalf("a second prepare: %v", err)
	}
	p := DefaultBaselineParams(loc)
	run, err := job.run(ctx, p, testMinute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cancel_rate_spike %v in %v, volume_drop %v in %v, server CPU %v", run.CancelFiring, run.CancelDur, run.VolumeFiring, run.VolumeDur, run.SourceCPU)
	if !slices.Equal(run.CancelFiring, wantCancel) || !slices.Equal(run.VolumeFiring, wantVolume) {
		t.Errorf("fires %v and %v, want %v and %v", run.CancelFiring, run.VolumeFiring, wantCancel, wantVolume)
	}
	if run.CancelDur <= 0 || run.VolumeDur <= 0 || run.SourceCPU < 0 {
		t.Errorf("run = %+v: want positive durations and a non-negative CPU time", run)
	}
	p2, p3 := p, p
	p2.BaselineFloor, p2.DropRatio = 0.0025, 0.7
	p3.MinExpectedFraction = 0
	for _, c := range []struct {
		p BaselineParams
		m time.Time
	}{
		{p, testMinute.Add(time.Minute)},
		{p, time.Date(2026, 11, 20, 0, 0, 0, 0, loc)},
		{p, time.Date(2026, 11, 20, 23, 59, 0, 0, loc)},
		{p, time.Date(2026, 11, 20, 11, 30, 0, 0, loc)},
		{p, time.Date(2026, 11, 21, 0, 0, 0, 0, loc)},
		{p2, testMinute},
		{p3, testMinute},
	} {
		run, err := job.run(ctx, c.p, c.m)
		if err != nil {
			t.Fatal(err)
		}
		wc, wv := engineFiring(t, d.each, c.p, c.m)
		if !slices.Equal(run.CancelFiring, wc) || !slices.Equal(run.VolumeFiring, wv) {
			t.Errorf("at %s with %+v the SQL fires %v and %v, the engine's rule code %v and %v", c.m, c.p, run.CancelFiring, run.VolumeFiring, wc, wv)
		}
	}
	if _, err := job.run(ctx, p, testMinute.Add(time.Second)); err == nil {
		t.Error("a minute that does not start on the minute was accepted")
	}
}
