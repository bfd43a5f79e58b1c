package source

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/riskwatch/riskwatch/internal/event"
)

// The decoder benchmarks replay what the server sends for SPEC §2's default
// schema at peak load: payments INSERTs with one payment_cancels INSERT per
// 100 payments, all columns binary (the stream asks for binary 'true').
// One operation is one pass over 10,100 rows; ns/event and allocs/event divide
// by the rows mapped, the figures to compare with the 5,000 events/s budget.

const (
	benchPayments        = 10_000
	benchCancelsPerPass  = benchPayments / 100
	benchEventsPerPass   = benchPayments + benchCancelsPerPass
	benchMerchantCount   = 100_000
	benchTopMerchants    = benchMerchantCount / 100
	benchTopSharePercent = 60
)

// benchStream is one pass of pgoutput messages.
type benchStream struct {
	msgs [][]byte // WAL data of each XLogData, in order
	txns int
}

// newBenchStream builds the pass. perTxn = 1 is the realistic worst case (a
// gateway commits every payment on its own, so BEGIN and COMMIT come with
// every row); perTxn = 100 shows the cost of the rows alone. A cancel is a
// transaction of its own with perTxn = 1 and joins its 100 payments
// otherwise.
func newBenchStream(perTxn int) *benchStream {
	rng := rand.New(rand.NewPCG(6, 6))
	// 2024-03-08 10:00 KST; transactions 200 µs apart are 5,000 per second.
	commitUS := time.Date(2024, 3, 8, 1, 0, 0, 0, time.UTC).UnixMicro()
	var (
		bs       benchStream
		lsn      = LSN(0x3_0000_0000)
		payID    = int64(50_000_000)
		cancelID = int64(700_000)
		inTxn    = 0
		txnLSN   LSN
	)
	type paid struct{ id, merchant, amount int64 }
	var recent []paid
	begin := func() {
		txnLSN = lsn
		bs.msgs = append(bs.msgs, beginMsg(txnLSN+0x200, commitUS-unixEpochInPG, uint32(lsn>>8)))
	}
	commit := func() {
		lsn += 0x200
		bs.msgs = append(bs.msgs, commitMsg(txnLSN+0x200, lsn+0x30, commitUS-unixEpochInPG))
		lsn += 0x30
		bs.txns++
		commitUS += 200
	}
	for i := range benchPayments {
		if inTxn == 0 {
			begin()
		}
		merchant := 1 + rng.Int64N(benchMerchantCount)
		if rng.IntN(100) < benchTopSharePercent {
			merchant = 1 + rng.Int64N(benchTopMerchants)
		}
		amount := 1_000 * (1 + rng.Int64N(200))
		payID++
		bs.msgs = append(bs.msgs, insertMsg(relPayments,
			vI8(payID), vI8(merchant), vI8(amount), vBin("DONE"), vTS(commitUS-rng.Int64N(300_000))))
		recent = append(recent, paid{payID, merchant, amount})
		inTxn++
		if perTxn == 1 {
			commit()
			inTxn = 0
		}
		if (i+1)%100 == 0 {
			// Cancel one of the last 100 payments, sometimes partially.
			p := recent[rng.IntN(len(recent))]
			recent = recent[:0]
			amount := p.amount
			if rng.IntN(4) == 0 {
				amount /= 2
			}
			if perTxn == 1 {
				begin()
			}
			cancelID++
			bs.msgs = append(bs.msgs, insertMsg(relCancels,
				vI8(cancelID), vI8(p.id), vI8(p.merchant), vI8(amount), vTS(commitUS-rng.Int64N(300_000))))
			if perTxn == 1 {
				commit()
			}
		}
		if inTxn == perTxn {
			commit()
			inTxn = 0
		}
	}
	if inTxn > 0 {
		commit()
	}
	contiguous(bs.msgs)
	return &bs
}

// contiguous moves msgs into one buffer, as pgconn reads many messages into
// one, so that cache behaviour is not that of 30,000 small objects.
func contiguous(msgs [][]byte) {
	var arena []byte
	for _, m := range msgs {
		arena = append(arena, m...)
	}
	for i, off := 0, 0; i < len(msgs); i++ {
		n := len(msgs[i])
		msgs[i] = arena[off : off+n : off+n]
		off += n
	}
}

// xlogData frames WAL data as the CopyData payload of an XLogData message.
func xlogData(wal []byte, start LSN) []byte {
	b := []byte{pglogrepl.XLogDataByteID}
	b = binary.BigEndian.AppendUint64(b, uint64(start))
	b = binary.BigEndian.AppendUint64(b, uint64(start)+uint64(len(wal)))
	b = binary.BigEndian.AppendUint64(b, uint64(time.Date(2024, 3, 8, 1, 0, 0, 0, time.UTC).UnixMicro()-unixEpochInPG))
	return append(b, wal...)
}

// newBenchState is a streamState as Stream sets it up, with the production
// clock and metrics, and the default schema's relations announced.
func newBenchState(tb testing.TB, out chan *Txn) *streamState {
	tb.Helper()
	m, err := event.NewMapping([]event.Spec{
		{Schema: "public", Table: "payments", Kind: event.Approval, Merchant: "merchant_id", Amount: "amount", Time: "approved_at"},
		{Schema: "public", Table: "payment_cancels", Kind: event.Cancel, Merchant: "merchant_id", Amount: "cancel_amount", Time: "canceled_at"},
	}, event.Limits{MaxFuture: 5 * time.Minute, Retention: 8 * 24 * time.Hour, MaxAmount: 1e12})
	if err != nil {
		tb.Fatalf("NewMapping: %v", err)
	}
	src := New(Options{Mapping: m, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: NewMetrics(nil)})
	st := &streamState{
		src:  src,
		so:   StreamOptions{Tracker: &Tracker{}, Out: out, Flushed: func() LSN { return 0 }},
		rels: map[uint32]*relState{},
	}
	for _, r := range [][]byte{relPaymentsMsg(), relCancelsMsg()} {
		if err := st.logical(context.Background(), r); err != nil {
			tb.Fatalf("relation: %v", err)
		}
	}
	return st
}

// checkPass makes sure a pass maps every row to an event: a benchmark that
// quietly measured the dead-letter path would be worthless.
func checkPass(tb testing.TB, out chan *Txn, txns int) {
	tb.Helper()
	if len(out) != txns {
		tb.Fatalf("%d transactions sent, want %d", len(out), txns)
	}
	events, cancels := 0, 0
	for range txns {
		txn := <-out
		if len(txn.DeadLetters) > 0 || txn.Filtered > 0 {
			tb.Fatalf("dead letters %+v, filtered %d", txn.DeadLetters, txn.Filtered)
		}
		events += len(txn.Events)
		for _, ev := range txn.Events {
			if ev.Kind == event.Cancel {
				cancels++
			}
		}
	}
	if events != benchEventsPerPass || cancels != benchCancelsPerPass {
		tb.Fatalf("%d events (%d cancels), want %d (%d)", events, cancels, benchEventsPerPass, benchCancelsPerPass)
	}
}

// reportPerEvent turns the loop's time and heap allocations into per-event
// figures; mallocs0 is runtime.MemStats.Mallocs read just before the loop.
func reportPerEvent(b *testing.B, eventsPerOp int, mallocs0 uint64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	events := float64(b.N) * float64(eventsPerOp)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
	b.ReportMetric(float64(ms.Mallocs-mallocs0)/events, "allocs/event")
}

// BenchmarkDecode measures streamState.logical, the function Stream applies
// to every XLogData's WAL data: pgoutput decoding, the mapping of each row to
// an event, and handing the Txn to the (buffered) output channel. Receiving
// from the channel belongs to the applier and is not timed.
func BenchmarkDecode(b *testing.B) {
	for _, perTxn := range []int{1, 100} {
		b.Run(benchName("payments_per_txn", perTxn), func(b *testing.B) {
			bs := newBenchStream(perTxn)
			out := make(chan *Txn, bs.txns)
			st := newBenchState(b, out)
			ctx := context.Background()
			pass := func() {
				for _, m := range bs.msgs {
					if err := st.logical(ctx, m); err != nil {
						b.Fatal(err)
					}
				}
			}
			timePasses(b, pass, out, bs.txns)
		})
	}
}

// BenchmarkCopyData adds what comes before logical on the receive path:
// parsing the XLogData header and recording the server's position.
func BenchmarkCopyData(b *testing.B) {
	for _, perTxn := range []int{1, 100} {
		b.Run(benchName("payments_per_txn", perTxn), func(b *testing.B) {
			bs := newBenchStream(perTxn)
			frames := make([][]byte, len(bs.msgs))
			start := LSN(0x3_0000_0000)
			for i, m := range bs.msgs {
				frames[i] = xlogData(m, start)
				start += LSN(len(m))
			}
			contiguous(frames)
			out := make(chan *Txn, bs.txns)
			st := newBenchState(b, out)
			ctx := context.Background()
			pass := func() {
				for _, f := range frames {
					// conn is only used to answer keepalives.
					if err := st.copyData(ctx, nil, f); err != nil {
						b.Fatal(err)
					}
				}
			}
			timePasses(b, pass, out, bs.txns)
		})
	}
}

// timePasses checks one pass, then times passes over the same messages;
// emptying out between passes is the applier's work, not timed.
func timePasses(b *testing.B, pass func(), out chan *Txn, txns int) {
	pass()
	checkPass(b, out, txns)
	b.ReportAllocs()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	for b.Loop() {
		pass()
		b.StopTimer()
		for range len(out) {
			<-out
		}
		b.StartTimer()
	}
	reportPerEvent(b, benchEventsPerPass, ms.Mallocs)
}

func benchName(key string, v int) string { return key + "=" + strconv.Itoa(v) }
