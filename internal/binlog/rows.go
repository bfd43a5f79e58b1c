package binlog

import (
	"encoding/base64"
	"time"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/shopspring/decimal"

	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/source"
)

// KeepRows makes Deliver also fill each transaction's Rows with its
// inserted rows of mapped tables, rendered as Debezium's MySQL connector
// renders a change event's `after` (riskwatch capture publishes them).
// Call it before Deliver; `run` never does, and pays nothing for it.
func (s *Source) KeepRows() { s.opts.Rows = true }

// zonedTimestamp is Debezium's io.debezium.time.ZonedTimestamp of a UTC
// instant at MySQL's microsecond precision.
const zonedTimestamp = "2006-01-02T15:04:05.999999Z"

// keepRow appends one inserted row to the transaction's Rows. events is
// how many events the transaction had before the row was mapped: the
// row's own event, if it became one, is the next.
func (st *streamState) keepRow(b *boundTable, tm *replication.TableMapEvent, r []any, events int) {
	values := make(map[string]any, len(b.names))
	for i, name := range b.names {
		var v any
		if i < len(r) {
			v = debeziumValue(b.label(i, r[i]), tm, i)
		}
		values[name] = v
	}
	row := source.Row{Schema: b.schema, Table: b.table, Values: values}
	if len(st.cur.Events) > events {
		row.Merchant = st.cur.Events[events].Merchant
	}
	st.cur.Rows = append(st.cur.Rows, row)
}

// debeziumValue renders column i's decoded value as Debezium's MySQL
// connector does with its defaults (time.precision.mode=
// adaptive_time_microseconds), except DECIMAL, which is rendered as with
// decimal.handling.mode=string so that money stays exact:
//
//   - DATETIME(0–3): epoch milliseconds of the wall clock read as UTC
//     (io.debezium.time.Timestamp); DATETIME(4–6): epoch microseconds
//     (MicroTimestamp). A reader applies source.time_zone.
//   - TIMESTAMP: an ISO-8601 UTC string (ZonedTimestamp).
//   - DATE: days since the epoch (io.debezium.time.Date).
//   - A zero or unreadable date stays MySQL's text ("0000-00-00 00:00:00"),
//     where Debezium would send NULL or the epoch: a worker then
//     dead-letters the row with the stream's own reason.
//   - Bytes that are not UTF-8 are base64, as JsonConverter writes BYTES.
//
// Other values are left as the binlog decoder gives them (integers,
// floats, text; ENUM and SET as their labels, as Debezium renders them).
func debeziumValue(v any, tm *replication.TableMapEvent, i int) any {
	var tp byte
	var meta uint16
	if tm != nil && i < len(tm.ColumnType) {
		tp = tm.ColumnType[i]
		if i < len(tm.ColumnMeta) {
			meta = tm.ColumnMeta[i]
		}
	}
	switch x := v.(type) {
	case nil:
		return nil
	case decimal.Decimal:
		if tp == mysql.MYSQL_TYPE_NEWDECIMAL {
			return x.StringFixed(int32(meta & 0xff))
		}
		return x.String()
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return base64.StdEncoding.EncodeToString(x)
	case string:
		return debeziumTime(x, tp, meta)
	}
	return v
}

// debeziumTime renders a temporal column's text (how the binlog decoder
// gives it) as Debezium does; other text is returned unchanged.
func debeziumTime(s string, tp byte, meta uint16) any {
	k := kindOf(tp)
	if k == notTime {
		return s
	}
	c, ok := parseClock(s)
	if !ok || c.y == 0 || c.mo == 0 || c.d == 0 {
		return s
	}
	wall := time.Date(c.y, time.Month(c.mo), c.d, c.h, c.mi, c.s, c.us*1000, time.UTC)
	switch tp {
	case mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE:
		return wall.Unix() / 86400
	case mysql.MYSQL_TYPE_DATETIME2:
		if meta > 3 {
			return wall.UnixMicro()
		}
		return wall.UnixMilli()
	case mysql.MYSQL_TYPE_DATETIME:
		return wall.UnixMilli()
	}
	// TIMESTAMP: the decoder rendered it in UTC.
	return wall.Format(zonedTimestamp)
}

// WallClockInstant is the instant a DATETIME's wall clock shows in loc,
// the wall clock given as the UTC fields of t: how Debezium's MySQL
// connector sends a DATETIME (epoch milliseconds or microseconds "as if
// UTC"). It reads exactly as the stream reads the same DATETIME,
// daylight-saving ambiguities included; text is kept for dead letters.
func WallClockInstant(t time.Time, text string, loc *time.Location) event.Instant {
	t = t.UTC()
	c := clock{y: t.Year(), mo: int(t.Month()), d: t.Day(), h: t.Hour(), mi: t.Minute(), s: t.Second(), us: t.Nanosecond() / 1000}
	return event.InstantOf(earliest(c, loc), text)
}

// TextInstant reads a DATETIME written as MySQL's text
// "YYYY-MM-DD[ hh:mm:ss[.ffffff]]" (Maxwell's JSON, and capture's zero
// dates) in loc, as the stream reads it, zero dates included; ok is false
// when s is not in that form.
func TextInstant(s string, loc *time.Location) (in event.Instant, ok bool) {
	if _, ok := parseClock(s); !ok {
		return event.Instant{}, false
	}
	return instant(s, wall, loc), true
}
