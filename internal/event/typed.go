package event

import (
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Instant is a time column its source already read as an instant: Unix
// microseconds, or why the value is not one (a zero date, a time the
// event cannot hold). Text is the value as the source wrote it, for the
// dead letter's row.
type Instant struct {
	US   int64
	Err  error
	Text string
}

// TypedTable is a mapped source table whose rows arrive as decoded Go
// values by column position (MySQL's binlog row events and result sets):
// nil for NULL, int64 or uint64 integers, a string for DECIMAL (exact) and
// text, Instant for times. It maps with the same checks, reasons and
// wording as Table and JSONTable. It is immutable once bound.
type TypedTable struct {
	name     string
	cols     []string
	bindings []typedBinding
	limits   Limits
}

type typedBinding struct {
	spec *Spec
	// merchant, amount, time and filter are column positions (filter -1:
	// none).
	merchant, amount, time, filter int
}

// BindTyped returns how rows of schema.table with the given column names
// (in row order) map, nil when the table is not mapped. A mapped column
// missing from the table is an error naming it.
func (m *Mapping) BindTyped(schema, table string, cols []string) (*TypedTable, error) {
	t := &TypedTable{name: schema + "." + table, cols: slices.Clone(cols), limits: m.limits}
	pos := func(s *Spec, name string) (int, error) {
		if i := slices.Index(cols, name); i >= 0 {
			return i, nil
		}
		return -1, fmt.Errorf("event mapping for %s: column %q does not exist (columns: %s)", s.QualifiedTable(), name, strings.Join(cols, ", "))
	}
	for i := range m.specs {
		s := &m.specs[i]
		if s.Schema != schema || s.Table != table {
			continue
		}
		b := typedBinding{spec: s, filter: -1}
		var err error
		if b.merchant, err = pos(s, s.Merchant); err != nil {
			return nil, err
		}
		if b.amount, err = pos(s, s.Amount); err != nil {
			return nil, err
		}
		if b.time, err = pos(s, s.Time); err != nil {
			return nil, err
		}
		if s.FilterColumn != "" {
			if b.filter, err = pos(s, s.FilterColumn); err != nil {
				return nil, err
			}
		}
		t.bindings = append(t.bindings, b)
	}
	if len(t.bindings) == 0 {
		return nil, nil
	}
	return t, nil
}

// Name is the table's schema-qualified name.
func (t *TypedTable) Name() string { return t.name }

// Map turns one inserted row into events (or dead letters) for every
// mapping of the table that selects it, as Table.Map does.
func (t *TypedTable) Map(row []any, commitUS int64, out *Output) {
	selected := false
	for i := range t.bindings {
		b := &t.bindings[i]
		if b.filter >= 0 && !typedFilterMatches(b.spec, at(row, b.filter)) {
			continue
		}
		selected = true
		var c [3]column
		for k, p := range [3]int{b.merchant, b.amount, b.time} {
			v := at(row, p)
			if c[k].null = v == nil; c[k].null {
				continue
			}
			if k < 2 {
				c[k].v, c[k].err = typedInt64(v)
			} else {
				c[k].v, c[k].err = typedTimeUS(v)
			}
		}
		ev, reason, detail := checkEvent(b.spec, t.limits, commitUS, c)
		out.add(ev, reason, detail, t.name, func() map[string]any { return t.RowJSON(row) }, commitUS)
	}
	if !selected {
		out.Filtered++
	}
}

func at(row []any, i int) any {
	if i < len(row) {
		return row[i]
	}
	return nil
}

// RowJSON renders a row for a dead letter: column name to value, times as
// the source wrote them, bytes as text when printable.
func (t *TypedTable) RowJSON(row []any) map[string]any {
	out := make(map[string]any, len(row))
	for i, v := range row {
		if i >= len(t.cols) {
			break
		}
		switch x := v.(type) {
		case Instant:
			out[t.cols[i]] = x.Text
		case []byte:
			out[t.cols[i]] = Printable(string(x), MaxDetailBytes)
		default:
			out[t.cols[i]] = x
		}
	}
	return out
}

// typedInt64 reads an integer column: a signed or unsigned integer, or an
// exact decimal (DECIMAL arrives as text) whose fraction, if any, is zero.
func typedInt64(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int:
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return 0, fmt.Errorf("%d is not an int64", x)
		}
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case string:
		return decimalInt64(x)
	case []byte:
		return decimalInt64(string(x))
	}
	return 0, fmt.Errorf("%T %v is not an integer", v, v)
}

// decimalInt64 reads an exact decimal's text ("-12.000") as an integer.
func decimalInt64(s string) (int64, error) {
	digits, frac, _ := strings.Cut(s, ".")
	if strings.Trim(frac, "0") != "" {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		if _, ok := new(big.Int).SetString(digits, 10); ok {
			return 0, fmt.Errorf("%q is not an int64", s)
		}
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	return n, nil
}

func typedTimeUS(v any) (int64, error) {
	if x, ok := v.(Instant); ok {
		return x.US, x.Err
	}
	return 0, fmt.Errorf("%T %v is not a time", v, v)
}

// typedFilterMatches compares a value's text form with the filter values,
// as Table compares int::text and text (trailing blanks of CHAR dropped:
// MySQL does not send them).
func typedFilterMatches(s *Spec, v any) bool {
	var text string
	switch x := v.(type) {
	case string:
		text = strings.TrimRight(x, " ")
	case []byte:
		text = strings.TrimRight(string(x), " ")
	case nil:
		return false
	case Instant:
		text = x.Text
	default:
		text = fmt.Sprint(x)
	}
	return slices.Contains(s.FilterIn, text)
}

// ZeroDateError is why a zero date ("0000-00-00 …", which MySQL accepts
// outside strict mode) is not an event time.
func ZeroDateError(text string) error {
	return fmt.Errorf("%q is a zero date, not a time", text)
}

// InstantOf is an Instant for t, or an error when t is past what an event
// time holds.
func InstantOf(t time.Time, text string) Instant {
	if t.After(maxEventTime) || t.Before(time.UnixMicro(math.MinInt64)) {
		return Instant{Err: errTimeRange, Text: text}
	}
	return Instant{US: t.UnixMicro(), Text: text}
}
