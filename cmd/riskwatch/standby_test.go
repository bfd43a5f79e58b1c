package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// runStatus is what /readyz and /api/status say of a run process's role.
type runStatus struct {
	ready bool
	role  string
	// holder is the lease's holder as the process saw it last.
	holder     string
	lastClosed *time.Time
}

func statusOf(t *testing.T, addr string) (runStatus, error) {
	t.Helper()
	var st runStatus
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return st, err
	}
	var rz struct {
		Ready  bool           `json:"ready"`
		Status map[string]any `json:"status"`
	}
	err = json.NewDecoder(resp.Body).Decode(&rz)
	resp.Body.Close()
	if err != nil {
		return st, err
	}
	if rz.Ready != (resp.StatusCode == http.StatusOK) {
		t.Fatalf("/readyz: ready %v with status %d", rz.Ready, resp.StatusCode)
	}
	st.ready = rz.Ready
	role, _ := rz.Status["role"].(string)
	resp, err = http.Get("http://" + addr + "/api/status")
	if err != nil {
		return st, err
	}
	var as struct {
		Role  string `json:"role"`
		Lease struct {
			Holder string `json:"holder"`
		} `json:"lease"`
		LastClosed *time.Time `json:"last_closed_minute"`
	}
	err = json.NewDecoder(resp.Body).Decode(&as)
	resp.Body.Close()
	if err != nil {
		return st, err
	}
	if as.Role != role {
		// The two reads are a moment apart; a takeover may fall between.
		return st, fmt.Errorf("/readyz says %q, /api/status %q", role, as.Role)
	}
	st.role, st.holder, st.lastClosed = as.Role, as.Lease.Holder, as.LastClosed
	return st, nil
}

// waitStatus polls addr until ok accepts its status and returns how long
// that took.
func waitStatus(t *testing.T, ch *child, addr, what string, timeout time.Duration, ok func(runStatus) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		st, err := statusOf(t, addr)
		if err == nil && ok(st) {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s (last %+v, %v)\n%s", what, timeout, st, err, ch.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitDelivered waits until no notification is pending in the outbox.
func (c *cliEnv) waitDelivered(ch *child) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.count(`SELECT count(*) FROM riskwatch.deliveries WHERE status <> 'delivered'`) > 0 {
		if time.Now().After(deadline) {
			c.t.Fatalf("deliveries still pending:\n%s", ch.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *cliEnv) count(sql string, args ...any) int64 {
	c.t.Helper()
	var n int64
	if err := c.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		c.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestStandbyTakesOver: two run processes on one sink under load with a
// webhook receiver. The standby serves its status from the sink, reads
// nothing and sends nothing. The active one is paused (SIGSTOP: its
// sessions stay open, as after a network loss) and the standby takes over
// within the lease and a renew interval, ending the paused one's walsender,
// which the server would keep for wal_sender_timeout (60s); resumed, the
// old one finds itself superseded and waits as a standby. The new active
// one is killed with SIGKILL and the first takes over within 15 s.
// Afterwards the minutes equal the source's GROUP BY line for line, every
// alert raised was delivered, and the receiver saw each idempotency key
// once.
func TestStandbyTakesOver(t *testing.T) {
	c := newCLIEnv(t)
	hook := &hookReceiver{accepted: map[string]int{}, gotAt: map[string]time.Time{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hsrv := &http.Server{Handler: hook}
	go hsrv.Serve(ln)
	t.Cleanup(func() { hsrv.Close() })
	// The standby settings are the defaults (lease 10s, renew 2s).
	cfg := c.writeConfig(fmt.Sprintf(`notify:
  backoff_min: 100ms
  backoff_max: 1s
  receivers:
    - {name: hook, type: webhook, url: "http://%s/riskwatch", timeout: 2s}
`, ln.Addr()))

	a := startChild(t, "run", "--config", cfg)
	aAddr := waitReady(t, a, 60*time.Second)
	b := startChild(t, "run", "--config", cfg)
	bAddr := b.httpAddr(t, 30*time.Second)
	waitStatus(t, b, bAddr, "b waits as a standby", 10*time.Second, func(s runStatus) bool {
		return s.role == "standby" && !s.ready && s.holder != ""
	})
	if st, err := statusOf(t, aAddr); err != nil || st.role != "active" || !st.ready {
		t.Fatalf("a: %+v, %v; want the ready active one", st, err)
	}

	ld := startLoad(t, c.dsn)
	// Bust-outs: a new merchant with cancellations and no sales every
	// second, so that minutes before and after each takeover raise alerts.
	stopBust, bustDone := make(chan struct{}), make(chan struct{})
	var busts atomic.Int64
	go func() {
		defer close(bustDone)
		for i := int64(0); ; i++ {
			select {
			case <-stopBust:
				return
			case <-time.After(time.Second):
			}
			if _, err := c.pool.Exec(context.Background(),
				`INSERT INTO payment_cancels SELECT nextval('ids'), 0, $1, 30000, now() FROM generate_series(1, 6)`, 100000+i); err != nil {
				t.Error(err)
				return
			}
			busts.Add(1)
		}
	}()
	stopTraffic := func() {
		if ld != nil {
			ld.halt()
			close(stopBust)
			<-bustDone
			ld = nil
		}
	}
	defer stopTraffic()

	// Wait for a's first notifications, then check that b, all this time,
	// read and sent nothing but followed the sink.
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, acc, _ := hook.snapshot(); len(acc) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no notification delivered by the active process:\n%s", a.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	bm := scrape(t, "http://"+bAddr+"/metrics")
	for _, want := range []string{`riskwatch_notifications_sent_total{receiver="hook"} 0`, `riskwatch_events_total{kind="approval"} 0`, `riskwatch_lease_active 0`} {
		if !strings.Contains(bm, want+"\n") {
			t.Fatalf("standby's metrics lack %q:\n%s", want, bm)
		}
	}
	waitStatus(t, b, bAddr, "the standby follows the sink's closed minutes", 5*time.Second, func(s runStatus) bool { return s.lastClosed != nil })

	// Phase 1: a paused past its lease, while nothing is being sent (a
	// send the receiver took but the stopped process did not record is
	// resent by its successor: at least once, by design).
	c.waitDelivered(a)
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	took := waitStatus(t, b, bAddr, "b takes the lease from the paused a", 13*time.Second, func(s runStatus) bool { return s.role == "active" })
	live := waitStatus(t, b, bAddr, "b live after taking over from the paused a", 15*time.Second-took, func(s runStatus) bool { return s.ready })
	t.Logf("a paused: b active after %s, live %s later", took.Round(time.Millisecond), live.Round(time.Millisecond))
	if !strings.Contains(b.stderr.String(), "ended the previous active process's walsender") {
		t.Fatalf("b did not end the paused process's walsender:\n%s", b.stderr.String())
	}
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, a, aAddr, "a, resumed, waits as a standby", 10*time.Second, func(s runStatus) bool { return s.role == "standby" && !s.ready })

	// Phase 2: b killed while nothing is being sent.
	c.waitDelivered(b)
	killedAt := time.Now()
	b.kill(t)
	took = waitStatus(t, a, aAddr, "a takes over from the killed b", 15*time.Second, func(s runStatus) bool { return s.role == "active" && s.ready })
	t.Logf("b killed: a active and live after %s", took.Round(time.Millisecond))

	// Traffic continues on a for a while, then stops; every minute holding
	// a bust-out closes and its alert is delivered.
	time.Sleep(3 * time.Second)
	stopTraffic()
	c.waitSink(c.walLSN(), 60*time.Second, a)
	var lastBust time.Time
	if err := c.pool.QueryRow(context.Background(), `SELECT max(canceled_at) FROM payment_cancels WHERE merchant_id >= 100000`).Scan(&lastBust); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(90 * time.Second)
	for {
		var closed time.Time
		err := c.pool.QueryRow(context.Background(), `SELECT last_closed FROM riskwatch.checkpoint WHERE slot = $1`, c.slot).Scan(&closed)
		if err != nil {
			t.Fatal(err)
		}
		if !closed.Before(lastBust.Truncate(time.Minute)) && c.count(`SELECT count(*) FROM riskwatch.deliveries WHERE status <> 'delivered'`) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the last bust-out's minute (%s) did not close and deliver:\n%s", lastBust, a.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	from, to := time.Now().Add(-time.Hour).Truncate(time.Minute), time.Now().Add(time.Hour)
	out, errOut, err := runCLI(context.Background(), "export", "minutes", "--config", cfg, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339))
	if err != nil {
		t.Fatalf("export: %v\n%s", err, errOut)
	}
	if want := c.sourceCSV(from, to); out != want {
		t.Fatalf("export differs from the source GROUP BY after two takeovers:\n%s", firstDiff(out, want))
	}

	// Every bust-out merchant has exactly one alert, raised by whichever
	// process was active; every notification enqueued was delivered, and
	// the receiver took each key once.
	n := busts.Load()
	if got := c.count(`SELECT count(DISTINCT merchant_id) FROM riskwatch.alerts WHERE rule = 'cancel_rate_spike' AND merchant_id >= 100000`); got != n {
		t.Fatalf("%d bust-out merchants alerted, want %d", got, n)
	}
	if dup := c.count(`SELECT count(*) FROM (SELECT 1 FROM riskwatch.alerts WHERE merchant_id >= 100000 GROUP BY merchant_id HAVING count(*) > 1) d`); dup != 0 {
		t.Fatalf("%d bust-out merchants alerted more than once", dup)
	}
	after := c.count(`SELECT count(*) FROM riskwatch.notifications WHERE created_at > $1`, killedAt)
	if after == 0 {
		t.Fatal("no notification was raised after the kill")
	}
	rows, err := c.pool.Query(context.Background(), `SELECT n.idempotency_key FROM riskwatch.notifications n JOIN riskwatch.deliveries d ON d.notification_id = n.id WHERE d.receiver = 'hook'`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		want[k] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	requests, acc, _ := hook.snapshot()
	for k, times := range acc {
		if times != 1 {
			t.Errorf("key %s delivered %d times", k, times)
		}
		if !want[k] {
			t.Errorf("key %s delivered but not in the outbox", k)
		}
	}
	for k := range want {
		if acc[k] == 0 {
			t.Errorf("key %s in the outbox never delivered", k)
		}
	}
	t.Logf("%d bust-outs, %d notifications (%d after the kill), %d requests, each key once", n, len(want), after, requests)
}
