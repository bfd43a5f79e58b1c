package aggregates

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/window"
)

// storedMinute reads one merchant's stored minute (zero when absent).
func storedMinute(t *testing.T, s *Store, merchant int64, m window.Minute) window.Agg {
	t.Helper()
	var a window.Agg
	err := s.db.Pool().QueryRow(context.Background(), fmt.Sprintf(`SELECT coalesce(sum(approvals), 0), coalesce(sum(approved_amount), 0), coalesce(sum(cancels), 0), coalesce(sum(canceled_amount), 0)
		FROM %s WHERE merchant_id = $1 AND minute = $2`, s.db.Table("minute_agg")), merchant, m.Start()).Scan(&a.Approvals, &a.ApprovedAmount, &a.Cancels, &a.CanceledAmount)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestApplyRefusesOverflow: a delta that would take a stored sum past int64
// is left out and recorded as a dead letter; the other deltas, the dead
// letters and the checkpoint of the batch are written as usual — whether
// the overflow is in the merchant's minute (the sink refuses the upsert) or
// within the batch's own daily sums.
func TestApplyRefusesOverflow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	w := bootstrapEmpty(t, s, 100)
	m1, m2 := minute(t, "2026-11-25T14:10:00Z"), minute(t, "2026-11-25T14:11:00Z")
	big := int64(math.MaxInt64 - 1000)
	cp := func(n uint64) CheckpointPosition {
		return w.At(lsn(n), minute(t, "2026-11-25T14:00:00Z"), m2.End())
	}
	first := &Batch{Deltas: []window.Delta{{Key: window.Key{Merchant: 7, Minute: m1}, Agg: window.Agg{Approvals: 1, ApprovedAmount: big}}}, Position: cp(200)}
	if err := s.Apply(ctx, first); err != nil {
		t.Fatal(err)
	}
	if len(first.Refused) != 0 {
		t.Fatalf("refused %+v", first.Refused)
	}

	// 7's minute would pass int64 in the sink; 8's fits (in the same
	// platform minute, 7's delta left out); a row dead letter rides along.
	b := &Batch{
		Deltas: []window.Delta{
			{Key: window.Key{Merchant: 7, Minute: m1}, Agg: window.Agg{Approvals: 1, ApprovedAmount: 1001}},
			{Key: window.Key{Merchant: 8, Minute: m1}, Agg: window.Agg{Approvals: 2, ApprovedAmount: 50}},
		},
		DeadLetters: []event.DeadLetter{{Table: "public.payments", Kind: event.Approval, Reason: event.ReasonNegativeAmount, Detail: "x", Row: map[string]any{"amount": -1}, Position: lsn(300)}},
		Position:    cp(300),
	}
	if err := s.Apply(ctx, b); err != nil {
		t.Fatalf("apply with an overflowing delta: %v", err)
	}
	if len(b.Deltas) != 1 || b.Deltas[0].Merchant != 8 {
		t.Errorf("kept deltas %+v, want merchant 8's only", b.Deltas)
	}
	if len(b.Refused) != 1 || b.Refused[0].Reason != event.ReasonAmountOutOfRange || !strings.Contains(b.Refused[0].Detail, "merchant 7") ||
		!strings.Contains(b.Refused[0].Detail, "minute's") || b.Refused[0].Position != lsn(300) {
		t.Errorf("refused %+v", b.Refused)
	}
	if got := storedMinute(t, s, 7, m1); got != (window.Agg{Approvals: 1, ApprovedAmount: big}) {
		t.Errorf("merchant 7's minute = %+v, want unchanged", got)
	}
	if got := storedMinute(t, s, 8, m1); got != (window.Agg{Approvals: 2, ApprovedAmount: 50}) {
		t.Errorf("merchant 8's minute = %+v", got)
	}
	if got, err := s.Checkpoint(ctx, "s1"); err != nil || got.Position != lsn(300) {
		t.Errorf("checkpoint %+v %v, want position %s", got, err, lsn(300))
	}
	var reasons string
	if err := s.db.Pool().QueryRow(ctx, fmt.Sprintf(`SELECT string_agg(reason, ',' ORDER BY reason) FROM %s`, s.db.Table("dead_letters"))).Scan(&reasons); err != nil {
		t.Fatal(err)
	}
	if reasons != "amount_out_of_range,negative_amount" {
		t.Errorf("dead letters %s", reasons)
	}

	// Within one batch: two minutes of merchant 9 each fit, their hour does not.
	half := int64(math.MaxInt64/2 + 1)
	m3, m4 := minute(t, "2026-11-25T14:20:00Z"), minute(t, "2026-11-25T14:21:00Z")
	c := &Batch{Deltas: []window.Delta{
		{Key: window.Key{Merchant: 9, Minute: m3}, Agg: window.Agg{Approvals: 1, ApprovedAmount: half}},
		{Key: window.Key{Merchant: 9, Minute: m4}, Agg: window.Agg{Approvals: 1, ApprovedAmount: half}},
	}, Position: cp(400)}
	if err := s.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	if len(c.Deltas) != 1 || c.Deltas[0].Minute != m3 || len(c.Refused) != 1 || !strings.Contains(c.Refused[0].Detail, "hour's") {
		t.Errorf("kept %+v refused %+v", c.Deltas, c.Refused)
	}
	var hourSum int64
	if err := s.db.Pool().QueryRow(ctx, fmt.Sprintf(`SELECT approved_amount FROM %s WHERE merchant_id = 9`, s.db.Table("hour_agg"))).Scan(&hourSum); err != nil || hourSum != half {
		t.Errorf("hour of merchant 9 = %d (%v), want %d", hourSum, err, half)
	}
}

// TestDeadLettersAnyBytes: dead letters whose text and row carry bytes
// PostgreSQL's text and jsonb refuse as they are (NUL, invalid UTF-8, years
// past 9999, non-finite floats) are all written, with the batch.
func TestDeadLettersAnyBytes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	w := bootstrapEmpty(t, s, 100)
	dls := []event.DeadLetter{
		{Table: "public.payments\x00", Kind: event.Approval, Reason: event.ReasonInvalidValue, Detail: "decoding \x00\x01\xff: bad",
			Row: map[string]any{"amount": "\x00\x00", "note\xff": "\xfe", "at": time.Date(294276, 1, 1, 0, 0, 0, 0, time.UTC), "f": math.NaN()}},
		{Table: "t", Kind: event.Cancel, Reason: event.ReasonInvalidValue, Detail: strings.Repeat("가", 10000), Row: map[string]any{"x": strings.Repeat("\x00", 100000)}},
	}
	b := &Batch{DeadLetters: dls, Position: w.At(lsn(200), minute(t, "2026-11-25T14:00:00Z"), time.Date(2026, 11, 25, 14, 1, 1, 0, time.UTC))}
	if err := s.Apply(ctx, b); err != nil {
		t.Fatalf("apply: %v", err)
	}
	var n int
	var maxDetail int
	if err := s.db.Pool().QueryRow(ctx, fmt.Sprintf(`SELECT count(*), max(octet_length(detail)) FROM %s`, s.db.Table("dead_letters"))).Scan(&n, &maxDetail); err != nil {
		t.Fatal(err)
	}
	if n != 2 || maxDetail > event.MaxDetailBytes+64 {
		t.Errorf("%d dead letters, longest detail %d bytes", n, maxDetail)
	}
}
