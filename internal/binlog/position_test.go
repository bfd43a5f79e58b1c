package binlog

import (
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
)

func TestPositionRoundTrip(t *testing.T) {
	for _, p := range []Position{
		{File: "mysql-bin.000001", Pos: 4},
		{File: "binlog.000123", Pos: 4294967295, GTID: "0-1-42,1-7-3"},
		{File: "host:with:colons-bin.000002", Pos: 154, GTID: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,4e11fa47-71ca-11e1-9e33-c80aa9429562:1-3:7"},
	} {
		got, err := ParsePosition(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePosition(%q) = %+v, %v; want %+v", p.String(), got, err, p)
		}
	}
	for _, bad := range []string{"", "binlog.000001", ":4", "binlog.000001:x", "binlog.000001:4294967296"} {
		if _, err := ParsePosition(bad); err == nil {
			t.Errorf("ParsePosition(%q) accepted", bad)
		}
	}
}

func TestBehind(t *testing.T) {
	files := []logFile{{"b.000003", 1000}, {"b.000004", 500}, {"b.000005", 120}}
	for _, c := range []struct {
		p    Position
		n    int64
		held bool
	}{
		{Position{File: "b.000005", Pos: 120}, 0, true},
		{Position{File: "b.000005", Pos: 100}, 20, true},
		{Position{File: "b.000003", Pos: 400}, 600 + 500 + 120, true},
		{Position{File: "b.000002", Pos: 400}, 0, false},
	} {
		n, held := behind(c.p, files)
		if n != c.n || held != c.held {
			t.Errorf("behind(%s) = %d, %v; want %d, %v", c.p, n, held, c.n, c.held)
		}
	}
}

// TestCheckVars reads settings as servers reply to SHOW GLOBAL VARIABLES.
func TestCheckVars(t *testing.T) {
	good := map[string]string{"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL", "version": "8.0.36"}
	if err := checkVars(mysql.MySQLFlavor, good); err != nil {
		t.Errorf("MySQL 8.0 with every setting right: %v", err)
	}
	mariadb := map[string]string{"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL", "version": "10.11.19-MariaDB-0+deb12u1"}
	if err := checkVars(mysql.MariaDBFlavor, mariadb); err != nil {
		t.Errorf("MariaDB 10.11: %v", err)
	}
	for _, c := range []struct {
		name   string
		flavor string
		vars   map[string]string
		want   string
	}{
		{"binlog off", mysql.MySQLFlavor, map[string]string{"log_bin": "OFF", "binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}, "log_bin is OFF"},
		{"statement format", mysql.MariaDBFlavor, map[string]string{"log_bin": "ON", "binlog_format": "MIXED", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}, "set binlog_format=ROW"},
		{"minimal image", mysql.MySQLFlavor, map[string]string{"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "MINIMAL", "binlog_row_metadata": "FULL"}, "set binlog_row_image=FULL"},
		{"minimal metadata", mysql.MySQLFlavor, map[string]string{"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "MINIMAL"}, "set binlog_row_metadata=FULL"},
		{"MySQL 5.7", mysql.MySQLFlavor, map[string]string{"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "version": "5.7.44-log"}, "needs MySQL 8.0 or later"},
		{"MariaDB 10.4", mysql.MariaDBFlavor, map[string]string{"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "version": "10.4.32-MariaDB"}, "needs MariaDB 10.5 or later"},
	} {
		err := checkVars(c.flavor, c.vars)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to say %q", c.name, err, c.want)
		}
	}
}

func TestFlavorOf(t *testing.T) {
	for v, want := range map[string]string{
		"10.11.19-MariaDB-0+deb12u1": mysql.MariaDBFlavor,
		"5.5.5-10.6.12-MariaDB-log":  mysql.MariaDBFlavor,
		"8.0.36":                     mysql.MySQLFlavor,
		"8.4.0-commercial":           mysql.MySQLFlavor,
	} {
		if got := flavorOf(v); got != want {
			t.Errorf("flavorOf(%q) = %s, want %s", v, got, want)
		}
	}
}

// TestMasterStatusMySQL reads SHOW MASTER STATUS as MySQL 8.0 replies with
// GTIDs on (the set wraps lines when long) and off.
func TestMasterStatusMySQL(t *testing.T) {
	rs, err := mysql.BuildSimpleTextResultset([]string{"File", "Position", "Binlog_Do_DB", "Binlog_Ignore_DB", "Executed_Gtid_Set"},
		[][]any{{"binlog.000007", uint64(8642), "", "", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:1-3"}})
	if err != nil {
		t.Fatal(err)
	}
	// What the client decodes from the text rows the server sent.
	rs.FieldNames = map[string]int{}
	for i, f := range rs.Fields {
		rs.FieldNames[string(f.Name)] = i
	}
	for _, rd := range rs.RowDatas {
		vals, err := rd.Parse(rs.Fields, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		rs.Values = append(rs.Values, vals)
	}
	r := &mysql.Result{Resultset: rs}
	p, err := masterStatus(r, true)
	if err != nil {
		t.Fatal(err)
	}
	want := Position{File: "binlog.000007", Pos: 8642, GTID: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77,4e11fa47-71ca-11e1-9e33-c80aa9429562:1-3"}
	if p != want {
		t.Fatalf("masterStatus = %+v, want %+v", p, want)
	}
	if _, err := mysql.ParseGTIDSet(mysql.MySQLFlavor, p.GTID); err != nil {
		t.Fatalf("the position's GTID set does not parse as MySQL's: %v", err)
	}
	if p, err = masterStatus(r, false); err != nil || p.GTID != "" {
		t.Fatalf("GTIDs off: %+v, %v", p, err)
	}
}

func TestMariaDBDomains(t *testing.T) {
	d := mariadbDomains("0-1-42,1-7-3")
	d["1"] = "1-7-4"
	d["2"] = "2-9-1"
	if got := joinDomains(d); got != "0-1-42,1-7-4,2-9-1" {
		t.Fatalf("joinDomains = %q", got)
	}
	if _, err := mysql.ParseGTIDSet(mysql.MariaDBFlavor, "0-1-42,1-7-4,2-9-1"); err != nil {
		t.Fatal(err)
	}
}

// TestInstant reads MySQL's DATETIME and TIMESTAMP text: in the source's
// zone and in UTC, zero dates, and the earlier instant of a wall clock a
// daylight-saving change repeats.
func TestInstant(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	seoul, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		text string
		k    timeKind
		loc  *time.Location
		want string // RFC 3339 UTC, or "error"
	}{
		{"2026-12-06 17:01:02.123456", wall, seoul, "2026-12-06T08:01:02.123456Z"},
		{"2026-12-06 17:01:02.123456", absolute, seoul, "2026-12-06T17:01:02.123456Z"},
		{"2026-12-06 17:01:02", wall, time.UTC, "2026-12-06T17:01:02Z"},
		{"2026-12-06 17:01:02.5", wall, time.UTC, "2026-12-06T17:01:02.5Z"},
		{"2026-12-06", wall, seoul, "2026-12-05T15:00:00Z"},
		// 2026-11-01 01:30 happens twice in New York: EDT (05:30Z), then EST (06:30Z).
		{"2026-11-01 01:30:00", wall, ny, "2026-11-01T05:30:00Z"},
		{"2026-11-01 00:59:59", wall, ny, "2026-11-01T04:59:59Z"},
		{"2026-11-01 02:00:00", wall, ny, "2026-11-01T07:00:00Z"},
		{"0000-00-00 00:00:00", wall, time.UTC, "error"},
		{"2026-00-06 00:00:00", wall, time.UTC, "error"},
		{"2026-12-06T17:01:02", wall, time.UTC, "error"},
		{"2026-12-06 17:01:02.", wall, time.UTC, "error"},
	} {
		got := instant(c.text, c.k, c.loc)
		if c.want == "error" {
			if got.Err == nil {
				t.Errorf("instant(%q) = %v, want an error", c.text, time.UnixMicro(got.US).UTC())
			}
			continue
		}
		if got.Err != nil || time.UnixMicro(got.US).UTC().Format(time.RFC3339Nano) != c.want || got.Text != c.text {
			t.Errorf("instant(%q, %v, %s) = %s (%v), want %s", c.text, c.k, c.loc, time.UnixMicro(got.US).UTC().Format(time.RFC3339Nano), got.Err, c.want)
		}
	}
}

func TestMariadbGTIDText(t *testing.T) {
	for _, g := range []mysql.MariadbGTID{{}, {DomainID: 1, ServerID: 2, SequenceNumber: 3}, {DomainID: 4294967295, ServerID: 4294967295, SequenceNumber: 18446744073709551615}} {
		if got, want := mariadbGTID(g), g.String(); got != want {
			t.Errorf("mariadbGTID(%+v) = %q, want %q", g, got, want)
		}
	}
}

func TestBusyTick(t *testing.T) {
	// 100 transactions a second are 5 in a 50 ms tick (200 ms beating 4
	// times as often under load), 50 in a 500 ms one.
	for _, c := range []struct {
		txns int64
		tick time.Duration
		want bool
	}{
		{0, 50 * time.Millisecond, false},
		{4, 50 * time.Millisecond, false},
		{5, 50 * time.Millisecond, true},
		{100, 50 * time.Millisecond, true},
		{49, 500 * time.Millisecond, false},
		{50, 500 * time.Millisecond, true},
	} {
		if got := busyTick(c.txns, c.tick); got != c.want {
			t.Errorf("busyTick(%d, %s) = %v, want %v", c.txns, c.tick, got, c.want)
		}
	}
}
