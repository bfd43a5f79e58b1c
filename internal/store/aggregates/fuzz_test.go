package aggregates

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/window"
)

// PostgreSQL type OIDs of every column type the mapping accepts, and a few
// it only shows in dead letters' rows.
const (
	fzBool, fzInt8, fzInt2, fzInt4, fzText, fzFloat8 = 16, 20, 21, 23, 25, 701
	fzBPChar, fzVarchar, fzBytea, fzDate, fzTS       = 1042, 1043, 17, 1082, 1114
	fzTSTZ, fzNumeric, fzJSONB, fzUUID, fzEnum       = 1184, 1700, 3802, 2950, 16400
)

// fuzzSink is one sink for every input of a fuzz run, and the mapping
// layouts the inputs are read with: merchant, amount and time of every
// type the mapping takes, a filter column, and a column of another type.
type fuzzSink struct {
	s      *Store
	w      Checkpoint
	tables []*event.Table
	mu     sync.Mutex
	lsn    uint64
}

func openFuzzSink(f *testing.F) *fuzzSink {
	ctx := context.Background()
	db, err := store.Open(ctx, cluster.NewDB(f), "rw_sink", time.UTC)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		f.Fatal(err)
	}
	s := New(db)
	err = s.Bootstrap(ctx, Checkpoint{Slot: "fuzz", Position: "0/1", Progress: time.Unix(0, 0)}, func(context.Context, *Loader) error { return nil }, nil)
	if err != nil {
		f.Fatal(err)
	}
	w, err := s.Claim(ctx, "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	m, err := event.NewMapping([]event.Spec{
		{Schema: "public", Table: "t", Kind: event.Approval, Merchant: "m", Amount: "a", Time: "at", FilterColumn: "f", FilterIn: []string{"pay", "true", "1"}},
	}, event.Limits{MaxFuture: 5 * time.Minute, Retention: 8 * 24 * time.Hour, MaxAmount: 1_000_000_000_000})
	if err != nil {
		f.Fatal(err)
	}
	fz := &fuzzSink{s: s, w: w, lsn: 1}
	for _, merchant := range []uint32{fzInt2, fzInt4, fzInt8, fzNumeric} {
		for _, amount := range []uint32{fzInt2, fzInt4, fzInt8, fzNumeric} {
			for _, at := range []uint32{fzTS, fzTSTZ} {
				for _, filter := range []uint32{fzText, fzVarchar, fzBPChar, fzBool, fzInt4, fzEnum} {
					for _, other := range []uint32{fzBytea, fzText, fzFloat8, fzNumeric, fzDate, fzJSONB, fzUUID, fzTSTZ} {
						tbl, err := m.Bind("public", "t", []event.Column{{Name: "m", TypeOID: merchant}, {Name: "a", TypeOID: amount},
							{Name: "at", TypeOID: at}, {Name: "f", TypeOID: filter}, {Name: "other", TypeOID: other}})
						if err != nil {
							f.Fatal(err)
						}
						fz.tables = append(fz.tables, tbl)
					}
				}
			}
		}
	}
	return fz
}

// value reads one column value from the input: a format byte ('n', 't',
// 'b', or anything) and the bytes after it.
func fuzzValue(format byte, data []byte) event.Value {
	switch format % 4 {
	case 0:
		return event.Value{Format: 'n'}
	case 1:
		return event.Value{Format: 't', Data: data}
	case 3:
		return event.Value{Format: 'u'}
	}
	return event.Value{Format: 'b', Data: data}
}

// FuzzAnyRowReachesTheSink drives arbitrary values of every mapped column
// type, in either wire format, through the mapping (decode and validate),
// the window and the sink: whatever the bytes, the row ends as an
// aggregate or a dead letter, the sink takes the batch and the position
// moves on.
func FuzzAnyRowReachesTheSink(f *testing.F) {
	be := func(n int64, size int) []byte {
		b := make([]byte, 8)
		binary.BigEndian.PutUint64(b, uint64(n))
		return b[8-size:]
	}
	numeric12345 := []byte{0, 2, 0, 0, 0, 0x40, 0, 1, 0x04, 0xd2, 0x13, 0x88} // 1234.5: weight 0, sign +, dscale 1, digits 1234 5000
	for _, seed := range []struct {
		table           uint16
		fm, fa, ft, ff  byte
		m, a, at, f, ot []byte
	}{
		{0, 2, 2, 2, 1, be(42, 2), be(100, 2), be(851_000_000_000_000, 8), []byte("pay"), []byte{0xff}},
		{5, 2, 2, 2, 1, be(42, 8), numeric12345, be(851_000_000_000_000, 8), []byte("pay\x00"), []byte{0}},
		{77, 1, 1, 1, 1, []byte("9223372036854775807"), []byte("9223372036854775807"), []byte("2026-12-06 10:00:00+09"), []byte("pay"), []byte("\x00\xff")},
		{300, 2, 2, 2, 2, be(7, 8), be(1_000_000_000_000, 8), be(9223371331199999999, 8), []byte{1}, []byte("NaN")},
		{1000, 1, 1, 1, 1, []byte("NaN"), []byte("Infinity"), []byte("294276-01-01"), []byte("1"), []byte("\xfe")},
		{1500, 2, 2, 2, 2, []byte{0, 0, 0}, []byte{0xff}, []byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, []byte("\xff\xfe"), nil},
		{2000, 1, 1, 1, 1, []byte("\x00"), []byte("-1"), []byte("infinity"), []byte("pay"), []byte("{\"a\": \"\\u0000\"}")},
		{3071, 2, 2, 2, 1, be(1, 8), be(0, 8), be(-9223372036854775807, 8), []byte("pay"), []byte("x")},
	} {
		f.Add(seed.table, seed.fm, seed.fa, seed.ft, seed.ff, seed.m, seed.a, seed.at, seed.f, seed.ot)
	}
	fz := openFuzzSink(f)
	f.Fuzz(func(t *testing.T, table uint16, fm, fa, ft, ff byte, m, a, at, filter, other []byte) {
		fz.mu.Lock()
		defer fz.mu.Unlock()
		tbl := fz.tables[int(table)%len(fz.tables)]
		row := []event.Value{fuzzValue(fm, m), fuzzValue(fa, a), fuzzValue(ft, at), fuzzValue(ff, filter), fuzzValue(fm^fa, other)}
		commitUS := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC).UnixMicro()
		fz.lsn++
		var out event.Output
		tbl.Map(row, commitUS, &out)
		if len(out.Events)+len(out.DeadLetters)+out.Filtered != 1 {
			t.Fatalf("one row gave %d events, %d dead letters, %d filtered", len(out.Events), len(out.DeadLetters), out.Filtered)
		}
		w := window.New(time.Second, 0)
		for _, ev := range out.Events {
			if _, ok := w.AddApproval(ev.Merchant, ev.TimeUS, ev.Amount); !ok {
				out.DeadLetters = append(out.DeadLetters, event.SumOverflow(ev, "minute", lsn(fz.lsn), time.UnixMicro(commitUS)))
			}
		}
		b := &Batch{Deltas: w.Drain(), DeadLetters: out.DeadLetters,
			Position: fz.w.At(lsn(fz.lsn), 0, time.UnixMicro(commitUS))}
		if err := fz.s.Apply(context.Background(), b); err != nil {
			t.Fatalf("the sink refused row %+v: %v", row, err)
		}
		cp, err := fz.s.Checkpoint(context.Background(), "fuzz")
		if err != nil || cp.Position != lsn(fz.lsn) {
			t.Fatalf("checkpoint %+v (%v), want position %s", cp, err, lsn(fz.lsn))
		}
	})
}
