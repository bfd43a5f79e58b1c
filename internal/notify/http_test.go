package notify

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRetryableStatus(t *testing.T) {
	for code, want := range map[int]bool{
		400: false, 401: false, 403: false, 404: false, 409: false, 410: false, 413: false, 422: false,
		408: true, 429: true, 500: true, 501: true, 502: true, 503: true, 504: true, 599: true,
	} {
		if got := RetryableStatus(code); got != want {
			t.Errorf("RetryableStatus(%d) = %v, want %v", code, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 14, 1, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"120", 2 * time.Minute},
		{" 5 ", 5 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"99999999999999999", 24 * time.Hour},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{nil, "null"},
		{"platform", "platform"},
		{true, "true"},
		{42, "42"},
		{int64(-7), "-7"},
		{1500000000.0, "1500000000"},
		{1234567890.5714285, "1234567890.5714285"},
		{0.125, "0.125"},
		{sum(0.1, 0.2), "0.30000000000000004"}, // all digits: annotations are for machines too
		{1e-9, "1e-09"},
		{1e22, "1e+22"},
		{math.NaN(), "NaN"},
		{math.Inf(-1), "-Inf"},
		{float32(0.5), "0.5"},
		{json.Number("12.50"), "12.50"},
		{time.Second, "1s"},
	}
	for _, tt := range tests {
		if got := FormatValue(tt.in); got != tt.want {
			t.Errorf("FormatValue(%#v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestJSONValuesAlwaysEncodes(t *testing.T) {
	in := map[string]any{"nan": math.NaN(), "inf": math.Inf(1), "f32": float32(math.Inf(-1)), "ok": 1.5, "nil": nil}
	out := JSONValues(in)
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if want := `{"f32":"-Inf","inf":"+Inf","nan":"NaN","nil":null,"ok":1.5}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
	if !math.IsNaN(in["nan"].(float64)) {
		t.Error("JSONValues modified its input")
	}
	if b, _ := json.Marshal(JSONValues(nil)); string(b) != "{}" {
		t.Errorf("JSONValues(nil) encodes as %s, want {}", b)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T0/B0/secret": "https://hooks.slack.com",
		"http://user:pw@am:9093/api?token=x":            "http://am:9093",
		"not a url":                                     "<invalid URL>",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseHeaders(t *testing.T) {
	h, err := ParseHeaders(map[string]string{"authorization": "Bearer x", "X-Team": "risk"})
	if err != nil {
		t.Fatal(err)
	}
	if h.Get("Authorization") != "Bearer x" || h.Get("X-Team") != "risk" {
		t.Errorf("headers = %v", h)
	}
	for name, value := range map[string]string{"Content-Type": "x", "host": "x", "Bad Name": "x", "": "x", "X-Ok": "a\nb"} {
		_, err := ParseHeaders(map[string]string{name: value})
		if err == nil || !strings.Contains(err.Error(), "headers[") {
			t.Errorf("ParseHeaders(%q: %q) error = %v, want one naming headers[...]", name, value, err)
		}
		if err != nil && strings.Contains(err.Error(), value) && value != "x" {
			t.Errorf("error %q repeats the header value", err)
		}
	}
}

func TestReasonIsBoundedUTF8(t *testing.T) {
	long := strings.Repeat("가", 1000) // 3000 bytes
	r := reason(errString(long))
	if !utf8.ValidString(r) || len(r) > maxReason+len("…") {
		t.Errorf("reason: %d bytes, valid UTF-8 %v", len(r), utf8.ValidString(r))
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestBackoff(t *testing.T) {
	s := NewSender(SenderOptions{Name: "r", Notifier: nopNotifier{}, Queue: nopQueue{}, BackoffMin: time.Second, BackoffMax: 5 * time.Minute})
	for attempts, want := range map[int]time.Duration{
		1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 9: 256 * time.Second,
		10: 5 * time.Minute, 1000: 5 * time.Minute, math.MaxInt: 5 * time.Minute,
	} {
		if got := s.backoff(attempts); got != want {
			t.Errorf("backoff(%d) = %s, want %s", attempts, got, want)
		}
	}
	// A maximum below the minimum is lifted to it rather than inverting.
	s = NewSender(SenderOptions{Name: "r", Notifier: nopNotifier{}, Queue: nopQueue{}, BackoffMin: time.Minute, BackoffMax: time.Second})
	if got := s.backoff(5); got != time.Minute {
		t.Errorf("backoff with max < min = %s, want the minimum", got)
	}
}

func TestRandomJitterOnlyAdds(t *testing.T) {
	j := RandomJitter(0.2)
	for range 1000 {
		if d := j(10 * time.Second); d < 10*time.Second || d > 12*time.Second {
			t.Fatalf("jitter gave %s for 10s at 20%%", d)
		}
	}
}

type nopNotifier struct{}

func (nopNotifier) Notify(context.Context, ...Notification) (bool, error) { return false, nil }

type nopQueue struct{}

func (nopQueue) Due(context.Context, string, time.Time, int) ([]Notification, time.Duration, error) {
	return nil, 0, nil
}
func (nopQueue) Delivered(context.Context, string, []int64, time.Time) error { return nil }
func (nopQueue) Retry(context.Context, string, []int64, int, time.Time, string) error {
	return nil
}
func (nopQueue) Rejected(context.Context, string, []int64, string) error { return nil }

// sum keeps the addition at run time (constants are exact).
func sum(a, b float64) float64 { return a + b }
