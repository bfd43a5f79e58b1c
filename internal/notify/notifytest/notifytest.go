// Package notifytest is the shared test harness of the notify integrations:
// a real HTTP receiver on loopback that records requests and answers a
// scripted sequence of status codes, and RetryCodes, which checks that an
// integration classifies every outcome the way the Sender relies on.
package notifytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/notify"
)

// Request is one request the Server received.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// Decode unmarshals the request body into v, failing the test if it is not JSON.
func (r Request) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("request body is not the expected JSON: %v\n%s", err, r.Body)
	}
}

// Server is a receiver over real HTTP (httptest.Server on 127.0.0.1).
type Server struct {
	URL  string
	srv  *httptest.Server
	done chan struct{}

	mu         sync.Mutex
	reqs       []Request
	codes      []int
	delay      time.Duration
	retryAfter string
}

// NewServer starts a Server that answers codes in order, then keeps
// answering the last one (200 when none are given). It is closed when the
// test ends.
func NewServer(t testing.TB, codes ...int) *Server {
	t.Helper()
	s := &Server{done: make(chan struct{}), codes: append([]int(nil), codes...)}
	if len(s.codes) == 0 {
		s.codes = []int{http.StatusOK}
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// Close stops the server, cutting short any delayed answer.
func (s *Server) Close() {
	select {
	case <-s.done:
		return
	default:
		close(s.done)
	}
	s.srv.Close()
}

// SetDelay makes every answer wait d (or until the client gives up): a slow receiver.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// SetRetryAfter makes non-2xx answers carry this Retry-After header value.
func (s *Server) SetRetryAfter(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retryAfter = v
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.reqs = append(s.reqs, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	code := s.codes[0]
	if len(s.codes) > 1 {
		s.codes = s.codes[1:]
	}
	delay, retryAfter := s.delay, s.retryAfter
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
	if retryAfter != "" && code/100 != 2 {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(code)
	fmt.Fprintf(w, "notifytest answered %d", code)
}

// RefusedURL returns an http URL on loopback where nothing listens, so
// connecting is refused.
func RefusedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("reserving a port: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("closing listener: %v", err)
	}
	return "http://" + addr
}

// Sample returns a realistic notification of the given kind.
func Sample(kind string) notify.Notification {
	starts := time.Date(2025, 3, 14, 1, 2, 0, 0, time.UTC)
	n := notify.Notification{
		ID:             42,
		IdempotencyKey: "riskwatch-7-" + kind + "-1",
		Kind:           kind,
		AlertID:        7,
		Rule:           "cancel_rate_spike",
		MerchantID:     1001,
		MerchantName:   "Hanbit Books & <Co>",
		Severity:       "critical",
		Priority:       "P1",
		RoutedAt:       "P1",
		Summary:        "Cancel rate 12.5% over the last hour is 6.3x the 7-day baseline 2.0% (merchant Hanbit Books & <Co>)",
		StartsAt:       starts,
		Minute:         starts.Add(-time.Minute),
		Values: map[string]any{
			"a_H":             int64(120),
			"c_H":             int64(15),
			"rate_H":          0.125,
			"baseline":        0.02,
			"baseline_source": "merchant",
			"ratio":           6.25,
		},
		DashboardURL: "https://riskwatch.example.com/merchants/1001",
		CreatedAt:    starts.Add(1500 * time.Millisecond),
	}
	switch kind {
	case notify.KindEscalated:
		n.PreviousPriority, n.PreviousSeverity = "P2", "warning"
	case notify.KindContinued:
		n.Continues = 5
		n.RoutedAt = "P2" // a page 5 already paid for
	}
	if kind == notify.KindResolved {
		n.EndsAt = starts.Add(37 * time.Minute)
		n.Minute = n.EndsAt.Add(-time.Minute)
		n.CreatedAt = n.EndsAt.Add(time.Second)
		n.Values = map[string]any{"a_H": int64(118), "c_H": int64(2), "rate_H": nil, "baseline": 0.02, "baseline_source": "platform", "ratio": 0.85}
	}
	return n
}

// NewFunc builds the notifier under test, sending to url (a base URL for
// integrations that append a path) with the given per-send timeout.
type NewFunc func(t *testing.T, url string, timeout time.Duration) notify.Notifier

// secretPath is appended to every URL RetryCodes hands out; errors must not
// repeat it, since for Slack the path is the credential.
const secretPath = "/hook/s3cr3t-token"

// RetryCodes checks an integration against the Notifier contract: every 2xx
// is success; 400, 401, 403, 404 and 422 are rejections (retry=false);
// 408, 429, 500, 502, 503 and 504, a refused connection and a timeout (its
// own and the caller's) are worth retrying (retry=true). It also checks that
// one Notify with one notification makes exactly one request (retrying is
// the Sender's job), that failures name the status and the receiver's
// answer, and that errors never contain the URL's path.
func RetryCodes(t *testing.T, newNotifier NewFunc) {
	t.Helper()
	cases := []struct {
		code  int
		ok    bool
		retry bool
	}{
		{code: 200, ok: true},
		{code: 202, ok: true},
		{code: 204, ok: true},
		{code: 400},
		{code: 401},
		{code: 403},
		{code: 404},
		{code: 422},
		{code: 408, retry: true},
		{code: 429, retry: true},
		{code: 500, retry: true},
		{code: 502, retry: true},
		{code: 503, retry: true},
		{code: 504, retry: true},
	}
	n := Sample(notify.KindFiring)
	for _, c := range cases {
		t.Run(strconv.Itoa(c.code), func(t *testing.T) {
			srv := NewServer(t, c.code)
			nt := newNotifier(t, srv.URL+secretPath, 5*time.Second)
			retry, err := nt.Notify(context.Background(), n)
			if got := len(srv.Requests()); got != 1 {
				t.Fatalf("Notify made %d requests, want exactly 1", got)
			}
			if c.ok {
				if err != nil || retry {
					t.Fatalf("status %d: Notify = (retry %v, %v), want success", c.code, retry, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("status %d: Notify succeeded, want an error", c.code)
			}
			if retry != c.retry {
				t.Errorf("status %d: retry = %v, want %v (err: %v)", c.code, retry, c.retry, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, strconv.Itoa(c.code)) {
				t.Errorf("error %q does not name status %d", msg, c.code)
			}
			if !strings.Contains(msg, "notifytest answered") {
				t.Errorf("error %q does not carry the receiver's answer", msg)
			}
			if strings.Contains(msg, "s3cr3t") {
				t.Errorf("error %q leaks the URL path", msg)
			}
		})
	}

	t.Run("connection refused", func(t *testing.T) {
		nt := newNotifier(t, RefusedURL(t)+secretPath, 5*time.Second)
		retry, err := nt.Notify(context.Background(), n)
		if err == nil || !retry {
			t.Fatalf("Notify = (retry %v, %v), want a retryable error", retry, err)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error %q leaks the URL path", err)
		}
	})

	t.Run("timeout of the notifier", func(t *testing.T) {
		srv := NewServer(t)
		srv.SetDelay(time.Minute)
		nt := newNotifier(t, srv.URL+secretPath, 100*time.Millisecond)
		start := time.Now()
		retry, err := nt.Notify(context.Background(), n)
		if err == nil || !retry {
			t.Fatalf("Notify = (retry %v, %v), want a retryable error", retry, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Notify took %s with a 100ms timeout", d)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error %q leaks the URL path", err)
		}
	})

	t.Run("timeout of the caller", func(t *testing.T) {
		srv := NewServer(t)
		srv.SetDelay(time.Minute)
		nt := newNotifier(t, srv.URL+secretPath, time.Minute)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		retry, err := nt.Notify(ctx, n)
		if err == nil || !retry {
			t.Fatalf("Notify = (retry %v, %v), want a retryable error", retry, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Notify took %s past a 100ms deadline", d)
		}
	})

	t.Run("nothing to send", func(t *testing.T) {
		srv := NewServer(t)
		nt := newNotifier(t, srv.URL+secretPath, 5*time.Second)
		if retry, err := nt.Notify(context.Background()); err != nil || retry {
			t.Fatalf("Notify() = (retry %v, %v), want (false, nil)", retry, err)
		}
		if got := len(srv.Requests()); got != 0 {
			t.Errorf("Notify() made %d requests, want 0", got)
		}
	})
}
