package kafka_test

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/kafka"
)

type n = json.Number

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "debezium", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// src is the source block the fixtures share; each test sets the rest.
func src(table string, tsUS int64, lsn uint64, txID int64) kafka.Source {
	return kafka.Source{Version: "3.0.7.Final", Connector: "postgresql", Name: "PostgreSQL_server",
		DB: "shop", Schema: "public", Table: table, TsUS: tsUS, LSN: lsn, TxID: txID, Snapshot: "false"}
}

// Fixture expectations. Times: 2026-01-01T00:00:00Z is 1767225600 s
// (20454 days: 56 years with 14 leap days); 2026-03-02 is 59 + 1 days
// later, 1772409600 s.
var fixtures = []struct {
	file string
	want kafka.Change
	pos  kafka.Position
	// ev is the event the default mapping makes of it; nil for none.
	ev *event.Event
}{
	{
		file: "payments-create.json",
		want: kafka.Change{
			Op: "c",
			After: map[string]any{"id": n("9001"), "merchant_id": n("42"), "amount": n("15000"), "status": "paid",
				"approved_at": "2026-03-02T03:04:05.123456Z"},
			Source: func() kafka.Source {
				s := src("payments", 1_772_420_645_623_789, 24023128, 555)
				s.Sequence = [2]uint64{24023119, 24023128}
				return s
			}(),
			TsMS: 1_772_420_645_701,
		},
		pos: kafka.Position{Commit: 24023119, LSN: 24023128},
		// 03:04:05 is 11045 s into the day: 1772409600 + 11045.
		ev: &event.Event{Merchant: 42, Kind: event.Approval, Amount: 15000, TimeUS: 1_772_420_645_123_456},
	},
	{
		file: "payment_cancels-create.json",
		want: kafka.Change{
			Op: "c",
			After: map[string]any{"id": n("7"), "payment_id": n("9001"), "merchant_id": n("42"), "cancel_amount": n("5000"),
				"canceled_at": "2026-03-02T03:10:00.5Z"},
			Source: func() kafka.Source {
				s := src("payment_cancels", 1_772_421_001_000_000, 24023456, 556)
				s.Sequence = [2]uint64{24023400, 24023456}
				return s
			}(),
			TsMS: 1_772_421_001_042,
		},
		pos: kafka.Position{Commit: 24023400, LSN: 24023456},
		// 03:10:00 is 11400 s into the day.
		ev: &event.Event{Merchant: 42, Kind: event.Cancel, Amount: 5000, TimeUS: 1_772_421_000_500_000},
	},
	{
		// schemas.enable=true, and the documentation's boolean snapshot.
		file: "payments-create-schema.json",
		want: kafka.Change{
			Op: "c",
			After: map[string]any{"id": n("9002"), "merchant_id": n("77"), "amount": n("2500"), "status": "paid",
				"approved_at": "2026-03-02T03:04:06Z"},
			Source: func() kafka.Source {
				s := src("payments", 1_772_420_646_200_000, 24023800, 557)
				s.Sequence = [2]uint64{24023456, 24023800}
				return s
			}(),
			TsMS: 1_772_420_646_290,
		},
		pos: kafka.Position{Commit: 24023456, LSN: 24023800},
		ev:  &event.Event{Merchant: 77, Kind: event.Approval, Amount: 2500, TimeUS: 1_772_420_646_000_000},
	},
	{
		// A snapshot read from a connector without ts_us: ts_ms × 1000.
		file: "payments-read.json",
		want: kafka.Change{
			Op: "r",
			After: map[string]any{"id": n("8000"), "merchant_id": n("5"), "amount": n("990000"), "status": "paid",
				"approved_at": "2026-03-01T23:59:59.999999Z"},
			Source: func() kafka.Source {
				s := src("payments", 1_772_420_000_000_000, 23000000, 540)
				s.Version, s.Snapshot, s.Sequence = "2.5.4.Final", "last", [2]uint64{0, 23000000}
				return s
			}(),
			TsMS: 1_772_420_000_321,
		},
		pos: kafka.Position{LSN: 23000000},
		// One µs before 2026-03-02: 1772409600 s − 1 µs.
		ev: &event.Event{Merchant: 5, Kind: event.Approval, Amount: 990000, TimeUS: 1_772_409_599_999_999},
	},
	{
		// No sequence: the position is the LSN alone.
		file: "payments-update.json",
		want: kafka.Change{
			Op:     "u",
			Before: map[string]any{"id": n("9001")},
			After: map[string]any{"id": n("9001"), "merchant_id": n("42"), "amount": n("15000"), "status": "canceled",
				"approved_at": "2026-03-02T03:04:05.123456Z"},
			Source: src("payments", 1_772_421_001_000_000, 24023440, 556),
			TsMS:   1_772_421_001_040,
		},
		pos: kafka.Position{LSN: 24023440},
	},
	{
		file: "payments-delete.json",
		want: kafka.Change{
			Op:     "d",
			Before: map[string]any{"id": n("9001")},
			// 04:00:00Z.
			Source: src("payments", 1_772_424_000_000_000, 46523128, 600),
			TsMS:   1_772_424_000_461,
		},
		pos: kafka.Position{LSN: 46523128},
	},
}

func TestDecodeChangeFixtures(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.file, func(t *testing.T) {
			got, err := kafka.DecodeChange(fixture(t, f.file))
			if err != nil {
				t.Fatalf("DecodeChange: %v", err)
			}
			if !reflect.DeepEqual(got, f.want) {
				t.Errorf("DecodeChange =\n%#v\nwant\n%#v", got, f.want)
			}
			if p := got.Position(); p != f.pos {
				t.Errorf("Position() = %+v, want %+v", p, f.pos)
			}
		})
	}
}

func TestDecodeChangeTombstone(t *testing.T) {
	for _, v := range [][]byte{fixture(t, "payments-tombstone.value"), nil, {}, []byte("null"), []byte(" null\n"),
		[]byte(`{"schema":null,"payload":null}`)} {
		if _, err := kafka.DecodeChange(v); !errors.Is(err, kafka.ErrTombstone) {
			t.Errorf("DecodeChange(%q) error = %v, want ErrTombstone", v, err)
		}
	}
}

// TestFixturesMapToEvents runs a worker's path: decode, then map `after`
// with the configured mapping, at the source's commit time.
func TestFixturesMapToEvents(t *testing.T) {
	m, err := event.NewMapping([]event.Spec{
		{Schema: "public", Table: "payments", Kind: event.Approval, Merchant: "merchant_id", Amount: "amount", Time: "approved_at"},
		{Schema: "public", Table: "payment_cancels", Kind: event.Cancel, Merchant: "merchant_id", Amount: "cancel_amount", Time: "canceled_at"},
	}, event.Limits{MaxFuture: 5 * time.Minute, Retention: 8 * 24 * time.Hour, MaxAmount: 1e12})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fixtures {
		if f.ev == nil {
			continue
		}
		t.Run(f.file, func(t *testing.T) {
			c, err := kafka.DecodeChange(fixture(t, f.file))
			if err != nil {
				t.Fatalf("DecodeChange: %v", err)
			}
			jt := m.BindJSON(c.Source.Schema, c.Source.Table)
			if jt == nil {
				t.Fatalf("BindJSON(%s.%s) = nil", c.Source.Schema, c.Source.Table)
			}
			var out event.Output
			jt.Map(c.After, c.Source.TsUS, &out)
			if want := []event.Event{*f.ev}; !reflect.DeepEqual(out.Events, want) || len(out.DeadLetters) != 0 {
				t.Errorf("Events = %+v, DeadLetters = %+v; want %+v", out.Events, out.DeadLetters, want)
			}
		})
	}
}

func TestDecodeChangeErrors(t *testing.T) {
	const okSource = `"source":{"table":"payments","ts_ms":1}`
	withSource := func(source string) string { return `{"op":"c","after":{"id":1},"source":{` + source + `}}` }
	tests := []struct {
		name, value, want string
	}{
		{"malformed", `{"op":`, "decoding change event"},
		{"not an object", `[1,2]`, "cannot unmarshal array"},
		{"trailing data", `{"op":"c","after":{},` + okSource + `} {}`, "data after"},
		{"op missing", `{"after":{},` + okSource + `}`, "op missing"},
		{"op empty", `{"op":"","after":{},` + okSource + `}`, "op missing"},
		{"op unknown", `{"op":"x","after":{},` + okSource + `}`, `op "x"`},
		{"op not a string", `{"op":1,"after":{},` + okSource + `}`, "op"},
		{"source missing", `{"op":"c","after":{"id":1}}`, "source missing"},
		{"source null", `{"op":"c","after":{"id":1},"source":null}`, "source missing"},
		{"create without after", `{"op":"c",` + okSource + `}`, `op "c" without after`},
		{"after not an object", `{"op":"c","after":"x",` + okSource + `}`, "after"},
		{"table missing", withSource(`"ts_ms":1`), "source.table missing"},
		{"table empty", withSource(`"table":"","ts_ms":1`), "source.table missing"},
		{"commit time missing", withSource(`"table":"payments"`), "source.ts_ms missing"},
		{"ts_us not an integer", withSource(`"table":"payments","ts_us":1.5`), "ts_us"},
		{"lsn negative", withSource(`"table":"payments","ts_ms":1,"lsn":-1`), "lsn"},
		{"lsn a string", withSource(`"table":"payments","ts_ms":1,"lsn":"24023128"`), "lsn"},
		{"snapshot a number", withSource(`"table":"payments","ts_ms":1,"snapshot":1`), "source.snapshot"},
		{"sequence not JSON", withSource(`"table":"payments","ts_ms":1,"sequence":"nope"`), "source.sequence"},
		{"sequence of one", withSource(`"table":"payments","ts_ms":1,"sequence":"[\"1\"]"`), "source.sequence"},
		{"sequence of numbers", withSource(`"table":"payments","ts_ms":1,"sequence":"[1,2]"`), "source.sequence"},
		{"sequence not decimal", withSource(`"table":"payments","ts_ms":1,"sequence":"[\"0/16B3748\",\"1\"]"`), "source.sequence"},
		{"sequence negative", withSource(`"table":"payments","ts_ms":1,"sequence":"[\"1\",\"-2\"]"`), "source.sequence"},
		{"sequence not a string", withSource(`"table":"payments","ts_ms":1,"sequence":["1","2"]`), "sequence"},
		{"payload without source", `{"schema":{},"payload":{"op":"c","after":{}}}`, "source missing"},
		{"payload malformed", `{"schema":{},"payload":[1]}`, "payload"},
		{"neither envelope nor payload", `{"schema":{}}`, "op missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := kafka.DecodeChange([]byte(tt.value))
			if err == nil {
				t.Fatalf("DecodeChange(%s) = %+v, want an error containing %q", tt.value, c, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || errors.Is(err, kafka.ErrTombstone) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestDecodeChangeAccepts(t *testing.T) {
	tests := []struct {
		name, value string
		want        kafka.Change
	}{
		{"a message belongs to no table", `{"op":"m","source":{"schema":"","table":"","ts_ms":2,"snapshot":false}}`,
			kafka.Change{Op: "m", Source: kafka.Source{TsUS: 2000, Snapshot: "false"}}},
		{"truncate", `{"op":"t","source":{"schema":"public","table":"payments","ts_us":5,"txId":null,"lsn":null,"sequence":null}}`,
			kafka.Change{Op: "t", Source: kafka.Source{Schema: "public", Table: "payments", TsUS: 5, Snapshot: "false"}}},
		{"ts_us wins over ts_ms", `{"op":"d","source":{"table":"t","ts_ms":1,"ts_us":1999}}`,
			kafka.Change{Op: "d", Source: kafka.Source{Table: "t", TsUS: 1999, Snapshot: "false"}}},
		{"sequence of nulls", `{"op":"d","source":{"table":"t","ts_ms":1,"lsn":9,"sequence":"[null,null]"}}`,
			kafka.Change{Op: "d", Source: kafka.Source{Table: "t", TsUS: 1000, LSN: 9, Snapshot: "false"}}},
		{"incremental snapshot", `{"op":"r","after":{"x":1.5},"source":{"table":"t","ts_ms":1,"snapshot":"incremental"}}`,
			kafka.Change{Op: "r", After: map[string]any{"x": n("1.5")}, Source: kafka.Source{Table: "t", TsUS: 1000, Snapshot: "incremental"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kafka.DecodeChange([]byte(tt.value))
			if err != nil {
				t.Fatalf("DecodeChange: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeChange = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestEncodeChange(t *testing.T) {
	c := kafka.Change{
		Op: "c",
		After: map[string]any{"id": n("9001"), "merchant_id": int64(42), "amount": n("15000"), "status": "paid",
			"approved_at": "2026-03-02T03:04:05.123456Z", "note": nil, "flag": true},
		Source: kafka.Source{Version: "riskwatch-1", Name: "riskwatch", DB: "shop", Schema: "public", Table: "payments",
			TsUS: 1_772_420_645_623_789, LSN: 24023128, TxID: 555, Sequence: [2]uint64{0, 24023128}},
		TsMS: 1_772_420_645_701,
	}
	got, err := kafka.EncodeChange(c)
	if err != nil {
		t.Fatalf("EncodeChange: %v", err)
	}
	// Debezium's field names and order; connector and snapshot defaulted,
	// source.ts_ms derived, a zero sequence element null.
	want := `{"before":null,"after":{"amount":15000,"approved_at":"2026-03-02T03:04:05.123456Z","flag":true,"id":9001,"merchant_id":42,"note":null,"status":"paid"},` +
		`"source":{"version":"riskwatch-1","connector":"postgresql","name":"riskwatch","ts_ms":1772420645623,"ts_us":1772420645623789,` +
		`"snapshot":"false","db":"shop","sequence":"[null,\"24023128\"]","schema":"public","table":"payments","txId":555,"lsn":24023128,"xmin":null},` +
		`"op":"c","ts_ms":1772420645701}`
	if string(got) != want {
		t.Errorf("EncodeChange =\n%s\nwant\n%s", got, want)
	}
}

func TestEncodeChangeRoundTrip(t *testing.T) {
	cases := []kafka.Change{
		{
			Op:    "c",
			After: map[string]any{"id": n("1"), "merchant_id": n("9223372036854775807"), "amount": n("0"), "status": "paid", "at": "2026-03-02T03:04:05Z", "n": nil, "b": false},
			Source: kafka.Source{Version: "riskwatch", Connector: "postgresql", Name: "rw", DB: "shop", Schema: "public", Table: "payments",
				TsUS: 1_772_420_645_623_789, LSN: math.MaxUint64, TxID: 1 << 40, Snapshot: "false", Sequence: [2]uint64{24023119, 24023128}},
			TsMS: 1,
		},
		{
			Op:     "r",
			After:  map[string]any{"amount": "15000.0"},
			Source: kafka.Source{Connector: "postgresql", Table: "t", TsUS: -1, Snapshot: "last", Sequence: [2]uint64{0, 5}},
		},
		{
			Op:     "d",
			Before: map[string]any{"id": n("1")},
			Source: kafka.Source{Connector: "postgresql", Schema: "public", Table: "payments", TsUS: 1_000_999, Snapshot: "false", LSN: 7},
		},
	}
	for _, c := range cases {
		b, err := kafka.EncodeChange(c)
		if err != nil {
			t.Fatalf("EncodeChange(%+v): %v", c, err)
		}
		got, err := kafka.DecodeChange(b)
		if err != nil {
			t.Fatalf("DecodeChange(%s): %v", b, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("round trip of %s:\n got %#v\nwant %#v", b, got, c)
		}
	}
	// A fixture re-encoded decodes to the same change.
	for _, f := range fixtures {
		b, err := kafka.EncodeChange(f.want)
		if err != nil {
			t.Fatalf("EncodeChange(%s): %v", f.file, err)
		}
		if got, err := kafka.DecodeChange(b); err != nil || !reflect.DeepEqual(got, f.want) {
			t.Errorf("%s re-encoded: %#v, %v", f.file, got, err)
		}
	}
}

func TestEncodeChangeErrors(t *testing.T) {
	ok := kafka.Source{Schema: "public", Table: "payments", TsUS: 1}
	for _, tc := range []struct {
		name string
		c    kafka.Change
		want string
	}{
		{"op missing", kafka.Change{After: map[string]any{}, Source: ok}, "op missing"},
		{"op unknown", kafka.Change{Op: "insert", After: map[string]any{}, Source: ok}, `op "insert"`},
		{"create without after", kafka.Change{Op: "c", Source: ok}, "without after"},
		{"table missing", kafka.Change{Op: "c", After: map[string]any{}, Source: kafka.Source{TsUS: 1}}, "source.table missing"},
		{"unencodable value", kafka.Change{Op: "c", After: map[string]any{"x": math.Inf(1)}, Source: ok}, "public.payments"},
	} {
		if _, err := kafka.EncodeChange(tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: EncodeChange error = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestPosition(t *testing.T) {
	tests := []struct {
		p, q kafka.Position
		less bool
	}{
		{kafka.Position{Commit: 1, LSN: 9}, kafka.Position{Commit: 2, LSN: 3}, true},
		{kafka.Position{Commit: 2, LSN: 3}, kafka.Position{Commit: 1, LSN: 9}, false},
		{kafka.Position{Commit: 2, LSN: 3}, kafka.Position{Commit: 2, LSN: 4}, true},
		{kafka.Position{Commit: 2, LSN: 4}, kafka.Position{Commit: 2, LSN: 4}, false},
		{kafka.Position{LSN: 4}, kafka.Position{LSN: 5}, true},
		{kafka.Position{}, kafka.Position{LSN: 1}, true},
	}
	for _, tt := range tests {
		if got := tt.p.Less(tt.q); got != tt.less {
			t.Errorf("%+v.Less(%+v) = %v, want %v", tt.p, tt.q, got, tt.less)
		}
	}
	if !(kafka.Position{}).IsZero() || (kafka.Position{LSN: 1}).IsZero() || (kafka.Position{Commit: 1}).IsZero() {
		t.Error("IsZero is true only for the zero position")
	}
	// The sequence's LSN decides; without it, source.lsn.
	c := kafka.Change{Source: kafka.Source{LSN: 10, Sequence: [2]uint64{7, 0}}}
	if got := c.Position(); got != (kafka.Position{LSN: 10}) {
		t.Errorf("Position without sequence LSN = %+v, want {0 10}", got)
	}
}
