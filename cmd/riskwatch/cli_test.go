package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitReady polls /readyz until it answers 200.
func waitReady(t *testing.T, ch *child, timeout time.Duration) string {
	t.Helper()
	addr := ch.httpAddr(t, timeout)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("engine never became ready:\n%s", ch.stderr.String())
	return ""
}

// TestExportMinutesCSV checks the export format against numbers worked out
// by hand.
func TestExportMinutesCSV(t *testing.T) {
	t.Parallel()
	c := newCLIEnv(t)
	cfg := c.writeConfig("")
	ch := startChild(t, "run", "--config", cfg)
	waitReady(t, ch, 60*time.Second)
	// A minute ten minutes ago, so that it is within retention and closed.
	m0 := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	c.exec(`INSERT INTO payments VALUES
		(1, 5, 1000, 'approved', $1::timestamptz + interval '10 seconds'),
		(2, 5, 2500, 'approved', $1::timestamptz + interval '59.999 seconds'),
		(3, 3, 7,    'approved', $1::timestamptz + interval '70 seconds'),
		(4, 5, 9,    'approved', $1::timestamptz + interval '5 minutes')`, m0)
	c.exec(`INSERT INTO payment_cancels VALUES (10, 1, 5, 500, $1::timestamptz + interval '30 seconds')`, m0)
	c.waitSink(c.walLSN(), 30*time.Second, ch)
	out, errOut, err := runCLI(context.Background(), "export", "minutes", "--config", cfg,
		"--from", m0.Format(time.RFC3339), "--to", m0.Add(5*time.Minute).Format(time.RFC3339))
	if err != nil {
		t.Fatalf("export: %v\n%s", err, errOut)
	}
	// Merchant 3 sorts first. Merchant 5's minute m0 has two approvals
	// (1000 + 2500) and a 500 partial cancel; the approval at m0+5m is
	// outside [from, to).
	want := "merchant_id,minute,approvals,approved_amount,cancels,canceled_amount\n" +
		fmt.Sprintf("3,%s,1,7,0,0\n", m0.Add(time.Minute).Format(time.RFC3339)) +
		fmt.Sprintf("5,%s,2,3500,1,500\n", m0.Format(time.RFC3339))
	if out != want {
		t.Fatalf("export:\n%s\nwant:\n%s", out, want)
	}
	// The same range with a date: --from as a business-time-zone date.
	_, _, err = runCLI(context.Background(), "export", "minutes", "--config", cfg, "--from", "2026-13-01", "--to", "x")
	if err == nil || !strings.Contains(err.Error(), "--from") {
		t.Fatalf("bad --from: err = %v", err)
	}
}

// TestSlotStatusDropAndRebootstrap: the operator sees the slot, cannot drop
// it under a running engine, can after a graceful stop, and the next run
// rebuilds the sink from a new snapshot that still matches the source.
func TestSlotStatusDropAndRebootstrap(t *testing.T) {
	t.Parallel()
	c := newCLIEnv(t)
	c.exec(`INSERT INTO payments SELECT nextval('ids'), 1 + g % 20, g, 'approved', now() - g * interval '1 minute' FROM generate_series(1, 2000) g`)
	cfg := c.writeConfig("")
	ch := startChild(t, "run", "--config", cfg)
	waitReady(t, ch, 60*time.Second)
	c.waitSink(c.walLSN(), 30*time.Second, ch)

	out, errOut, err := runCLI(context.Background(), "slot", "status", "--config", cfg)
	if err != nil {
		t.Fatalf("slot status: %v\n%s", err, errOut)
	}
	for _, want := range []string{"slot", c.slot, "pgoutput", "active", "true", "confirmed_flush_lsn", "sink_checkpoint_lsn", "last_closed_minute"} {
		if !strings.Contains(out, want) {
			t.Fatalf("slot status lacks %q:\n%s", want, out)
		}
	}
	if _, _, err := runCLI(context.Background(), "slot", "drop", "--config", cfg); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("drop under a running engine: err = %v", err)
	}
	// A graceful stop: SIGTERM, exit 0.
	if err := ch.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ch.exited:
		ch.exited <- nil
		if err != nil {
			t.Fatalf("engine exit after SIGTERM: %v\n%s", err, ch.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("engine did not stop on SIGTERM")
	}
	if !strings.Contains(ch.stderr.String(), "riskwatch stopped") {
		t.Fatalf("no clean stop in the log:\n%s", ch.stderr.String())
	}
	if out, errOut, err := runCLI(context.Background(), "slot", "drop", "--config", cfg); err != nil || !strings.Contains(out, "dropped") {
		t.Fatalf("slot drop: %v %s %s", err, out, errOut)
	}
	out, _, err = runCLI(context.Background(), "slot", "status", "--config", cfg)
	if err != nil || !strings.Contains(out, "exists") || !strings.Contains(out, "no") {
		t.Fatalf("status after drop: %v\n%s", err, out)
	}
	// Changes while no slot exists are in no stream; the next run must
	// rebuild from a snapshot and still match.
	c.exec(`INSERT INTO payments VALUES (nextval('ids'), 7, 123456, 'approved', now())`)
	ch2 := startChild(t, "run", "--config", cfg)
	waitReady(t, ch2, 60*time.Second)
	c.waitSink(c.walLSN(), 30*time.Second, ch2)
	if !strings.Contains(ch2.stderr.String(), "replication slot is gone") {
		t.Fatalf("no re-bootstrap warning:\n%s", ch2.stderr.String())
	}
	from, to := time.Now().Add(-7*24*time.Hour).Truncate(time.Minute), time.Now().Add(time.Hour)
	got, _, err := runCLI(context.Background(), "export", "minutes", "--config", cfg, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339))
	if err != nil {
		t.Fatal(err)
	}
	if want := c.sourceCSV(from, to); got != want {
		t.Fatalf("after re-bootstrap: %s", firstDiff(got, want))
	}
}

// TestHTTPEndpoints: liveness, readiness with the pipeline's state, and the
// metrics the issue names.
func TestHTTPEndpoints(t *testing.T) {
	t.Parallel()
	c := newCLIEnv(t)
	ch := startChild(t, "run", "--config", c.writeConfig(""))
	addr := waitReady(t, ch, 60*time.Second)
	c.exec(`INSERT INTO payments VALUES (1, 1, 10, 'approved', now())`)
	c.waitSink(c.walLSN(), 30*time.Second, ch)
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", err, resp)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready struct {
		Ready  bool           `json:"ready"`
		Status map[string]any `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ready); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !ready.Ready || ready.Status["last_closed_minute"] == nil || ready.Status["lag_bytes"] == nil {
		t.Fatalf("readyz = %+v", ready)
	}
	m := scrape(t, "http://"+addr+"/metrics")
	for _, name := range []string{
		`riskwatch_events_total{kind="approval"} 1`, `riskwatch_events_total{kind="cancel"} 0`,
		"riskwatch_late_events_total", `riskwatch_dead_letters_total{reason="future_time"} 0`,
		"riskwatch_replication_lag_bytes", "riskwatch_replication_lag_seconds",
		"riskwatch_last_closed_minute_timestamp_seconds", "riskwatch_commit_to_aggregate_seconds_bucket",
		"riskwatch_ready 1", "go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(m, name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
}

// TestPasswordNeverLogged: a DSN password appears in no log line or error,
// whether the connection works or not.
func TestPasswordNeverLogged(t *testing.T) {
	t.Parallel()
	c := newCLIEnv(t)
	const secret = "Sup3rS3cretPw"
	// The test cluster trusts local connections, so the password is sent
	// but not needed.
	withPW := strings.Replace(c.dsn, "postgres@", "postgres:"+secret+"@", 1)
	cfg := filepath.Join(c.dir, "pw.yaml")
	body := fmt.Sprintf("source:\n  dsn: %q\n  slot: %s\n  publication: %s\nhttp:\n  listen: 127.0.0.1:0\nlog:\n  level: debug\n", withPW, c.slot, c.slot)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ch := startChild(t, "run", "--config", cfg)
	waitReady(t, ch, 60*time.Second)
	ch.kill(t)
	if logs := ch.stderr.String(); strings.Contains(logs, secret) || !strings.Contains(logs, "xxxxx") {
		t.Fatalf("log shows the password or no redacted DSN:\n%s", logs)
	}
	// Unreachable server: the connection error must not carry it either.
	bad := filepath.Join(c.dir, "bad.yaml")
	body = fmt.Sprintf("source:\n  dsn: \"postgres://u:%s@127.0.0.1:1/db?connect_timeout=2\"\nhttp:\n  listen: 127.0.0.1:0\n", secret)
	if err := os.WriteFile(bad, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, errOut, err := runCLI(ctx, "migrate", "--config", bad)
	if err == nil {
		t.Fatal("migrate against a closed port succeeded")
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(errOut, secret) {
		t.Fatalf("error shows the password: %v %s", err, errOut)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, yaml, want string
	}{
		{"bad retention", "source: {dsn: 'postgres://h/db'}\nretention: 30m\n", "retention"},
		{"bad grace", "source: {dsn: 'postgres://h/db'}\ngrace: 2m\n", "grace"},
		{"unknown key", "source: {dsn: 'postgres://h/db'}\ngarce: 1s\n", "garce"},
		{"bad zone", "source: {dsn: 'postgres://h/db'}\nbusiness_timezone: Mars/Olympus\n", "business_timezone"},
		{"missing dsn", "grace: 1s\n", "source.dsn"},
		{"bad kind", "source: {dsn: 'postgres://h/db'}\nmapping: [{table: t, kind: refund, merchant: m, amount: a, time: x}]\n", "mapping[0].kind"},
		{"bad listen", "source: {dsn: 'postgres://h/db'}\nhttp: {listen: 'nope'}\n", "http.listen"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := runCLI(context.Background(), "run", "--config", p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %q", err, tc.want)
			}
		})
	}
	if _, _, err := runCLI(context.Background(), "run", "--config", filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file: %v", err)
	}
	if _, _, err := runCLI(context.Background(), "frobnicate"); err == nil {
		t.Fatal("unknown command accepted")
	}
	out, _, err := runCLI(context.Background(), "version")
	if err != nil || !strings.HasPrefix(out, "riskwatch ") {
		t.Fatalf("version: %q %v", out, err)
	}
}
