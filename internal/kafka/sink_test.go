package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/kafka"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/window"
)

// The workers' tests share these: a migrated sink, workers run in the
// test's process, and the sink's minutes against the rows' own GROUP BY.

func openSink(t *testing.T, cfg *config.Config) *store.DB {
	t.Helper()
	st, err := store.Open(context.Background(), cfg.Sink.DSN, cfg.Sink.Schema, cfg.Location)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startWorker runs a worker until the returned stop is called.
func startWorker(t *testing.T, cfg *config.Config, st *store.DB, member string) (stop func()) {
	t.Helper()
	w, err := kafka.NewWorker(kafka.WorkerOptions{Config: cfg, DB: st, Logger: testLogger(), Member: member})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker %s: %v", member, err)
		}
	}
}

// waitConsumed waits (on the sink, not on a clock) until the partitions'
// offsets say n records were consumed.
func waitConsumed(t *testing.T, st *store.DB, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var consumed int64
		if err := st.Pool().QueryRow(context.Background(), `SELECT coalesce(sum(next_offset), 0) FROM riskwatch.kafka_partitions`).Scan(&consumed); err != nil {
			t.Fatal(err)
		}
		if consumed == int64(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker consumed %d of %d records", consumed, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// minutes is merchant-minute aggregates by "merchant minute(RFC 3339 UTC)".
type minutes map[string]window.Agg

// add counts one row: an approval, or a cancel.
func (m minutes) add(merchant int64, at time.Time, cancel bool, amount int64) {
	k := fmt.Sprintf("%d %s", merchant, at.UTC().Truncate(time.Minute).Format(time.RFC3339))
	a := m[k]
	if cancel {
		a.Cancels, a.CanceledAmount = a.Cancels+1, a.CanceledAmount+amount
	} else {
		a.Approvals, a.ApprovedAmount = a.Approvals+1, a.ApprovedAmount+amount
	}
	m[k] = a
}

// checkSinkMinutes compares the sink's minute aggregates with want.
func checkSinkMinutes(t *testing.T, st *store.DB, want minutes) {
	t.Helper()
	got := minutes{}
	rows, err := st.Pool().Query(context.Background(), `SELECT merchant_id, minute, approvals, approved_amount, cancels, canceled_amount FROM riskwatch.minute_agg`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var m int64
		var at time.Time
		var a window.Agg
		if err := rows.Scan(&m, &at, &a.Approvals, &a.ApprovedAmount, &a.Cancels, &a.CanceledAmount); err != nil {
			t.Fatal(err)
		}
		got[fmt.Sprintf("%d %s", m, at.UTC().Format(time.RFC3339))] = a
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d merchant-minutes stored, want %d", len(got), len(want))
	}
	for k, a := range want {
		if got[k] != a {
			t.Fatalf("merchant-minute %s = %+v, want %+v", k, got[k], a)
		}
	}
}

// deadLetters counts the sink's dead letters by reason.
func deadLetters(t *testing.T, st *store.DB) map[string]int {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `SELECT reason, count(*) FROM riskwatch.dead_letters GROUP BY reason`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var reason string
		var n int
		if err := rows.Scan(&reason, &n); err != nil {
			t.Fatal(err)
		}
		out[reason] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// mustJSON encodes a record value the test built itself.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
