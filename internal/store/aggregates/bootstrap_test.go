package aggregates

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/window"
)

// byteWriter hands w one byte per Write, the worst a producer can do to the
// loader's line splitting.
type byteWriter struct{ w io.Writer }

func (b byteWriter) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := b.w.Write(p[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

// TestBootstrapRollupsHalfHourZone: the hourly, daily and platform rollups
// summed while the minutes stream in, in a zone whose hours are not UTC's
// (India, +05:30), with two business days in two chunks written a byte at
// a time. Expected values worked out by hand.
func TestBootstrapRollupsHalfHourZone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, kolkata)
	chunks := []string{
		// 18:00 and 18:29 UTC are 23:30 and 23:59 in India on the 25th:
		// the hour from 17:30 UTC, the day 2026-11-25.
		"1\t2026-11-25 18:00:00+00\t1\t100\t0\t0\n" +
			"1\t2026-11-25 18:29:00+00\t2\t250\t1\t50\n" +
			"2\t2026-11-25 18:29:00+00\t0\t0\t2\t70\n",
		// 18:30 UTC is midnight in India: the 26th's first hour. Another
		// form PostgreSQL may print a timestamptz in goes the slow way.
		"1\t2026-11-25 18:30:00+00\t4\t400\t0\t0\n" +
			"2\t2026-11-26 00:00:00.000000+05:30\t1\t10\t0\t0\n",
	}
	cp := Checkpoint{Slot: "k", Position: "0/1", LastClosed: minute(t, "2026-11-25T18:30:00Z"), Progress: time.Date(2026, 11, 25, 18, 31, 2, 0, time.UTC)}
	var steps []string
	err = s.Bootstrap(ctx, cp, func(ctx context.Context, l *Loader) error {
		for _, c := range chunks {
			if _, err := l.CopyMinutes(ctx, func(w *MinuteWriter) error {
				_, err := io.WriteString(byteWriter{w}, c)
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	}, func(step string, took time.Duration) { steps = append(steps, step) })
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) == 0 || steps[0] != "writing platform minutes" {
		t.Fatalf("steps reported: %v", steps)
	}
	type row struct {
		merchant int64
		bucket   string
		agg      window.Agg
	}
	read := func(q string) []row {
		t.Helper()
		rows, err := s.db.Pool().Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.merchant, &r.bucket, &r.agg.Approvals, &r.agg.ApprovedAmount, &r.agg.Cancels, &r.agg.CanceledAmount); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	check := func(what string, got, want []row) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %+v, want %+v", what, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s row %d: %+v, want %+v", what, i, got[i], want[i])
			}
		}
	}
	check("hours", read(`SELECT merchant_id, to_char(hour AT TIME ZONE 'UTC', 'MM-DD HH24:MI'), approvals, approved_amount, cancels, canceled_amount
		FROM rw_sink.hour_agg ORDER BY 1, 2`), []row{
		{1, "11-25 17:30", window.Agg{Approvals: 3, ApprovedAmount: 350, Cancels: 1, CanceledAmount: 50}},
		{1, "11-25 18:30", window.Agg{Approvals: 4, ApprovedAmount: 400}},
		{2, "11-25 17:30", window.Agg{Cancels: 2, CanceledAmount: 70}},
		// 00:00 on the 26th in India is 18:30 UTC on the 25th.
		{2, "11-25 18:30", window.Agg{Approvals: 1, ApprovedAmount: 10}},
	})
	check("days", read(`SELECT merchant_id, day::text, approvals, approved_amount, cancels, canceled_amount FROM rw_sink.day_agg ORDER BY 1, 2`), []row{
		{1, "2026-11-25", window.Agg{Approvals: 3, ApprovedAmount: 350, Cancels: 1, CanceledAmount: 50}},
		{1, "2026-11-26", window.Agg{Approvals: 4, ApprovedAmount: 400}},
		{2, "2026-11-25", window.Agg{Cancels: 2, CanceledAmount: 70}},
		{2, "2026-11-26", window.Agg{Approvals: 1, ApprovedAmount: 10}},
	})
	check("platform", read(`SELECT 0, to_char(minute AT TIME ZONE 'UTC', 'MM-DD HH24:MI'), approvals, approved_amount, cancels, canceled_amount
		FROM rw_sink.platform_minute ORDER BY 2`), []row{
		{0, "11-25 18:00", window.Agg{Approvals: 1, ApprovedAmount: 100}},
		{0, "11-25 18:29", window.Agg{Approvals: 2, ApprovedAmount: 250, Cancels: 3, CanceledAmount: 120}},
		{0, "11-25 18:30", window.Agg{Approvals: 5, ApprovedAmount: 410}},
	})
	// The primary keys are back after the load.
	var pkeys int
	if err := s.db.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND conrelid IN
		('rw_sink.minute_agg'::regclass, 'rw_sink.hour_agg'::regclass, 'rw_sink.day_agg'::regclass)`).Scan(&pkeys); err != nil || pkeys != 3 {
		t.Fatalf("primary keys after bootstrap: %d, %v", pkeys, err)
	}
}

// TestBootstrapRejectsBadChunks: one business day split over two calls
// would write its daily rollup twice; a malformed row names itself. Both
// fail the whole bootstrap.
func TestBootstrapRejectsBadChunks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	cp := Checkpoint{Slot: "b", Position: "0/1", LastClosed: minute(t, "2026-11-25T15:00:00Z"), Progress: time.Date(2026, 11, 25, 15, 1, 2, 0, time.UTC)}
	for name, tc := range map[string]struct {
		chunks []string
		want   string
	}{
		// 01:00 and 02:00 UTC are both on the 25th in Seoul.
		"day split": {[]string{"1\t2026-11-25 01:00:00+00\t1\t1\t0\t0\n", "1\t2026-11-25 02:00:00+00\t1\t1\t0\t0\n"}, "business day 2026-11-25 came in two chunks"},
		"bad count": {[]string{"1\t2026-11-25 01:00:00+00\t1\t1\t0\t0\n1\t2026-11-25 01:01:00+00\tx\t1\t0\t0\n"}, "minute row 2 column 3"},
		"bad time":  {[]string{"1\tyesterday\t1\t1\t0\t0\n"}, `minute "yesterday" is not a timestamp`},
		"columns":   {[]string{"1\t2026-11-25 01:00:00+00\t1\t1\t0\n"}, "fewer than 6 columns"},
		"no eol":    {[]string{"1\t2026-11-25 01:00:00+00\t1\t1\t0\t0"}, "no end of line"},
	} {
		err := s.Bootstrap(ctx, cp, func(ctx context.Context, l *Loader) error {
			for _, c := range tc.chunks {
				if _, err := l.CopyMinutes(ctx, func(w *MinuteWriter) error {
					_, err := io.WriteString(w, c)
					return err
				}); err != nil {
					return err
				}
			}
			return nil
		}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
	if _, err := s.Checkpoint(ctx, "b"); err == nil {
		t.Fatal("a failed bootstrap left a checkpoint")
	}
}

// TestMinuteWriterLeavesOutOverflow: rows whose sums would not fit the sink
// (an amount past int64, a count past the minute table's integer, a day
// whose sum would pass int64) are not passed through but listed, whatever
// the writes' sizes; the others pass through byte for byte, and only they
// are in the rollups.
func TestMinuteWriterLeavesOutOverflow(t *testing.T) {
	const big = "9223372036854775807"
	rows := []string{
		"1\t2026-11-25 10:00:00+00\t1\t100\t0\t0\n",
		"2\t2026-11-25 10:00:00+00\t2\t18446744073709551614\t0\t0\n", // amount sum past int64
		"3\t2026-11-25 10:00:00+00\t1\t5\t2147483648\t7\n",           // count past integer
		"4\t2026-11-25 10:03:00+00\t1\t" + big + "\t0\t0\n",
		"4\t2026-11-25 10:04:00+00\t1\t1\t0\t0\n", // 4's hour and day would pass int64
		"5\t2026-11-25 10:02:00+00\t0\t0\t1\t9\n",
	}
	input := strings.Join(rows, "")
	want := rows[0] + rows[3] + rows[5]
	for _, size := range []int{1, 2, 7, 40, len(input)} {
		var out strings.Builder
		roll := newRollups(window.NewCalendar(time.UTC))
		tp := &MinuteWriter{w: &out, roll: roll}
		for i := 0; i < len(input); i += size {
			if _, err := tp.Write([]byte(input[i:min(i+size, len(input))])); err != nil {
				t.Fatal(err)
			}
		}
		if err := tp.finish(); err != nil {
			t.Fatal(err)
		}
		if out.String() != want {
			t.Errorf("writes of %d bytes passed through\n%q\nwant\n%q", size, out.String(), want)
		}
		ten := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
		wantOver := []window.Key{{Merchant: 2, Minute: window.MinuteOf(ten)}, {Merchant: 3, Minute: window.MinuteOf(ten)}, {Merchant: 4, Minute: window.MinuteOf(ten.Add(4 * time.Minute))}}
		if fmt.Sprint(roll.overflow) != fmt.Sprint(wantOver) {
			t.Errorf("writes of %d bytes: overflow %v, want %v", size, roll.overflow, wantOver)
		}
		if got := roll.platform.find(ten.Unix()); got == nil || *got != (window.Agg{Approvals: 1, ApprovedAmount: 100}) {
			t.Errorf("platform 10:00 = %+v, want merchant 1's row alone", got)
		}
		if got := roll.days[time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC).Unix()].find(4); got == nil || got.ApprovedAmount != math.MaxInt64 || got.Approvals != 1 {
			t.Errorf("merchant 4's day = %+v, want the one row that fits", got)
		}
	}
}

// TestMinuteWriterSums gives the rows of the test above as numbers, as a
// snapshot that sums its own rows does (the amount past int64 as the
// source's Overflow): the rows passed through (as COPY binary, decoded
// here), the rollups and the merchant-minutes left out are the same as
// from the text.
func TestMinuteWriterSums(t *testing.T) {
	ten := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	at := func(d int) window.Minute { return window.MinuteOf(ten.Add(time.Duration(d) * time.Minute)) }
	var out strings.Builder
	roll := newRollups(window.NewCalendar(time.UTC))
	mw := &MinuteWriter{w: &out, roll: roll}
	for _, r := range []struct {
		merchant int64
		minute   window.Minute
		a        window.Agg
	}{
		{1, at(0), window.Agg{Approvals: 1, ApprovedAmount: 100}},
		{3, at(0), window.Agg{Approvals: 1, ApprovedAmount: 5, Cancels: 2147483648, CanceledAmount: 7}},
		{4, at(3), window.Agg{Approvals: 1, ApprovedAmount: math.MaxInt64}},
		{4, at(4), window.Agg{Approvals: 1, ApprovedAmount: 1}},
		{5, at(2), window.Agg{Cancels: 1, CanceledAmount: 9}},
	} {
		if r.merchant == 3 {
			mw.Overflow(2, at(0)) // its amount's sum, 18446744073709551614
		}
		if err := mw.Sums(r.merchant, r.minute, r.a); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.finish(); err != nil {
		t.Fatal(err)
	}
	want := "1\t2026-11-25 10:00:00+00\t1\t100\t0\t0\n" +
		"4\t2026-11-25 10:03:00+00\t1\t9223372036854775807\t0\t0\n" +
		"5\t2026-11-25 10:02:00+00\t0\t0\t1\t9\n"
	if got := copyBinaryText(t, out.String()); got != want {
		t.Errorf("passed through\n%q\nwant\n%q", got, want)
	}
	wantOver := []window.Key{{Merchant: 2, Minute: at(0)}, {Merchant: 3, Minute: at(0)}, {Merchant: 4, Minute: at(4)}}
	if fmt.Sprint(roll.overflow) != fmt.Sprint(wantOver) {
		t.Errorf("overflow %v, want %v", roll.overflow, wantOver)
	}
	if got := roll.platform.find(ten.Unix()); got == nil || *got != (window.Agg{Approvals: 1, ApprovedAmount: 100}) {
		t.Errorf("platform 10:00 = %+v, want merchant 1's row alone", got)
	}
	if got := roll.hours[ten.Unix()].find(5); got == nil || *got != (window.Agg{Cancels: 1, CanceledAmount: 9}) {
		t.Errorf("merchant 5's hour = %+v, want its one row", got)
	}
	// One call's rows are all text or all sums.
	if _, err := mw.Write([]byte("6\t2026-11-25 10:05:00+00\t1\t1\t0\t0\n")); err == nil {
		t.Error("text rows after sums were taken")
	}
	text := &MinuteWriter{w: &out, roll: roll}
	if _, err := text.Write([]byte("6\t2026-11-25 10:05:00+00\t1\t1\t0\t0\n")); err != nil {
		t.Fatal(err)
	}
	if err := text.Sums(7, at(5), window.Agg{Approvals: 1, ApprovedAmount: 1}); err == nil {
		t.Error("sums after text rows were taken")
	}
}

// copyBinaryText decodes minute rows in COPY binary (int8, timestamptz,
// int4, int8, int4, int8) into COPY text.
func copyBinaryText(t *testing.T, in string) string {
	t.Helper()
	b := []byte(in)
	if len(b) < 19 || string(b[:11]) != "PGCOPY\n\xff\r\n\x00" {
		t.Fatalf("no COPY binary signature: %q", in)
	}
	b = b[19:]
	be := binary.BigEndian
	var out strings.Builder
	for {
		n := int16(be.Uint16(b))
		b = b[2:]
		if n == -1 {
			if len(b) != 0 {
				t.Fatalf("%d bytes after the trailer", len(b))
			}
			return out.String()
		}
		if n != 6 {
			t.Fatalf("a row of %d fields", n)
		}
		var v [6]int64
		for i, size := range [6]uint32{8, 8, 4, 8, 4, 8} {
			if got := be.Uint32(b); got != size {
				t.Fatalf("field %d is %d bytes, want %d", i, got, size)
			}
			if size == 8 {
				v[i] = int64(be.Uint64(b[4:]))
			} else {
				v[i] = int64(int32(be.Uint32(b[4:])))
			}
			b = b[4+size:]
		}
		at := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(v[1]) * time.Microsecond)
		fmt.Fprintf(&out, "%d\t%s\t%d\t%d\t%d\t%d\n", v[0], at.Format("2006-01-02 15:04:05+00"), v[2], v[3], v[4], v[5])
	}
}
