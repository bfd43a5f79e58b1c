package httptemplate_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/riskwatch/riskwatch/internal/notify"
	"github.com/riskwatch/riskwatch/internal/notify/httptemplate"
	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

// flakyChat is a chat API that answers slowly once (past the sender's
// timeout), then 503, then accepts; it records every attempt's key.
type flakyChat struct {
	mu       sync.Mutex
	attempts []string // Idempotency-Key of each request, in arrival order
	accepted []map[string]any
	answers  []int // status per request; 0 = hang past the timeout
}

func (f *flakyChat) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.attempts = append(f.attempts, r.Header.Get("Idempotency-Key"))
	code := http.StatusOK
	if len(f.answers) > 0 {
		code, f.answers = f.answers[0], f.answers[1:]
	}
	if code == http.StatusOK {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			code = http.StatusBadRequest
		} else {
			f.accepted = append(f.accepted, m)
		}
	}
	f.mu.Unlock()
	if code == 0 {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		return
	}
	w.WriteHeader(code)
}

func (f *flakyChat) snapshot() ([]string, []map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.attempts...), append([]map[string]any(nil), f.accepted...)
}

// TestDownReceiverDelaysButNeverDrops: notifications in the sink's outbox
// for a template receiver that is down (refused), then slow (timeout),
// then failing (503), are all delivered once it recovers, in order, every
// attempt of one notification carrying the same idempotency key; one that
// cannot be rendered is rejected for good with the reason and does not
// hold back the one behind it.
func TestDownReceiverDelaysButNeverDrops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	db, err := store.Open(ctx, cluster.NewDB(t), "rw_sink", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool().Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`INSERT INTO rw_sink.alerts (id, rule, merchant_id, state, active_at, last_eval_at, "values")
		VALUES (1, 'cancel_rate_spike', 1001, 'firing', now(), now(), '{}')`)
	samples := httptemplate.Samples()
	var keys []string
	for i, merchant := range []int64{1001, 1002, 777, 1003} {
		n := samples[0]
		n.MerchantID, n.MerchantName = merchant, ""
		n.IdempotencyKey = "riskwatch-1-firing-" + string(rune('a'+i))
		keys = append(keys, n.IdempotencyKey)
		payload, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		exec(`INSERT INTO rw_sink.notifications (id, alert_id, kind, idempotency_key, payload) VALUES ($1, 1, 'firing', $2, $3)`, i+1, n.IdempotencyKey, payload)
		exec(`INSERT INTO rw_sink.deliveries (notification_id, receiver) VALUES ($1, 'chat')`, i+1)
	}

	// The chat API's address, with nothing listening yet.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	n := newNotifier(t, httptemplate.Config{Timeout: 300 * time.Millisecond, Spec: httptemplate.Spec{
		URL: "http://" + addr + "/send",
		// Merchant 777's text cannot be rendered: pct of a word.
		Body: `{"merchant": {{.MerchantID}}, "text": {{json .Headline}}{{if eq .MerchantID 777}}, "x": {{pct .Rule}}{{end}}}`,
	}})
	sender := notify.NewSender(notify.SenderOptions{Name: "chat", Notifier: n, Queue: alertstore.New(db).Outbox(),
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Poll: 50 * time.Millisecond})
	g, gctx := errgroup.WithContext(ctx)
	sctx, stop := context.WithCancel(gctx)
	g.Go(func() error { return sender.Run(sctx) })

	type delivery struct {
		status    string
		attempts  int
		lastError string
	}
	deliveries := func() map[int64]delivery {
		rows, err := db.Pool().Query(ctx, `SELECT notification_id, status, attempts, coalesce(last_error, '') FROM rw_sink.deliveries WHERE receiver = 'chat'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[int64]delivery{}
		for rows.Next() {
			var id int64
			var d delivery
			if err := rows.Scan(&id, &d.status, &d.attempts, &d.lastError); err != nil {
				t.Fatal(err)
			}
			out[id] = d
		}
		return out
	}
	waitFor := func(what string, ok func(map[int64]delivery) bool) map[int64]delivery {
		t.Helper()
		for {
			d := deliveries()
			if ok(d) {
				return d
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: deliveries %+v", what, d)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Down: refused attempts are recorded, nothing is lost or skipped.
	d := waitFor("refused attempts", func(d map[int64]delivery) bool { return d[1].attempts >= 3 })
	if d[1].status != "pending" || d[2].status != "pending" || !strings.Contains(d[1].lastError, "refused") {
		t.Fatalf("while down: %+v", d)
	}

	// Back, but slow once and then failing once.
	chat := &flakyChat{answers: []int{0, http.StatusServiceUnavailable}}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: chat}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	d = waitFor("delivery after recovery", func(d map[int64]delivery) bool {
		return d[1].status != "pending" && d[2].status != "pending" && d[3].status != "pending" && d[4].status != "pending"
	})
	stop()
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{1, 2, 4} {
		if d[id].status != "delivered" {
			t.Errorf("notification %d: %+v, want delivered", id, d[id])
		}
	}
	if d[3].status != "rejected" || !strings.Contains(d[3].lastError, "pct: not a number") || !strings.Contains(d[3].lastError, "not retried") || d[3].attempts != 1 {
		t.Errorf("notification 3 (unrenderable): %+v, want rejected once with the reason", d[3])
	}

	attempts, accepted := chat.snapshot()
	// The slow answer and the 503 both hit the first notification, whose
	// key every attempt carried; then each of the rest once, in order.
	want := []string{keys[0], keys[0], keys[0], keys[1], keys[3]}
	if strings.Join(attempts, " ") != strings.Join(want, " ") {
		t.Fatalf("attempts by key %q, want %q", attempts, want)
	}
	if len(accepted) != 3 || accepted[0]["merchant"] != float64(1001) || accepted[1]["merchant"] != float64(1002) || accepted[2]["merchant"] != float64(1003) ||
		accepted[0]["text"] != "[P1] firing: cancel_rate_spike · merchant 1001" {
		t.Fatalf("accepted %v", accepted)
	}
}
