package webhook_test

import (
	"context"
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/notify"
	"github.com/riskwatch/riskwatch/internal/notify/notifytest"
	"github.com/riskwatch/riskwatch/internal/notify/webhook"
)

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  webhook.Config
		want string // substring of the error; "" = valid
	}{
		{"valid", webhook.Config{URL: "https://hooks.example.com/riskwatch"}, ""},
		{"valid with headers", webhook.Config{URL: "http://10.0.0.1:8080/x", Headers: map[string]string{"Authorization": "Bearer t"}}, ""},
		{"missing url", webhook.Config{}, "url: is required"},
		{"relative url", webhook.Config{URL: "/hook"}, "url: must be an absolute"},
		{"wrong scheme", webhook.Config{URL: "ftp://example.com/x"}, "url: must be an absolute"},
		{"unparsable url", webhook.Config{URL: "http://[::1"}, "url: is not a valid URL"},
		{"negative timeout", webhook.Config{URL: "http://example.com", Timeout: -time.Second}, "timeout:"},
		{"bad header name", webhook.Config{URL: "http://example.com", Headers: map[string]string{"X Bad": "v"}}, `headers["X Bad"]`},
		{"reserved header", webhook.Config{URL: "http://example.com", Headers: map[string]string{"idempotency-key": "v"}}, `headers["idempotency-key"]`},
		{"header injection", webhook.Config{URL: "http://example.com", Headers: map[string]string{"X-A": "v\r\nX-B: w"}}, `headers["X-A"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.New(tt.cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("New error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNewKeepsSecretsOutOfErrors(t *testing.T) {
	_, err := webhook.New(webhook.Config{URL: "ftp://user:s3cr3t@example.com/x"})
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("New error = %v, want an error without the URL's secret", err)
	}
}

func TestRetryCodes(t *testing.T) {
	notifytest.RetryCodes(t, func(t *testing.T, url string, timeout time.Duration) notify.Notifier {
		n, err := webhook.New(webhook.Config{URL: url, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		return n
	})
}

func newNotifier(t *testing.T, url string) *webhook.Notifier {
	t.Helper()
	n, err := webhook.New(webhook.Config{URL: url, Headers: map[string]string{"Authorization": "Bearer abc", "X-Env": "prod"}})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPayloadFiring(t *testing.T) {
	srv := notifytest.NewServer(t)
	in := notifytest.Sample(notify.KindFiring)
	in.Values["nan"] = math.NaN()
	if _, err := newNotifier(t, srv.URL+"/in").Notify(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "/in" {
		t.Errorf("request %s %s, want POST /in", r.Method, r.Path)
	}
	for name, want := range map[string]string{
		"Content-Type":    "application/json",
		"User-Agent":      "riskwatch",
		"Idempotency-Key": in.IdempotencyKey,
		"Authorization":   "Bearer abc",
		"X-Env":           "prod",
	} {
		if got := r.Header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}

	// Decoded generically so the test checks the wire names, not the Go struct.
	var body map[string]any
	r.Decode(t, &body)
	if len(body) != 2 || body["version"] != "1" {
		t.Errorf("envelope = %v, want exactly version \"1\" and notifications", keys(body))
	}
	items, ok := body["notifications"].([]any)
	if !ok || len(items) != 1 {
		t.Fatalf("notifications = %v, want an array of one", body["notifications"])
	}
	item := items[0].(map[string]any)
	want := map[string]any{
		"id":                float64(42),
		"idempotency_key":   "riskwatch-7-firing-1",
		"kind":              "firing",
		"alert_id":          float64(7),
		"rule":              "cancel_rate_spike",
		"merchant_id":       float64(1001),
		"merchant_name":     "Hanbit Books & <Co>",
		"severity":          "critical",
		"priority":          "P1",
		"routed_at":         "P1",
		"previous_priority": nil,
		"previous_severity": nil,
		"continues":         nil,
		"summary":           in.Summary,
		"starts_at":         "2025-03-14T01:02:00Z",
		"ends_at":           nil,
		"minute":            "2025-03-14T01:01:00Z",
		"values": map[string]any{
			"a_H": float64(120), "c_H": float64(15), "rate_H": 0.125, "baseline": 0.02,
			"baseline_source": "merchant", "ratio": 6.25, "nan": "NaN",
		},
		"dashboard_url": "https://riskwatch.example.com/merchants/1001",
		"created_at":    "2025-03-14T01:02:01.5Z",
	}
	// Every Notification field is on the wire (Attempts is delivery state,
	// not message content).
	if got, w := len(item), reflect.TypeFor[notify.Notification]().NumField()-1; got != w || len(want) != w {
		t.Errorf("item has %d fields, want %d (one per Notification field): %v", got, w, keys(item))
	}
	for k, w := range want {
		got, ok := item[k]
		if !ok {
			t.Errorf("item lacks %q", k)
			continue
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("item[%q] = %#v, want %#v", k, got, w)
		}
	}
	for _, k := range []string{"starts_at", "minute", "created_at"} {
		if _, err := time.Parse(time.RFC3339Nano, item[k].(string)); err != nil {
			t.Errorf("item[%q] is not RFC 3339: %v", k, err)
		}
	}
}

func TestPayloadResolved(t *testing.T) {
	srv := notifytest.NewServer(t)
	in := notifytest.Sample(notify.KindResolved)
	// A time zone other than UTC on the way in must not leak through.
	in.EndsAt = in.EndsAt.In(time.FixedZone("KST", 9*3600))
	if _, err := newNotifier(t, srv.URL).Notify(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	var msg webhook.Message
	srv.Requests()[0].Decode(t, &msg)
	it := msg.Notifications[0]
	if it.Kind != "resolved" || it.EndsAt == nil || *it.EndsAt != "2025-03-14T01:39:00Z" {
		t.Errorf("kind %q ends_at %v, want resolved at 2025-03-14T01:39:00Z", it.Kind, it.EndsAt)
	}
	if v, ok := it.Values["rate_H"]; !ok || v != nil {
		t.Errorf("values.rate_H = %v (present %v), want null", v, ok)
	}
}

func TestBatchCarriesKeysInItems(t *testing.T) {
	srv := notifytest.NewServer(t)
	a, b := notifytest.Sample(notify.KindFiring), notifytest.Sample(notify.KindResolved)
	b.ID, b.IdempotencyKey = 43, "k-43"
	if _, err := newNotifier(t, srv.URL).Notify(context.Background(), a, b); err != nil {
		t.Fatal(err)
	}
	r := srv.Requests()[0]
	if got := r.Header.Get("Idempotency-Key"); got != "" {
		t.Errorf("Idempotency-Key = %q on a batch, want none (it could name only one item)", got)
	}
	var msg webhook.Message
	r.Decode(t, &msg)
	if len(msg.Notifications) != 2 || msg.Notifications[0].IdempotencyKey != a.IdempotencyKey || msg.Notifications[1].IdempotencyKey != "k-43" {
		t.Errorf("items = %+v, want both, in order, each with its key", msg.Notifications)
	}
}

func TestMaxBatch(t *testing.T) {
	if got := newNotifier(t, "http://example.com").MaxBatch(); got != 1 {
		t.Errorf("MaxBatch = %d, want 1", got)
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
