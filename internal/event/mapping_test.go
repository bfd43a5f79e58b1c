package event_test

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/riskwatch/riskwatch/internal/event"
)

// Type OIDs, from PostgreSQL's pg_type.dat (written out here rather than
// taken from the package under test).
const (
	oidBool        = 16
	oidChar        = 18
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidFloat8      = 701
	oidBPChar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidUUID        = 2950
	// oidEnum stands for a user-defined enum: user OIDs start at 16384.
	oidEnum = 16400
)

// pgEpochUS is 2000-01-01T00:00:00Z in Unix microseconds (946684800 s).
const pgEpochUS int64 = 946_684_800_000_000

// commitUS is the commit time used throughout: 2024-03-01T12:00:00Z =
// 1709294400 s (2024-01-01 is 1704067200 s; January and leap February add
// 60 days = 5184000 s; 12 h add 43200 s).
const commitUS int64 = 1_709_294_400_000_000

// evUS is a typical transaction time, 30 s before the commit: 11:59:30Z.
const evUS = commitUS - 30_000_000

const (
	maxFutureUS = 5 * 60 * 1_000_000        // 5 min
	retentionUS = 8 * 24 * 3600 * 1_000_000 // 8 days = 691200 s
)

var limits = event.Limits{MaxFuture: 5 * time.Minute, Retention: 8 * 24 * time.Hour, MaxAmount: 1e12}

// --- value builders: binary forms as pgoutput sends them with binary 'true'.

func i8(n int64) event.Value {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(n))
	return event.Value{Format: 'b', Data: b}
}

func i4(n int32) event.Value {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, uint32(n))
	return event.Value{Format: 'b', Data: b}
}

func i2(n int16) event.Value {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, uint16(n))
	return event.Value{Format: 'b', Data: b}
}

// pgTS is a binary timestamp/timestamptz holding pgUS microseconds since
// 2000-01-01 (math.MaxInt64 is infinity, math.MinInt64 -infinity).
func pgTS(pgUS int64) event.Value { return i8(pgUS) }

// ts is a binary timestamp for a Unix time in microseconds.
func ts(unixUS int64) event.Value { return pgTS(unixUS - pgEpochUS) }

func bin(s string) event.Value { return event.Value{Format: 'b', Data: []byte(s)} }

func txt(s string) event.Value { return event.Value{Format: 't', Data: []byte(s)} }

func boolV(v bool) event.Value {
	if v {
		return event.Value{Format: 'b', Data: []byte{1}}
	}
	return event.Value{Format: 'b', Data: []byte{0}}
}

func null() event.Value { return event.Value{Format: 'n'} }

func unchanged() event.Value { return event.Value{Format: 'u'} }

// num is a binary numeric value of unscaled × 10^exp.
func num(unscaled int64, exp int32) event.Value {
	return numV(pgtype.Numeric{Int: big.NewInt(unscaled), Exp: exp, Valid: true})
}

func numV(n pgtype.Numeric) event.Value {
	buf, err := pgtype.NewMap().Encode(oidNumeric, pgtype.BinaryFormatCode, n, nil)
	if err != nil {
		panic(err)
	}
	return event.Value{Format: 'b', Data: buf}
}

// --- fixtures

func paymentsSpec() event.Spec {
	return event.Spec{Schema: "public", Table: "payments", Kind: event.Approval,
		Merchant: "merchant_id", Amount: "amount", Time: "approved_at"}
}

func cancelsSpec() event.Spec {
	return event.Spec{Schema: "public", Table: "payment_cancels", Kind: event.Cancel,
		Merchant: "merchant_id", Amount: "cancel_amount", Time: "canceled_at"}
}

// paymentsCols and cancelsCols are SPEC §2's default schema.
var paymentsCols = []event.Column{
	{Name: "id", TypeOID: oidInt8},
	{Name: "merchant_id", TypeOID: oidInt8},
	{Name: "amount", TypeOID: oidInt8},
	{Name: "status", TypeOID: oidText},
	{Name: "approved_at", TypeOID: oidTimestamptz},
}

var cancelsCols = []event.Column{
	{Name: "id", TypeOID: oidInt8},
	{Name: "payment_id", TypeOID: oidInt8},
	{Name: "merchant_id", TypeOID: oidInt8},
	{Name: "cancel_amount", TypeOID: oidInt8},
	{Name: "canceled_at", TypeOID: oidTimestamptz},
}

func ledgerSpec(kind event.Kind, in ...string) event.Spec {
	return event.Spec{Schema: "public", Table: "ledger", Kind: kind,
		Merchant: "merchant_id", Amount: "amount", Time: "occurred_at",
		FilterColumn: "type", FilterIn: in}
}

func ledgerCols(typeOID uint32) []event.Column {
	return []event.Column{
		{Name: "id", TypeOID: oidInt8},
		{Name: "merchant_id", TypeOID: oidInt8},
		{Name: "amount", TypeOID: oidInt8},
		{Name: "type", TypeOID: typeOID},
		{Name: "occurred_at", TypeOID: oidTimestamptz},
	}
}

func ledgerRow(typ event.Value, merchant, amount int64) []event.Value {
	return []event.Value{i8(1), i8(merchant), i8(amount), typ, ts(evUS)}
}

func mustMapping(t *testing.T, specs ...event.Spec) *event.Mapping {
	t.Helper()
	m, err := event.NewMapping(specs, limits)
	if err != nil {
		t.Fatalf("NewMapping: %v", err)
	}
	return m
}

func mustBind(t *testing.T, m *event.Mapping, schema, table string, cols []event.Column) *event.Table {
	t.Helper()
	tbl, err := m.Bind(schema, table, cols)
	if err != nil {
		t.Fatalf("Bind(%s.%s): %v", schema, table, err)
	}
	if tbl == nil {
		t.Fatalf("Bind(%s.%s) = nil, want a table", schema, table)
	}
	return tbl
}

func mapRows(tbl *event.Table, rows ...[]event.Value) event.Output {
	var out event.Output
	for _, r := range rows {
		tbl.Map(r, commitUS, &out)
	}
	return out
}

// --- NewMapping, Specs, Limits, Tables

func TestNewMapping(t *testing.T) {
	valid := paymentsSpec()
	with := func(f func(*event.Spec)) event.Spec {
		s := paymentsSpec()
		f(&s)
		return s
	}
	tests := []struct {
		name    string
		specs   []event.Spec
		limits  event.Limits
		wantErr string // substring; "" means success
	}{
		{"default schema", []event.Spec{paymentsSpec(), cancelsSpec()}, limits, ""},
		{"ledger with two filtered specs", []event.Spec{ledgerSpec(event.Approval, "pay"), ledgerSpec(event.Cancel, "refund")}, limits, ""},
		{"tiny limits", []event.Spec{valid}, event.Limits{MaxFuture: time.Microsecond, Retention: time.Microsecond, MaxAmount: 1}, ""},
		{"no specs", nil, limits, "no tables"},
		{"empty specs", []event.Spec{}, limits, "no tables"},
		{"missing schema", []event.Spec{with(func(s *event.Spec) { s.Schema = "" })}, limits, "required"},
		{"missing table", []event.Spec{with(func(s *event.Spec) { s.Table = "" })}, limits, "required"},
		{"missing merchant", []event.Spec{with(func(s *event.Spec) { s.Merchant = "" })}, limits, "required"},
		{"missing amount", []event.Spec{with(func(s *event.Spec) { s.Amount = "" })}, limits, "required"},
		{"missing time", []event.Spec{with(func(s *event.Spec) { s.Time = "" })}, limits, "required"},
		{"missing kind", []event.Spec{with(func(s *event.Spec) { s.Kind = 0 })}, limits, "invalid kind"},
		{"unknown kind", []event.Spec{with(func(s *event.Spec) { s.Kind = 3 })}, limits, "invalid kind"},
		{"filter column without values", []event.Spec{with(func(s *event.Spec) { s.FilterColumn = "status" })}, limits, "filter"},
		{"filter column with empty values", []event.Spec{with(func(s *event.Spec) { s.FilterColumn = "status"; s.FilterIn = []string{} })}, limits, "filter"},
		{"filter values without column", []event.Spec{with(func(s *event.Spec) { s.FilterIn = []string{"paid"} })}, limits, "filter"},
		{"bad second spec", []event.Spec{valid, with(func(s *event.Spec) { s.Table = "x"; s.Time = "" })}, limits, "mapping 1 (public.x)"},
		{"zero limits", []event.Spec{valid}, event.Limits{}, "limits must be positive"},
		{"zero max future", []event.Spec{valid}, event.Limits{Retention: time.Hour, MaxAmount: 1}, "limits must be positive"},
		{"zero retention", []event.Spec{valid}, event.Limits{MaxFuture: time.Hour, MaxAmount: 1}, "limits must be positive"},
		{"negative max future", []event.Spec{valid}, event.Limits{MaxFuture: -time.Second, Retention: time.Hour, MaxAmount: 1}, "limits must be positive"},
		{"negative retention", []event.Spec{valid}, event.Limits{MaxFuture: time.Second, Retention: -time.Hour, MaxAmount: 1}, "limits must be positive"},
		{"zero max amount", []event.Spec{valid}, event.Limits{MaxFuture: time.Second, Retention: time.Hour}, "limits must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := event.NewMapping(tt.specs, tt.limits)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewMapping: %v", err)
				}
				if m == nil {
					t.Fatal("NewMapping returned nil mapping without error")
				}
				if got := m.Limits(); got != tt.limits {
					t.Errorf("Limits() = %+v, want %+v", got, tt.limits)
				}
				if got := m.Specs(); !reflect.DeepEqual(got, tt.specs) {
					t.Errorf("Specs() = %+v, want %+v", got, tt.specs)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewMapping succeeded, want an error containing %q", tt.wantErr)
			}
			if m != nil {
				t.Errorf("NewMapping returned a mapping with an error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestMappingSpecsAreCopies(t *testing.T) {
	specs := []event.Spec{paymentsSpec(), cancelsSpec()}
	m := mustMapping(t, specs...)
	specs[0].Table = "changed" // the caller's slice after NewMapping
	got := m.Specs()
	if got[0].Table != "payments" {
		t.Fatalf("NewMapping kept the caller's slice: Specs()[0].Table = %q", got[0].Table)
	}
	got[1].Table = "changed" // the returned slice
	if m.Specs()[1].Table != "payment_cancels" {
		t.Fatalf("Specs() returned the mapping's own slice")
	}
}

func TestMappingTables(t *testing.T) {
	tests := []struct {
		name  string
		specs []event.Spec
		want  [][2]string
	}{
		{"default schema", []event.Spec{paymentsSpec(), cancelsSpec()},
			[][2]string{{"public", "payments"}, {"public", "payment_cancels"}}},
		{"ledger listed once", []event.Spec{ledgerSpec(event.Approval, "pay"), ledgerSpec(event.Cancel, "refund")},
			[][2]string{{"public", "ledger"}}},
		{
			"dedup keeps first-seen order and tells schemas apart",
			[]event.Spec{
				paymentsSpec(),
				ledgerSpec(event.Approval, "pay"),
				cancelsSpec(),
				ledgerSpec(event.Cancel, "refund"),
				func() event.Spec { s := ledgerSpec(event.Cancel, "refund"); s.Schema = "audit"; return s }(),
				paymentsSpec(),
			},
			[][2]string{{"public", "payments"}, {"public", "ledger"}, {"public", "payment_cancels"}, {"audit", "ledger"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustMapping(t, tt.specs...).Tables()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Tables() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSpecQualifiedTable(t *testing.T) {
	if got := paymentsSpec().QualifiedTable(); got != "public.payments" {
		t.Errorf("QualifiedTable() = %q, want public.payments", got)
	}
}

// --- Bind

func TestBind(t *testing.T) {
	replace := func(cols []event.Column, name string, oid uint32) []event.Column {
		out := slices.Clone(cols)
		for i := range out {
			if out[i].Name == name {
				out[i].TypeOID = oid
			}
		}
		return out
	}
	drop := func(cols []event.Column, name string) []event.Column {
		return slices.DeleteFunc(slices.Clone(cols), func(c event.Column) bool { return c.Name == name })
	}
	def := []event.Spec{paymentsSpec(), cancelsSpec()}
	ledger := []event.Spec{ledgerSpec(event.Approval, "pay"), ledgerSpec(event.Cancel, "refund")}
	tests := []struct {
		name          string
		specs         []event.Spec
		schema, table string
		cols          []event.Column
		wantNil       bool
		wantErr       []string // substrings of the error
	}{
		{name: "payments", specs: def, schema: "public", table: "payments", cols: paymentsCols},
		{name: "payment_cancels", specs: def, schema: "public", table: "payment_cancels", cols: cancelsCols},
		{name: "unmapped table", specs: def, schema: "public", table: "merchants",
			cols: []event.Column{{Name: "id", TypeOID: oidInt8}}, wantNil: true},
		{name: "unmapped table without columns", specs: def, schema: "public", table: "merchants", wantNil: true},
		{name: "same table name in another schema", specs: def, schema: "audit", table: "payments", cols: paymentsCols, wantNil: true},
		{name: "table names are case sensitive", specs: def, schema: "public", table: "Payments", cols: paymentsCols, wantNil: true},
		{name: "extra columns and other order", specs: def, schema: "public", table: "payments", cols: []event.Column{
			{Name: "approved_at", TypeOID: oidTimestamptz}, {Name: "note", TypeOID: oidText},
			{Name: "amount", TypeOID: oidInt4}, {Name: "merchant_id", TypeOID: oidNumeric}}},
		{name: "missing merchant column", specs: def, schema: "public", table: "payments",
			cols: drop(paymentsCols, "merchant_id"), wantErr: []string{"public.payments", "merchant", `"merchant_id"`, "does not exist"}},
		{name: "missing amount column", specs: def, schema: "public", table: "payment_cancels",
			cols: drop(cancelsCols, "cancel_amount"), wantErr: []string{"public.payment_cancels", "amount", `"cancel_amount"`, "does not exist"}},
		{name: "missing time column", specs: def, schema: "public", table: "payments",
			cols: drop(paymentsCols, "approved_at"), wantErr: []string{"time", `"approved_at"`, "does not exist"}},
		{name: "column names are case sensitive", specs: def, schema: "public", table: "payments",
			cols: append(drop(paymentsCols, "amount"), event.Column{Name: "Amount", TypeOID: oidInt8}), wantErr: []string{`"amount"`, "does not exist"}},
		{name: "missing filter column", specs: ledger, schema: "public", table: "ledger",
			cols: drop(ledgerCols(oidText), "type"), wantErr: []string{"public.ledger", "filter", `"type"`, "does not exist"}},
		{name: "merchant is text", specs: def, schema: "public", table: "payments",
			cols: replace(paymentsCols, "merchant_id", oidText), wantErr: []string{"merchant", `"merchant_id"`, "25"}},
		{name: "merchant is uuid", specs: def, schema: "public", table: "payments",
			cols: replace(paymentsCols, "merchant_id", oidUUID), wantErr: []string{`"merchant_id"`}},
		{name: "amount is float8", specs: def, schema: "public", table: "payments",
			cols: replace(paymentsCols, "amount", oidFloat8), wantErr: []string{"amount", `"amount"`, "701"}},
		{name: "amount is a user type", specs: def, schema: "public", table: "payments",
			cols: replace(paymentsCols, "amount", oidEnum), wantErr: []string{`"amount"`}},
		{name: "time is date", specs: def, schema: "public", table: "payments",
			cols: replace(paymentsCols, "approved_at", oidDate), wantErr: []string{"time", `"approved_at"`, "1082"}},
		{name: "time is bigint", specs: def, schema: "public", table: "payments",
			cols: replace(paymentsCols, "approved_at", oidInt8), wantErr: []string{`"approved_at"`}},
		{name: "time is text", specs: def, schema: "public", table: "payment_cancels",
			cols: replace(cancelsCols, "canceled_at", oidText), wantErr: []string{`"canceled_at"`}},
		{name: "filter is timestamptz", specs: ledger, schema: "public", table: "ledger",
			cols: ledgerCols(oidTimestamptz), wantErr: []string{"filter", `"type"`}},
		{name: "filter is numeric", specs: ledger, schema: "public", table: "ledger",
			cols: ledgerCols(oidNumeric), wantErr: []string{"filter", `"type"`}},
		{name: "filter is float8", specs: ledger, schema: "public", table: "ledger",
			cols: ledgerCols(oidFloat8), wantErr: []string{"filter", `"type"`}},
		{name: "ledger binds both specs", specs: ledger, schema: "public", table: "ledger", cols: ledgerCols(oidText)},
		{name: "ledger with an enum type column", specs: ledger, schema: "public", table: "ledger", cols: ledgerCols(oidEnum)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustMapping(t, tt.specs...)
			tbl, err := m.Bind(tt.schema, tt.table, tt.cols)
			switch {
			case len(tt.wantErr) > 0:
				if err == nil {
					t.Fatalf("Bind succeeded, want an error containing %q", tt.wantErr)
				}
				if tbl != nil {
					t.Errorf("Bind returned a table with an error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
			case tt.wantNil:
				if err != nil || tbl != nil {
					t.Fatalf("Bind = %v, %v; want nil, nil", tbl, err)
				}
			default:
				if err != nil {
					t.Fatalf("Bind: %v", err)
				}
				if tbl == nil {
					t.Fatal("Bind = nil, want a table")
				}
				if want := tt.schema + "." + tt.table; tbl.Name != want {
					t.Errorf("Name = %q, want %q", tbl.Name, want)
				}
			}
		})
	}
}

func TestBindAcceptedTypes(t *testing.T) {
	spec := event.Spec{Schema: "s", Table: "t", Kind: event.Approval, Merchant: "m", Amount: "a", Time: "at", FilterColumn: "f", FilterIn: []string{"x"}}
	m := mustMapping(t, spec)
	// Every accepted type, per role; each is bound with the other roles at
	// a plain accepted type.
	tests := []struct {
		role string
		oids []uint32
	}{
		{"m", []uint32{oidInt2, oidInt4, oidInt8, oidNumeric}},
		{"a", []uint32{oidInt2, oidInt4, oidInt8, oidNumeric}},
		{"at", []uint32{oidTimestamp, oidTimestamptz}},
		{"f", []uint32{oidText, oidVarchar, oidBPChar, oidName, oidChar, oidBool, oidInt2, oidInt4, oidInt8, 16384, oidEnum}},
	}
	for _, tt := range tests {
		for _, oid := range tt.oids {
			cols := []event.Column{{Name: "m", TypeOID: oidInt8}, {Name: "a", TypeOID: oidInt8}, {Name: "at", TypeOID: oidTimestamptz}, {Name: "f", TypeOID: oidText}}
			for i := range cols {
				if cols[i].Name == tt.role {
					cols[i].TypeOID = oid
				}
			}
			if _, err := m.Bind("s", "t", cols); err != nil {
				t.Errorf("role %s, type %d: %v", tt.role, oid, err)
			}
		}
	}
	// 16383 is the last system OID: not a user type, and not in the list.
	cols := []event.Column{{Name: "m", TypeOID: oidInt8}, {Name: "a", TypeOID: oidInt8}, {Name: "at", TypeOID: oidTimestamptz}, {Name: "f", TypeOID: 16383}}
	if _, err := m.Bind("s", "t", cols); err == nil {
		t.Errorf("filter of type 16383 was accepted")
	}
}

func TestBindCopiesColumns(t *testing.T) {
	m := mustMapping(t, paymentsSpec())
	cols := slices.Clone(paymentsCols)
	tbl := mustBind(t, m, "public", "payments", cols)
	// If Bind kept the caller's slice, this would make the 8-byte amount
	// undecodable as an int4.
	cols[2].TypeOID = oidInt4
	cols[1].Name = "other"
	out := mapRows(tbl, []event.Value{i8(1), i8(42), i8(15000), bin("paid"), ts(evUS)})
	want := []event.Event{{Merchant: 42, Kind: event.Approval, Amount: 15000, TimeUS: evUS}}
	if !reflect.DeepEqual(out.Events, want) || len(out.DeadLetters) != 0 {
		t.Fatalf("after changing the caller's columns: events %+v, dead letters %+v; want %+v", out.Events, out.DeadLetters, want)
	}
	if got := tbl.RowJSON([]event.Value{i8(1), i8(42)}); got["merchant_id"] != int64(42) {
		t.Errorf("RowJSON after changing the caller's columns = %v", got)
	}
}

// --- Map

func TestMapDefaultSchema(t *testing.T) {
	m := mustMapping(t, paymentsSpec(), cancelsSpec())
	pay := mustBind(t, m, "public", "payments", paymentsCols)
	cancel := mustBind(t, m, "public", "payment_cancels", cancelsCols)

	var out event.Output
	// payments(id 9001, merchant 42, amount 15000, 'paid', 11:59:30Z)
	pay.Map([]event.Value{i8(9001), i8(42), i8(15000), bin("paid"), ts(evUS)}, commitUS, &out)
	// payment_cancels(id 7, payment 9001, merchant 42, cancel 5000, 11:59:45.5Z):
	// a partial cancel is one cancellation.
	cancel.Map([]event.Value{i8(7), i8(9001), i8(42), i8(5000), ts(commitUS - 14_500_000)}, commitUS, &out)
	// payments with the id and merchant swapped: the columns are found by name.
	pay.Map([]event.Value{i8(42), i8(9001), i8(1), bin("paid"), ts(evUS)}, commitUS, &out)

	want := []event.Event{
		{Merchant: 42, Kind: event.Approval, Amount: 15000, TimeUS: 1_709_294_370_000_000},
		{Merchant: 42, Kind: event.Cancel, Amount: 5000, TimeUS: 1_709_294_385_500_000},
		{Merchant: 9001, Kind: event.Approval, Amount: 1, TimeUS: 1_709_294_370_000_000},
	}
	if !reflect.DeepEqual(out.Events, want) {
		t.Errorf("Events = %+v\nwant     %+v", out.Events, want)
	}
	if len(out.DeadLetters) != 0 || out.Filtered != 0 {
		t.Errorf("DeadLetters = %+v, Filtered = %d; want none", out.DeadLetters, out.Filtered)
	}
	if got := out.Events[0].Time(); !got.Equal(time.Date(2024, 3, 1, 11, 59, 30, 0, time.UTC)) {
		t.Errorf("Events[0].Time() = %v", got)
	}
}

func TestMapValues(t *testing.T) {
	type cols struct{ merchant, amount, time uint32 }
	std := cols{oidInt8, oidInt8, oidTimestamptz}
	ev := func(merchant, amount, timeUS int64) *event.Event {
		return &event.Event{Merchant: merchant, Kind: event.Approval, Amount: amount, TimeUS: timeUS}
	}
	tests := []struct {
		name  string
		types cols // zero value: int8, int8, timestamptz
		row   []event.Value
		want  *event.Event // nil: a dead letter with reason
		// reason and the column the dead letter's detail must name.
		reason event.Reason
		column string
	}{
		// Integer encodings.
		{name: "int8", row: []event.Value{i8(42), i8(15000), ts(evUS)}, want: ev(42, 15000, evUS)},
		{name: "int8 large merchant and amount", row: []event.Value{i8(math.MaxInt64), i8(limits.MaxAmount), ts(evUS)}, want: ev(math.MaxInt64, limits.MaxAmount, evUS)},
		{name: "amount above max_amount", row: []event.Value{i8(42), i8(limits.MaxAmount + 1), ts(evUS)}, reason: event.ReasonAmountOutOfRange, column: "amount"},
		{name: "int8 max amount", row: []event.Value{i8(42), i8(math.MaxInt64), ts(evUS)}, reason: event.ReasonAmountOutOfRange, column: "amount"},
		{name: "int4", types: cols{oidInt4, oidInt4, oidTimestamptz}, row: []event.Value{i4(42), i4(15000), ts(evUS)}, want: ev(42, 15000, evUS)},
		{name: "int4 max", types: cols{oidInt4, oidInt4, oidTimestamptz}, row: []event.Value{i4(math.MaxInt32), i4(math.MaxInt32), ts(evUS)}, want: ev(2147483647, 2147483647, evUS)},
		{name: "int2", types: cols{oidInt2, oidInt2, oidTimestamptz}, row: []event.Value{i2(42), i2(300), ts(evUS)}, want: ev(42, 300, evUS)},
		{name: "int2 max", types: cols{oidInt2, oidInt2, oidTimestamptz}, row: []event.Value{i2(math.MaxInt16), i2(math.MaxInt16), ts(evUS)}, want: ev(32767, 32767, evUS)},
		{name: "mixed integer types", types: cols{oidInt2, oidInt4, oidTimestamptz}, row: []event.Value{i2(7), i4(70000), ts(evUS)}, want: ev(7, 70000, evUS)},
		{name: "numeric integral", types: cols{oidNumeric, oidNumeric, oidTimestamptz}, row: []event.Value{num(42, 0), num(15000, 0), ts(evUS)}, want: ev(42, 15000, evUS)},
		// 15 × 10^3 = 15000.
		{name: "numeric positive exponent", types: cols{oidInt8, oidNumeric, oidTimestamptz}, row: []event.Value{i8(42), num(15, 3), ts(evUS)}, want: ev(42, 15000, evUS)},
		// 150000 × 10^-1 = 15000.0: integral, so valid.
		{name: "numeric integral with scale", types: cols{oidInt8, oidNumeric, oidTimestamptz}, row: []event.Value{i8(42), num(150000, -1), ts(evUS)}, want: ev(42, 15000, evUS)},
		// 10^12 KRW: a numeric group boundary (digits of 10000).
		{name: "numeric large", types: cols{oidInt8, oidNumeric, oidTimestamptz}, row: []event.Value{i8(42), num(1_000_000_000_000, 0), ts(evUS)}, want: ev(42, 1_000_000_000_000, evUS)},
		{name: "numeric max int64", types: cols{oidNumeric, oidNumeric, oidTimestamptz}, row: []event.Value{num(math.MaxInt64, 0), num(limits.MaxAmount, 0), ts(evUS)}, want: ev(math.MaxInt64, limits.MaxAmount, evUS)},
		{name: "numeric amount max int64", types: cols{oidInt8, oidNumeric, oidTimestamptz}, row: []event.Value{i8(42), num(math.MaxInt64, 0), ts(evUS)}, reason: event.ReasonAmountOutOfRange, column: "amount"},
		{name: "numeric zero amount", types: cols{oidInt8, oidNumeric, oidTimestamptz}, row: []event.Value{i8(42), num(0, 0), ts(evUS)}, want: ev(42, 0, evUS)},

		// Text format ('t'): decoded to the same values as binary.
		{name: "text int8", row: []event.Value{txt("42"), txt("15000"), ts(evUS)}, want: ev(42, 15000, evUS)},
		{name: "text int4", types: cols{oidInt4, oidInt4, oidTimestamptz}, row: []event.Value{txt("42"), txt("15000"), ts(evUS)}, want: ev(42, 15000, evUS)},
		{name: "text int2", types: cols{oidInt2, oidInt2, oidTimestamptz}, row: []event.Value{txt("42"), txt("300"), ts(evUS)}, want: ev(42, 300, evUS)},
		{name: "text numeric", types: cols{oidNumeric, oidNumeric, oidTimestamptz}, row: []event.Value{txt("42"), txt("15000"), ts(evUS)}, want: ev(42, 15000, evUS)},
		{name: "text timestamptz UTC", row: []event.Value{i8(42), i8(15000), txt("2024-03-01 11:59:30+00")}, want: ev(42, 15000, evUS)},
		// 20:59:30+09 is 11:59:30Z.
		{name: "text timestamptz with offset", row: []event.Value{i8(42), i8(15000), txt("2024-03-01 20:59:30+09")}, want: ev(42, 15000, evUS)},
		{name: "text timestamptz fraction", row: []event.Value{i8(42), i8(15000), txt("2024-03-01 11:59:30.123456+00")}, want: ev(42, 15000, evUS+123_456)},
		{name: "all text", types: cols{oidInt8, oidNumeric, oidTimestamp}, row: []event.Value{txt("42"), txt("15000"), txt("2024-03-01 11:59:30")}, want: ev(42, 15000, evUS)},

		// timestamp without time zone is read as UTC.
		{name: "binary timestamp as UTC", types: cols{oidInt8, oidInt8, oidTimestamp}, row: []event.Value{i8(42), i8(15000), ts(evUS)}, want: ev(42, 15000, evUS)},
		{name: "text timestamp as UTC", types: cols{oidInt8, oidInt8, oidTimestamp}, row: []event.Value{i8(42), i8(15000), txt("2024-03-01 11:59:30")}, want: ev(42, 15000, evUS)},
		{name: "text timestamp fraction", types: cols{oidInt8, oidInt8, oidTimestamp}, row: []event.Value{i8(42), i8(15000), txt("2024-03-01 11:59:30.5")}, want: ev(42, 15000, evUS+500_000)},

		// Boundaries that are valid.
		{name: "amount zero is valid", row: []event.Value{i8(42), i8(0), ts(evUS)}, want: ev(42, 0, evUS)},
		{name: "merchant 1 is valid", row: []event.Value{i8(1), i8(15000), ts(evUS)}, want: ev(1, 15000, evUS)},
		{name: "time equal to commit", row: []event.Value{i8(42), i8(15000), ts(commitUS)}, want: ev(42, 15000, commitUS)},
		// 12:05:00Z: exactly MaxFuture after the commit.
		{name: "time exactly commit+MaxFuture", row: []event.Value{i8(42), i8(15000), ts(commitUS + maxFutureUS)}, want: ev(42, 15000, 1_709_294_700_000_000)},
		// 2024-02-22T12:00:00Z: exactly Retention before the commit.
		{name: "time exactly commit-Retention", row: []event.Value{i8(42), i8(15000), ts(commitUS - retentionUS)}, want: ev(42, 15000, 1_708_603_200_000_000)},
		{name: "text time exactly commit+MaxFuture", row: []event.Value{i8(42), i8(15000), txt("2024-03-01 12:05:00+00")}, want: ev(42, 15000, commitUS+maxFutureUS)},
		{name: "text time exactly commit-Retention", row: []event.Value{i8(42), i8(15000), txt("2024-02-22 12:00:00+00")}, want: ev(42, 15000, commitUS-retentionUS)},

		// NULLs.
		{name: "NULL merchant", row: []event.Value{null(), i8(15000), ts(evUS)}, reason: event.ReasonNullMerchant, column: "merchant_id"},
		{name: "NULL amount", row: []event.Value{i8(42), null(), ts(evUS)}, reason: event.ReasonNullAmount, column: "amount"},
		{name: "NULL time", row: []event.Value{i8(42), i8(15000), null()}, reason: event.ReasonNullTime, column: "at"},
		{name: "all NULL", row: []event.Value{null(), null(), null()}, reason: event.ReasonNullMerchant, column: "merchant_id"},

		// Invalid merchants.
		{name: "merchant 0", row: []event.Value{i8(0), i8(15000), ts(evUS)}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant -1", row: []event.Value{i8(-1), i8(15000), ts(evUS)}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant min int64", row: []event.Value{i8(math.MinInt64), i8(15000), ts(evUS)}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		// 0xFFFB is -5 as int2, not 65531.
		{name: "merchant int2 -5", types: cols{oidInt2, oidInt8, oidTimestamptz}, row: []event.Value{i2(-5), i8(15000), ts(evUS)}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant int4 -5", types: cols{oidInt4, oidInt8, oidTimestamptz}, row: []event.Value{i4(-5), i8(15000), ts(evUS)}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant text 0", row: []event.Value{txt("0"), i8(15000), ts(evUS)}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant text not a number", row: []event.Value{txt("abc"), i8(15000), ts(evUS)}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant int8 with 4 bytes", row: []event.Value{i4(42), i8(15000), ts(evUS)}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant int4 with 8 bytes", types: cols{oidInt4, oidInt8, oidTimestamptz}, row: []event.Value{i8(42), i8(15000), ts(evUS)}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant empty binary", row: []event.Value{bin(""), i8(15000), ts(evUS)}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant unchanged TOAST", row: []event.Value{unchanged(), i8(15000), ts(evUS)}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant unknown format", row: []event.Value{{Format: 'x', Data: []byte("42")}, i8(15000), ts(evUS)}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant numeric fractional", types: cols{oidNumeric, oidInt8, oidTimestamptz}, row: []event.Value{num(425, -1), i8(15000), ts(evUS)}, reason: event.ReasonInvalidValue, column: "merchant_id"},

		// Invalid amounts.
		{name: "negative amount", row: []event.Value{i8(42), i8(-1), ts(evUS)}, reason: event.ReasonNegativeAmount, column: "amount"},
		{name: "negative amount min int64", row: []event.Value{i8(42), i8(math.MinInt64), ts(evUS)}, reason: event.ReasonNegativeAmount, column: "amount"},
		{name: "negative int4 amount", types: cols{oidInt8, oidInt4, oidTimestamptz}, row: []event.Value{i8(42), i4(-100), ts(evUS)}, reason: event.ReasonNegativeAmount, column: "amount"},
		{name: "negative int2 amount", types: cols{oidInt8, oidInt2, oidTimestamptz}, row: []event.Value{i8(42), i2(-1), ts(evUS)}, reason: event.ReasonNegativeAmount, column: "amount"},
		{name: "negative numeric amount", types: cols{oidInt8, oidNumeric, oidTimestamptz}, row: []event.Value{i8(42), num(-5, 0), ts(evUS)}, reason: event.ReasonNegativeAmount, column: "amount"},
		{name: "negative text amount", row: []event.Value{i8(42), txt("-7"), ts(evUS)}, reason: event.ReasonNegativeAmount, column: "amount"},
		// 125 × 10^-1 = 12.5: not an integer amount of KRW.
		{name: "numeric 12.5", types: cols{oidInt8, oidNumeric, oidTimestamptz}, row: []event.Value{i8(42), num(125, -1), ts(evUS)}, reason: event.ReasonInvalidValue, column: "amount"},
		// 1 × 10^-2 = 0.01.
		{name: "numeric 0.01", types: cols{oidInt8, oidNumeric, oidTimestamptz}, row: []event.Value{i8(42), num(1, -2), ts(evUS)}, reason: event.ReasonInvalidValue, column: "amount"},
		{name: "numeric NaN", types: cols{oidInt8, oidNumeric, oidTimestamptz}, row: []event.Value{i8(42), numV(pgtype.Numeric{NaN: true, Valid: true}), ts(evUS)}, reason: event.ReasonInvalidValue, column: "amount"},
		{name: "numeric infinity", types: cols{oidInt8, oidNumeric, oidTimestamptz}, row: []event.Value{i8(42), numV(pgtype.Numeric{InfinityModifier: pgtype.Infinity, Valid: true}), ts(evUS)}, reason: event.ReasonInvalidValue, column: "amount"},
		// 10^19 > MaxInt64 (about 9.22 × 10^18).
		{name: "numeric beyond int64", types: cols{oidInt8, oidNumeric, oidTimestamptz}, row: []event.Value{i8(42), num(1, 19), ts(evUS)}, reason: event.ReasonInvalidValue, column: "amount"},
		{name: "text numeric 12.5", types: cols{oidInt8, oidNumeric, oidTimestamptz}, row: []event.Value{i8(42), txt("12.5"), ts(evUS)}, reason: event.ReasonInvalidValue, column: "amount"},
		{name: "text int8 fractional", row: []event.Value{i8(42), txt("1.5"), ts(evUS)}, reason: event.ReasonInvalidValue, column: "amount"},
		{name: "text int8 overflow", row: []event.Value{i8(42), txt("9223372036854775808"), ts(evUS)}, reason: event.ReasonInvalidValue, column: "amount"},
		{name: "amount unchanged TOAST", row: []event.Value{i8(42), unchanged(), ts(evUS)}, reason: event.ReasonInvalidValue, column: "amount"},

		// Invalid times.
		{name: "binary +infinity", row: []event.Value{i8(42), i8(15000), pgTS(math.MaxInt64)}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "binary -infinity", row: []event.Value{i8(42), i8(15000), pgTS(math.MinInt64)}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "timestamp +infinity", types: cols{oidInt8, oidInt8, oidTimestamp}, row: []event.Value{i8(42), i8(15000), pgTS(math.MaxInt64)}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "text infinity", row: []event.Value{i8(42), i8(15000), txt("infinity")}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "text -infinity", row: []event.Value{i8(42), i8(15000), txt("-infinity")}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "text timestamp infinity", types: cols{oidInt8, oidInt8, oidTimestamp}, row: []event.Value{i8(42), i8(15000), txt("infinity")}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "text time garbage", row: []event.Value{i8(42), i8(15000), txt("yesterday")}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "binary time with 4 bytes", row: []event.Value{i8(42), i8(15000), i4(1)}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "time unchanged TOAST", row: []event.Value{i8(42), i8(15000), unchanged()}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "time 1µs after commit+MaxFuture", row: []event.Value{i8(42), i8(15000), ts(commitUS + maxFutureUS + 1)}, reason: event.ReasonFutureTime, column: "at"},
		{name: "time a year ahead", row: []event.Value{i8(42), i8(15000), ts(commitUS + 366*24*3600*1_000_000)}, reason: event.ReasonFutureTime, column: "at"},
		{name: "timestamp 1µs after commit+MaxFuture", types: cols{oidInt8, oidInt8, oidTimestamp}, row: []event.Value{i8(42), i8(15000), ts(commitUS + maxFutureUS + 1)}, reason: event.ReasonFutureTime, column: "at"},
		{name: "time 1µs before commit-Retention", row: []event.Value{i8(42), i8(15000), ts(commitUS - retentionUS - 1)}, reason: event.ReasonTooOld, column: "at"},
		{name: "text time 1µs before commit-Retention", row: []event.Value{i8(42), i8(15000), txt("2024-02-22 11:59:59.999999+00")}, reason: event.ReasonTooOld, column: "at"},
		{name: "time at the postgres epoch", row: []event.Value{i8(42), i8(15000), pgTS(0)}, reason: event.ReasonTooOld, column: "at"},
		{name: "time before the postgres epoch", row: []event.Value{i8(42), i8(15000), pgTS(-1)}, reason: event.ReasonTooOld, column: "at"},

		// Order of checks: merchant, then amount, then time.
		{name: "NULL merchant and negative amount", row: []event.Value{null(), i8(-1), ts(evUS)}, reason: event.ReasonNullMerchant, column: "merchant_id"},
		{name: "merchant 0 and NULL amount", row: []event.Value{i8(0), null(), ts(evUS)}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "NULL amount and NULL time", row: []event.Value{i8(42), null(), null()}, reason: event.ReasonNullAmount, column: "amount"},
		{name: "negative amount and NULL time", row: []event.Value{i8(42), i8(-1), null()}, reason: event.ReasonNegativeAmount, column: "amount"},
		{name: "negative amount and future time", row: []event.Value{i8(42), i8(-1), ts(commitUS + maxFutureUS + 1)}, reason: event.ReasonNegativeAmount, column: "amount"},
		{name: "invalid amount and infinite time", row: []event.Value{i8(42), txt("x"), pgTS(math.MaxInt64)}, reason: event.ReasonInvalidValue, column: "amount"},
		// PostgreSQL's last timestamp, 294276-12-31 23:59:59.999999, is
		// past int64 Unix microseconds: not an event, never a wrapped one.
		{name: "time past int64 microseconds", row: []event.Value{i8(42), i8(1), pgTS(9223371331199999999)}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "text time past int64 microseconds", row: []event.Value{i8(42), i8(1), txt("294276-01-01 00:00:00+00")}, reason: event.ReasonInvalidValue, column: "at"},

		// Short rows.
		{name: "row shorter than the relation", row: []event.Value{i8(42), i8(15000)}, reason: event.ReasonInvalidValue},
		{name: "empty row", row: nil, reason: event.ReasonInvalidValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			types := tt.types
			if types == (cols{}) {
				types = std
			}
			spec := event.Spec{Schema: "s", Table: "t", Kind: event.Approval, Merchant: "merchant_id", Amount: "amount", Time: "at"}
			tbl := mustBind(t, mustMapping(t, spec), "s", "t", []event.Column{
				{Name: "merchant_id", TypeOID: types.merchant},
				{Name: "amount", TypeOID: types.amount},
				{Name: "at", TypeOID: types.time},
			})
			var out event.Output
			tbl.Map(tt.row, commitUS, &out)
			if out.Filtered != 0 {
				t.Errorf("Filtered = %d, want 0 (no filter)", out.Filtered)
			}
			if tt.want != nil {
				if len(out.DeadLetters) != 0 {
					t.Fatalf("dead letter %+v, want event %+v", out.DeadLetters[0], *tt.want)
				}
				if want := []event.Event{*tt.want}; !reflect.DeepEqual(out.Events, want) {
					t.Fatalf("Events = %+v, want %+v", out.Events, want)
				}
				return
			}
			if len(out.Events) != 0 {
				t.Fatalf("Events = %+v, want a %s dead letter", out.Events, tt.reason)
			}
			if len(out.DeadLetters) != 1 {
				t.Fatalf("%d dead letters, want 1", len(out.DeadLetters))
			}
			dl := out.DeadLetters[0]
			if dl.Reason != tt.reason {
				t.Errorf("Reason = %q, want %q (detail %q)", dl.Reason, tt.reason, dl.Detail)
			}
			if dl.Detail == "" {
				t.Errorf("Detail is empty")
			}
			if tt.column != "" && !strings.Contains(dl.Detail, tt.column) {
				t.Errorf("Detail %q does not name column %q", dl.Detail, tt.column)
			}
			if dl.Table != "s.t" || dl.Kind != event.Approval || dl.Position != "" {
				t.Errorf("dead letter Table %q Kind %v Position %q, want s.t approval, no position (the caller stamps it)", dl.Table, dl.Kind, dl.Position)
			}
		})
	}
}

func TestMapLimitsFromMapping(t *testing.T) {
	// Other limits than the defaults: 1 s ahead, 1 h back.
	m, err := event.NewMapping([]event.Spec{paymentsSpec()}, event.Limits{MaxFuture: time.Second, Retention: time.Hour, MaxAmount: 100})
	if err != nil {
		t.Fatal(err)
	}
	tbl := mustBind(t, m, "public", "payments", paymentsCols)
	row := func(timeUS int64) []event.Value {
		return []event.Value{i8(1), i8(42), i8(100), bin("paid"), ts(timeUS)}
	}
	tests := []struct {
		name   string
		timeUS int64
		reason event.Reason // "" for an event
	}{
		{"commit+1s", commitUS + 1_000_000, ""},
		{"commit+1s+1µs", commitUS + 1_000_001, event.ReasonFutureTime},
		{"commit-1h", commitUS - 3_600_000_000, ""},
		{"commit-1h-1µs", commitUS - 3_600_000_001, event.ReasonTooOld},
		// Valid with the default limits, too old with these.
		{"commit-2h", commitUS - 7_200_000_000, event.ReasonTooOld},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out event.Output
			tbl.Map(row(tt.timeUS), commitUS, &out)
			if tt.reason == "" {
				if len(out.Events) != 1 || out.Events[0].TimeUS != tt.timeUS {
					t.Fatalf("Events = %+v, DeadLetters = %+v; want one event at %d", out.Events, out.DeadLetters, tt.timeUS)
				}
				return
			}
			if len(out.DeadLetters) != 1 || out.DeadLetters[0].Reason != tt.reason {
				t.Fatalf("Events = %+v, DeadLetters = %+v; want one %s dead letter", out.Events, out.DeadLetters, tt.reason)
			}
		})
	}
}

func TestMapDeadLetterFields(t *testing.T) {
	m := mustMapping(t, paymentsSpec(), cancelsSpec())
	pay := mustBind(t, m, "public", "payments", paymentsCols)
	cancel := mustBind(t, m, "public", "payment_cancels", cancelsCols)
	commit := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	evTime := time.Date(2024, 3, 1, 11, 59, 30, 0, time.UTC)

	tests := []struct {
		name    string
		tbl     *event.Table
		row     []event.Value
		want    event.DeadLetter // Detail checked by detailHas, Row by rowWant
		detail  []string
		rowWant map[string]any
	}{
		{
			name: "NULL merchant in payments",
			tbl:  pay,
			row:  []event.Value{i8(9001), null(), i8(15000), bin("paid"), ts(evUS)},
			want: event.DeadLetter{Table: "public.payments", Kind: event.Approval, Reason: event.ReasonNullMerchant, CommitTime: commit},
			// The detail names the column.
			detail:  []string{"merchant_id", "NULL"},
			rowWant: map[string]any{"id": int64(9001), "merchant_id": nil, "amount": int64(15000), "status": "paid", "approved_at": evTime},
		},
		{
			name: "negative cancel amount",
			tbl:  cancel,
			row:  []event.Value{i8(7), i8(9001), i8(42), i8(-5000), ts(evUS)},
			want: event.DeadLetter{Table: "public.payment_cancels", Kind: event.Cancel, Reason: event.ReasonNegativeAmount, CommitTime: commit},
			// The detail names the column and the value.
			detail:  []string{"cancel_amount", "-5000"},
			rowWant: map[string]any{"id": int64(7), "payment_id": int64(9001), "merchant_id": int64(42), "cancel_amount": int64(-5000), "canceled_at": evTime},
		},
		{
			name: "future time in payments, text values",
			tbl:  pay,
			row:  []event.Value{txt("9002"), txt("42"), txt("100"), txt("paid"), txt("2024-03-01 12:05:00.000001+00")},
			want: event.DeadLetter{Table: "public.payments", Kind: event.Approval, Reason: event.ReasonFutureTime, CommitTime: commit},
			// The detail names the column, the event time and the limit.
			detail: []string{"approved_at", "2024-03-01T12:05:00.000001Z", "5m0s", "2024-03-01T12:00:00Z"},
			// Text values are kept as the source's text.
			rowWant: map[string]any{"id": "9002", "merchant_id": "42", "amount": "100", "status": "paid", "approved_at": "2024-03-01 12:05:00.000001+00"},
		},
		{
			name:    "too old in payment_cancels",
			tbl:     cancel,
			row:     []event.Value{i8(8), i8(9001), i8(42), i8(1), ts(commitUS - retentionUS - 1)},
			want:    event.DeadLetter{Table: "public.payment_cancels", Kind: event.Cancel, Reason: event.ReasonTooOld, CommitTime: commit},
			detail:  []string{"canceled_at", "2024-02-22T11:59:59.999999Z", "192h0m0s"},
			rowWant: map[string]any{"id": int64(8), "payment_id": int64(9001), "merchant_id": int64(42), "cancel_amount": int64(1), "canceled_at": time.Date(2024, 2, 22, 11, 59, 59, 999_999_000, time.UTC)},
		},
		{
			name:    "NULL time",
			tbl:     pay,
			row:     []event.Value{i8(9003), i8(42), i8(100), null(), null()},
			want:    event.DeadLetter{Table: "public.payments", Kind: event.Approval, Reason: event.ReasonNullTime, CommitTime: commit},
			detail:  []string{"approved_at"},
			rowWant: map[string]any{"id": int64(9003), "merchant_id": int64(42), "amount": int64(100), "status": nil, "approved_at": nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out event.Output
			tt.tbl.Map(tt.row, commitUS, &out)
			if len(out.Events) != 0 || len(out.DeadLetters) != 1 {
				t.Fatalf("Events = %+v, %d dead letters; want exactly one dead letter", out.Events, len(out.DeadLetters))
			}
			dl := out.DeadLetters[0]
			if dl.Table != tt.want.Table || dl.Kind != tt.want.Kind || dl.Reason != tt.want.Reason {
				t.Errorf("dead letter = {Table %q Kind %v Reason %q}, want {%q %v %q}",
					dl.Table, dl.Kind, dl.Reason, tt.want.Table, tt.want.Kind, tt.want.Reason)
			}
			if !dl.CommitTime.Equal(tt.want.CommitTime) || dl.CommitTime.Location() != time.UTC {
				t.Errorf("CommitTime = %v (%v), want %v in UTC", dl.CommitTime, dl.CommitTime.Location(), tt.want.CommitTime)
			}
			for _, w := range tt.detail {
				if !strings.Contains(dl.Detail, w) {
					t.Errorf("Detail %q does not contain %q", dl.Detail, w)
				}
			}
			checkRow(t, dl.Row, tt.rowWant)
			if _, err := json.Marshal(dl.Row); err != nil {
				t.Errorf("Row is not JSON: %v", err)
			}
		})
	}
}

// checkRow compares a RowJSON map; times compare as instants.
func checkRow(t *testing.T, got, want map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("Row has %d columns %v, want %d %v", len(got), got, len(want), want)
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("Row lacks column %q", k)
			continue
		}
		if wt, isTime := w.(time.Time); isTime {
			gt, ok := g.(time.Time)
			if !ok || !gt.Equal(wt) {
				t.Errorf("Row[%q] = %#v, want time %v", k, g, wt)
			}
			continue
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("Row[%q] = %#v (%T), want %#v (%T)", k, g, g, w, w)
		}
	}
}

func TestRowJSON(t *testing.T) {
	m := mustMapping(t, event.Spec{Schema: "s", Table: "t", Kind: event.Cancel, Merchant: "m", Amount: "a", Time: "at"})
	cols := []event.Column{
		{Name: "m", TypeOID: oidInt8},
		{Name: "a", TypeOID: oidNumeric},
		{Name: "at", TypeOID: oidTimestamp},
		{Name: "small", TypeOID: oidInt2},
		{Name: "mid", TypeOID: oidInt4},
		{Name: "flag", TypeOID: oidBool},
		{Name: "kind", TypeOID: oidEnum},
		{Name: "code", TypeOID: oidBPChar},
		{Name: "note", TypeOID: oidText},
		{Name: "blob", TypeOID: oidText},
		{Name: "broken", TypeOID: oidInt8},
	}
	tbl := mustBind(t, m, "s", "t", cols)
	row := []event.Value{
		i8(42),
		num(125, -1),
		ts(evUS),
		i2(-3),
		i4(70000),
		boolV(true),
		bin("refund"),
		bin("ab  "),
		txt("hello"),
		unchanged(),
		bin("xyz"), // 3 bytes cannot be an int8
		i8(99),     // beyond the announced columns: ignored
	}
	got := tbl.RowJSON(row)
	if len(got) != len(cols) {
		t.Errorf("RowJSON has %d keys, want %d: %v", len(got), len(cols), got)
	}
	want := map[string]any{
		"m":     int64(42),
		"small": int16(-3),
		"mid":   int32(70000),
		"flag":  true,
		"kind":  "refund", // an enum's binary form is its label
		"code":  "ab  ",
		"note":  "hello",
	}
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("RowJSON[%q] = %#v (%T), want %#v (%T)", k, got[k], got[k], w, w)
		}
	}
	if at, ok := got["at"].(time.Time); !ok || !at.Equal(time.Date(2024, 3, 1, 11, 59, 30, 0, time.UTC)) {
		t.Errorf("RowJSON[at] = %#v, want 2024-03-01T11:59:30Z", got["at"])
	}
	if s, ok := got["blob"].(string); !ok || !strings.Contains(s, "TOAST") {
		t.Errorf("RowJSON[blob] = %#v, want a note about the unchanged TOAST value", got["blob"])
	}
	if s, ok := got["broken"].(string); !ok || !strings.Contains(s, "undecodable") {
		t.Errorf("RowJSON[broken] = %#v, want an undecodable note", got["broken"])
	}
	// The numeric keeps its fraction for the operator: 12.5 in JSON.
	js, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	for _, w := range []string{`"a":12.5`, `"m":42`, `"flag":true`, `"kind":"refund"`, `"small":-3`} {
		if !strings.Contains(string(js), w) {
			t.Errorf("JSON %s does not contain %s", js, w)
		}
	}

	if got := tbl.RowJSON(nil); len(got) != 0 {
		t.Errorf("RowJSON(nil) = %v, want empty", got)
	}
	if got := tbl.RowJSON([]event.Value{null()}); len(got) != 1 || got["m"] != nil {
		t.Errorf("RowJSON(NULL) = %v, want m: nil", got)
	}
}

func TestRowJSONInfiniteTime(t *testing.T) {
	// A row whose time is infinite becomes an invalid_value dead letter; the
	// stored row should show the operator which value it was.
	m := mustMapping(t, paymentsSpec())
	tbl := mustBind(t, m, "public", "payments", paymentsCols)
	for _, tc := range []struct {
		v    int64
		want string
	}{{math.MaxInt64, `"approved_at":"infinity"`}, {math.MinInt64, `"approved_at":"-infinity"`}} {
		js, err := json.Marshal(tbl.RowJSON([]event.Value{i8(1), i8(42), i8(100), bin("paid"), pgTS(tc.v)}))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(js), tc.want) {
			t.Errorf("JSON %s does not contain %s", js, tc.want)
		}
	}
}

// --- filters

func TestMapFilter(t *testing.T) {
	tests := []struct {
		name     string
		oid      uint32
		in       []string
		value    event.Value
		selected bool
	}{
		{name: "text match", oid: oidText, in: []string{"pay"}, value: bin("pay"), selected: true},
		{name: "text second value", oid: oidText, in: []string{"pay", "capture"}, value: bin("capture"), selected: true},
		{name: "text no match", oid: oidText, in: []string{"pay"}, value: bin("refund")},
		{name: "text is case sensitive", oid: oidText, in: []string{"pay"}, value: bin("PAY")},
		{name: "text keeps trailing space", oid: oidText, in: []string{"pay"}, value: bin("pay ")},
		{name: "text prefix is no match", oid: oidText, in: []string{"pay"}, value: bin("payment")},
		{name: "text empty string", oid: oidText, in: []string{""}, value: bin(""), selected: true},
		{name: "text format text", oid: oidText, in: []string{"pay"}, value: txt("pay"), selected: true},
		{name: "varchar match", oid: oidVarchar, in: []string{"pay"}, value: bin("pay"), selected: true},
		{name: "varchar no match", oid: oidVarchar, in: []string{"pay"}, value: bin("refund")},
		// bpchar(8) 'pay' arrives padded to 8; bpchar::text drops the padding.
		{name: "bpchar padded", oid: oidBPChar, in: []string{"pay"}, value: bin("pay     "), selected: true},
		{name: "bpchar unpadded", oid: oidBPChar, in: []string{"pay"}, value: bin("pay"), selected: true},
		{name: "bpchar no match", oid: oidBPChar, in: []string{"pay"}, value: bin("refund  ")},
		{name: "bpchar padded filter value", oid: oidBPChar, in: []string{"pay     "}, value: bin("pay     ")},
		{name: "bpchar text format padded", oid: oidBPChar, in: []string{"pay"}, value: txt("pay     "), selected: true},
		{name: "name", oid: oidName, in: []string{"pay"}, value: bin("pay"), selected: true},
		{name: "char", oid: oidChar, in: []string{"p"}, value: bin("p"), selected: true},
		{name: "char no match", oid: oidChar, in: []string{"p"}, value: bin("r")},
		{name: "int4 3", oid: oidInt4, in: []string{"3"}, value: i4(3), selected: true},
		{name: "int4 4", oid: oidInt4, in: []string{"3"}, value: i4(4)},
		{name: "int4 -3", oid: oidInt4, in: []string{"-3"}, value: i4(-3), selected: true},
		{name: "int4 leading zero filter", oid: oidInt4, in: []string{"03"}, value: i4(3)},
		{name: "int4 wrong length", oid: oidInt4, in: []string{"3"}, value: i8(3)},
		{name: "int4 text format", oid: oidInt4, in: []string{"3"}, value: txt("3"), selected: true},
		{name: "int2 3", oid: oidInt2, in: []string{"3"}, value: i2(3), selected: true},
		{name: "int2 -1", oid: oidInt2, in: []string{"65535"}, value: i2(-1)},
		{name: "int8 3", oid: oidInt8, in: []string{"1", "3"}, value: i8(3), selected: true},
		{name: "int8 large", oid: oidInt8, in: []string{"9223372036854775807"}, value: i8(math.MaxInt64), selected: true},
		{name: "bool true", oid: oidBool, in: []string{"true"}, value: boolV(true), selected: true},
		{name: "bool false vs true", oid: oidBool, in: []string{"true"}, value: boolV(false)},
		{name: "bool false", oid: oidBool, in: []string{"false"}, value: boolV(false), selected: true},
		{name: "bool filter t is not bool::text", oid: oidBool, in: []string{"t"}, value: boolV(true)},
		{name: "bool text format", oid: oidBool, in: []string{"true"}, value: txt("t"), selected: true},
		{name: "enum label", oid: oidEnum, in: []string{"pay"}, value: bin("pay"), selected: true},
		{name: "enum other label", oid: oidEnum, in: []string{"pay"}, value: bin("refund")},
		{name: "enum first user oid", oid: 16384, in: []string{"refund"}, value: bin("refund"), selected: true},
		{name: "NULL", oid: oidText, in: []string{"pay"}, value: null()},
		{name: "NULL never matches empty", oid: oidText, in: []string{""}, value: null()},
		{name: "NULL int", oid: oidInt4, in: []string{"0"}, value: null()},
		{name: "unchanged TOAST", oid: oidText, in: []string{"pay"}, value: unchanged()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustMapping(t, ledgerSpec(event.Approval, tt.in...))
			tbl := mustBind(t, m, "public", "ledger", ledgerCols(tt.oid))
			var out event.Output
			tbl.Map(ledgerRow(tt.value, 42, 1000), commitUS, &out)
			if len(out.DeadLetters) != 0 {
				t.Fatalf("dead letters %+v", out.DeadLetters)
			}
			if tt.selected {
				want := []event.Event{{Merchant: 42, Kind: event.Approval, Amount: 1000, TimeUS: evUS}}
				if !reflect.DeepEqual(out.Events, want) || out.Filtered != 0 {
					t.Errorf("Events = %+v, Filtered = %d; want %+v, 0", out.Events, out.Filtered, want)
				}
				return
			}
			if len(out.Events) != 0 || out.Filtered != 1 {
				t.Errorf("Events = %+v, Filtered = %d; want none, 1", out.Events, out.Filtered)
			}
		})
	}
}

func TestMapLedger(t *testing.T) {
	m := mustMapping(t, ledgerSpec(event.Approval, "pay"), ledgerSpec(event.Cancel, "refund"))
	tbl := mustBind(t, m, "public", "ledger", ledgerCols(oidText))
	tests := []struct {
		name     string
		rows     [][]event.Value
		want     []event.Event
		reasons  []event.Reason
		kinds    []event.Kind // of the dead letters
		filtered int
	}{
		{name: "pay is an approval", rows: [][]event.Value{ledgerRow(bin("pay"), 42, 1000)},
			want: []event.Event{{Merchant: 42, Kind: event.Approval, Amount: 1000, TimeUS: evUS}}},
		{name: "refund is a cancel", rows: [][]event.Value{ledgerRow(bin("refund"), 42, 400)},
			want: []event.Event{{Merchant: 42, Kind: event.Cancel, Amount: 400, TimeUS: evUS}}},
		{name: "other type is filtered", rows: [][]event.Value{ledgerRow(bin("fee"), 42, 10)}, filtered: 1},
		{name: "NULL type is filtered", rows: [][]event.Value{ledgerRow(null(), 42, 10)}, filtered: 1},
		// A row no spec selects is not validated: no dead letter for it.
		{name: "invalid row of another type is filtered", rows: [][]event.Value{ledgerRow(bin("fee"), 0, -10)}, filtered: 1},
		{name: "invalid selected row is a dead letter of its kind", rows: [][]event.Value{ledgerRow(bin("refund"), 42, -10)},
			reasons: []event.Reason{event.ReasonNegativeAmount}, kinds: []event.Kind{event.Cancel}},
		{name: "filter column missing from a short row", rows: [][]event.Value{{i8(1), i8(42), i8(10)}}, filtered: 1},
		{
			name: "several rows",
			rows: [][]event.Value{
				ledgerRow(bin("pay"), 1, 100),
				ledgerRow(bin("fee"), 1, 5),
				ledgerRow(bin("refund"), 1, 100),
				ledgerRow(null(), 2, 5),
				ledgerRow(bin("pay"), 2, 300),
			},
			want: []event.Event{
				{Merchant: 1, Kind: event.Approval, Amount: 100, TimeUS: evUS},
				{Merchant: 1, Kind: event.Cancel, Amount: 100, TimeUS: evUS},
				{Merchant: 2, Kind: event.Approval, Amount: 300, TimeUS: evUS},
			},
			filtered: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := mapRows(tbl, tt.rows...)
			if !reflect.DeepEqual(out.Events, tt.want) {
				t.Errorf("Events = %+v, want %+v", out.Events, tt.want)
			}
			if out.Filtered != tt.filtered {
				t.Errorf("Filtered = %d, want %d", out.Filtered, tt.filtered)
			}
			if len(out.DeadLetters) != len(tt.reasons) {
				t.Fatalf("DeadLetters = %+v, want reasons %v", out.DeadLetters, tt.reasons)
			}
			for i, dl := range out.DeadLetters {
				if dl.Reason != tt.reasons[i] || dl.Kind != tt.kinds[i] || dl.Table != "public.ledger" {
					t.Errorf("DeadLetters[%d] = %s %v %s, want %s %v public.ledger", i, dl.Reason, dl.Kind, dl.Table, tt.reasons[i], tt.kinds[i])
				}
			}
		})
	}
}

func TestMapOverlappingFilters(t *testing.T) {
	// "both" is selected by both specs: one row, two events, in spec order.
	m := mustMapping(t, ledgerSpec(event.Approval, "pay", "both"), ledgerSpec(event.Cancel, "refund", "both"))
	tbl := mustBind(t, m, "public", "ledger", ledgerCols(oidVarchar))

	out := mapRows(tbl, ledgerRow(bin("both"), 42, 700))
	want := []event.Event{
		{Merchant: 42, Kind: event.Approval, Amount: 700, TimeUS: evUS},
		{Merchant: 42, Kind: event.Cancel, Amount: 700, TimeUS: evUS},
	}
	if !reflect.DeepEqual(out.Events, want) || out.Filtered != 0 || len(out.DeadLetters) != 0 {
		t.Errorf("Events = %+v, Filtered = %d, DeadLetters = %+v; want %+v, 0, none", out.Events, out.Filtered, out.DeadLetters, want)
	}

	// An invalid row selected by both is one dead letter per kind.
	out = mapRows(tbl, ledgerRow(bin("both"), 42, -1))
	if len(out.Events) != 0 || len(out.DeadLetters) != 2 || out.Filtered != 0 {
		t.Fatalf("Events = %+v, Filtered = %d, DeadLetters = %+v; want two dead letters", out.Events, out.Filtered, out.DeadLetters)
	}
	for i, k := range []event.Kind{event.Approval, event.Cancel} {
		if dl := out.DeadLetters[i]; dl.Kind != k || dl.Reason != event.ReasonNegativeAmount {
			t.Errorf("DeadLetters[%d] = %v %s, want %v negative_amount", i, dl.Kind, dl.Reason, k)
		}
	}
}

func TestMapFilteredAndUnfilteredSpecs(t *testing.T) {
	// One spec takes every row, another only refunds: every row is selected.
	all := ledgerSpec(event.Approval)
	all.FilterColumn = ""
	m := mustMapping(t, all, ledgerSpec(event.Cancel, "refund"))
	tbl := mustBind(t, m, "public", "ledger", ledgerCols(oidText))
	out := mapRows(tbl, ledgerRow(bin("pay"), 1, 10), ledgerRow(bin("refund"), 2, 20), ledgerRow(null(), 3, 30))
	want := []event.Event{
		{Merchant: 1, Kind: event.Approval, Amount: 10, TimeUS: evUS},
		{Merchant: 2, Kind: event.Approval, Amount: 20, TimeUS: evUS},
		{Merchant: 2, Kind: event.Cancel, Amount: 20, TimeUS: evUS},
		{Merchant: 3, Kind: event.Approval, Amount: 30, TimeUS: evUS},
	}
	if !reflect.DeepEqual(out.Events, want) || out.Filtered != 0 {
		t.Errorf("Events = %+v, Filtered = %d; want %+v, 0", out.Events, out.Filtered, want)
	}
}

// --- Output

func TestMapAppends(t *testing.T) {
	m := mustMapping(t, paymentsSpec())
	tbl := mustBind(t, m, "public", "payments", paymentsCols)
	out := event.Output{
		Events:      []event.Event{{Merchant: 1, Kind: event.Cancel, Amount: 1, TimeUS: 1}},
		DeadLetters: []event.DeadLetter{{Reason: event.ReasonNullTime}},
		Filtered:    3,
	}
	tbl.Map([]event.Value{i8(1), i8(42), i8(15000), bin("paid"), ts(evUS)}, commitUS, &out)
	tbl.Map([]event.Value{i8(2), null(), i8(15000), bin("paid"), ts(evUS)}, commitUS, &out)
	if len(out.Events) != 2 || out.Events[0].Merchant != 1 || out.Events[1].Merchant != 42 {
		t.Errorf("Events = %+v: Map must append", out.Events)
	}
	if len(out.DeadLetters) != 2 || out.DeadLetters[0].Reason != event.ReasonNullTime || out.DeadLetters[1].Reason != event.ReasonNullMerchant {
		t.Errorf("DeadLetters = %+v: Map must append", out.DeadLetters)
	}
	if out.Filtered != 3 {
		t.Errorf("Filtered = %d, want 3 (unchanged)", out.Filtered)
	}
}

func TestOutputReset(t *testing.T) {
	m := mustMapping(t, paymentsSpec(), ledgerSpec(event.Cancel, "refund"))
	pay := mustBind(t, m, "public", "payments", paymentsCols)
	ledger := mustBind(t, m, "public", "ledger", ledgerCols(oidText))

	var out event.Output
	for i := range 10 {
		pay.Map([]event.Value{i8(int64(i)), i8(42), i8(int64(i)), bin("paid"), ts(evUS)}, commitUS, &out)
	}
	pay.Map([]event.Value{i8(11), null(), i8(1), bin("paid"), ts(evUS)}, commitUS, &out)
	ledger.Map(ledgerRow(bin("fee"), 42, 1), commitUS, &out)
	if len(out.Events) != 10 || len(out.DeadLetters) != 1 || out.Filtered != 1 {
		t.Fatalf("before Reset: %d events, %d dead letters, %d filtered", len(out.Events), len(out.DeadLetters), out.Filtered)
	}
	evCap, dlCap := cap(out.Events), cap(out.DeadLetters)
	evBase := &out.Events[:1][0]

	out.Reset()
	if len(out.Events) != 0 || len(out.DeadLetters) != 0 || out.Filtered != 0 {
		t.Fatalf("after Reset: %d events, %d dead letters, %d filtered; want all 0", len(out.Events), len(out.DeadLetters), out.Filtered)
	}
	if out.Events == nil || out.DeadLetters == nil {
		t.Errorf("Reset dropped the slices")
	}
	if cap(out.Events) != evCap || cap(out.DeadLetters) != dlCap {
		t.Errorf("capacity after Reset = %d, %d; want %d, %d", cap(out.Events), cap(out.DeadLetters), evCap, dlCap)
	}

	// The next row reuses the same backing array.
	pay.Map([]event.Value{i8(1), i8(7), i8(70), bin("paid"), ts(evUS)}, commitUS, &out)
	if want := []event.Event{{Merchant: 7, Kind: event.Approval, Amount: 70, TimeUS: evUS}}; !reflect.DeepEqual(out.Events, want) {
		t.Errorf("Events after Reset and Map = %+v, want %+v", out.Events, want)
	}
	if &out.Events[0] != evBase {
		t.Errorf("Map after Reset allocated a new array")
	}

	var zero event.Output
	zero.Reset() // must not panic on a zero Output
	if zero.Filtered != 0 || len(zero.Events) != 0 {
		t.Errorf("Reset of a zero Output = %+v", zero)
	}
}
