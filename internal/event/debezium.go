package event

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// zonedTimestamp is Debezium's io.debezium.time.ZonedTimestamp for a UTC
// instant at PostgreSQL's microsecond precision.
const zonedTimestamp = "2006-01-02T15:04:05.999999Z"

// Debezium's PostgreSQL connector sends ±infinity in a timestamp column as
// these MicroTimestamp values (its documentation, "TIMESTAMP type"; the
// PostgreSQL JDBC driver's convention).
const (
	debeziumInfinityUS    = 9223372036825200000
	debeziumNegInfinityUS = -9223372036832400000
)

// RowDebezium renders a row the way Debezium's PostgreSQL connector renders
// `after` with its default converters, except numeric, which is rendered as
// with decimal.handling.mode=string so that money stays exact. An unchanged
// TOAST value was not sent, so the column is left out.
func (t *Table) RowDebezium(row []Value) map[string]any {
	out := make(map[string]any, len(row))
	for i, v := range row {
		if i >= len(t.cols) {
			break
		}
		switch v.Format {
		case 'n':
			out[t.cols[i].Name] = nil
		case 'u':
		default:
			out[t.cols[i].Name] = t.debeziumValue(i, v)
		}
	}
	return out
}

func (t *Table) debeziumValue(col int, v Value) any {
	switch oid := t.cols[col].TypeOID; {
	case oid == oidInt2 || oid == oidInt4 || oid == oidInt8:
		if n, err := t.int64Value(col, v); err == nil {
			return n
		}
	case oid == oidBool:
		if v.Format == 'b' && len(v.Data) == 1 {
			return v.Data[0] != 0
		}
		if v.Format == 't' && (string(v.Data) == "t" || string(v.Data) == "f") {
			return string(v.Data) == "t"
		}
	case oid == oidTimestamptz || oid == oidTimestamp:
		if inf := infiniteTime(v); inf != "" {
			return inf
		}
		us, err := t.timeValue(col, v)
		if err != nil {
			break
		}
		if oid == oidTimestamp {
			return us // MicroTimestamp
		}
		return time.UnixMicro(us).UTC().Format(zonedTimestamp)
	case oid == oidText || oid == oidVarchar || oid == oidBPChar || oid == oidName || oid == oidChar || oid >= firstUserOID:
		// bpchar keeps its padding, as Debezium sends it; an enum's
		// binary form is its label.
		return string(v.Data)
	}
	return t.textForm(col, v)
}

// infiniteTime returns "infinity" or "-infinity" for an infinite timestamp
// in either wire format, and "" otherwise.
func infiniteTime(v Value) string {
	switch {
	case v.Format == 'b' && len(v.Data) == 8:
		switch int64(binary.BigEndian.Uint64(v.Data)) {
		case math.MaxInt64:
			return "infinity"
		case math.MinInt64:
			return "-infinity"
		}
	case v.Format == 't' && (string(v.Data) == "infinity" || string(v.Data) == "-infinity"):
		return string(v.Data)
	}
	return ""
}

// textForm is PostgreSQL's text output for a value, which is what a JSON
// consumer can still make sense of for types the mapping does not decode.
func (t *Table) textForm(col int, v Value) string {
	if v.Format != 'b' {
		return string(v.Data)
	}
	if t.types == nil {
		t.types = pgtype.NewMap()
	}
	oid := t.cols[col].TypeOID
	typ, ok := t.types.TypeForOID(oid)
	if !ok {
		return string(v.Data)
	}
	val, err := typ.Codec.DecodeValue(t.types, oid, pgtype.BinaryFormatCode, v.Data)
	if err != nil {
		return fmt.Sprintf("(undecodable: %v)", err)
	}
	text, err := t.types.Encode(oid, pgtype.TextFormatCode, val, nil)
	if err != nil {
		return fmt.Sprint(val)
	}
	return string(text)
}

// JSONTable is a mapped source table whose rows arrive as JSON objects
// (Debezium's `after`), column name to value. Unlike Table it needs no
// column layout: each row names its columns, and the values' JSON forms say
// enough to decode them. It is immutable, so goroutines may share it.
type JSONTable struct {
	name   string
	specs  []Spec
	limits Limits
}

// BindJSON returns how rows of schema.table map, or nil when the table is not
// mapped.
func (m *Mapping) BindJSON(schema, table string) *JSONTable {
	t := &JSONTable{name: schema + "." + table, limits: m.limits}
	for _, s := range m.specs {
		if s.Schema == schema && s.Table == table {
			t.specs = append(t.specs, s)
		}
	}
	if len(t.specs) == 0 {
		return nil
	}
	return t
}

// Map is Table.Map for a JSON row: the same events, dead-letter reasons and
// filtering for the same source row. Numbers must have been decoded as
// json.Number; a missing column is NULL.
func (t *JSONTable) Map(row map[string]any, commitUS int64, out *Output) {
	selected := false
	for i := range t.specs {
		s := &t.specs[i]
		if s.FilterColumn != "" && !jsonFilterMatches(s, row[s.FilterColumn]) {
			continue
		}
		selected = true
		ev, reason, detail := t.event(s, row, commitUS)
		out.add(ev, reason, detail, t.name, func() map[string]any { return row }, commitUS)
	}
	if !selected {
		out.Filtered++
	}
}

// event checks in Table.event's order, with its reasons and wording.
func (t *JSONTable) event(s *Spec, row map[string]any, commitUS int64) (Event, Reason, string) {
	var c [3]column
	for i, name := range [3]string{s.Merchant, s.Amount, s.Time} {
		v := row[name]
		if c[i].null = v == nil; c[i].null {
			continue
		}
		if i < 2 {
			c[i].v, c[i].err = jsonInt64(v)
		} else {
			c[i].v, c[i].err = jsonTimeUS(v)
		}
	}
	return checkEvent(s, t.limits, commitUS, c)
}

// column is one decoded column of a row: merchant and amount as integers,
// the time in Unix microseconds.
type column struct {
	v    int64
	null bool
	err  error
}

// checkEvent builds the event of a JSON row from its decoded merchant,
// amount and time columns, or says why it cannot be one, in Table.event's
// order and words.
func checkEvent(s *Spec, lim Limits, commitUS int64, c [3]column) (Event, Reason, string) {
	ev := Event{Kind: s.Kind}
	switch m := c[0]; {
	case m.null:
		return ev, ReasonNullMerchant, fmt.Sprintf("column %q is NULL", s.Merchant)
	case m.err != nil:
		return ev, ReasonInvalidValue, fmt.Sprintf("column %q: %v", s.Merchant, m.err)
	case m.v <= 0:
		return ev, ReasonInvalidValue, fmt.Sprintf("column %q: merchant id %d is not positive", s.Merchant, m.v)
	}
	ev.Merchant = c[0].v
	switch a := c[1]; {
	case a.null:
		return ev, ReasonNullAmount, fmt.Sprintf("column %q is NULL", s.Amount)
	case a.err != nil:
		return ev, ReasonInvalidValue, fmt.Sprintf("column %q: %v", s.Amount, a.err)
	case a.v < 0:
		return ev, ReasonNegativeAmount, fmt.Sprintf("column %q: amount %d is negative", s.Amount, a.v)
	case a.v > lim.MaxAmount:
		return ev, ReasonAmountOutOfRange, fmt.Sprintf("column %q: amount %d is above max_amount %d", s.Amount, a.v, lim.MaxAmount)
	}
	ev.Amount = c[1].v
	switch tm := c[2]; {
	case tm.null:
		return ev, ReasonNullTime, fmt.Sprintf("column %q is NULL", s.Time)
	case tm.err != nil:
		return ev, ReasonInvalidValue, fmt.Sprintf("column %q: %v", s.Time, tm.err)
	}
	ev.TimeUS = c[2].v
	if ev.TimeUS > commitUS+lim.MaxFuture.Microseconds() {
		return ev, ReasonFutureTime, fmt.Sprintf("column %q: %s is more than %s after the commit at %s",
			s.Time, ev.Time().Format(time.RFC3339Nano), lim.MaxFuture, time.UnixMicro(commitUS).UTC().Format(time.RFC3339Nano))
	}
	if ev.TimeUS < commitUS-lim.Retention.Microseconds() {
		return ev, ReasonTooOld, fmt.Sprintf("column %q: %s is more than the retention %s before the commit at %s",
			s.Time, ev.Time().Format(time.RFC3339Nano), lim.Retention, time.UnixMicro(commitUS).UTC().Format(time.RFC3339Nano))
	}
	return ev, "", ""
}

// jsonInt64 reads an integer: a JSON number without fraction or exponent
// (int2/4/8), or a decimal string (numeric under decimal.handling.mode=string)
// whose fraction, if any, is zero, as an integral numeric(p,s) renders.
func jsonInt64(v any) (int64, error) {
	switch x := v.(type) {
	case json.Number:
		if strings.ContainsAny(string(x), ".eE") {
			return 0, fmt.Errorf("%s is not an integer", x)
		}
		n, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s is not an int64: %w", x, err)
		}
		return n, nil
	case string:
		digits, frac, _ := strings.Cut(x, ".")
		if strings.Trim(frac, "0") != "" {
			return 0, fmt.Errorf("%q is not an integer", x)
		}
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not an int64: %w", x, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%s is not an integer", jsonKind(v))
}

// jsonTimeUS reads a transaction time in Unix microseconds: an RFC 3339
// string (ZonedTimestamp; without a zone it is UTC, as timestamp columns
// are read), or an integer (MicroTimestamp).
func jsonTimeUS(v any) (int64, error) {
	switch x := v.(type) {
	case json.Number:
		if strings.ContainsAny(string(x), ".eE") {
			return 0, fmt.Errorf("%s is not integer microseconds", x)
		}
		us, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s is not int64 microseconds: %w", x, err)
		}
		if us == debeziumInfinityUS || us == debeziumNegInfinityUS {
			return 0, fmt.Errorf("infinite timestamp")
		}
		return us, nil
	case string:
		if x == "infinity" || x == "-infinity" {
			return 0, fmt.Errorf("infinite timestamp")
		}
		s := x
		if len(s) > 10 && s[10] == ' ' {
			s = s[:10] + "T" + s[11:]
		}
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			// Fractional seconds are accepted without being in the layout.
			if ts, err = time.Parse("2006-01-02T15:04:05", s); err != nil {
				return 0, fmt.Errorf("%q is not an RFC 3339 time", x)
			}
		}
		return ts.UnixMicro(), nil
	}
	return 0, fmt.Errorf("%s is not a time", jsonKind(v))
}

// jsonFilterMatches compares a JSON value's text form with the filter values
// as Table.filterMatches compares bool::text, int::text and bpchar::text.
// A JSON row does not say whether a string was bpchar, so trailing blanks
// are always dropped: a padded char(n) code matches, at the price of
// matching a text value with trailing blanks too.
func jsonFilterMatches(s *Spec, v any) bool {
	var text string
	switch x := v.(type) {
	case string:
		text = strings.TrimRight(x, " ")
	case json.Number:
		text = string(x)
	case bool:
		text = strconv.FormatBool(x)
	default:
		return false
	}
	return slices.Contains(s.FilterIn, text)
}

// jsonKind names a decoded JSON value's kind for a dead letter's detail.
func jsonKind(v any) string {
	switch x := v.(type) {
	case bool:
		return fmt.Sprintf("boolean %t", x)
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%T %v", v, v)
}
