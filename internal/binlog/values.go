package binlog

import (
	"fmt"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/shopspring/decimal"

	"github.com/riskwatch/riskwatch/internal/event"
)

// timeKind says how a column's text is read as an instant.
type timeKind uint8

const (
	notTime timeKind = iota
	// absolute: TIMESTAMP, which the server stores in UTC and riskwatch
	// reads in UTC (the binlog decoder and the snapshot session both
	// render it in UTC).
	absolute
	// wall: DATETIME, a wall clock without a zone, read in
	// source.time_zone.
	wall
)

// kindOf is how a column of MySQL type tp is read as a time.
func kindOf(tp byte) timeKind {
	switch tp {
	case mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIMESTAMP2:
		return absolute
	case mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_DATETIME2, mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE:
		return wall
	}
	return notTime
}

// typed converts a decoded column value to what event.TypedTable reads:
// exact decimals as text, times as instants.
func typed(v any, k timeKind, loc *time.Location) any {
	switch x := v.(type) {
	case nil:
		return nil
	case decimal.Decimal:
		return x.String()
	case string:
		if k != notTime {
			return instant(x, k, loc)
		}
		return x
	case []byte:
		if k != notTime {
			return instant(string(x), k, loc)
		}
		return string(x)
	}
	return v
}

// instant reads MySQL's "YYYY-MM-DD[ hh:mm:ss[.ffffff]]".
func instant(s string, k timeKind, loc *time.Location) event.Instant {
	f, ok := parseClock(s)
	if !ok {
		return event.Instant{Err: fmt.Errorf("%q is not a MySQL date and time", s), Text: s}
	}
	if f.y == 0 || f.mo == 0 || f.d == 0 {
		return event.Instant{Err: event.ZeroDateError(s), Text: s}
	}
	if k == absolute {
		loc = time.UTC
	}
	return event.InstantOf(earliest(f, loc), s)
}

type clock struct{ y, mo, d, h, mi, s, us int }

func parseClock(s string) (clock, bool) {
	var c clock
	num := func(from, n int) (int, bool) {
		if from+n > len(s) {
			return 0, false
		}
		v := 0
		for i := from; i < from+n; i++ {
			ch := s[i]
			if ch < '0' || ch > '9' {
				return 0, false
			}
			v = v*10 + int(ch-'0')
		}
		return v, true
	}
	var ok bool
	if c.y, ok = num(0, 4); !ok || len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return c, false
	}
	if c.mo, ok = num(5, 2); !ok {
		return c, false
	}
	if c.d, ok = num(8, 2); !ok {
		return c, false
	}
	if len(s) == 10 {
		return c, true
	}
	if len(s) < 19 || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return c, false
	}
	if c.h, ok = num(11, 2); !ok {
		return c, false
	}
	if c.mi, ok = num(14, 2); !ok {
		return c, false
	}
	if c.s, ok = num(17, 2); !ok {
		return c, false
	}
	if len(s) == 19 {
		return c, true
	}
	if s[19] != '.' || len(s) > 26 || len(s) == 20 {
		return c, false
	}
	frac, ok := num(20, len(s)-20)
	if !ok {
		return c, false
	}
	for i := len(s) - 20; i < 6; i++ {
		frac *= 10
	}
	c.us = frac
	return c, true
}

// earliest is the instant a wall clock shows in loc; when a
// daylight-saving change makes the wall clock ambiguous it is the earlier
// of the two instants (documented: the first pass through the repeated
// hour), and a wall clock the change skipped is read as Go normalises it
// (an hour later).
func earliest(c clock, loc *time.Location) time.Time {
	t := time.Date(c.y, time.Month(c.mo), c.d, c.h, c.mi, c.s, c.us*1000, loc)
	if loc == time.UTC {
		return t
	}
	wallUTC := time.Date(c.y, time.Month(c.mo), c.d, c.h, c.mi, c.s, c.us*1000, time.UTC)
	best := t
	for _, probe := range []time.Duration{-3 * time.Hour, 3 * time.Hour} {
		_, off := t.Add(probe).Zone()
		cand := wallUTC.Add(-time.Duration(off) * time.Second)
		if cand.Before(best) && sameWall(cand.In(loc), wallUTC) {
			best = cand
		}
	}
	return best
}

func sameWall(t, wallUTC time.Time) bool {
	y, mo, d := t.Date()
	wy, wmo, wd := wallUTC.Date()
	return y == wy && mo == wmo && d == wd && t.Hour() == wallUTC.Hour() && t.Minute() == wallUTC.Minute() &&
		t.Second() == wallUTC.Second() && t.Nanosecond() == wallUTC.Nanosecond()
}
