package event_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/riskwatch/riskwatch/internal/event"
)

// viaJSON renders a pgoutput row as Debezium does and reads it back as a
// worker does: through JSON, numbers kept as json.Number.
func viaJSON(t *testing.T, tbl *event.Table, row []event.Value) map[string]any {
	t.Helper()
	js, err := json.Marshal(tbl.RowDebezium(row))
	if err != nil {
		t.Fatalf("json.Marshal(RowDebezium): %v", err)
	}
	return decodeRow(t, js)
}

func decodeRow(t *testing.T, js []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	var row map[string]any
	if err := d.Decode(&row); err != nil {
		t.Fatalf("decoding %s: %v", js, err)
	}
	return row
}

func float8(f float64) event.Value {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, math.Float64bits(f))
	return event.Value{Format: 'b', Data: b}
}

func TestRowDebezium(t *testing.T) {
	m := mustMapping(t, event.Spec{Schema: "s", Table: "t", Kind: event.Approval, Merchant: "n8", Amount: "n4", Time: "tz"})
	var cols []event.Column
	var row []event.Value
	add := func(name string, oid uint32, v event.Value) {
		cols = append(cols, event.Column{Name: name, TypeOID: oid})
		row = append(row, v)
	}
	add("i2", oidInt2, i2(-3))
	add("n4", oidInt4, i4(70000))
	add("n8", oidInt8, i8(42))
	add("n8text", oidInt8, txt("43"))
	add("flag", oidBool, boolV(true))
	add("flagtext", oidBool, txt("f"))
	add("note", oidText, bin("hello"))
	add("vc", oidVarchar, bin("v"))
	add("code", oidBPChar, bin("ab  "))
	add("kind", oidEnum, bin("refund"))
	add("nm", oidName, bin("pay"))
	add("ch", oidChar, bin("p"))
	add("tz", oidTimestamptz, ts(evUS+123_456))
	add("tzwhole", oidTimestamptz, ts(evUS))
	add("tzhalf", oidTimestamptz, ts(evUS+500_000))
	add("tztext", oidTimestamptz, txt("2024-03-01 20:59:30+09"))
	add("tzinf", oidTimestamptz, pgTS(math.MaxInt64))
	add("tzneginf", oidTimestamptz, pgTS(math.MinInt64))
	add("tztextinf", oidTimestamptz, txt("infinity"))
	add("local", oidTimestamp, ts(evUS))
	add("localtext", oidTimestamp, txt("2024-03-01 11:59:30.5"))
	add("localneginf", oidTimestamp, pgTS(math.MinInt64))
	add("num", oidNumeric, num(125, -1))
	add("numscaled", oidNumeric, num(150000, -1))
	add("numexp", oidNumeric, num(15, 3))
	add("numnan", oidNumeric, numV(pgtype.Numeric{NaN: true, Valid: true}))
	add("numtext", oidNumeric, txt("99.90"))
	add("f8", oidFloat8, float8(1.5))
	// 2024-03-01 is 8826 days after 2000-01-01 (24 years with 6 leap days,
	// then 31 + 29 days).
	add("day", oidDate, i4(8826))
	add("nul", oidText, null())
	add("toast", oidText, unchanged())
	add("broken", oidInt8, bin("xyz"))
	tbl := mustBind(t, m, "s", "t", cols)

	got := tbl.RowDebezium(append(row, i8(99))) // a value beyond the columns is ignored
	want := map[string]any{
		"i2": int64(-3), "n4": int64(70000), "n8": int64(42), "n8text": int64(43),
		"flag": true, "flagtext": false,
		"note": "hello", "vc": "v", "code": "ab  ", "kind": "refund", "nm": "pay", "ch": "p",
		"tz":        "2024-03-01T11:59:30.123456Z",
		"tzwhole":   "2024-03-01T11:59:30Z",
		"tzhalf":    "2024-03-01T11:59:30.5Z",
		"tztext":    "2024-03-01T11:59:30Z",
		"tzinf":     "infinity",
		"tzneginf":  "-infinity",
		"tztextinf": "infinity",
		// MicroTimestamp: 1709294370 s since the epoch, in µs.
		"local": int64(1_709_294_370_000_000), "localtext": int64(1_709_294_370_500_000), "localneginf": "-infinity",
		"num": "12.5", "numscaled": "15000.0", "numexp": "15000", "numnan": "NaN", "numtext": "99.90",
		"f8": "1.5", "day": "2024-03-01",
		"nul": nil,
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !reflect.DeepEqual(g, w) {
			t.Errorf("RowDebezium[%q] = %#v (present %v), want %#v", k, g, ok, w)
		}
	}
	if _, ok := got["toast"]; ok {
		t.Errorf("RowDebezium has the unchanged TOAST column: %#v", got["toast"])
	}
	if s, ok := got["broken"].(string); !ok || !strings.Contains(s, "undecodable") {
		t.Errorf("RowDebezium[broken] = %#v, want an undecodable note", got["broken"])
	}
	if len(got) != len(want)+1 {
		t.Errorf("RowDebezium has %d columns, want %d: %v", len(got), len(want)+1, got)
	}
	if _, err := json.Marshal(got); err != nil {
		t.Errorf("RowDebezium is not JSON: %v", err)
	}
}

// TestJSONMapMatchesTableMap is the contract between the two paths: a source
// row read from pgoutput and the same row read from a Debezium topic become
// the same events, the same dead letters and the same filtered count.
func TestJSONMapMatchesTableMap(t *testing.T) {
	def := []event.Spec{paymentsSpec(), cancelsSpec()}
	ledger := []event.Spec{ledgerSpec(event.Approval, "pay"), ledgerSpec(event.Cancel, "refund")}
	numericCols := []event.Column{
		{Name: "id", TypeOID: oidInt8},
		{Name: "merchant_id", TypeOID: oidNumeric},
		{Name: "amount", TypeOID: oidNumeric},
		{Name: "status", TypeOID: oidText},
		{Name: "approved_at", TypeOID: oidTimestamptz},
	}
	narrowCols := []event.Column{
		{Name: "id", TypeOID: oidInt4},
		{Name: "merchant_id", TypeOID: oidInt4},
		{Name: "amount", TypeOID: oidInt2},
		{Name: "status", TypeOID: oidVarchar},
		{Name: "approved_at", TypeOID: oidTimestamp},
	}
	pay := func(merchant, amount, at event.Value) []event.Value {
		return []event.Value{i8(9001), merchant, amount, bin("paid"), at}
	}
	payment := func(merchant, amount, timeUS int64) []event.Event {
		return []event.Event{{Merchant: merchant, Kind: event.Approval, Amount: amount, TimeUS: timeUS}}
	}
	tests := []struct {
		name     string
		specs    []event.Spec
		table    string
		cols     []event.Column
		row      []event.Value
		want     []event.Event
		reasons  []event.Reason
		filtered int
	}{
		{name: "payment", row: pay(i8(42), i8(15000), ts(evUS)), want: payment(42, 15000, evUS)},
		{name: "payment with µs", row: pay(i8(42), i8(15000), ts(evUS+123_456)), want: payment(42, 15000, evUS+123_456)},
		// 20:59:30.5+09 is 11:59:30.5Z.
		{name: "payment in text format", row: pay(txt("42"), txt("15000"), txt("2024-03-01 20:59:30.5+09")), want: payment(42, 15000, evUS+500_000)},
		{name: "NULL status is no matter", row: []event.Value{i8(9001), i8(42), i8(1), null(), ts(evUS)}, want: payment(42, 1, evUS)},
		{name: "zero amount", row: pay(i8(42), i8(0), ts(evUS)), want: payment(42, 0, evUS)},
		{name: "time exactly commit+MaxFuture", row: pay(i8(42), i8(1), ts(commitUS+maxFutureUS)), want: payment(42, 1, commitUS+maxFutureUS)},
		{name: "time exactly commit-Retention", row: pay(i8(42), i8(1), ts(commitUS-retentionUS)), want: payment(42, 1, commitUS-retentionUS)},
		{name: "cancel", table: "payment_cancels", cols: cancelsCols,
			row:  []event.Value{i8(7), i8(9001), i8(42), i8(5000), ts(commitUS - 14_500_000)},
			want: []event.Event{{Merchant: 42, Kind: event.Cancel, Amount: 5000, TimeUS: commitUS - 14_500_000}}},
		{name: "NULL merchant", row: pay(null(), i8(1), ts(evUS)), reasons: []event.Reason{event.ReasonNullMerchant}},
		{name: "merchant 0", row: pay(i8(0), i8(1), ts(evUS)), reasons: []event.Reason{event.ReasonInvalidValue}},
		{name: "merchant -1", row: pay(i8(-1), i8(1), ts(evUS)), reasons: []event.Reason{event.ReasonInvalidValue}},
		{name: "merchant not a number", row: pay(txt("abc"), i8(1), ts(evUS)), reasons: []event.Reason{event.ReasonInvalidValue}},
		{name: "merchant undecodable", row: pay(bin("xyz"), i8(1), ts(evUS)), reasons: []event.Reason{event.ReasonInvalidValue}},
		{name: "NULL amount", row: pay(i8(42), null(), ts(evUS)), reasons: []event.Reason{event.ReasonNullAmount}},
		{name: "negative amount", row: pay(i8(42), i8(-1), ts(evUS)), reasons: []event.Reason{event.ReasonNegativeAmount}},
		{name: "amount at max_amount", row: pay(i8(42), i8(limits.MaxAmount), ts(evUS)), want: payment(42, limits.MaxAmount, evUS)},
		{name: "amount above max_amount", row: pay(i8(42), i8(limits.MaxAmount+1), ts(evUS)), reasons: []event.Reason{event.ReasonAmountOutOfRange}},
		{name: "amount above max_amount before future time", row: pay(i8(42), i8(math.MaxInt64), ts(commitUS+maxFutureUS+1)), reasons: []event.Reason{event.ReasonAmountOutOfRange}},
		{name: "fractional text amount", row: pay(i8(42), txt("1.5"), ts(evUS)), reasons: []event.Reason{event.ReasonInvalidValue}},
		{name: "NULL time", row: pay(i8(42), i8(1), null()), reasons: []event.Reason{event.ReasonNullTime}},
		{name: "future time", row: pay(i8(42), i8(1), ts(commitUS+maxFutureUS+1)), reasons: []event.Reason{event.ReasonFutureTime}},
		{name: "older than retention", row: pay(i8(42), i8(1), ts(commitUS-retentionUS-1)), reasons: []event.Reason{event.ReasonTooOld}},
		{name: "infinite time", row: pay(i8(42), i8(1), pgTS(math.MaxInt64)), reasons: []event.Reason{event.ReasonInvalidValue}},
		{name: "-infinite text time", row: pay(i8(42), i8(1), txt("-infinity")), reasons: []event.Reason{event.ReasonInvalidValue}},
		{name: "NULL merchant before negative amount", row: pay(null(), i8(-1), ts(evUS)), reasons: []event.Reason{event.ReasonNullMerchant}},
		{name: "negative amount before future time", row: pay(i8(42), i8(-1), ts(commitUS+maxFutureUS+1)), reasons: []event.Reason{event.ReasonNegativeAmount}},

		// numeric columns arrive as strings (decimal.handling.mode=string).
		{name: "numeric", cols: numericCols, row: pay(num(42, 0), num(15, 3), ts(evUS)), want: payment(42, 15000, evUS)},
		{name: "numeric integral with scale", cols: numericCols, row: pay(num(420, -1), num(150000, -1), ts(evUS)), want: payment(42, 15000, evUS)},
		{name: "numeric fractional amount", cols: numericCols, row: pay(i8(42), num(125, -1), ts(evUS)), reasons: []event.Reason{event.ReasonInvalidValue}},
		{name: "numeric fractional merchant", cols: numericCols, row: pay(num(425, -1), i8(1), ts(evUS)), reasons: []event.Reason{event.ReasonInvalidValue}},
		{name: "numeric negative amount", cols: numericCols, row: pay(num(42, 0), num(-5, 0), ts(evUS)), reasons: []event.Reason{event.ReasonNegativeAmount}},
		{name: "numeric NaN amount", cols: numericCols, row: pay(num(42, 0), numV(pgtype.Numeric{NaN: true, Valid: true}), ts(evUS)), reasons: []event.Reason{event.ReasonInvalidValue}},
		// 10^19 > MaxInt64.
		{name: "numeric beyond int64", cols: numericCols, row: pay(num(42, 0), num(1, 19), ts(evUS)), reasons: []event.Reason{event.ReasonInvalidValue}},

		// int4/int2 and timestamp without time zone (MicroTimestamp).
		{name: "narrow types", cols: narrowCols, row: []event.Value{i4(1), i4(42), i2(300), bin("paid"), ts(evUS)}, want: payment(42, 300, evUS)},
		{name: "narrow negative merchant", cols: narrowCols, row: []event.Value{i4(1), i4(-5), i2(300), bin("paid"), ts(evUS)}, reasons: []event.Reason{event.ReasonInvalidValue}},
		{name: "timestamp future", cols: narrowCols, row: []event.Value{i4(1), i4(42), i2(300), bin("paid"), ts(commitUS + maxFutureUS + 1)}, reasons: []event.Reason{event.ReasonFutureTime}},
		{name: "timestamp infinity", cols: narrowCols, row: []event.Value{i4(1), i4(42), i2(300), bin("paid"), pgTS(math.MaxInt64)}, reasons: []event.Reason{event.ReasonInvalidValue}},

		// A ledger table with a filter column.
		{name: "ledger pay", specs: ledger, table: "ledger", cols: ledgerCols(oidText), row: ledgerRow(bin("pay"), 42, 1000), want: payment(42, 1000, evUS)},
		{name: "ledger refund", specs: ledger, table: "ledger", cols: ledgerCols(oidText), row: ledgerRow(bin("refund"), 42, 400),
			want: []event.Event{{Merchant: 42, Kind: event.Cancel, Amount: 400, TimeUS: evUS}}},
		{name: "ledger fee is filtered", specs: ledger, table: "ledger", cols: ledgerCols(oidText), row: ledgerRow(bin("fee"), 42, 10), filtered: 1},
		{name: "ledger NULL type is filtered", specs: ledger, table: "ledger", cols: ledgerCols(oidText), row: ledgerRow(null(), 42, 10), filtered: 1},
		{name: "ledger invalid filtered row", specs: ledger, table: "ledger", cols: ledgerCols(oidText), row: ledgerRow(bin("fee"), 0, -1), filtered: 1},
		{name: "ledger invalid refund", specs: ledger, table: "ledger", cols: ledgerCols(oidText), row: ledgerRow(bin("refund"), 42, -1), reasons: []event.Reason{event.ReasonNegativeAmount}},
		{name: "ledger bpchar padded", specs: ledger, table: "ledger", cols: ledgerCols(oidBPChar), row: ledgerRow(bin("pay     "), 42, 1000), want: payment(42, 1000, evUS)},
		{name: "ledger enum", specs: ledger, table: "ledger", cols: ledgerCols(oidEnum), row: ledgerRow(bin("refund"), 42, 400),
			want: []event.Event{{Merchant: 42, Kind: event.Cancel, Amount: 400, TimeUS: evUS}}},
		{name: "ledger bool true", specs: []event.Spec{ledgerSpec(event.Approval, "true")}, table: "ledger", cols: ledgerCols(oidBool), row: ledgerRow(boolV(true), 42, 1), want: payment(42, 1, evUS)},
		{name: "ledger bool false", specs: []event.Spec{ledgerSpec(event.Approval, "true")}, table: "ledger", cols: ledgerCols(oidBool), row: ledgerRow(boolV(false), 42, 1), filtered: 1},
		{name: "ledger bool text", specs: []event.Spec{ledgerSpec(event.Approval, "false")}, table: "ledger", cols: ledgerCols(oidBool), row: ledgerRow(txt("f"), 42, 1), want: payment(42, 1, evUS)},
		{name: "ledger int", specs: []event.Spec{ledgerSpec(event.Approval, "3")}, table: "ledger", cols: ledgerCols(oidInt4), row: ledgerRow(i4(3), 42, 1), want: payment(42, 1, evUS)},
		{name: "ledger int other", specs: []event.Spec{ledgerSpec(event.Approval, "3")}, table: "ledger", cols: ledgerCols(oidInt4), row: ledgerRow(i4(-3), 42, 1), filtered: 1},
		{name: "ledger both kinds", specs: []event.Spec{ledgerSpec(event.Approval, "both"), ledgerSpec(event.Cancel, "both")}, table: "ledger", cols: ledgerCols(oidText),
			row: ledgerRow(bin("both"), 42, -1), reasons: []event.Reason{event.ReasonNegativeAmount, event.ReasonNegativeAmount}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specs, table, cols := tt.specs, tt.table, tt.cols
			if specs == nil {
				specs = def
			}
			if table == "" {
				table = "payments"
			}
			if cols == nil {
				cols = paymentsCols
			}
			m := mustMapping(t, specs...)
			tbl := mustBind(t, m, "public", table, cols)
			jt := m.BindJSON("public", table)
			if jt == nil {
				t.Fatalf("BindJSON(public.%s) = nil", table)
			}
			var pg, js event.Output
			tbl.Map(tt.row, commitUS, &pg)
			jsonRow := viaJSON(t, tbl, tt.row)
			jt.Map(jsonRow, commitUS, &js)

			if !reflect.DeepEqual(pg.Events, tt.want) {
				t.Fatalf("Table.Map events = %+v, want %+v (dead letters %+v)", pg.Events, tt.want, pg.DeadLetters)
			}
			if !reflect.DeepEqual(js.Events, pg.Events) {
				t.Errorf("JSONTable.Map events = %+v, Table.Map %+v (JSON row %v)", js.Events, pg.Events, jsonRow)
			}
			if pg.Filtered != tt.filtered || js.Filtered != pg.Filtered {
				t.Errorf("Filtered: Table.Map %d, JSONTable.Map %d, want %d", pg.Filtered, js.Filtered, tt.filtered)
			}
			if got := reasons(pg.DeadLetters); !reflect.DeepEqual(got, tt.reasons) {
				t.Fatalf("Table.Map reasons = %v, want %v", got, tt.reasons)
			}
			if got := reasons(js.DeadLetters); !reflect.DeepEqual(got, tt.reasons) {
				t.Fatalf("JSONTable.Map reasons = %v, want %v (details %v; JSON row %v)", got, tt.reasons, details(js.DeadLetters), jsonRow)
			}
			for i, dl := range js.DeadLetters {
				p := pg.DeadLetters[i]
				if dl.Table != p.Table || dl.Kind != p.Kind || !dl.CommitTime.Equal(p.CommitTime) || dl.Detail == "" {
					t.Errorf("dead letter %d: JSON {%s %v %v %q}, pgoutput {%s %v %v}",
						i, dl.Table, dl.Kind, dl.CommitTime, dl.Detail, p.Table, p.Kind, p.CommitTime)
				}
				if !reflect.DeepEqual(dl.Row, jsonRow) {
					t.Errorf("dead letter %d Row = %v, want the JSON row %v", i, dl.Row, jsonRow)
				}
			}
		})
	}
}

func reasons(dls []event.DeadLetter) []event.Reason {
	var out []event.Reason
	for _, dl := range dls {
		out = append(out, dl.Reason)
	}
	return out
}

func details(dls []event.DeadLetter) []string {
	var out []string
	for _, dl := range dls {
		out = append(out, dl.Detail)
	}
	return out
}

// TestJSONTableMapValues covers the JSON forms a Debezium topic can carry
// that no pgoutput row renders to.
func TestJSONTableMapValues(t *testing.T) {
	spec := event.Spec{Schema: "s", Table: "t", Kind: event.Approval, Merchant: "merchant_id", Amount: "amount", Time: "at"}
	jt := mustMapping(t, spec).BindJSON("s", "t")
	n := func(s string) json.Number { return json.Number(s) }
	at := "2024-03-01T11:59:30Z" // evUS
	tests := []struct {
		name   string
		row    map[string]any
		wantUS int64 // the event's time when no reason
		reason event.Reason
		column string // named by the dead letter's detail
	}{
		{name: "numbers and ZonedTimestamp", row: map[string]any{"merchant_id": n("42"), "amount": n("15000"), "at": at}, wantUS: evUS},
		{name: "decimal strings", row: map[string]any{"merchant_id": "42", "amount": "15000", "at": at}, wantUS: evUS},
		{name: "decimal string with zero fraction", row: map[string]any{"merchant_id": "42.0", "amount": "15000.00", "at": at}, wantUS: evUS},
		{name: "offset time", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": "2024-03-01T20:59:30+09:00"}, wantUS: evUS},
		{name: "nanosecond fraction truncates to µs", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": "2024-03-01T11:59:30.123456789Z"}, wantUS: evUS + 123_456},
		{name: "time without zone is UTC", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": "2024-03-01T11:59:30"}, wantUS: evUS},
		{name: "time with a space and a fraction", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": "2024-03-01 11:59:30.5"}, wantUS: evUS + 500_000},
		// MicroTimestamp: 1709294370 s.
		{name: "MicroTimestamp", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": n("1709294370000000")}, wantUS: evUS},
		{name: "extra columns", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": at, "note": map[string]any{"x": n("1")}}, wantUS: evUS},

		{name: "missing merchant", row: map[string]any{"amount": n("1"), "at": at}, reason: event.ReasonNullMerchant, column: "merchant_id"},
		{name: "missing amount", row: map[string]any{"merchant_id": n("42"), "at": at}, reason: event.ReasonNullAmount, column: "amount"},
		{name: "missing time", row: map[string]any{"merchant_id": n("42"), "amount": n("1")}, reason: event.ReasonNullTime, column: "at"},
		{name: "empty row", row: map[string]any{}, reason: event.ReasonNullMerchant, column: "merchant_id"},
		{name: "nil row", row: nil, reason: event.ReasonNullMerchant, column: "merchant_id"},
		{name: "fractional amount", row: map[string]any{"merchant_id": n("42"), "amount": n("12.5"), "at": at}, reason: event.ReasonInvalidValue, column: "amount"},
		{name: "amount with zero fraction as a number", row: map[string]any{"merchant_id": n("42"), "amount": n("15000.0"), "at": at}, reason: event.ReasonInvalidValue, column: "amount"},
		{name: "amount with exponent", row: map[string]any{"merchant_id": n("42"), "amount": n("1e3"), "at": at}, reason: event.ReasonInvalidValue, column: "amount"},
		{name: "amount string fraction", row: map[string]any{"merchant_id": n("42"), "amount": "12.50", "at": at}, reason: event.ReasonInvalidValue, column: "amount"},
		{name: "amount float64", row: map[string]any{"merchant_id": n("42"), "amount": float64(15000), "at": at}, reason: event.ReasonInvalidValue, column: "amount"},
		{name: "amount base64 decimal", row: map[string]any{"merchant_id": n("42"), "amount": "Ojg=", "at": at}, reason: event.ReasonInvalidValue, column: "amount"},
		{name: "merchant boolean", row: map[string]any{"merchant_id": true, "amount": n("1"), "at": at}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant object", row: map[string]any{"merchant_id": map[string]any{}, "amount": n("1"), "at": at}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant beyond int64", row: map[string]any{"merchant_id": n("9223372036854775808"), "amount": n("1"), "at": at}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant string 0", row: map[string]any{"merchant_id": "0", "amount": n("1"), "at": at}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "merchant empty string", row: map[string]any{"merchant_id": "", "amount": n("1"), "at": at}, reason: event.ReasonInvalidValue, column: "merchant_id"},
		{name: "negative decimal string", row: map[string]any{"merchant_id": n("42"), "amount": "-7", "at": at}, reason: event.ReasonNegativeAmount, column: "amount"},
		{name: "time infinity", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": "infinity"}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "time -infinity", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": "-infinity"}, reason: event.ReasonInvalidValue, column: "at"},
		// Debezium's MicroTimestamp stand-ins for ±infinity.
		{name: "MicroTimestamp infinity", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": n("9223372036825200000")}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "MicroTimestamp -infinity", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": n("-9223372036832400000")}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "time fractional number", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": n("1709294370000000.5")}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "time date only", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": "2024-03-01"}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "time garbage", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": "yesterday"}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "time boolean", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": false}, reason: event.ReasonInvalidValue, column: "at"},
		{name: "time 1µs after commit+MaxFuture", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": "2024-03-01T12:05:00.000001Z"}, reason: event.ReasonFutureTime, column: "at"},
		{name: "time 1µs before commit-Retention", row: map[string]any{"merchant_id": n("42"), "amount": n("1"), "at": "2024-02-22T11:59:59.999999Z"}, reason: event.ReasonTooOld, column: "at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out event.Output
			jt.Map(tt.row, commitUS, &out)
			if tt.reason == "" {
				if len(out.DeadLetters) != 0 || len(out.Events) != 1 {
					t.Fatalf("Events = %+v, DeadLetters = %+v; want one event", out.Events, out.DeadLetters)
				}
				if ev := out.Events[0]; ev.Merchant != 42 || ev.Kind != event.Approval || ev.TimeUS != tt.wantUS {
					t.Errorf("event = %+v, want merchant 42, approval, time %d", ev, tt.wantUS)
				}
				return
			}
			if len(out.Events) != 0 || len(out.DeadLetters) != 1 {
				t.Fatalf("Events = %+v, DeadLetters = %+v; want one %s dead letter", out.Events, out.DeadLetters, tt.reason)
			}
			dl := out.DeadLetters[0]
			if dl.Reason != tt.reason || !strings.Contains(dl.Detail, tt.column) {
				t.Errorf("dead letter %s %q, want %s naming %q", dl.Reason, dl.Detail, tt.reason, tt.column)
			}
			if dl.Table != "s.t" || dl.Kind != event.Approval || !dl.CommitTime.Equal(time.UnixMicro(commitUS)) || dl.CommitTime.Location() != time.UTC {
				t.Errorf("dead letter {%s %v %v}, want {s.t approval %v UTC}", dl.Table, dl.Kind, dl.CommitTime, time.UnixMicro(commitUS).UTC())
			}
			if !reflect.DeepEqual(dl.Row, tt.row) {
				t.Errorf("dead letter Row = %v, want the row itself %v", dl.Row, tt.row)
			}
		})
	}
}

func TestJSONTableMapAmounts(t *testing.T) {
	jt := mustMapping(t, paymentsSpec()).BindJSON("public", "payments")
	var out event.Output
	jt.Map(decodeRow(t, []byte(`{"merchant_id":9223372036854775807,"amount":1000000000000,"approved_at":"2024-03-01T11:59:30Z"}`)), commitUS, &out)
	want := []event.Event{{Merchant: math.MaxInt64, Kind: event.Approval, Amount: limits.MaxAmount, TimeUS: evUS}}
	if !reflect.DeepEqual(out.Events, want) || len(out.DeadLetters) != 0 {
		t.Errorf("Events = %+v, DeadLetters = %+v; want %+v", out.Events, out.DeadLetters, want)
	}
	out.Reset()
	jt.Map(decodeRow(t, []byte(`{"merchant_id":42,"amount":9223372036854775807,"approved_at":"2024-03-01T11:59:30Z"}`)), commitUS, &out)
	if len(out.Events) != 0 || len(out.DeadLetters) != 1 || out.DeadLetters[0].Reason != event.ReasonAmountOutOfRange {
		t.Errorf("Events = %+v, DeadLetters = %+v; want one amount_out_of_range", out.Events, out.DeadLetters)
	}
}

func TestBindJSON(t *testing.T) {
	m := mustMapping(t, paymentsSpec(), cancelsSpec(), ledgerSpec(event.Approval, "pay"), ledgerSpec(event.Cancel, "refund"))
	for _, tc := range []struct {
		schema, table string
		mapped        bool
	}{
		{"public", "payments", true},
		{"public", "payment_cancels", true},
		{"public", "ledger", true},
		{"public", "merchants", false},
		{"audit", "payments", false},
		{"public", "Payments", false},
	} {
		if got := m.BindJSON(tc.schema, tc.table); (got != nil) != tc.mapped {
			t.Errorf("BindJSON(%s.%s) = %v, want mapped %v", tc.schema, tc.table, got, tc.mapped)
		}
	}
	// Both ledger specs are bound: one row of each type is one event of each kind.
	jt := m.BindJSON("public", "ledger")
	var out event.Output
	for _, typ := range []string{"pay", "refund", "fee"} {
		jt.Map(map[string]any{"merchant_id": json.Number("42"), "amount": json.Number("5"), "type": typ, "occurred_at": "2024-03-01T11:59:30Z"}, commitUS, &out)
	}
	want := []event.Event{{Merchant: 42, Kind: event.Approval, Amount: 5, TimeUS: evUS}, {Merchant: 42, Kind: event.Cancel, Amount: 5, TimeUS: evUS}}
	if !reflect.DeepEqual(out.Events, want) || out.Filtered != 1 {
		t.Errorf("Events = %+v, Filtered = %d; want %+v, 1", out.Events, out.Filtered, want)
	}
}
