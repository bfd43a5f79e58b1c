package kafka

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/riskwatch/riskwatch/internal/binlog"
	"github.com/riskwatch/riskwatch/internal/event"
)

// mysqlRows maps the rows of a MySQL or MariaDB source that arrive as JSON
// (Debezium's MySQL connector, Maxwell, capture of a MySQL source) with
// the binlog stream's own mapping, event.TypedTable: each mapped column is
// first read into the value the stream would have decoded — an integer, a
// decimal's text, an instant — so that both paths make the same events and
// dead letters with the same reasons. It is not safe for concurrent use.
type mysqlRows struct {
	mapping *event.Mapping
	// loc reads DATETIME wall clocks (source.time_zone).
	loc *time.Location
	// roles: per mapped table, how its mapped columns are read.
	roles map[[2]string]map[string]colRole
	// bound: TypedTables by table and column list.
	bound map[string]*event.TypedTable
	cols  []string
}

type colRole uint8

const (
	roleOther   colRole = iota + 1 // a filter column: read as it comes
	roleInteger                    // merchant, amount
	roleTime
)

func newMySQLRows(m *event.Mapping, loc *time.Location) *mysqlRows {
	if loc == nil {
		loc = time.UTC // source.time_zone's default
	}
	r := &mysqlRows{mapping: m, loc: loc, roles: map[[2]string]map[string]colRole{}, bound: map[string]*event.TypedTable{}}
	for _, s := range m.Specs() {
		k := [2]string{s.Schema, s.Table}
		if r.roles[k] == nil {
			r.roles[k] = map[string]colRole{}
		}
		if s.FilterColumn != "" {
			r.roles[k][s.FilterColumn] = max(r.roles[k][s.FilterColumn], roleOther)
		}
		r.roles[k][s.Merchant], r.roles[k][s.Amount], r.roles[k][s.Time] = roleInteger, roleInteger, roleTime
	}
	return r
}

// Map maps the inserted row of c, a change of schema.table, into out; it
// reports false when the mapping does not name the table. An error is a
// value that no reading applies to (a decimal that is not base64), which
// makes the whole record a dead letter.
func (r *mysqlRows) Map(c *Change, out *event.Output) (bool, error) {
	schema, table := c.Table()
	roles := r.roles[[2]string{schema, table}]
	if roles == nil {
		return false, nil
	}
	// The row's own columns, and the mapped ones it left out (Maxwell
	// without output_nulls), which are NULL.
	r.cols = r.cols[:0]
	for name := range c.After {
		r.cols = append(r.cols, name)
	}
	for name := range roles {
		if _, ok := c.After[name]; !ok {
			r.cols = append(r.cols, name)
		}
	}
	slices.Sort(r.cols)
	key := schema + "\x00" + table + "\x00" + strings.Join(r.cols, "\x00")
	tt, ok := r.bound[key]
	if !ok {
		var err error
		if tt, err = r.mapping.BindTyped(schema, table, r.cols); err != nil {
			return false, err
		}
		r.bound[key] = tt
	}
	row := make([]any, len(r.cols))
	for i, name := range r.cols {
		v := c.After[name]
		switch roles[name] {
		case roleInteger:
			n, err := mysqlInteger(v, c.AfterTypes[name])
			if err != nil {
				return true, fmt.Errorf("column %q: %w", name, err)
			}
			v = n
		case roleTime:
			v = mysqlInstant(v, c.AfterTypes[name], c.Source.TsUS, r.loc)
		}
		row[i] = v
	}
	tt.Map(row, c.Source.TsUS, out)
	return true, nil
}

// mysqlInteger reads a merchant or amount column as the stream decodes
// it: an integer, or a DECIMAL's text (integral if its fraction is zero).
func mysqlInteger(v any, ft FieldType) (any, error) {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				return n, nil
			}
			if n, err := strconv.ParseUint(s, 10, 64); err == nil {
				return n, nil
			}
			return s, nil
		}
		// Maxwell writes a DECIMAL as a JSON number through Java's
		// BigDecimal, whose text of a zero with a large scale is "0E-10".
		if strings.ContainsAny(s, "eE") {
			if q, ok := new(big.Rat).SetString(s); ok && q.IsInt() {
				return q.Num().String(), nil
			}
		}
		return s, nil
	case string:
		if ft.Name == typeDecimal {
			return decimalText(x, ft.Scale)
		}
	}
	return v, nil
}

// decimalText is the text of a Kafka Connect Decimal: base64 of the
// unscaled value's big-endian two's complement, scaled by scale.
func decimalText(b64 string, scale int) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) == 0 {
		return "", fmt.Errorf("%q is not a base64 Decimal (decimal.handling.mode=precise)", b64)
	}
	n := new(big.Int).SetBytes(raw)
	if raw[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(raw))))
	}
	neg := n.Sign() < 0
	digits := new(big.Int).Abs(n).String()
	if scale > 0 {
		if len(digits) <= scale {
			digits = strings.Repeat("0", scale-len(digits)+1) + digits
		}
		digits = digits[:len(digits)-scale] + "." + digits[len(digits)-scale:]
	}
	if neg {
		digits = "-" + digits
	}
	return digits, nil
}

// mysqlInstant reads a time column as an instant, as the stream reads the
// same column:
//   - a number is a DATETIME's wall clock as epoch milliseconds or
//     microseconds "as if UTC" (Debezium's Timestamp / MicroTimestamp),
//     read in loc. The schema names the unit; without one, the reading
//     nearer the commit is taken (the two differ 1000-fold).
//   - MySQL's text "YYYY-MM-DD hh:mm:ss[.ffffff]" (Maxwell, and zero dates)
//     is a wall clock read in loc.
//   - an ISO-8601 time with a zone (ZonedTimestamp, a TIMESTAMP) is absolute.
func mysqlInstant(v any, ft FieldType, commitUS int64, loc *time.Location) any {
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			return event.Instant{Err: fmt.Errorf("%s is not an integer epoch time", x), Text: string(x)}
		}
		us, err := epochMicros(n, ft.Name, commitUS)
		if err != nil {
			return event.Instant{Err: err, Text: string(x)}
		}
		return binlog.WallClockInstant(time.UnixMicro(us), string(x), loc)
	case string:
		if in, ok := binlog.TextInstant(x, loc); ok {
			return in
		}
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return event.InstantOf(t, x)
		}
		return event.Instant{Err: fmt.Errorf("%q is neither MySQL's date and time text nor an ISO-8601 time with a zone", x), Text: x}
	}
	return v
}

// epochMicros is a DATETIME number in microseconds, by its semantic type.
func epochMicros(n int64, semantic string, commitUS int64) (int64, error) {
	switch semantic {
	case typeTimestamp, typeConnectTimestamp:
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			return 0, fmt.Errorf("%d milliseconds is out of range", n)
		}
		return n * 1000, nil
	case typeMicroTimestamp:
		return n, nil
	case typeNanoTimestamp:
		return floorDiv(n, 1000), nil
	case "":
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			return n, nil // only microseconds can be this large
		}
		if distance(n*1000, commitUS) < distance(n, commitUS) {
			return n * 1000, nil
		}
		return n, nil
	}
	return 0, fmt.Errorf("%d is a %s, not a date and time", n, semantic)
}

func distance(a, b int64) uint64 {
	if a > b {
		return uint64(a) - uint64(b)
	}
	return uint64(b) - uint64(a)
}
