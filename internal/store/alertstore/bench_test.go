package alertstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/alert"
)

// BenchmarkApplyAlerts stores one close's alerts, as the minute's close
// waits for them: 50 open alerts evaluated again (still firing) and 5 new
// ones firing, notified to two receivers.
func BenchmarkApplyAlerts(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, time.UTC)
	closed := bootstrapEmpty(b, s)
	m0 := minute(b, "2026-11-25T14:01:00Z")
	routes := []Route{{Receiver: "ops"}, {Receiver: "pager"}}
	vals := map[string]any{"c_h": int64(9)}
	var open []*alert.Alert
	var first []AlertChange
	for i := range 50 {
		live, ch := fire("cancel_rate_spike", int64(1000+i), m0, vals)
		open = append(open, live)
		first = append(first, ch)
	}
	if _, err := s.ApplyAlerts(ctx, &AlertBatch{Closed: closed, LastClosed: m0, Changes: first, Routes: routes}); err != nil {
		b.Fatal(err)
	}
	m, merchant := m0, int64(100_000)
	for b.Loop() {
		m++
		var chs []AlertChange
		for _, live := range open {
			chs = append(chs, still(live, m, vals))
		}
		for range 5 {
			merchant++
			_, ch := fire("cancel_rate_spike", merchant, m, vals)
			chs = append(chs, ch)
		}
		if _, err := s.ApplyAlerts(ctx, &AlertBatch{Closed: closed, LastClosed: m, Changes: chs, Routes: routes}); err != nil {
			b.Fatal(fmt.Errorf("minute %s: %w", m, err))
		}
	}
}
