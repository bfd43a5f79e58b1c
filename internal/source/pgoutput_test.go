package source

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riskwatch/riskwatch/internal/event"
)

// The messages below are built byte by byte after PostgreSQL's "Logical
// Replication Message Formats" (protocol version 1), independently of the
// decoder under test.

// Type OIDs from pg_type.dat.
const (
	tOidInt8        = 20
	tOidInt4        = 23
	tOidText        = 25
	tOidNumeric     = 1700
	tOidTimestamptz = 1184
)

// unixEpochInPG is 2000-01-01T00:00:00Z in Unix microseconds (946684800 s).
const unixEpochInPG int64 = 946_684_800_000_000

// tCommitUS is 2024-03-01T12:00:00Z in Unix microseconds (1709294400 s);
// tCommitPG is the same instant as pgoutput sends it, in microseconds since
// 2000-01-01: 1709294400 − 946684800 = 762609600 s.
const (
	tCommitUS int64 = 1_709_294_400_000_000
	tCommitPG int64 = 762_609_600_000_000
)

// msgBuf appends protocol fields.
type msgBuf struct{ b []byte }

func (w *msgBuf) u8(v byte) *msgBuf    { w.b = append(w.b, v); return w }
func (w *msgBuf) u16(v uint16) *msgBuf { w.b = binary.BigEndian.AppendUint16(w.b, v); return w }
func (w *msgBuf) u32(v uint32) *msgBuf { w.b = binary.BigEndian.AppendUint32(w.b, v); return w }
func (w *msgBuf) u64(v uint64) *msgBuf { w.b = binary.BigEndian.AppendUint64(w.b, v); return w }
func (w *msgBuf) str(s string) *msgBuf { w.b = append(append(w.b, s...), 0); return w }
func (w *msgBuf) raw(p []byte) *msgBuf { w.b = append(w.b, p...); return w }
func (w *msgBuf) tuple(vals ...event.Value) *msgBuf {
	w.u16(uint16(len(vals)))
	for _, v := range vals {
		w.u8(v.Format)
		if v.Format == 't' || v.Format == 'b' {
			w.u32(uint32(len(v.Data))).raw(v.Data)
		}
	}
	return w
}

func pgoMsg(typ byte) *msgBuf { return &msgBuf{b: []byte{typ}} }

type relCol struct {
	flags  byte // 1: part of the key
	name   string
	oid    uint32
	typmod int32
}

func relationMsg(id uint32, ns, name string, cols ...relCol) []byte {
	w := pgoMsg('R').u32(id).str(ns).str(name).u8('d').u16(uint16(len(cols)))
	for _, c := range cols {
		w.u8(c.flags).str(c.name).u32(c.oid).u32(uint32(c.typmod))
	}
	return w.b
}

func beginMsg(finalLSN LSN, tsPG int64, xid uint32) []byte {
	return pgoMsg('B').u64(uint64(finalLSN)).u64(uint64(tsPG)).u32(xid).b
}

func commitMsg(lsn, end LSN, tsPG int64) []byte {
	return pgoMsg('C').u8(0).u64(uint64(lsn)).u64(uint64(end)).u64(uint64(tsPG)).b
}

func insertMsg(rel uint32, vals ...event.Value) []byte {
	return pgoMsg('I').u32(rel).u8('N').tuple(vals...).b
}

// updateMsg with old = 0 has no old tuple; 'K' or 'O' sends oldVals.
func updateMsg(rel uint32, old byte, oldVals []event.Value, newVals ...event.Value) []byte {
	w := pgoMsg('U').u32(rel)
	if old != 0 {
		w.u8(old).tuple(oldVals...)
	}
	return w.u8('N').tuple(newVals...).b
}

func deleteMsg(rel uint32, key byte, vals ...event.Value) []byte {
	return pgoMsg('D').u32(rel).u8(key).tuple(vals...).b
}

func truncateMsg(options byte, rels ...uint32) []byte {
	w := pgoMsg('T').u32(uint32(len(rels))).u8(options)
	for _, r := range rels {
		w.u32(r)
	}
	return w.b
}

func logicalMsg(transactional bool, lsn LSN, prefix string, content []byte) []byte {
	var flags byte
	if transactional {
		flags = 1
	}
	return pgoMsg('M').u8(flags).u64(uint64(lsn)).str(prefix).u32(uint32(len(content))).raw(content).b
}

func typeMsg(oid uint32, ns, name string) []byte { return pgoMsg('Y').u32(oid).str(ns).str(name).b }

func originMsg(lsn LSN, name string) []byte { return pgoMsg('O').u64(uint64(lsn)).str(name).b }

// Column values.

func vI8(n int64) event.Value {
	return event.Value{Format: 'b', Data: binary.BigEndian.AppendUint64(nil, uint64(n))}
}

// vTS is a binary timestamptz for a Unix time in microseconds.
func vTS(unixUS int64) event.Value { return vI8(unixUS - unixEpochInPG) }

func vBin(s string) event.Value { return event.Value{Format: 'b', Data: []byte(s)} }
func vTxt(s string) event.Value { return event.Value{Format: 't', Data: []byte(s)} }
func vNull() event.Value        { return event.Value{Format: 'n'} }

// Relations of SPEC §2's default schema.
const (
	relPayments  = 16390
	relCancels   = 16391
	relMerchants = 16392
)

var (
	pgoPaymentsCols = []relCol{
		{1, "id", tOidInt8, -1}, {0, "merchant_id", tOidInt8, -1}, {0, "amount", tOidInt8, -1},
		{0, "status", tOidText, -1}, {0, "approved_at", tOidTimestamptz, -1},
	}
	pgoCancelsCols = []relCol{
		{1, "id", tOidInt8, -1}, {0, "payment_id", tOidInt8, -1}, {0, "merchant_id", tOidInt8, -1},
		{0, "cancel_amount", tOidInt8, -1}, {0, "canceled_at", tOidTimestamptz, -1},
	}
	pgoMerchantsCols = []relCol{
		{1, "id", tOidInt8, -1}, {0, "name", tOidText, -1}, {0, "created_at", tOidTimestamptz, -1},
	}
)

func relPaymentsMsg() []byte {
	return relationMsg(relPayments, "public", "payments", pgoPaymentsCols...)
}
func relCancelsMsg() []byte {
	return relationMsg(relCancels, "public", "payment_cancels", pgoCancelsCols...)
}
func relMerchantsMsg() []byte {
	return relationMsg(relMerchants, "public", "merchants", pgoMerchantsCols...)
}

func pgoMapping(t *testing.T) *event.Mapping {
	t.Helper()
	m, err := event.NewMapping([]event.Spec{
		{Schema: "public", Table: "payments", Kind: event.Approval, Merchant: "merchant_id", Amount: "amount", Time: "approved_at"},
		{Schema: "public", Table: "payment_cancels", Kind: event.Cancel, Merchant: "merchant_id", Amount: "cancel_amount", Time: "canceled_at"},
	}, event.Limits{MaxFuture: 5 * time.Minute, Retention: 8 * 24 * time.Hour, MaxAmount: 1e12})
	if err != nil {
		t.Fatalf("NewMapping: %v", err)
	}
	return m
}

// pgoNow is the engine clock in the stream tests.
var pgoNow = time.Date(2024, 3, 1, 12, 0, 1, 0, time.UTC)

type pgoStream struct {
	st  *streamState
	reg *prometheus.Registry
	out chan *Txn
}

func newPgoStream(t *testing.T, start LSN, out chan *Txn) *pgoStream {
	t.Helper()
	reg := prometheus.NewRegistry()
	src := New(Options{
		Mapping: pgoMapping(t),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics: NewMetrics(reg),
		Now:     func() time.Time { return pgoNow },
	})
	if out == nil {
		out = make(chan *Txn, 16)
	}
	st := &streamState{
		src:      src,
		so:       StreamOptions{Start: start, Tracker: &Tracker{}, Out: out, Flushed: func() LSN { return 0 }},
		rels:     map[uint32]*relState{},
		received: start,
	}
	return &pgoStream{st: st, reg: reg, out: out}
}

// feed passes each message to logical and then overwrites it, as the next
// receive overwrites the connection's buffer: nothing may keep aliasing it.
func (ts *pgoStream) feed(t *testing.T, msgs ...[]byte) {
	t.Helper()
	for i, m := range msgs {
		if err := ts.st.logical(context.Background(), m); err != nil {
			t.Fatalf("message %d (%q): %v", i, m[0], err)
		}
		for j := range m {
			m[j] = 0xEE
		}
	}
}

func pgoCloneAll(msgs [][]byte) [][]byte {
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = bytes.Clone(m)
	}
	return out
}

func (ts *pgoStream) txns() []*Txn {
	var got []*Txn
	for {
		select {
		case txn := <-ts.out:
			got = append(got, txn)
		default:
			return got
		}
	}
}

// ignoredCounts reads riskwatch_ignored_changes_total as "table op" → value.
func (ts *pgoStream) ignoredCounts(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "riskwatch_ignored_changes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["table"]+" "+labels["op"]] = m.GetCounter().GetValue()
		}
	}
	return got
}

// --- msgDecoder

func TestMsgDecoderPrimitives(t *testing.T) {
	b := (&msgBuf{}).u8(0xAB).u16(0xBEEF).u32(0xDEADBEEF).u64(0x0102030405060708).str("héllo").str("").raw([]byte("xyz")).b
	d := &msgDecoder{b: b}
	if v := d.u8("a"); v != 0xAB {
		t.Errorf("u8 = %#x", v)
	}
	if v := d.u16("b"); v != 0xBEEF {
		t.Errorf("u16 = %#x", v)
	}
	if v := d.u32("c"); v != 0xDEADBEEF {
		t.Errorf("u32 = %#x", v)
	}
	if v := d.u64("d"); v != 0x0102030405060708 {
		t.Errorf("u64 = %#x", v)
	}
	if v := d.cstring("e"); v != "héllo" {
		t.Errorf("cstring = %q", v)
	}
	if v := d.cstring("f"); v != "" {
		t.Errorf("empty cstring = %q", v)
	}
	if v := d.bytes(3, "g"); string(v) != "xyz" || cap(v) != 3 {
		t.Errorf("bytes = %q (cap %d)", v, cap(v))
	}
	if d.err != nil || len(d.b) != 0 {
		t.Fatalf("err = %v, %d bytes left", d.err, len(d.b))
	}
	if v := d.bytes(0, "h"); len(v) != 0 || d.err != nil {
		t.Errorf("bytes(0) at the end = %q, %v", v, d.err)
	}
}

func TestMsgDecoderTruncation(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		read func(d *msgDecoder)
	}{
		{"u8 of nothing", nil, func(d *msgDecoder) { d.u8("field") }},
		{"u16 of 1 byte", []byte{1}, func(d *msgDecoder) { d.u16("field") }},
		{"u32 of 3 bytes", []byte{1, 2, 3}, func(d *msgDecoder) { d.u32("field") }},
		{"u64 of 7 bytes", []byte{1, 2, 3, 4, 5, 6, 7}, func(d *msgDecoder) { d.u64("field") }},
		{"cstring without NUL", []byte("abc"), func(d *msgDecoder) { d.cstring("field") }},
		{"cstring of nothing", nil, func(d *msgDecoder) { d.cstring("field") }},
		{"bytes beyond the end", []byte("ab"), func(d *msgDecoder) { d.bytes(3, "field") }},
		{"negative length", []byte("ab"), func(d *msgDecoder) { d.bytes(-1, "field") }},
		{"huge length", []byte("ab"), func(d *msgDecoder) { d.bytes(math.MaxInt32, "field") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &msgDecoder{b: tt.in}
			tt.read(d)
			if d.err == nil || !strings.Contains(d.err.Error(), "truncated reading field") {
				t.Fatalf("err = %v, want a truncation error naming the field", d.err)
			}
			// The first error sticks.
			d.u8("later")
			d.u64("later")
			d.cstring("later")
			if !strings.Contains(d.err.Error(), "field") || strings.Contains(d.err.Error(), "later") {
				t.Errorf("err = %v, want the first error kept", d.err)
			}
		})
	}
}

// --- decodeRelation

func TestDecodeRelation(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want relation
	}{
		{
			name: "payments",
			msg:  relPaymentsMsg(),
			want: relation{id: relPayments, namespace: "public", name: "payments", columns: []event.Column{
				{Name: "id", TypeOID: tOidInt8}, {Name: "merchant_id", TypeOID: tOidInt8}, {Name: "amount", TypeOID: tOidInt8},
				{Name: "status", TypeOID: tOidText}, {Name: "approved_at", TypeOID: tOidTimestamptz},
			}},
		},
		{
			name: "no columns",
			msg:  relationMsg(1, "s", "empty"),
			want: relation{id: 1, namespace: "s", name: "empty"},
		},
		{
			name: "quoted names, typmods and high oids",
			msg: relationMsg(math.MaxUint32, "Pay Ments", "결제 취소",
				relCol{0, "Amount (KRW)", tOidNumeric, 1310726}, // numeric(20,2)
				relCol{1, "kind", 4_000_000_000, -1}),
			want: relation{id: math.MaxUint32, namespace: "Pay Ments", name: "결제 취소", columns: []event.Column{
				{Name: "Amount (KRW)", TypeOID: tOidNumeric}, {Name: "kind", TypeOID: 4_000_000_000},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &msgDecoder{b: tt.msg[1:]}
			got := decodeRelation(d)
			if d.err != nil {
				t.Fatalf("decodeRelation: %v", d.err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decodeRelation = %+v\nwant %+v", got, tt.want)
			}
			if len(d.b) != 0 {
				t.Errorf("%d bytes left over", len(d.b))
			}
		})
	}
}

func TestDecodeRelationTruncated(t *testing.T) {
	for _, full := range [][]byte{relPaymentsMsg(), relationMsg(1, "s", "empty")} {
		body := full[1:]
		for n := range len(body) {
			d := &msgDecoder{b: bytes.Clone(body[:n])}
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("decodeRelation of %d of %d bytes panicked: %v", n, len(body), r)
					}
				}()
				decodeRelation(d)
			}()
			if d.err == nil {
				t.Errorf("decodeRelation of %d of %d bytes: no error", n, len(body))
			}
		}
	}
}

// --- tuple

func TestTuple(t *testing.T) {
	tests := []struct {
		name string
		vals []event.Value
	}{
		{"no columns", nil},
		{"one binary int8", []event.Value{vI8(42)}},
		{"every kind", []event.Value{vNull(), {Format: 'u'}, vTxt("15000"), vI8(-1), vBin("paid")}},
		{"empty text and binary", []event.Value{{Format: 't', Data: []byte{}}, {Format: 'b', Data: []byte{}}}},
		{"value with NUL and 0xFF bytes", []event.Value{{Format: 'b', Data: []byte{0, 0xFF, 0, 'n'}}}},
		{"long value", []event.Value{vBin(strings.Repeat("x", 70_000))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := (&msgBuf{}).tuple(tt.vals...).raw([]byte("next")).b
			d := &msgDecoder{b: buf}
			got := d.tuple(nil)
			if d.err != nil {
				t.Fatalf("tuple: %v", d.err)
			}
			if len(got) != len(tt.vals) {
				t.Fatalf("%d columns, want %d", len(got), len(tt.vals))
			}
			for i, v := range got {
				if v.Format != tt.vals[i].Format || !bytes.Equal(v.Data, tt.vals[i].Data) {
					t.Errorf("column %d = %c %q, want %c %q", i, v.Format, v.Data, tt.vals[i].Format, tt.vals[i].Data)
				}
				if (v.Format == 'n' || v.Format == 'u') && v.Data != nil {
					t.Errorf("column %d (%c) has data %q", i, v.Format, v.Data)
				}
				if len(v.Data) != cap(v.Data) {
					t.Errorf("column %d: cap %d > len %d, an append would overwrite the next column", i, cap(v.Data), len(v.Data))
				}
			}
			if string(d.b) != "next" {
				t.Errorf("left %q, want the bytes after the tuple", d.b)
			}
		})
	}
}

func TestTupleReusesRow(t *testing.T) {
	row := make([]event.Value, 3, 8)
	row[2] = vBin("stale")
	d := &msgDecoder{b: (&msgBuf{}).tuple(vI8(1), vNull()).b}
	got := d.tuple(row)
	if d.err != nil {
		t.Fatal(d.err)
	}
	if len(got) != 2 || got[0].Format != 'b' || got[1].Format != 'n' {
		t.Fatalf("tuple = %+v", got)
	}
	if &got[0] != &row[0] {
		t.Errorf("tuple allocated a new row although the old one had capacity")
	}
}

func TestTupleTruncated(t *testing.T) {
	full := (&msgBuf{}).tuple(vI8(42), vNull(), vTxt("paid"), event.Value{Format: 'u'}, vBin("x")).b
	for n := range len(full) {
		d := &msgDecoder{b: bytes.Clone(full[:n])}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("tuple of %d of %d bytes panicked: %v", n, len(full), r)
				}
			}()
			d.tuple(nil)
		}()
		if d.err == nil {
			t.Errorf("tuple of %d of %d bytes: no error", n, len(full))
		}
	}
}

func TestTupleBadInput(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"unknown kind x", (&msgBuf{}).u16(1).u8('x').b, "unknown tuple column kind 'x'"},
		{"unknown kind N", (&msgBuf{}).u16(2).u8('n').u8('N').b, "unknown tuple column kind 'N'"},
		{"unknown kind NUL", (&msgBuf{}).u16(1).u8(0).u32(0).b, "unknown tuple column kind"},
		{"unknown kind after a value", (&msgBuf{}).u16(2).u8('t').u32(1).raw([]byte("1")).u8('?').b, "unknown tuple column kind '?'"},
		{"length beyond the message", (&msgBuf{}).u16(1).u8('b').u32(9).raw([]byte("12345678")).b, "truncated"},
		{"length -1 is not NULL", (&msgBuf{}).u16(1).u8('t').u32(math.MaxUint32).b, "truncated"},
		{"length 2^31-1", (&msgBuf{}).u16(1).u8('b').u32(math.MaxInt32).raw([]byte("x")).b, "truncated"},
		{"more columns than sent", (&msgBuf{}).u16(3).u8('n').u8('n').b, "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &msgDecoder{b: tt.in}
			d.tuple(nil)
			if d.err == nil || !strings.Contains(d.err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", d.err, tt.wantErr)
			}
		})
	}
}

// --- logical

func TestLogicalTransaction(t *testing.T) {
	ts := newPgoStream(t, 0x100, nil)
	const (
		commitLSN LSN = 0x16B3748
		endLSN    LSN = 0x16B3780
	)
	evUS := tCommitUS - 30_000_000     // 11:59:30Z
	cancelUS := tCommitUS - 14_500_000 // 11:59:45.5Z
	ts.feed(t,
		relPaymentsMsg(), relCancelsMsg(), relMerchantsMsg(),
		typeMsg(16400, "public", "ledger_type"),
		beginMsg(commitLSN, tCommitPG, 731),
		originMsg(0x10, "upstream"),
		// An approval.
		insertMsg(relPayments, vI8(9001), vI8(42), vI8(15000), vBin("paid"), vTS(evUS)),
		// An unmapped table: not an event, not a dead letter.
		insertMsg(relMerchants, vI8(42), vBin("shop"), vTS(evUS)),
		// A partial cancel.
		insertMsg(relCancels, vI8(7), vI8(9001), vI8(42), vI8(5000), vTS(cancelUS)),
		// Changes that are not events.
		updateMsg(relPayments, 0, nil, vI8(9001), vI8(42), vI8(15000), vBin("canceled"), vTS(evUS)),
		deleteMsg(relCancels, 'K', vI8(7), vNull(), vNull(), vNull(), vNull()),
		logicalMsg(true, commitLSN-8, HeartbeatPrefix, nil),
		// An invalid row: a dead letter.
		insertMsg(relPayments, vI8(9002), vNull(), vI8(100), vBin("paid"), vTS(evUS)),
		// Text values decode like binary ones.
		insertMsg(relPayments, vTxt("9003"), vTxt("43"), vTxt("2500"), vTxt("paid"), vTxt("2024-03-01 20:59:59+09")),
		commitMsg(commitLSN, endLSN, tCommitPG),
	)
	got := ts.txns()
	if len(got) != 1 {
		t.Fatalf("%d transactions sent, want 1", len(got))
	}
	txn := got[0]
	if txn.End.(LSN) != endLSN {
		t.Errorf("EndLSN = %s, want %s", txn.End.(LSN), endLSN)
	}
	// 762609600000000 + 946684800000000 = 1709294400000000.
	if txn.CommitUS != 1_709_294_400_000_000 {
		t.Errorf("CommitUS = %d, want 1709294400000000", txn.CommitUS)
	}
	if !txn.ReceivedAt.Equal(pgoNow) {
		t.Errorf("ReceivedAt = %v, want the engine clock %v", txn.ReceivedAt, pgoNow)
	}
	wantEvents := []event.Event{
		{Merchant: 42, Kind: event.Approval, Amount: 15000, TimeUS: 1_709_294_370_000_000},
		{Merchant: 42, Kind: event.Cancel, Amount: 5000, TimeUS: 1_709_294_385_500_000},
		// 20:59:59+09 = 11:59:59Z.
		{Merchant: 43, Kind: event.Approval, Amount: 2500, TimeUS: 1_709_294_399_000_000},
	}
	if !reflect.DeepEqual(txn.Events, wantEvents) {
		t.Errorf("Events = %+v\nwant     %+v", txn.Events, wantEvents)
	}
	if txn.Filtered != 0 {
		t.Errorf("Filtered = %d, want 0", txn.Filtered)
	}
	if len(txn.DeadLetters) != 1 {
		t.Fatalf("DeadLetters = %+v, want 1", txn.DeadLetters)
	}
	dl := txn.DeadLetters[0]
	if dl.Table != "public.payments" || dl.Kind != event.Approval || dl.Reason != event.ReasonNullMerchant {
		t.Errorf("dead letter = %s %v %s, want public.payments approval null_merchant", dl.Table, dl.Kind, dl.Reason)
	}
	if !strings.Contains(dl.Detail, "merchant_id") {
		t.Errorf("Detail %q does not name merchant_id", dl.Detail)
	}
	if dl.Position == "" {
		t.Errorf("dead letter has no position for a streamed row")
	}
	if !dl.CommitTime.Equal(time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("CommitTime = %v", dl.CommitTime)
	}
	// The row survives the receive buffer being overwritten (feed does that).
	wantRow := map[string]any{"id": int64(9002), "merchant_id": nil, "amount": int64(100), "status": "paid"}
	for k, w := range wantRow {
		if !reflect.DeepEqual(dl.Row[k], w) {
			t.Errorf("Row[%q] = %#v, want %#v", k, dl.Row[k], w)
		}
	}
	if at, ok := dl.Row["approved_at"].(time.Time); !ok || at.UnixMicro() != evUS {
		t.Errorf("Row[approved_at] = %#v, want 11:59:30Z", dl.Row["approved_at"])
	}

	if ts.st.received != endLSN {
		t.Errorf("received = %s, want %s", ts.st.received, endLSN)
	}
	if ts.st.so.Tracker.Quiet(pgoNow, time.Microsecond) {
		t.Errorf("tracker quiet right after a transaction")
	}
	if !ts.st.so.Tracker.Quiet(pgoNow.Add(time.Second), time.Second) {
		t.Errorf("tracker not quiet a second after the last transaction")
	}
	wantIgnored := map[string]float64{"public.payments update": 1, "public.payment_cancels delete": 1}
	if got := ts.ignoredCounts(t); !reflect.DeepEqual(got, wantIgnored) {
		t.Errorf("ignored changes = %v, want %v", got, wantIgnored)
	}
	if ts.st.cur != nil {
		t.Errorf("transaction still open after COMMIT")
	}
}

func TestLogicalDeadLetterLSN(t *testing.T) {
	// event.DeadLetter.LSN and (*event.Table).Map document the LSN as the
	// commit END position (the value of Txn.EndLSN and of the checkpoint).
	ts := newPgoStream(t, 0, nil)
	ts.feed(t,
		relPaymentsMsg(),
		beginMsg(0x5000, tCommitPG, 1),
		insertMsg(relPayments, vI8(1), vI8(0), vI8(100), vBin("paid"), vTS(tCommitUS)),
		commitMsg(0x5000, 0x5038, tCommitPG),
	)
	txn := ts.txns()[0]
	if got := txn.DeadLetters[0].Position; got != txn.End.String() {
		t.Errorf("dead letter position = %s, want the commit end %s", got, txn.End)
	}
}

func TestLogicalStartFiltersOldTransactions(t *testing.T) {
	const start LSN = 0x2000
	tests := []struct {
		name string
		end  LSN
		sent bool
	}{
		{"well before the checkpoint", 0x100, false},
		{"just before the checkpoint", start - 1, false},
		{"ending at the checkpoint", start, false},
		{"just after the checkpoint", start + 1, true},
		{"far after the checkpoint", 0x1_0000_0000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newPgoStream(t, start, nil)
			ts.feed(t,
				relPaymentsMsg(),
				beginMsg(tt.end-0x30, tCommitPG, 9),
				insertMsg(relPayments, vI8(1), vI8(42), vI8(100), vBin("paid"), vTS(tCommitUS)),
				commitMsg(tt.end-0x30, tt.end, tCommitPG),
			)
			got := ts.txns()
			if !tt.sent {
				if len(got) != 0 {
					t.Fatalf("sent %d transactions ending at %s <= start %s", len(got), tt.end, start)
				}
			} else if len(got) != 1 || got[0].End != Position(tt.end) || len(got[0].Events) != 1 {
				t.Fatalf("sent %+v, want one transaction ending at %s with one event", got, tt.end)
			}
			// received moves either way: the transaction was seen.
			if ts.st.received != tt.end {
				t.Errorf("received = %s, want %s", ts.st.received, tt.end)
			}
		})
	}
}

func TestLogicalSequentialTransactions(t *testing.T) {
	ts := newPgoStream(t, 0, nil)
	ts.feed(t,
		relPaymentsMsg(), relCancelsMsg(),
		beginMsg(0x1000, tCommitPG, 1),
		insertMsg(relPayments, vI8(1), vI8(1), vI8(10), vBin("paid"), vTS(tCommitUS)),
		commitMsg(0x1000, 0x1030, tCommitPG),
		beginMsg(0x2000, tCommitPG+1_000_000, 2),
		insertMsg(relCancels, vI8(2), vI8(1), vI8(2), vI8(20), vTS(tCommitUS)),
		insertMsg(relPayments, vI8(3), vI8(3), vI8(30), vBin("paid"), vTS(tCommitUS)),
		commitMsg(0x2000, 0x2030, tCommitPG+1_000_000),
		// Empty transaction (e.g. a change to a table outside the publication).
		beginMsg(0x3000, tCommitPG+2_000_000, 3),
		commitMsg(0x3000, 0x3030, tCommitPG+2_000_000),
	)
	got := ts.txns()
	if len(got) != 3 {
		t.Fatalf("%d transactions, want 3", len(got))
	}
	want := []struct {
		end      LSN
		commitUS int64
		events   []event.Event
	}{
		{0x1030, tCommitUS, []event.Event{{Merchant: 1, Kind: event.Approval, Amount: 10, TimeUS: tCommitUS}}},
		{0x2030, tCommitUS + 1_000_000, []event.Event{
			{Merchant: 2, Kind: event.Cancel, Amount: 20, TimeUS: tCommitUS},
			{Merchant: 3, Kind: event.Approval, Amount: 30, TimeUS: tCommitUS},
		}},
		{0x3030, tCommitUS + 2_000_000, nil},
	}
	for i, w := range want {
		// Each transaction owns its output: later ones did not clobber it.
		if got[i].End != Position(w.end) || got[i].CommitUS != w.commitUS || !reflect.DeepEqual(got[i].Events, w.events) || len(got[i].DeadLetters) != 0 {
			t.Errorf("txn %d = {End %s Commit %d Events %+v DL %+v}, want {%s %d %+v}",
				i, got[i].End, got[i].CommitUS, got[i].Events, got[i].DeadLetters, w.end, w.commitUS, w.events)
		}
	}
	if got[0] == got[1] {
		t.Errorf("the same *Txn was sent twice")
	}
}

func TestLogicalHeartbeat(t *testing.T) {
	ts := newPgoStream(t, 0, nil)
	// Non-transactional messages arrive outside transactions and mean nothing.
	ts.feed(t,
		logicalMsg(false, 0x900, "other.app", []byte("payload")),
		logicalMsg(false, 0x900, HeartbeatPrefix, nil),
	)
	if got := ts.txns(); len(got) != 0 {
		t.Fatalf("non-transactional messages sent %d transactions", len(got))
	}
	// A heartbeat is a transaction with no events; its commit carries time.
	ts.feed(t,
		beginMsg(0xA00, tCommitPG, 5),
		logicalMsg(true, 0xA00, HeartbeatPrefix, nil),
		logicalMsg(true, 0xA00, "other.app", []byte{0, 1, 2}),
		commitMsg(0xA00, 0xA28, tCommitPG),
	)
	got := ts.txns()
	if len(got) != 1 {
		t.Fatalf("%d transactions, want the heartbeat's", len(got))
	}
	if got[0].End != Position(LSN(0xA28)) || got[0].CommitUS != tCommitUS || len(got[0].Events) != 0 || len(got[0].DeadLetters) != 0 || got[0].Filtered != 0 {
		t.Errorf("heartbeat txn = %+v", got[0])
	}
}

func TestLogicalIgnoredChanges(t *testing.T) {
	tests := []struct {
		name string
		msgs [][]byte
		want map[string]float64
	}{
		{"update without old tuple", [][]byte{updateMsg(relPayments, 0, nil, vI8(1), vI8(2), vI8(3), vBin("x"), vTS(tCommitUS))},
			map[string]float64{"public.payments update": 1}},
		{"update with key", [][]byte{updateMsg(relPayments, 'K', []event.Value{vI8(1)}, vI8(1), vI8(2), vI8(3), vBin("x"), vTS(tCommitUS))},
			map[string]float64{"public.payments update": 1}},
		{"update with old row", [][]byte{updateMsg(relCancels, 'O', []event.Value{vI8(1), vNull()}, vI8(1), vNull())},
			map[string]float64{"public.payment_cancels update": 1}},
		{"delete by key", [][]byte{deleteMsg(relPayments, 'K', vI8(1))},
			map[string]float64{"public.payments delete": 1}},
		{"delete with old row", [][]byte{deleteMsg(relCancels, 'O', vI8(1), vI8(2))},
			map[string]float64{"public.payment_cancels delete": 1}},
		{"unmapped table", [][]byte{deleteMsg(relMerchants, 'K', vI8(1)), updateMsg(relMerchants, 0, nil, vI8(1))},
			map[string]float64{"public.merchants delete": 1, "public.merchants update": 1}},
		{"truncate two tables", [][]byte{truncateMsg(0, relPayments, relCancels)},
			map[string]float64{"public.payments truncate": 1, "public.payment_cancels truncate": 1}},
		{"truncate cascade restart identity", [][]byte{truncateMsg(3, relPayments)},
			map[string]float64{"public.payments truncate": 1}},
		{"truncate no tables", [][]byte{truncateMsg(0)}, map[string]float64{}},
		{
			"many",
			[][]byte{
				updateMsg(relPayments, 0, nil, vI8(1)), updateMsg(relPayments, 0, nil, vI8(2)), updateMsg(relPayments, 0, nil, vI8(3)),
				deleteMsg(relPayments, 'K', vI8(1)), deleteMsg(relCancels, 'K', vI8(1)), truncateMsg(0, relCancels),
			},
			map[string]float64{"public.payments update": 3, "public.payments delete": 1, "public.payment_cancels delete": 1, "public.payment_cancels truncate": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newPgoStream(t, 0, nil)
			ts.feed(t, relPaymentsMsg(), relCancelsMsg(), relMerchantsMsg(), beginMsg(0x100, tCommitPG, 1))
			ts.feed(t, tt.msgs...)
			ts.feed(t, commitMsg(0x100, 0x130, tCommitPG))
			if got := ts.ignoredCounts(t); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ignored changes = %v, want %v", got, tt.want)
			}
			txns := ts.txns()
			if len(txns) != 1 || len(txns[0].Events) != 0 || len(txns[0].DeadLetters) != 0 {
				t.Errorf("transactions = %+v, want one without events", txns)
			}
		})
	}
}

func TestLogicalRelationReannounced(t *testing.T) {
	// After ALTER TABLE the server sends RELATION again before the next change
	// to the table; the new layout applies from then on.
	ts := newPgoStream(t, 0, nil)
	ts.feed(t,
		relPaymentsMsg(),
		beginMsg(0x100, tCommitPG, 1),
		insertMsg(relPayments, vI8(1), vI8(42), vI8(100), vBin("paid"), vTS(tCommitUS)),
		commitMsg(0x100, 0x130, tCommitPG),
		relationMsg(relPayments, "public", "payments",
			relCol{1, "id", tOidInt8, -1}, relCol{0, "merchant_id", tOidInt4, -1}, relCol{0, "amount", tOidNumeric, -1},
			relCol{0, "status", tOidText, -1}, relCol{0, "approved_at", tOidTimestamptz, -1}, relCol{0, "note", tOidText, -1}),
		beginMsg(0x200, tCommitPG, 2),
		insertMsg(relPayments, vI8(2),
			event.Value{Format: 'b', Data: binary.BigEndian.AppendUint32(nil, 43)},
			vTxt("250"), vBin("paid"), vTS(tCommitUS), vNull()),
		commitMsg(0x200, 0x230, tCommitPG),
	)
	got := ts.txns()
	if len(got) != 2 {
		t.Fatalf("%d transactions, want 2", len(got))
	}
	want := []event.Event{{Merchant: 43, Kind: event.Approval, Amount: 250, TimeUS: tCommitUS}}
	if !reflect.DeepEqual(got[1].Events, want) || len(got[1].DeadLetters) != 0 {
		t.Errorf("after the new RELATION: events %+v, dead letters %+v; want %+v", got[1].Events, got[1].DeadLetters, want)
	}
}

func TestLogicalErrors(t *testing.T) {
	badPayments := relationMsg(relPayments, "public", "payments",
		relCol{1, "id", tOidInt8, -1}, relCol{0, "merchant_id", tOidText, -1}, relCol{0, "amount", tOidInt8, -1},
		relCol{0, "approved_at", tOidTimestamptz, -1})
	missingCol := relationMsg(relCancels, "public", "payment_cancels",
		relCol{1, "id", tOidInt8, -1}, relCol{0, "merchant_id", tOidInt8, -1}, relCol{0, "canceled_at", tOidTimestamptz, -1})
	tests := []struct {
		name      string
		setup     [][]byte
		bad       []byte
		wantErr   string
		permanent bool
	}{
		{name: "empty message", bad: []byte{}, wantErr: "empty"},
		{name: "nil message", bad: nil, wantErr: "empty"},
		{name: "unknown message Z", bad: []byte{'Z', 0, 0, 0, 0}, wantErr: "unknown pgoutput message 'Z'"},
		{name: "unknown message alone", bad: []byte{'Z'}, wantErr: "unknown pgoutput message"},
		{name: "stream start (protocol 2) is unknown", bad: pgoMsg('S').u32(1).u8(1).b, wantErr: "unknown pgoutput message 'S'"},
		{name: "lower-case begin prepare is unknown", bad: pgoMsg('b').b, wantErr: "unknown pgoutput message 'b'"},
		{name: "insert before relation", setup: [][]byte{beginMsg(0x100, tCommitPG, 1)},
			bad: insertMsg(relPayments, vI8(1)), wantErr: "before its RELATION"},
		{name: "insert for another relation id", setup: [][]byte{relPaymentsMsg(), beginMsg(0x100, tCommitPG, 1)},
			bad: insertMsg(relPayments+100, vI8(1)), wantErr: fmt.Sprint(relPayments + 100)},
		{name: "insert outside a transaction", setup: [][]byte{relPaymentsMsg()},
			bad: insertMsg(relPayments, vI8(1), vI8(42), vI8(100), vBin("paid"), vTS(tCommitUS)), wantErr: "outside a transaction"},
		{name: "insert after commit", setup: [][]byte{relPaymentsMsg(), beginMsg(0x100, tCommitPG, 1), commitMsg(0x100, 0x130, tCommitPG)},
			bad: insertMsg(relPayments, vI8(1), vI8(42), vI8(100), vBin("paid"), vTS(tCommitUS)), wantErr: "outside a transaction"},
		{name: "insert with tuple kind K", setup: [][]byte{relPaymentsMsg(), beginMsg(0x100, tCommitPG, 1)},
			bad: pgoMsg('I').u32(relPayments).u8('K').tuple(vI8(1)).b, wantErr: "tuple kind 'K'"},
		{name: "insert with unknown column kind", setup: [][]byte{relPaymentsMsg(), beginMsg(0x100, tCommitPG, 1)},
			bad: pgoMsg('I').u32(relPayments).u8('N').u16(1).u8('x').b, wantErr: "unknown tuple column kind"},
		{name: "insert into unmapped table with unknown column kind", setup: [][]byte{relMerchantsMsg(), beginMsg(0x100, tCommitPG, 1)},
			bad: pgoMsg('I').u32(relMerchants).u8('N').u16(1).u8('x').b, wantErr: "unknown tuple column kind"},
		{name: "commit without begin", bad: commitMsg(0x100, 0x130, tCommitPG), wantErr: "COMMIT without BEGIN"},
		{name: "second commit", setup: [][]byte{beginMsg(0x100, tCommitPG, 1), commitMsg(0x100, 0x130, tCommitPG)},
			bad: commitMsg(0x100, 0x130, tCommitPG), wantErr: "COMMIT without BEGIN"},
		{name: "begin inside a transaction", setup: [][]byte{beginMsg(0x100, tCommitPG, 1)},
			bad: beginMsg(0x200, tCommitPG, 2), wantErr: "BEGIN inside"},
		{name: "update before relation", bad: updateMsg(relPayments, 0, nil, vI8(1)), wantErr: "before its RELATION"},
		{name: "delete before relation", bad: deleteMsg(relPayments, 'K', vI8(1)), wantErr: "before its RELATION"},
		{name: "truncate before relation", setup: [][]byte{relPaymentsMsg()},
			bad: truncateMsg(0, relPayments, relCancels), wantErr: "before its RELATION"},
		{name: "relation with merchant as text", bad: badPayments, wantErr: "merchant_id", permanent: true},
		{name: "relation without the amount column", bad: missingCol, wantErr: "cancel_amount", permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newPgoStream(t, 0, nil)
			ts.feed(t, tt.setup...)
			err := ts.st.logical(context.Background(), tt.bad)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("logical = %v, want an error containing %q", err, tt.wantErr)
			}
			if IsPermanent(err) != tt.permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, IsPermanent(err), tt.permanent)
			}
		})
	}
}

func TestLogicalSendHonoursContext(t *testing.T) {
	out := make(chan *Txn) // nobody receives
	ts := newPgoStream(t, 0, out)
	ts.feed(t, beginMsg(0x100, tCommitPG, 1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := ts.st.logical(ctx, commitMsg(0x100, 0x130, tCommitPG))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("logical = %v, want context.Canceled", err)
	}
}

// TestLogicalTruncatedMessages feeds every proper prefix of every message
// type: each must be an error, never a panic, never a partial effect.
func TestLogicalTruncatedMessages(t *testing.T) {
	inTxn := [][]byte{relPaymentsMsg(), relCancelsMsg(), relMerchantsMsg(), beginMsg(0x100, tCommitPG, 1)}
	withRels := [][]byte{relPaymentsMsg(), relCancelsMsg(), relMerchantsMsg()}
	tests := []struct {
		name  string
		setup [][]byte
		full  []byte
		// lenient: the handler reads only the relation id of an ignored
		// UPDATE or DELETE, so prefixes past the id are accepted.
		lenient int
	}{
		{name: "begin", full: beginMsg(0x100, tCommitPG, 1)},
		{name: "commit", setup: inTxn, full: commitMsg(0x100, 0x130, tCommitPG)},
		{name: "relation", full: relPaymentsMsg()},
		{name: "relation unmapped", full: relMerchantsMsg()},
		{name: "insert", setup: inTxn, full: insertMsg(relPayments, vI8(1), vI8(42), vI8(100), vBin("paid"), vTS(tCommitUS))},
		{name: "insert with NULLs and text", setup: inTxn, full: insertMsg(relPayments, vNull(), vTxt("42"), vNull(), vTxt("paid"), vNull())},
		{name: "insert unmapped", setup: inTxn, full: insertMsg(relMerchants, vI8(1), vBin("shop"), vTS(tCommitUS))},
		{name: "update", setup: inTxn, full: updateMsg(relPayments, 'O', []event.Value{vI8(1)}, vI8(1)), lenient: 5},
		{name: "delete", setup: inTxn, full: deleteMsg(relPayments, 'K', vI8(1)), lenient: 5},
		{name: "truncate", setup: withRels, full: truncateMsg(1, relPayments, relCancels)},
		{name: "message", full: logicalMsg(true, 0x100, HeartbeatPrefix, []byte("x"))},
		{name: "message empty content", full: logicalMsg(false, 0x100, HeartbeatPrefix, nil)},
		{name: "type", full: typeMsg(16400, "public", "ledger_type")},
		{name: "origin", full: originMsg(0x100, "upstream")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The full message is valid.
			ts := newPgoStream(t, 0, nil)
			ts.feed(t, pgoCloneAll(tt.setup)...)
			if err := ts.st.logical(context.Background(), bytes.Clone(tt.full)); err != nil {
				t.Fatalf("full message: %v", err)
			}
			for n := range len(tt.full) {
				ts := newPgoStream(t, 0, nil)
				ts.feed(t, pgoCloneAll(tt.setup)...)
				relsBefore := len(ts.st.rels)
				curBefore := ts.st.cur
				var err error
				func() {
					defer func() {
						if r := recover(); r != nil {
							t.Fatalf("%d of %d bytes: panic %v", n, len(tt.full), r)
						}
					}()
					err = ts.st.logical(context.Background(), bytes.Clone(tt.full[:n]))
				}()
				if tt.lenient > 0 && n >= tt.lenient {
					continue
				}
				if err == nil {
					t.Errorf("%d of %d bytes: no error", n, len(tt.full))
					continue
				}
				if len(ts.st.rels) != relsBefore || ts.st.cur != curBefore {
					t.Errorf("%d of %d bytes: the failed message changed the state", n, len(tt.full))
				}
				if curBefore != nil && (len(curBefore.Events) != 0 || len(curBefore.DeadLetters) != 0) {
					t.Errorf("%d of %d bytes: the failed message produced output", n, len(tt.full))
				}
				if len(ts.txns()) != 0 {
					t.Errorf("%d of %d bytes: a transaction was sent", n, len(tt.full))
				}
			}
		})
	}
}
