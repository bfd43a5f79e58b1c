package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/mysqltest"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/dashboard"
)

// myRow reads the first row of q as strings.
func myRow(t *testing.T, conn *client.Conn, q string) []string {
	t.Helper()
	r, err := conn.Execute(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if r.RowNumber() == 0 {
		t.Fatalf("%s: no row", q)
	}
	out := make([]string, r.ColumnNumber())
	for i := range out {
		out[i], _ = r.GetString(0, i)
	}
	return out
}

// TestSimCommandsMySQL: sim history writes into MariaDB the rows it writes
// into PostgreSQL with the same flags, as wall clocks in --time-zone, which
// sim_meta records and riskwatch is warned to read them in; live continues
// in that zone and refuses another; --time-zone is refused for
// PostgreSQL.
func TestSimCommandsMySQL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg := cluster.NewDB(t)
	my := mariaDB(t).NewDB(t)
	now := time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
	flags := []string{"--days", "2", "--payments-per-day", "20000", "--merchants", "2000", "--now", now}

	if _, _, err := runCLI(ctx, "sim", "history", "--dsn", pg, "--time-zone", "UTC"); err == nil || !strings.Contains(err.Error(), "MySQL") {
		t.Fatalf("--time-zone with a PostgreSQL source: %v", err)
	}
	if _, _, err := runCLI(ctx, "sim", "history", "--dsn", my, "--time-zone", "Mars/Olympus"); err == nil || !strings.Contains(err.Error(), "--time-zone") {
		t.Fatalf("an unknown --time-zone: %v", err)
	}
	truth := filepath.Join(t.TempDir(), "truth.json")
	out, errOut, err := runCLI(ctx, append([]string{"sim", "history", "--dsn", my, "--time-zone", "Asia/Seoul", "--truth", truth}, flags...)...)
	if err != nil {
		t.Fatalf("sim history into MariaDB: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "loaded ") || !strings.Contains(out, "ground truth written") {
		t.Fatalf("sim history said:\n%s", out)
	}
	// riskwatch's default source.time_zone is UTC.
	if !strings.Contains(errOut, "source.time_zone=UTC simulation=Asia/Seoul") {
		t.Errorf("no warning that riskwatch would read the times in UTC:\n%s", errOut)
	}
	if _, err := os.Stat(truth); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := runCLI(ctx, append([]string{"sim", "history", "--dsn", pg}, flags...)...); err != nil {
		t.Fatalf("sim history into PostgreSQL: %v\n%s", err, errOut)
	}

	conn := mysqltest.Connect(t, my)
	const myTotals = `SELECT (SELECT COUNT(*) FROM merchants), COUNT(*), SUM(amount), SUM(id % 1000003),
		DATE_FORMAT(MIN(approved_at), '%Y-%m-%d %H:%i:%s.%f'), DATE_FORMAT(MAX(approved_at), '%Y-%m-%d %H:%i:%s.%f'),
		(SELECT COUNT(*) FROM payment_cancels), (SELECT SUM(cancel_amount) FROM payment_cancels) FROM payments`
	const pgTotals = `SELECT (SELECT count(*) FROM merchants)::text, count(*)::text, sum(amount)::text, sum(id % 1000003)::text,
		to_char(min(approved_at) AT TIME ZONE 'Asia/Seoul', 'YYYY-MM-DD HH24:MI:SS.US'), to_char(max(approved_at) AT TIME ZONE 'Asia/Seoul', 'YYYY-MM-DD HH24:MI:SS.US'),
		(SELECT count(*) FROM payment_cancels)::text, (SELECT sum(cancel_amount) FROM payment_cancels)::text FROM payments`
	got := myRow(t, conn, myTotals)
	want := make([]string, len(got))
	ptrs := make([]any, len(want))
	for i := range want {
		ptrs[i] = &want[i]
	}
	if err := mustPool(t, pg).QueryRow(ctx, pgTotals).Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("merchants, payments, amount, ids, first and last time, cancels, canceled amount:\nMariaDB    %v\nPostgreSQL %v", got, want)
	}
	meta := myRow(t, conn, `SELECT time_zone, written_until FROM sim_meta`)
	if meta[0] != "Asia/Seoul" {
		t.Errorf("sim_meta.time_zone %q", meta[0])
	}

	if _, _, err := runCLI(ctx, "sim", "history", "--dsn", my, "--time-zone", "UTC"); err == nil || !strings.Contains(err.Error(), "Asia/Seoul") {
		t.Errorf("history again in another zone: %v", err)
	}
	if _, _, err := runCLI(ctx, "sim", "live", "--dsn", my, "--time-zone", "UTC", "--for", "1s"); err == nil || !strings.Contains(err.Error(), "Asia/Seoul") {
		t.Errorf("live in another zone: %v", err)
	}
	out, errOut, err = runCLI(ctx, "sim", "live", "--dsn", my, "--tps", "100", "--burst-tps", "-1", "--for", "3s")
	if err != nil || !strings.Contains(out, "payments/s achieved") {
		t.Fatalf("sim live: %v\n%s%s", err, out, errOut)
	}
	after := myRow(t, conn, `SELECT COUNT(*), (SELECT written_until FROM sim_meta) FROM payments`)
	// 100 TPS for 3 s, plus the generated traffic of the seconds between
	// history and live.
	before, _ := strconv.Atoi(got[1])
	if n, _ := strconv.Atoi(after[0]); n-before < 200 || n-before > 450 {
		t.Errorf("live added %d payments in 3 s at 100 TPS", n-before)
	}
	if after[1] <= meta[1] {
		t.Errorf("written_until %s after live, %s before", after[1], meta[1])
	}
	checkMerchantNamesFrom(t, my, got[0])
}

// checkMerchantNamesFrom: runMerchantNames, configured by default
// (public.merchants), copies the names of the MySQL source's merchants
// into the sink.
func checkMerchantNamesFrom(t *testing.T, my, merchants string) {
	t.Helper()
	sink := cluster.NewDB(t)
	cfg, err := config.Load("", func(k string) string {
		return map[string]string{config.EnvSourceDSN: my, config.EnvSinkDSN: sink}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, sink, cfg.Sink.Schema, cfg.Location)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- runMerchantNames(ctx, cfg, st, slog.New(slog.NewTextHandler(&logs, nil))) }()
	var names map[int64]string
	var runErr error
	ended := false
	for !ended && ctx.Err() == nil {
		if names, err = dashboard.New(st).AllMerchantNames(ctx); err == nil && fmt.Sprint(len(names)) == merchants {
			break
		}
		select {
		case runErr = <-done:
			ended = true // it gave up: the names are what it copied
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	if !ended {
		runErr = <-done
	}
	if err := runErr; err != nil {
		t.Fatalf("runMerchantNames: %v\n%s", err, logs.String())
	}
	if fmt.Sprint(len(names)) != merchants || !strings.Contains(names[1], "#00001") {
		t.Fatalf("%d names in the sink (merchant 1: %q), want %s\n%s", len(names), names[1], merchants, logs.String())
	}
}

func TestOffsetChanges(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		zone     string
		from, to string
		want     bool
	}{
		{"Asia/Seoul", "2026-10-25T00:00:00Z", "2026-11-05T00:00:00Z", false},
		{"UTC", "2026-03-01T00:00:00Z", "2026-12-01T00:00:00Z", false},
		// New York falls back at 06:00 UTC on 1 November 2026.
		{"America/New_York", "2026-10-25T00:00:00Z", "2026-11-05T00:00:00Z", true},
		{"America/New_York", "2026-10-25T00:00:00Z", "2026-11-01T05:59:00Z", false},
		{"America/New_York", "2026-10-25T00:00:00Z", "2026-11-01T06:00:00Z", true},
	} {
		loc, err := time.LoadLocation(c.zone)
		if err != nil {
			t.Fatal(err)
		}
		from, _ := time.Parse(time.RFC3339, c.from)
		to, _ := time.Parse(time.RFC3339, c.to)
		if got := offsetChanges(loc, from, to); got != c.want {
			t.Errorf("offsetChanges(%s, %s, %s) = %v, want %v", c.zone, c.from, c.to, got, c.want)
		}
	}
}
