package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riskwatch/riskwatch/internal/notify"
	"github.com/riskwatch/riskwatch/internal/notify/alertmanager"
	"github.com/riskwatch/riskwatch/internal/notify/webhook"
)

// Timers in these tests run on testing/synctest's fake clock, so backoffs
// of minutes take no real time. The receivers are real HTTP servers on
// loopback started outside the bubble: their goroutines block on the network,
// which synctest does not count as idle, and inside the bubble they would
// keep the fake clock from ever advancing. The client side lives in the
// bubble with keep-alives off, so no connection goroutine outlives a request.
// While a request is in flight, the fake clock stands still.

// receiver is a webhook endpoint that deduplicates by Idempotency-Key, the
// way the riskwatch docs tell receivers to: a key seen before is
// acknowledged again but accepted only once.
type receiver struct {
	mu         sync.Mutex
	codes      []int // answers before accepting, in order; the last one repeats
	retryAfter string
	loseNext   bool // accept the next request but answer 500, as if the answer were lost
	reject     map[string]bool
	slow       time.Duration
	requests   []string // keys, in arrival order
	accepted   []string // keys, in order of first acceptance
	seen       map[string]int
	inFlight   chan struct{} // signalled (non-blocking) when a request arrives
}

func newReceiver(codes ...int) *receiver {
	return &receiver{codes: codes, reject: map[string]bool{}, seen: map[string]int{}, inFlight: make(chan struct{}, 1)}
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var msg webhook.Message
	if err := json.NewDecoder(req.Body).Decode(&msg); err != nil || len(msg.Notifications) != 1 {
		http.Error(w, "want one notification", http.StatusBadRequest)
		return
	}
	key := req.Header.Get("Idempotency-Key")
	if key == "" || key != msg.Notifications[0].IdempotencyKey {
		http.Error(w, "Idempotency-Key header does not match the body", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.requests = append(r.requests, key)
	slow := r.slow
	r.mu.Unlock()
	select {
	case r.inFlight <- struct{}{}:
	default:
	}
	if slow > 0 {
		select {
		case <-time.After(slow):
		case <-req.Context().Done():
			return
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.codes) > 0 {
		code := r.codes[0]
		if len(r.codes) > 1 {
			r.codes = r.codes[1:]
		}
		if code != http.StatusOK {
			if r.retryAfter != "" {
				w.Header().Set("Retry-After", r.retryAfter)
			}
			http.Error(w, "receiver says "+http.StatusText(code), code)
			return
		}
	}
	if r.reject[key] {
		http.Error(w, "invalid notification", http.StatusBadRequest)
		return
	}
	if r.seen[key] == 0 {
		r.accepted = append(r.accepted, key)
	}
	r.seen[key]++
	if r.loseNext {
		r.loseNext = false
		http.Error(w, "accepted, but the answer got lost", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (r *receiver) set(f func(r *receiver)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *receiver) state() (requests, accepted []string, seen map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := make(map[string]int, len(r.seen))
	for k, v := range r.seen {
		s[k] = v
	}
	return slices.Clone(r.requests), slices.Clone(r.accepted), s
}

// startServer starts h on loopback outside any bubble.
func startServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// bubbleClient is an HTTP client safe to use inside a synctest bubble.
func bubbleClient() *http.Client {
	return &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// notification returns outbox row id for alert alertID.
func notification(id, alertID int64, kind string, created time.Time) notify.Notification {
	return notify.Notification{
		ID:             id,
		IdempotencyKey: fmt.Sprintf("k%d", id),
		Kind:           kind,
		AlertID:        alertID,
		Rule:           "cancel_rate_spike",
		MerchantID:     alertID * 100,
		Severity:       "critical",
		Summary:        fmt.Sprintf("alert %d %s", alertID, kind),
		StartsAt:       created,
		Minute:         created.Truncate(time.Minute),
		Values:         map[string]any{"c_H": int64(id)},
		DashboardURL:   "https://riskwatch.example.com/merchants/1",
		CreatedAt:      created,
	}
}

func webhookNotifier(t *testing.T, url string) notify.Notifier {
	t.Helper()
	n, err := webhook.New(webhook.Config{URL: url, HTTPClient: bubbleClient(), Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// run starts s and returns a function that stops it and checks Run's result.
func run(t *testing.T, s *notify.Sender) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil after cancellation", err)
		}
	}
}

// counter reads a receiver's series of a notify counter or histogram count.
func counter(t *testing.T, reg *prometheus.Registry, name, receiver string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "receiver" && l.GetValue() == receiver {
					if h := m.GetHistogram(); h != nil {
						return float64(h.GetSampleCount())
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{receiver=%q}", name, receiver)
	return 0
}

// TestSenderDeliversAfterOutage: the receiver refuses connections for three
// minutes, then answers 503 until minute 20, then accepts — losing the answer
// to its first acceptance. Every notification arrives, in order, each key
// accepted exactly once; the backoff doubles from 1s and stays capped at 5m.
func TestSenderDeliversAfterOutage(t *testing.T) {
	rcv := newReceiver(http.StatusServiceUnavailable)
	srv := httptest.NewUnstartedServer(rcv)
	addr := srv.Listener.Addr().String()
	srv.Listener.Close() // down: nothing listens, connections are refused
	t.Cleanup(srv.Close)
	// Bringing the server up from inside the bubble would put its accept
	// loop in the bubble, so a goroutine outside does it on request; the
	// channels are created outside too, and waiting on them holds the fake
	// clock still until the server is up.
	startReq, startDone := make(chan struct{}), make(chan error)
	go func() {
		select {
		case <-startReq:
		case <-t.Context().Done():
			return
		}
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			srv.Listener = ln
			srv.Start()
		}
		startDone <- err
	}()

	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		ns := []notify.Notification{
			notification(1, 10, notify.KindFiring, t0),
			notification(2, 11, notify.KindFiring, t0),
			notification(3, 10, notify.KindResolved, t0), // must not overtake 1
			notification(4, 11, notify.KindRepeat, t0),
			notification(5, 11, notify.KindResolved, t0),
		}
		q := newMemQueue(t, "hook", ns...)
		reg := prometheus.NewRegistry()
		s := notify.NewSender(notify.SenderOptions{
			Name: "hook", Notifier: webhookNotifier(t, "http://"+addr), Queue: q,
			Metrics: notify.NewMetrics(reg, "hook"), Logger: testLogger(t),
		})
		stop := run(t, s)

		time.Sleep(3 * time.Minute)
		startReq <- struct{}{}
		if err := <-startDone; err != nil {
			t.Fatalf("bringing the receiver up on %s: %v", addr, err)
		}
		time.Sleep(17 * time.Minute)
		if got := q.pending(); got != len(ns) {
			t.Fatalf("%d pending during the outage, want all %d", got, len(ns))
		}
		rcv.set(func(r *receiver) { r.codes, r.loseNext = nil, true })
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		stop()

		delivered, rejected, retries := q.snapshot()
		if want := []int64{1, 2, 3, 4, 5}; !slices.Equal(delivered, want) {
			t.Errorf("delivered %v, want %v", delivered, want)
		}
		if len(rejected) != 0 {
			t.Errorf("rejected %v, want none", rejected)
		}

		requests, accepted, seen := rcv.state()
		if want := []string{"k1", "k2", "k3", "k4", "k5"}; !slices.Equal(accepted, want) {
			t.Errorf("receiver accepted %v, want %v in order", accepted, want)
		}
		if seen["k1"] != 2 {
			t.Errorf("k1 accepted-or-acknowledged %d times, want 2 (the duplicate after the lost answer)", seen["k1"])
		}
		for _, k := range []string{"k2", "k3", "k4", "k5"} {
			if c := slices.Index(requests, k); c < 0 || slices.Contains(requests[:c], k) || seen[k] != 1 {
				t.Errorf("%s: requests %v, want exactly one, after k1 was through", k, requests)
			}
		}

		// The head's attempts: 1s, 2s, 4s, ... doubling, then capped at 5m.
		wantDelays := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300}
		if len(retries) != len(wantDelays) {
			t.Fatalf("%d failed attempts, want %d: %+v", len(retries), len(wantDelays), retries)
		}
		for i, r := range retries {
			if !slices.Equal(r.IDs, []int64{1}) || r.Attempts != i+1 {
				t.Errorf("retry %d: ids %v attempts %d, want [1] and %d", i, r.IDs, r.Attempts, i+1)
			}
			if d := r.Next.Sub(r.At); d != wantDelays[i]*time.Second {
				t.Errorf("retry %d: next attempt after %s, want %s", i, d, wantDelays[i]*time.Second)
			}
			if i > 0 && !r.At.Equal(retries[i-1].Next) {
				t.Errorf("retry %d: attempted at %s, want exactly when due (%s)", i, r.At.Sub(t0), retries[i-1].Next.Sub(t0))
			}
			want := "connection refused"
			switch {
			case i == len(retries)-1:
				want = "500"
			case r.At.Sub(t0) > 3*time.Minute:
				want = "503"
			}
			if !strings.Contains(r.Reason, want) {
				t.Errorf("retry %d at %s: reason %q, want it to mention %q", i, r.At.Sub(t0), r.Reason, want)
			}
		}

		if got := counter(t, reg, "riskwatch_notifications_sent_total", "hook"); got != 5 {
			t.Errorf("sent_total = %v, want 5", got)
		}
		if got := counter(t, reg, "riskwatch_notifications_failed_total", "hook"); got != 13 {
			t.Errorf("failed_total = %v, want 13", got)
		}
		if got := counter(t, reg, "riskwatch_notifications_rejected_total", "hook"); got != 0 {
			t.Errorf("rejected_total = %v, want 0", got)
		}
		if got := counter(t, reg, "riskwatch_notification_delay_seconds", "hook"); got != 5 {
			t.Errorf("delay observations = %v, want 5", got)
		}
		if got := counter(t, reg, "riskwatch_notification_send_seconds", "hook"); got != 14+4 {
			t.Errorf("send observations = %v, want 18 (14 attempts for k1, 1 each for the rest)", got)
		}
	})
}

// TestSenderWakeDeliversPromptly: with the fallback poll an hour away, Wake
// gets a new notification out without any time passing; without Wake, the
// poll still finds it.
func TestSenderWakeDeliversPromptly(t *testing.T) {
	rcv := newReceiver()
	url := startServer(t, rcv)
	synctest.Test(t, func(t *testing.T) {
		q := newMemQueue(t, "hook")
		s := notify.NewSender(notify.SenderOptions{Name: "hook", Notifier: webhookNotifier(t, url), Queue: q, Poll: time.Hour, Logger: testLogger(t)})
		stop := run(t, s)
		defer stop()
		synctest.Wait() // idle, waiting for the poll

		t0 := time.Now()
		q.add(notification(1, 1, notify.KindFiring, t0))
		s.Wake()
		synctest.Wait()
		if d, _, _ := q.snapshot(); !slices.Equal(d, []int64{1}) || time.Since(t0) != 0 {
			t.Fatalf("after Wake: delivered %v at +%s, want [1] at once", d, time.Since(t0))
		}

		q.add(notification(2, 2, notify.KindFiring, t0))
		time.Sleep(59 * time.Minute)
		synctest.Wait()
		if d, _, _ := q.snapshot(); len(d) != 1 {
			t.Fatalf("delivered %v before the poll without Wake, want only [1]", d)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if d, _, _ := q.snapshot(); !slices.Equal(d, []int64{1, 2}) {
			t.Fatalf("after the poll: delivered %v, want [1 2]", d)
		}
	})
}

// TestSenderRejectsAndMovesOn: a 400 marks the notification Rejected (no
// retry) and the next one goes out right away.
func TestSenderRejectsAndMovesOn(t *testing.T) {
	rcv := newReceiver()
	rcv.reject["k2"] = true
	url := startServer(t, rcv)
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		q := newMemQueue(t, "hook", notification(1, 1, notify.KindFiring, t0), notification(2, 2, notify.KindFiring, t0), notification(3, 1, notify.KindResolved, t0))
		reg := prometheus.NewRegistry()
		s := notify.NewSender(notify.SenderOptions{Name: "hook", Notifier: webhookNotifier(t, url), Queue: q, Metrics: notify.NewMetrics(reg, "hook"), Logger: testLogger(t)})
		stop := run(t, s)
		synctest.Wait()
		stop()
		delivered, rejected, retries := q.snapshot()
		if !slices.Equal(delivered, []int64{1, 3}) || len(retries) != 0 {
			t.Errorf("delivered %v retries %v, want [1 3] and none", delivered, retries)
		}
		if r, ok := rejected[2]; !ok || !strings.Contains(r, "400") || !strings.Contains(r, "invalid notification") {
			t.Errorf("rejected %v, want 2 with the receiver's 400 answer", rejected)
		}
		if time.Since(t0) != 0 {
			t.Errorf("took %s of fake time, want none (no backoff after a rejection)", time.Since(t0))
		}
		if got := counter(t, reg, "riskwatch_notifications_rejected_total", "hook"); got != 1 {
			t.Errorf("rejected_total = %v, want 1", got)
		}
		if got := counter(t, reg, "riskwatch_notifications_failed_total", "hook"); got != 0 {
			t.Errorf("failed_total = %v, want 0", got)
		}
	})
}

// amReceiver behaves like Alertmanager's POST /api/v2/alerts: it stores the
// valid alerts of a batch and answers 400 if any was invalid.
type amReceiver struct {
	mu       sync.Mutex
	batches  []int
	accepted map[string]int // merchant_id -> times stored
}

func (a *amReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var alerts []alertmanager.Alert
	if err := json.NewDecoder(r.Body).Decode(&alerts); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.batches = append(a.batches, len(alerts))
	invalid := false
	for _, al := range alerts {
		if al.Labels["merchant_id"] == "666" {
			invalid = true
			continue
		}
		a.accepted[al.Labels["merchant_id"]]++
	}
	if invalid {
		http.Error(w, "bad alert", http.StatusBadRequest)
	}
}

// TestSenderIsolatesRejectedBatch: Alertmanager rejects a batch with one bad
// alert; the Sender retries the batch one by one so only that one is
// rejected and the good ones are recorded as delivered.
func TestSenderIsolatesRejectedBatch(t *testing.T) {
	am := &amReceiver{accepted: map[string]int{}}
	url := startServer(t, am)
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		ns := []notify.Notification{
			notification(1, 1, notify.KindFiring, t0), notification(2, 2, notify.KindFiring, t0),
			notification(3, 3, notify.KindFiring, t0), notification(4, 4, notify.KindFiring, t0),
		}
		ns[2].MerchantID = 666
		q := newMemQueue(t, "am", ns...)
		n, err := alertmanager.New(alertmanager.Config{URL: url, HTTPClient: bubbleClient()})
		if err != nil {
			t.Fatal(err)
		}
		s := notify.NewSender(notify.SenderOptions{Name: "am", Notifier: n, Queue: q, Logger: testLogger(t)})
		stop := run(t, s)
		synctest.Wait()
		stop()
		delivered, rejected, retries := q.snapshot()
		if !slices.Equal(delivered, []int64{1, 2, 4}) || len(rejected) != 1 || rejected[3] == "" || len(retries) != 0 {
			t.Errorf("delivered %v rejected %v retries %v, want [1 2 4], only 3 rejected, no retries", delivered, rejected, retries)
		}
		am.mu.Lock()
		defer am.mu.Unlock()
		if !slices.Equal(am.batches, []int{4, 1, 1, 1, 1}) {
			t.Errorf("batches %v, want one of 4 then four single alerts", am.batches)
		}
	})
}

// TestSenderSlowReceiver (real time: a request in flight stops synctest's
// clock, so a timeout cannot fire there): a receiver slower than Timeout
// counts as a retryable failure, Wake callers never wait for it, and the
// notification goes out once the receiver is fast again.
func TestSenderSlowReceiver(t *testing.T) {
	rcv := newReceiver()
	rcv.slow = time.Minute
	url := startServer(t, rcv)
	q := newMemQueue(t, "hook", notification(1, 1, notify.KindFiring, time.Now()))
	n, err := webhook.New(webhook.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := notify.NewSender(notify.SenderOptions{
		Name: "hook", Notifier: n, Queue: q, Timeout: 200 * time.Millisecond,
		BackoffMin: 50 * time.Millisecond, Poll: 20 * time.Millisecond,
		Metrics: notify.NewMetrics(reg, "hook"), Logger: testLogger(t),
	})
	stop := run(t, s)
	defer stop()

	select {
	case <-rcv.inFlight:
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the receiver")
	}
	start := time.Now()
	for range 10000 {
		s.Wake()
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("10000 Wake calls during a slow send took %s, want them not to wait", d)
	}
	rcv.set(func(r *receiver) { r.slow = 0 })

	deadline := time.Now().Add(10 * time.Second)
	for q.pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	delivered, rejected, retries := q.snapshot()
	if !slices.Equal(delivered, []int64{1}) || len(rejected) != 0 {
		t.Fatalf("delivered %v rejected %v, want [1] delivered after the slow attempt", delivered, rejected)
	}
	if len(retries) != 1 || retries[0].Attempts != 1 || !strings.Contains(retries[0].Reason, "deadline exceeded") {
		t.Errorf("retries %+v, want one timed-out attempt", retries)
	}
	if got := counter(t, reg, "riskwatch_notifications_failed_total", "hook"); got != 1 {
		t.Errorf("failed_total = %v, want 1", got)
	}
}

// TestSenderShutdownMidSend (real time): cancelling Run during a send
// returns promptly and records nothing: the attempt was no verdict on the
// receiver, and the notification is still due for the next run.
func TestSenderShutdownMidSend(t *testing.T) {
	rcv := newReceiver()
	rcv.slow = time.Minute
	url := startServer(t, rcv)
	q := newMemQueue(t, "hook", notification(1, 1, notify.KindFiring, time.Now()))
	n, err := webhook.New(webhook.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	s := notify.NewSender(notify.SenderOptions{Name: "hook", Notifier: n, Queue: q, Timeout: time.Minute, Logger: testLogger(t)})
	stop := run(t, s)
	<-rcv.inFlight
	start := time.Now()
	stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %s to return after cancellation", d)
	}
	delivered, rejected, retries := q.snapshot()
	if len(delivered)+len(rejected)+len(retries) != 0 || q.pending() != 1 {
		t.Errorf("recorded delivered %v rejected %v retries %v on shutdown, want nothing", delivered, rejected, retries)
	}
}

// TestSenderBackoffSurvivesRestart: attempts come from the Queue, so a new
// process continues the doubling instead of starting over at BackoffMin.
func TestSenderBackoffSurvivesRestart(t *testing.T) {
	url := startServer(t, newReceiver(http.StatusServiceUnavailable))
	synctest.Test(t, func(t *testing.T) {
		n := notification(1, 1, notify.KindFiring, time.Now())
		n.Attempts = 5 // failed five times before the restart
		q := newMemQueue(t, "hook", n)
		opts := notify.SenderOptions{Name: "hook", Notifier: webhookNotifier(t, url), Queue: q, Logger: testLogger(t)}

		stop := run(t, notify.NewSender(opts))
		synctest.Wait()
		stop() // "crash" right after the sixth failure

		stop = run(t, notify.NewSender(opts)) // the next process
		time.Sleep(time.Minute)
		synctest.Wait()
		stop()

		_, _, retries := q.snapshot()
		if len(retries) != 2 {
			t.Fatalf("%d attempts, want 2 (at 0s and 32s): %+v", len(retries), retries)
		}
		for i, want := range []struct {
			attempts int
			delay    time.Duration
		}{{6, 32 * time.Second}, {7, 64 * time.Second}} {
			if r := retries[i]; r.Attempts != want.attempts || r.Next.Sub(r.At) != want.delay {
				t.Errorf("retry %d: attempts %d delay %s, want %d and %s", i, r.Attempts, r.Next.Sub(r.At), want.attempts, want.delay)
			}
		}
	})
}

// TestSenderRetryAfterAndJitter: a Retry-After longer than the backoff is
// honoured up to BackoffMax; jitter lengthens delays but never past the cap.
func TestSenderRetryAfterAndJitter(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter string
		attempts   int
		jitter     func(time.Duration) time.Duration
		want       time.Duration
	}{
		{"retry-after beats backoff", "120", 0, nil, 2 * time.Minute},
		{"retry-after capped", "86400", 0, nil, 5 * time.Minute},
		{"retry-after shorter than backoff", "1", 3, nil, 8 * time.Second},
		{"jitter", "", 2, func(d time.Duration) time.Duration { return d + d/10 }, 4400 * time.Millisecond},
		{"jitter capped", "", 20, func(d time.Duration) time.Duration { return d + d/10 }, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(http.StatusTooManyRequests)
			rcv.retryAfter = tt.retryAfter
			url := startServer(t, rcv)
			synctest.Test(t, func(t *testing.T) {
				n := notification(1, 1, notify.KindFiring, time.Now())
				n.Attempts = tt.attempts
				q := newMemQueue(t, "hook", n)
				s := notify.NewSender(notify.SenderOptions{Name: "hook", Notifier: webhookNotifier(t, url), Queue: q, Jitter: tt.jitter, Logger: testLogger(t)})
				stop := run(t, s)
				synctest.Wait()
				stop()
				_, _, retries := q.snapshot()
				if len(retries) != 1 || retries[0].Next.Sub(retries[0].At) != tt.want {
					t.Errorf("retries %+v, want one with delay %s", retries, tt.want)
				}
			})
		})
	}
}

// TestSenderSurvivesQueueErrors: outbox reads and writes that fail are
// retried; nothing is lost, and a delivery whose record failed is sent again
// (a duplicate the receiver absorbs).
func TestSenderSurvivesQueueErrors(t *testing.T) {
	rcv := newReceiver(http.StatusServiceUnavailable, http.StatusOK)
	url := startServer(t, rcv)
	synctest.Test(t, func(t *testing.T) {
		q := newMemQueue(t, "hook", notification(1, 1, notify.KindFiring, time.Now()), notification(2, 2, notify.KindFiring, time.Now()))
		q.failNext("Due", 3)
		q.failNext("Retry", 1)
		q.failNext("Delivered", 1)
		reg := prometheus.NewRegistry()
		s := notify.NewSender(notify.SenderOptions{Name: "hook", Notifier: webhookNotifier(t, url), Queue: q, Metrics: notify.NewMetrics(reg, "hook"), Logger: testLogger(t)})
		stop := run(t, s)
		time.Sleep(time.Minute)
		synctest.Wait()
		stop()
		delivered, rejected, _ := q.snapshot()
		if !slices.Equal(delivered, []int64{1, 2}) || len(rejected) != 0 {
			t.Errorf("delivered %v rejected %v, want [1 2]", delivered, rejected)
		}
		_, accepted, seen := rcv.state()
		if !slices.Equal(accepted, []string{"k1", "k2"}) || seen["k1"] != 2 {
			t.Errorf("receiver accepted %v seen %v, want k1 then k2, k1 twice (its delivery record failed)", accepted, seen)
		}
		if got := counter(t, reg, "riskwatch_notification_queue_errors_total", "hook"); got != 5 {
			t.Errorf("queue_errors_total = %v, want 5", got)
		}
	})
}

// stubNotifier is an in-process Notifier for what HTTP cannot show.
type stubNotifier struct {
	maxBatch int
	notify   func(ctx context.Context, ns []notify.Notification) (bool, error)
	mu       sync.Mutex
	sizes    []int
}

func (s *stubNotifier) Notify(ctx context.Context, ns ...notify.Notification) (bool, error) {
	s.mu.Lock()
	s.sizes = append(s.sizes, len(ns))
	s.mu.Unlock()
	if s.notify != nil {
		return s.notify(ctx, ns)
	}
	return false, nil
}

type batched struct{ *stubNotifier }

func (b batched) MaxBatch() int { return b.maxBatch }

func TestSenderBatchSize(t *testing.T) {
	tests := []struct {
		name     string
		batch    int
		notifier notify.Notifier
		want     int
	}{
		{"default", 0, &stubNotifier{}, 20},
		{"configured", 50, &stubNotifier{}, 50},
		{"integration caps", 0, batched{&stubNotifier{maxBatch: 1}}, 1},
		{"configured below the cap", 10, batched{&stubNotifier{maxBatch: 64}}, 10},
		{"cap below configured", 100, batched{&stubNotifier{maxBatch: 64}}, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var ns []notify.Notification
				for i := range 130 {
					ns = append(ns, notification(int64(i+1), 1, notify.KindFiring, time.Now()))
				}
				q := newMemQueue(t, "r", ns...)
				stop := run(t, notify.NewSender(notify.SenderOptions{Name: "r", Notifier: tt.notifier, Queue: q, Batch: tt.batch}))
				synctest.Wait()
				stop()
				if q.limits[0] != tt.want {
					t.Errorf("Due limit %d, want %d", q.limits[0], tt.want)
				}
				if q.pending() != 0 {
					t.Errorf("%d pending, want all delivered", q.pending())
				}
			})
		})
	}
}

// TestSenderTimeoutIsRetry: an integration that reports its own timeout as a
// rejection is overruled — the receiver gave no verdict.
func TestSenderTimeoutIsRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &stubNotifier{notify: func(ctx context.Context, _ []notify.Notification) (bool, error) {
			<-ctx.Done()
			return false, ctx.Err()
		}}
		q := newMemQueue(t, "r", notification(1, 1, notify.KindFiring, time.Now()))
		stop := run(t, notify.NewSender(notify.SenderOptions{Name: "r", Notifier: stub, Queue: q, Timeout: 3 * time.Second}))
		time.Sleep(3*time.Second + time.Millisecond)
		synctest.Wait()
		stop()
		_, rejected, retries := q.snapshot()
		if len(rejected) != 0 || len(retries) != 1 || !strings.Contains(retries[0].Reason, "deadline exceeded") {
			t.Errorf("rejected %v retries %+v, want one retry after the timeout", rejected, retries)
		}
	})
}

func TestWakeNeverBlocks(t *testing.T) {
	s := notify.NewSender(notify.SenderOptions{Name: "r", Notifier: &stubNotifier{}, Queue: newMemQueue(t, "r")})
	done := make(chan struct{})
	go func() {
		for range 100 {
			s.Wake() // nobody is running the loop: the pending wake-up absorbs them
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wake blocked without a running loop")
	}
}

func TestNewSenderPanicsOnWiringBugs(t *testing.T) {
	for name, o := range map[string]notify.SenderOptions{
		"no name":     {Notifier: &stubNotifier{}, Queue: newMemQueue(t, "")},
		"no notifier": {Name: "r", Queue: newMemQueue(t, "r")},
		"no queue":    {Name: "r", Notifier: &stubNotifier{}},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("NewSender did not panic")
				}
			}()
			notify.NewSender(o)
		})
	}
}

func TestMetricsStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	notify.NewMetrics(reg, "slack", "am")
	for _, name := range []string{
		"riskwatch_notifications_sent_total", "riskwatch_notifications_failed_total",
		"riskwatch_notifications_rejected_total", "riskwatch_notification_queue_errors_total",
		"riskwatch_notification_send_seconds", "riskwatch_notification_delay_seconds",
	} {
		for _, r := range []string{"slack", "am"} {
			if got := counter(t, reg, name, r); got != 0 {
				t.Errorf("%s{receiver=%q} = %v, want 0", name, r, got)
			}
		}
	}
}

// TestSenderGateHoldsBack: while the gate is closed nothing reaches the
// receiver and no attempt is counted; once it opens, the notification goes
// out as if nothing had happened.
func TestSenderGateHoldsBack(t *testing.T) {
	rcv := newReceiver()
	url := startServer(t, rcv)
	synctest.Test(t, func(t *testing.T) {
		q := newMemQueue(t, "hook")
		var open atomic.Bool
		s := notify.NewSender(notify.SenderOptions{Name: "hook", Notifier: webhookNotifier(t, url), Queue: q, Poll: time.Second, Logger: testLogger(t),
			Gate: open.Load})
		stop := run(t, s)
		defer stop()
		q.add(notification(1, 1, notify.KindFiring, time.Now()))
		s.Wake()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if requests, _, _ := rcv.state(); len(requests) != 0 {
			t.Fatalf("receiver saw %v through a closed gate", requests)
		}
		if d, _, retries := q.snapshot(); len(d) != 0 || len(retries) != 0 {
			t.Fatalf("delivered %v, retries %v through a closed gate; want neither", d, retries)
		}
		open.Store(true)
		time.Sleep(time.Second)
		synctest.Wait()
		if d, _, _ := q.snapshot(); !slices.Equal(d, []int64{1}) {
			t.Fatalf("after the gate opened: delivered %v, want [1]", d)
		}
		if requests, _, _ := rcv.state(); len(requests) != 1 {
			t.Fatalf("receiver saw %d requests, want 1", len(requests))
		}
	})
}
