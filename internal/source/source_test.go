package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/window"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

func defaultSpecs() []event.Spec {
	return []event.Spec{
		{Schema: "public", Table: "payments", Kind: event.Approval, Merchant: "merchant_id", Amount: "amount", Time: "approved_at"},
		{Schema: "public", Table: "payment_cancels", Kind: event.Cancel, Merchant: "merchant_id", Amount: "cancel_amount", Time: "canceled_at"},
	}
}

func newTestSource(t *testing.T, dsn, slot string, specs []event.Spec) *Source {
	t.Helper()
	m, err := event.NewMapping(specs, event.Limits{MaxFuture: 5 * time.Minute, Retention: 8 * 24 * time.Hour, MaxAmount: 1e12})
	if err != nil {
		t.Fatal(err)
	}
	return New(Options{DSN: dsn, Slot: slot, Publication: slot, Mapping: m, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

const ddl = `CREATE TABLE payments (id bigint PRIMARY KEY, merchant_id bigint NOT NULL, amount bigint NOT NULL, status text NOT NULL, approved_at timestamptz NOT NULL);
	CREATE TABLE payment_cancels (id bigint PRIMARY KEY, payment_id bigint NOT NULL, merchant_id bigint NOT NULL, cancel_amount bigint NOT NULL, canceled_at timestamptz NOT NULL)`

func TestPrepareRejectsMappingsThatDoNotMatch(t *testing.T) {
	t.Parallel()
	dsn := cluster.NewDB(t)
	ctx := context.Background()
	if err := cluster.Exec(ctx, dbOf(dsn), ddl+`; CREATE TABLE odd (id int, merchant text, amount bigint, at date)`); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec event.Spec
		want string
	}{
		{"missing table", event.Spec{Schema: "public", Table: "nope", Kind: event.Approval, Merchant: "m", Amount: "a", Time: "t"}, "public.nope does not exist"},
		{"missing column", event.Spec{Schema: "public", Table: "payments", Kind: event.Approval, Merchant: "merchant_id", Amount: "amount", Time: "paid_at"}, `time column "paid_at" does not exist`},
		{"text merchant", event.Spec{Schema: "public", Table: "odd", Kind: event.Approval, Merchant: "merchant", Amount: "amount", Time: "at"}, `merchant column "merchant"`},
		{"date time", event.Spec{Schema: "public", Table: "odd", Kind: event.Approval, Merchant: "id", Amount: "amount", Time: "at"}, `time column "at"`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSource(t, dsn, fmt.Sprintf("prep_%d", i), []event.Spec{tc.spec})
			err := s.Prepare(ctx)
			if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Prepare: %v (permanent %v), want a permanent error containing %q", err, IsPermanent(err), tc.want)
			}
		})
	}
}

func dbOf(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		panic(err)
	}
	return cfg.Database
}

func TestPreparePublicationIsCreatedThenExtended(t *testing.T) {
	t.Parallel()
	dsn := cluster.NewDB(t)
	ctx := context.Background()
	if err := cluster.Exec(ctx, dbOf(dsn), ddl+`; CREATE TABLE ledger (id int, shop bigint, krw bigint, at timestamptz, type text)`); err != nil {
		t.Fatal(err)
	}
	tables := func() []string {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows, _ := conn.Query(ctx, `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = 'pub_ext' ORDER BY 1`)
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if err := newTestSource(t, dsn, "pub_ext", defaultSpecs()).Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(tables()); got != "[public.payment_cancels public.payments]" {
		t.Fatalf("publication tables = %s", got)
	}
	specs := append(defaultSpecs(), event.Spec{Schema: "public", Table: "ledger", Kind: event.Approval, Merchant: "shop", Amount: "krw", Time: "at", FilterColumn: "type", FilterIn: []string{"pay"}})
	if err := newTestSource(t, dsn, "pub_ext", specs).Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(tables()); got != "[public.ledger public.payment_cancels public.payments]" {
		t.Fatalf("publication tables after extending = %s", got)
	}
}

// TestFailedSnapshotDropsSlot: a first snapshot that fails must not leave a
// slot behind whose start point the sink never reached.
func TestFailedSnapshotDropsSlot(t *testing.T) {
	t.Parallel()
	dsn := cluster.NewDB(t)
	ctx := context.Background()
	if err := cluster.Exec(ctx, dbOf(dsn), ddl); err != nil {
		t.Fatal(err)
	}
	s := newTestSource(t, dsn, "snap_fail", defaultSpecs())
	if err := s.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if si, err := s.Slot(ctx); err != nil || si != nil {
		t.Fatalf("slot before: %+v %v", si, err)
	}
	boom := errors.New("sink unavailable")
	var seen *Snapshot
	err := s.CreateSlotWithSnapshot(ctx, func(ctx context.Context, snap *Snapshot) error {
		seen = snap
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if seen == nil || seen.LSN == 0 || seen.Time().IsZero() {
		t.Fatalf("snapshot = %+v", seen)
	}
	if si, err := s.Slot(ctx); err != nil || si != nil {
		t.Fatalf("slot after failed snapshot: %+v %v", si, err)
	}
	if err := s.DropSlot(ctx); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("drop missing slot: %v", err)
	}
}

// TestSnapshotChunksAndDeadLetters: the snapshot sees rows committed before
// the slot and not after; with time indexes the range is split into days.
func TestSnapshotChunksAndDeadLetters(t *testing.T) {
	t.Parallel()
	dsn := cluster.NewDB(t)
	ctx := context.Background()
	if err := cluster.Exec(ctx, dbOf(dsn), ddl+`;
		INSERT INTO payments VALUES (1, 5, 100, 'a', now() - interval '1 hour'), (2, 5, -1, 'a', now()), (3, 5, 7, 'a', now() + interval '1 hour'),
			(4, 5, 9, 'a', now() - interval '9 days')`); err != nil {
		t.Fatal(err)
	}
	s := newTestSource(t, dsn, "snap_chunks", defaultSpecs())
	if err := s.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	var minutes, dead strings.Builder
	var chunks []Chunk
	err := s.CreateSlotWithSnapshot(ctx, func(ctx context.Context, snap *Snapshot) error {
		chunks = snap.Days(time.UTC)
		// Committed after the consistent point: invisible here.
		if err := cluster.Exec(ctx, dbOf(dsn), `INSERT INTO payments VALUES (10, 6, 1, 'a', now())`); err != nil {
			return err
		}
		for _, c := range chunks {
			if _, err := snap.CopyMinutes(ctx, c, &minutes); err != nil {
				return err
			}
		}
		return snap.Leftovers(ctx, nil, func(out *event.Output) error {
			for _, d := range out.DeadLetters {
				fmt.Fprintf(&dead, "%s %s\n", d.Reason, d.Detail)
			}
			if len(out.Events) > 0 {
				return fmt.Errorf("left-out rows gave events %+v", out.Events)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 1 {
		t.Fatalf("without time indexes: %d chunks, want 1", len(chunks))
	}
	if got := strings.Count(minutes.String(), "\n"); got != 1 || !strings.HasPrefix(minutes.String(), "5\t") || !strings.Contains(minutes.String(), "\t1\t100\t0\t0\n") {
		t.Fatalf("snapshot minutes = %q, want merchant 5's one valid payment", minutes.String())
	}
	for _, want := range []string{"negative_amount", "future_time"} {
		if !strings.Contains(dead.String(), want) {
			t.Fatalf("snapshot dead letters lack %s: %q", want, dead.String())
		}
	}
	if strings.Count(dead.String(), "\n") != 2 {
		t.Fatalf("snapshot dead letters = %q, want 2 (the 9-day-old row is history, not an event)", dead.String())
	}
	// With indexes on both time columns, days.
	if err := cluster.Exec(ctx, dbOf(dsn), `CREATE INDEX ON payments (approved_at); CREATE INDEX ON payment_cancels (canceled_at)`); err != nil {
		t.Fatal(err)
	}
	if err := s.DropSlot(ctx); err != nil {
		t.Fatal(err)
	}
	seoul, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		t.Fatal(err)
	}
	// Rows on several days, so that chunks side by side have work.
	if err := cluster.Exec(ctx, dbOf(dsn), `INSERT INTO payments SELECT 100 + g, g % 7 + 1, g, 'a', now() - g * interval '37 minutes' FROM generate_series(1, 250) g`); err != nil {
		t.Fatal(err)
	}
	var serial strings.Builder
	var side textRows
	err = s.CreateSlotWithSnapshot(ctx, func(ctx context.Context, snap *Snapshot) error {
		chunks = snap.Days(seoul)
		for _, c := range chunks {
			if _, err := snap.CopyMinutes(ctx, c, &serial); err != nil {
				return err
			}
		}
		// Two at a time, as the first start does, the second on a fork.
		done := 0
		for i := 0; i < len(chunks); i += snap.Width() {
			if err := snap.Aggregate(ctx, chunks[i:min(i+snap.Width(), len(chunks))], &side, func() { done++ }); err != nil {
				return err
			}
		}
		if snap.Width() != 2 || snap.fork == nil || done != len(chunks) {
			return fmt.Errorf("side by side: width %d, fork %v, %d chunks done of %d", snap.Width(), snap.fork != nil, done, len(chunks))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The fork sees the same snapshot; side by side, the rows are the same.
	a, b := strings.Split(serial.String(), "\n"), strings.Split(side.String(), "\n")
	slices.Sort(a)
	slices.Sort(b)
	if len(a) < 200 || !slices.Equal(a, b) {
		t.Fatalf("chunks side by side gave %d rows, one after another %d; or they differ", len(b), len(a))
	}
	// 8 days back and 5 minutes ahead, cut at Seoul's midnights (the
	// rollups' business days): 9 or 10 pieces.
	if len(chunks) < 9 || len(chunks) > 10 {
		t.Fatalf("with time indexes: %d chunks", len(chunks))
	}
	for i := 1; i < len(chunks); i++ {
		if !chunks[i].From.Equal(chunks[i-1].To) {
			t.Fatalf("chunks leave a gap or overlap: %v", chunks)
		}
		if l := chunks[i].From.In(seoul); l.Hour() != 0 || l.Minute() != 0 || l.Second() != 0 || l.Nanosecond() != 0 {
			t.Fatalf("chunk %d starts at %s, not at a Seoul midnight", i, l)
		}
	}
}

// TestLineWriterKeepsRowsWhole: two producers writing rows in arbitrary
// pieces into one stream never interleave within a row.
func TestLineWriterKeepsRowsWhole(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var out bytes.Buffer
	var wg sync.WaitGroup
	for p := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lw := &lineWriter{mu: &mu, w: &out}
			for i := range 20000 {
				row := fmt.Sprintf("%d\t%d\t%s\n", p, i, strings.Repeat("x", i%50))
				// Split each row at a varying point.
				cut := i % len(row)
				lw.Write([]byte(row[:cut]))
				lw.Write([]byte(row[cut:]))
			}
			if err := lw.flush(true); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	next := [2]int{}
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var p, i int
		var pad string
		if n, _ := fmt.Sscanf(line, "%d\t%d\t%s", &p, &i, &pad); n < 2 || i != next[p] || len(pad) != i%50 {
			t.Fatalf("row %q out of place or torn (expected %d from producer %d)", line, next[p], p)
		}
		next[p]++
	}
	if next != [2]int{20000, 20000} {
		t.Fatalf("rows per producer: %v", next)
	}
}

// textRows takes a PostgreSQL snapshot's minutes, which come as the
// server's COPY text: never as numbers.
type textRows struct{ strings.Builder }

func (t *textRows) Sums(int64, window.Minute, window.Agg) error {
	return errors.New("a PostgreSQL snapshot gave its sums as numbers")
}

func (t *textRows) Overflow(merchant int64, m window.Minute) {
	fmt.Fprintf(&t.Builder, "overflow %d %s (not text)\n", merchant, m)
}
