package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/window"
)

// TestScopedTakeover is a worker taking a merchant over mid-alert:
// merchant 100's surge at minute M fires, is false from M+60 and, single
// node, resolves at its fifth false evaluation, M+64. The first owner
// evaluates through M+63 (four false evaluations stored). The new owner
// restores from M+62 — the oldest last closed minute among its partitions —
// and re-closes M+63, which merchant 100's partition had already
// evaluated: skipped there, the alert resolves at M+64 as on one node;
// evaluated again, the fourth false evaluation would count twice and
// resolve it at M+63.
func TestScopedTakeover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := config.Default()
	cfg.Sink.DSN = cluster.NewDB(t)
	cfg.Location = time.UTC
	cfg.BusinessTimezone = "UTC"
	db, err := store.Open(ctx, cfg.Sink.DSN, cfg.Sink.Schema, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	st, alerts := aggregates.New(db), alertstore.New(db)
	// Merchant 100: 2,000 approvals and 20 cancels (1%) spread over the two
	// days before M-60, then 30 approvals and 12 cancels at M.
	m := window.MinuteOf(time.Now().UTC().Truncate(time.Minute).Add(-3 * time.Hour))
	var rows strings.Builder
	for i := range 2000 {
		c := 0
		if i%100 == 0 {
			c = 1
		}
		fmt.Fprintf(&rows, "100\t%s\t1\t10000\t%d\t%d\n", (m - 61 - window.Minute(i)).Start().Format("2006-01-02 15:04:05+00"), c, c*5000)
	}
	fmt.Fprintf(&rows, "100\t%s\t30\t300000\t12\t120000\n", m.Start().Format("2006-01-02 15:04:05+00"))
	err = st.Bootstrap(ctx, aggregates.Checkpoint{Slot: "takeover", Position: "0/1", LastClosed: m - 1, Progress: (m + 200).Start()}, func(ctx context.Context, l *aggregates.Loader) error {
		_, err := l.CopyMinutes(ctx, func(w *aggregates.MinuteWriter) error {
			_, err := io.WriteString(w, rows.String())
			return err
		})
		return err
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := st.Claim(ctx, "takeover")
	if err != nil {
		t.Fatal(err)
	}
	everyone := func(int64) bool { return true }
	closeRange := func(ev *Evaluator, from, to window.Minute) []string {
		t.Helper()
		status := &StatusBoard{}
		core := NewCore(CoreOptions{Config: cfg, Aggregates: st, Alerts: alerts, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Metrics: NewMetrics(nil, status), Status: status}, ev, from-1, (m + 200).Start())
		var out []string
		for x := from; x <= to; x++ {
			c, _, err := core.closeAndStore(ctx, x, x, cp.At(cp.Position, x-1, (m+200).Start()))
			if err != nil {
				t.Fatal(err)
			}
			for _, ch := range c.Transitions {
				out = append(out, fmt.Sprintf("%s at M%+d", ch.Transition, int(x-m)))
			}
		}
		return out
	}
	first, err := NewScopedEvaluator(ctx, st, cfg, m-1, nil, &Scope{Owns: everyone, Evaluated: func(window.Minute, int64) bool { return false }, Platform: st.PlatformSums})
	if err != nil {
		t.Fatal(err)
	}
	if got := closeRange(first, m, m+63); strings.Join(got, ", ") != "firing at M+0" {
		t.Fatalf("first owner through M+63: %v, want firing at M+0", got)
	}
	open, err := alerts.OpenAlerts(ctx)
	if err != nil || len(open) != 1 || open[0].FalseCount != 4 {
		t.Fatalf("stored after M+63: %+v, %v; want one open alert with 4 false evaluations", open, err)
	}
	second, err := NewScopedEvaluator(ctx, st, cfg, m+62, open, &Scope{Owns: everyone, Platform: st.PlatformSums,
		Evaluated: func(x window.Minute, merchant int64) bool { return merchant == 100 && x <= m+63 }})
	if err != nil {
		t.Fatal(err)
	}
	if got := closeRange(second, m+63, m+65); strings.Join(got, ", ") != "resolved at M+64" {
		t.Fatalf("new owner from M+63: %v, want resolved at M+64 as on one node", got)
	}
	// And the backtest of the same minutes agrees.
	var bt []string
	err = Backtest(ctx, st, cfg, BacktestOptions{From: m, To: m + 66, ProgressOut: io.Discard, Emit: func(tr Transition) error {
		bt = append(bt, fmt.Sprintf("%s at %s", tr.State, tr.Minute))
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"firing at " + m.String(), "resolved at " + (m + 64).String()}; strings.Join(bt, ", ") != strings.Join(want, ", ") {
		t.Fatalf("backtest: %v, want %v", bt, want)
	}
}
