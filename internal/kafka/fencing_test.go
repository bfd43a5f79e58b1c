package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/kafka"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/window"
)

// TestPartitionFencing: a worker that lost a partition to a newer claim
// writes nothing more — neither a batch nor a mark of minutes evaluated —
// for any partition, since a batch is one transaction; the new owner
// resumes from what the old one made durable and writes freely.
func TestPartitionFencing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := config.Default()
	db, err := store.Open(ctx, cluster.NewDB(t), cfg.Sink.Schema, cfg.Location)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	agg, alerts := aggregates.New(db), alertstore.New(db)
	wm := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	closed := window.MinuteOf(wm) - 1
	if err := kafka.InitPartitions(ctx, db, "t", map[int32]int64{0: 0, 1: 0}, wm, closed, "snap"); err != nil {
		t.Fatal(err)
	}
	a, err := kafka.ClaimPartitions(ctx, db, "a", map[string][]int32{"t": {0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	delta := func(merchant int64) []window.Delta {
		return []window.Delta{{Key: window.Key{Merchant: merchant, Minute: window.MinuteOf(wm)}, Agg: window.Agg{Approvals: 1, ApprovedAmount: 1000}}}
	}
	for i := range a {
		a[i].NextOffset = 10
	}
	if err := agg.Apply(ctx, &aggregates.Batch{Deltas: delta(1), Position: kafka.PositionOf(a), At: wm}); err != nil {
		t.Fatalf("the owner's batch: %v", err)
	}

	b, err := kafka.ClaimPartitions(ctx, db, "b", map[string][]int32{"t": {1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 1 || b[0].NextOffset != 10 || b[0].Epoch != a[1].Epoch+1 || b[0].Owner != "b" {
		t.Fatalf("b's claim of t/1: %+v; want offset 10 (a's durable batch), epoch %d, owner b", b, a[1].Epoch+1)
	}
	for i := range a {
		a[i].NextOffset = 20
	}
	err = agg.Apply(ctx, &aggregates.Batch{Deltas: delta(2), Position: kafka.PositionOf(a), At: wm})
	if !errors.Is(err, aggregates.ErrFenced) {
		t.Fatalf("a's batch after losing t/1: %v, want ErrFenced", err)
	}
	_, err = alerts.ApplyAlerts(ctx, &alertstore.AlertBatch{LastClosed: closed + 1, Closed: kafka.PositionOf(a)})
	if !errors.Is(err, aggregates.ErrFenced) {
		t.Fatalf("a's mark of minutes evaluated after losing t/1: %v, want ErrFenced", err)
	}
	// a still owns t/0 alone: writing only it goes through.
	if err := agg.Apply(ctx, &aggregates.Batch{Deltas: delta(3), Position: kafka.PositionOf(a[:1]), At: wm}); err != nil {
		t.Fatalf("a's batch for the partition it kept: %v", err)
	}
	b[0].NextOffset = 15
	if err := agg.Apply(ctx, &aggregates.Batch{Deltas: delta(4), Position: kafka.PositionOf(b), At: wm}); err != nil {
		t.Fatalf("b's batch: %v", err)
	}
	if _, err := alerts.ApplyAlerts(ctx, &alertstore.AlertBatch{LastClosed: closed + 1, Closed: kafka.PositionOf(b)}); err != nil {
		t.Fatalf("b's mark: %v", err)
	}

	rows, err := db.Pool().Query(ctx, `SELECT partition, owner, next_offset, last_closed FROM riskwatch.kafka_partitions ORDER BY partition`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		p      int32
		owner  string
		offset int64
		closed time.Time
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.p, &r.owner, &r.offset, &r.closed); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	want := []row{{0, "a", 20, closed.Start()}, {1, "b", 15, (closed + 1).Start()}}
	if len(got) != 2 || got[0].p != want[0].p || got[0].owner != want[0].owner || got[0].offset != want[0].offset || !got[0].closed.Equal(want[0].closed) ||
		got[1].p != want[1].p || got[1].owner != want[1].owner || got[1].offset != want[1].offset || !got[1].closed.Equal(want[1].closed) {
		t.Fatalf("partitions %+v, want %+v", got, want)
	}
	var merchants []int64
	mr, err := db.Pool().Query(ctx, `SELECT merchant_id FROM riskwatch.minute_agg ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for mr.Next() {
		var m int64
		if err := mr.Scan(&m); err != nil {
			t.Fatal(err)
		}
		merchants = append(merchants, m)
	}
	if len(merchants) != 3 || merchants[0] != 1 || merchants[1] != 3 || merchants[2] != 4 {
		t.Fatalf("merchants stored: %v, want 1, 3, 4 (2 came from a fenced batch)", merchants)
	}
}
