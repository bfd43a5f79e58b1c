package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// hookReceiver is a webhook endpoint that accepts each idempotency key once
// and answers 503 to the first few requests.
type hookReceiver struct {
	mu       sync.Mutex
	fail     int
	requests int
	accepted map[string]int // key -> times accepted
	bodies   []map[string]any
	gotAt    map[string]time.Time
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests++
	if h.fail > 0 {
		h.fail--
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	var body map[string]any
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &body); err != nil || key == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if h.accepted[key] == 0 {
		h.bodies = append(h.bodies, body)
		h.gotAt[key] = time.Now()
	}
	h.accepted[key]++
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookReceiver) snapshot() (int, map[string]int, []map[string]any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	acc := map[string]int{}
	for k, v := range h.accepted {
		acc[k] = v
	}
	return h.requests, acc, append([]map[string]any(nil), h.bodies...)
}

// TestNotificationsSurviveADownReceiver: an alert raised while its webhook
// receiver is down (connection refused, then 503s) is delivered once the
// receiver comes back, with its idempotency key accepted once; Alertmanager
// receives the same alert in its v2 shape with a link to the merchant page.
func TestNotificationsSurviveADownReceiver(t *testing.T) {
	t.Parallel()
	c := newCLIEnv(t)
	// Reserve a port for the webhook and leave it closed for now.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hookAddr := ln.Addr().String()
	ln.Close()

	var amMu sync.Mutex
	var amBodies [][]map[string]any
	var amGotAt time.Time
	am := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v2/alerts" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		var alerts []map[string]any
		if err := json.NewDecoder(r.Body).Decode(&alerts); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		amMu.Lock()
		if len(amBodies) == 0 {
			amGotAt = time.Now()
		}
		amBodies = append(amBodies, alerts)
		amMu.Unlock()
	})}
	amLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go am.Serve(amLn)
	t.Cleanup(func() { am.Close() })

	cfg := c.writeConfig(fmt.Sprintf(`alerts:
  repeat_interval: 1m
notify:
  backoff_min: 100ms
  backoff_max: 400ms
  receivers:
    - {name: hook, type: webhook, url: "http://%s/riskwatch", timeout: 2s}
    - {name: am, type: alertmanager, url: "http://%s"}
    - {name: printer, type: log}
`, hookAddr, amLn.Addr().String()))
	body, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	body = []byte(strings.Replace(string(body), "  listen: 127.0.0.1:0\n", "  listen: 127.0.0.1:0\n  external_url: https://risk.example.com/\n", 1))
	if err := os.WriteFile(cfg, body, 0o600); err != nil {
		t.Fatal(err)
	}
	ch := startChild(t, "run", "--config", cfg)
	waitReady(t, ch, 60*time.Second)
	// A bust-out: no sales, ten cancellations.
	c.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 555, 30000, now() FROM generate_series(1, 10)`)

	// The alert fires at the end of this minute; the hook is down, so its
	// delivery is retried.
	deadline := time.Now().Add(90 * time.Second)
	for {
		var attempts int
		err := c.pool.QueryRow(context.Background(), `SELECT coalesce(max(attempts), 0) FROM riskwatch.deliveries WHERE receiver = 'hook'`).Scan(&attempts)
		if err != nil {
			t.Fatal(err)
		}
		if attempts >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed delivery attempts to the down hook:\n%s", ch.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The receiver comes back, first answering 503 twice.
	hook := &hookReceiver{fail: 2, accepted: map[string]int{}, gotAt: map[string]time.Time{}}
	hookLn, err := net.Listen("tcp", hookAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: hook}
	go srv.Serve(hookLn)
	t.Cleanup(func() { srv.Close() })

	deadline = time.Now().Add(30 * time.Second)
	for {
		var pending int
		if err := c.pool.QueryRow(context.Background(), `SELECT count(*) FROM riskwatch.deliveries WHERE status <> 'delivered'`).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if _, acc, _ := hook.snapshot(); len(acc) >= 1 && pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notifications not delivered after the hook came back (%d pending):\n%s", pending, ch.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	requests, acc, bodies := hook.snapshot()
	for key, n := range acc {
		if n != 1 || !strings.HasPrefix(key, "riskwatch-") {
			t.Fatalf("key %s accepted %d times", key, n)
		}
	}
	if requests < 3 {
		t.Fatalf("hook saw %d requests, want the two 503s and the success", requests)
	}
	item := bodies[0]["notifications"].([]any)[0].(map[string]any)
	// Ten cancels in one minute with no sales of its own, against the
	// platform's 0.2%: a batch counted at √n is still evidence enough for
	// P2, and with nothing at stake never P1 — severity warning.
	if item["rule"] != "cancel_rate_spike" || item["merchant_id"] != float64(555) || item["kind"] != "firing" ||
		item["dashboard_url"] != "https://risk.example.com/merchants/555" || item["severity"] != "warning" || item["priority"] != "P2" {
		t.Fatalf("webhook item = %v", item)
	}
	if v := item["values"].(map[string]any); v["c_h"] != float64(10) || v["a_h"] != float64(0) || v["rate_h"] != nil {
		t.Fatalf("webhook values = %v", v)
	}
	amMu.Lock()
	defer amMu.Unlock()
	if len(amBodies) == 0 {
		t.Fatal("alertmanager received nothing")
	}
	a := amBodies[0][0]
	labels := a["labels"].(map[string]any)
	if labels["alertname"] != "cancel_rate_spike" || labels["rule"] != "cancel_rate_spike" || labels["merchant_id"] != "555" || labels["severity"] != "warning" || labels["priority"] != "P2" {
		t.Fatalf("alertmanager labels = %v", labels)
	}
	if a["generatorURL"] != "https://risk.example.com/merchants/555" || a["startsAt"] == nil {
		t.Fatalf("alertmanager alert = %v", a)
	}
	// Alert latency: from the end of the minute that fired to Alertmanager
	// holding the alert (grace 1 s; the engine and receiver share a clock).
	minute, err := time.Parse(time.RFC3339, item["minute"].(string))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("alert latency (end of minute -> alertmanager received): %s", amGotAt.Sub(minute.Add(time.Minute)).Round(time.Millisecond))
	if !strings.Contains(ch.stderr.String(), `msg="ALERT firing"`) {
		t.Fatalf("log receiver printed nothing:\n%s", ch.stderr.String())
	}
	amMu.Unlock()

	// With repeat_interval 1m the still-firing alert is notified again at
	// the next minute; after an operator acknowledges it, never again.
	waitKind := func(kind string, timeout time.Duration) bool {
		deadline := time.Now().Add(timeout)
		for time.Now().Before(deadline) {
			_, _, bodies := hook.snapshot()
			for _, b := range bodies {
				if b["notifications"].([]any)[0].(map[string]any)["kind"] == kind {
					return true
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}
	if !waitKind("repeat", 75*time.Second) {
		t.Fatalf("no repeat notification within a minute:\n%s", ch.stderr.String())
	}
	out, _, err := runCLI(context.Background(), "alerts", "--config", cfg, "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var listed map[string]any
	if err := json.Unmarshal([]byte(strings.Split(out, "\n")[0]), &listed); err != nil {
		t.Fatalf("alerts --format json: %v\n%s", err, out)
	}
	id := fmt.Sprint(listed["id"])
	if out, errOut, err := runCLI(context.Background(), "ack", id, "--config", cfg, "--by", "kim", "--comment", "merchant confirmed a refund batch"); err != nil || !strings.Contains(out, "acknowledged alert "+id) {
		t.Fatalf("ack: %v %s %s", err, out, errOut)
	}
	// The next minute's evaluation of the alert is stored in the same
	// transaction as any notification it enqueues: once it is there, the
	// outbox says whether the acknowledged alert was notified again.
	alertID, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	var ackedAt time.Time
	if err := c.pool.QueryRow(context.Background(), `SELECT acked_at FROM riskwatch.alerts WHERE id = $1`, alertID).Scan(&ackedAt); err != nil {
		t.Fatal(err)
	}
	evalDeadline := time.Now().Add(90 * time.Second)
	for {
		var evaluated bool
		if err := c.pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM riskwatch.alert_evaluations WHERE alert_id = $1 AND minute >= date_trunc('minute', $2::timestamptz))`,
			alertID, ackedAt).Scan(&evaluated); err != nil {
			t.Fatal(err)
		}
		if evaluated {
			break
		}
		if time.Now().After(evalDeadline) {
			t.Fatalf("the alert was not evaluated again after the ack:\n%s", ch.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var after int
	if err := c.pool.QueryRow(context.Background(), `SELECT count(*) FROM riskwatch.notifications WHERE alert_id = $1 AND created_at > $2`, alertID, ackedAt).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != 0 {
		t.Fatalf("notified %d times after the ack", after)
	}
	out, _, err = runCLI(context.Background(), "alerts", "--config", cfg)
	if err != nil || !strings.Contains(out, "kim") || !strings.Contains(out, "firing") {
		t.Fatalf("alerts after ack: %v\n%s", err, out)
	}
	amMu.Lock()

	m := scrape(t, "http://"+ch.httpAddr(t, time.Second)+"/metrics")
	for _, want := range []string{`riskwatch_notifications_sent_total{receiver="hook"} 2`, `riskwatch_notifications_sent_total{receiver="am"} 2`, `riskwatch_alert_transitions_total{rule="cancel_rate_spike",state="firing"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !strings.Contains(m, `riskwatch_notifications_failed_total{receiver="hook"}`) || strings.Contains(m, `riskwatch_notifications_failed_total{receiver="hook"} 0`) {
		t.Errorf("failed hook attempts not counted:\n%s", metricLine(m, "riskwatch_notifications_failed_total"))
	}
}
