package httptemplate_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/notify"
	"github.com/riskwatch/riskwatch/internal/notify/httptemplate"
	"github.com/riskwatch/riskwatch/internal/notify/notifytest"
)

func seoul(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func newNotifier(t *testing.T, c httptemplate.Config) *httptemplate.Notifier {
	t.Helper()
	n, err := httptemplate.New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

func TestRetryCodes(t *testing.T) {
	notifytest.RetryCodes(t, func(t *testing.T, url string, timeout time.Duration) notify.Notifier {
		return newNotifier(t, httptemplate.Config{Spec: httptemplate.Spec{URL: url, Body: `{"text": {{json .Summary}}}`}, Timeout: timeout})
	})
}

// TestRequestArrivesAsConfigured: method, path and query, headers and body
// reach a real HTTP receiver exactly as the templates render them, with
// the idempotency key, and every function's output worked out by hand.
func TestRequestArrivesAsConfigured(t *testing.T) {
	srv := notifytest.NewServer(t, http.StatusOK)
	n := newNotifier(t, httptemplate.Config{Location: seoul(t), Spec: httptemplate.Spec{
		Method: "put",
		URL:    srv.URL + `/chat/{{.Rule}}?merchant={{.MerchantID}}&who={{urlquery .MerchantName}}`,
		Headers: map[string]string{
			"Authorization": "Bearer s3cr3t",
			"X-Alert":       "{{.AlertID}}-{{.Kind}}-{{.Status}}",
		},
		Body: `{"headline": {{json .Headline}}, "minute": {{json ((local .Minute).Format "2006-01-02 15:04")}},
			"at_stake": {{json (krw .Exposure)}}, "canceled": {{json (comma .CanceledAmount)}}, "rate": {{json (pct (index .Values "rate_h"))}},
			"short": {{json (truncate 6 .MerchantName)}}, "values": {{json .Values}}, "ends": {{json .EndsAt}}, "test": {{.Test}}}`,
	}})
	x := httptemplate.Samples()[0] // firing cancel_rate_spike
	x.MerchantName = "한빛 & 상사 주식회사"
	if retry, err := n.Notify(context.Background(), x); err != nil || retry {
		t.Fatalf("Notify = (%v, %v)", retry, err)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPut || r.Path != "/chat/cancel_rate_spike" {
		t.Errorf("request %s %s, want PUT /chat/cancel_rate_spike", r.Method, r.Path)
	}
	for k, want := range map[string]string{
		"Authorization": "Bearer s3cr3t", "X-Alert": "1-firing-firing", "Content-Type": "application/json",
		"Idempotency-Key": x.IdempotencyKey, "User-Agent": notify.UserAgent,
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	var body struct {
		Headline, Minute, AtStake, Canceled, Rate, Short string
		Values                                           map[string]any
		Ends                                             *string
		Test                                             bool
	}
	raw := strings.NewReplacer(`"at_stake"`, `"atstake"`).Replace(string(r.Body))
	if err := json.Unmarshal([]byte(raw), &body); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, r.Body)
	}
	// 05:02 UTC is 14:02 in Seoul; 1,234,567,890 KRW is 12.3억; 48,300,000
	// with separators; 0.125 is 12.5%; the name's first five characters and
	// the cut mark.
	want := map[string]string{
		"headline": "[P1] firing: cancel_rate_spike · 한빛 & 상사 주식회사 (#1001)", "minute": "2026-11-25 14:02",
		"at_stake": "12.3억원", "canceled": "48,300,000", "rate": "12.5%", "short": "한빛 & …",
	}
	got := map[string]string{"headline": body.Headline, "minute": body.Minute, "at_stake": body.AtStake, "canceled": body.Canceled, "rate": body.Rate, "short": body.Short}
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("%s = %q, want %q", k, got[k], want[k])
		}
	}
	if body.Values["c_h"] != float64(15) || body.Values["baseline_source"] != "merchant" || body.Ends != nil || body.Test {
		t.Errorf("values %v, ends %v, test %v", body.Values, body.Ends, body.Test)
	}
}

func TestKRW(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0원"},
		{9_999, "9,999원"},
		{10_000, "1만원"},
		{14_999, "1만원"},
		{15_000, "2만원"}, // half up
		{34_004_999, "3,400만원"},
		{99_994_999, "9,999만원"},
		{99_995_000, "1억원"}, // rounds up into the next unit
		{100_000_000, "1억원"},
		{104_999_999, "1억원"},
		{105_000_000, "1.1억원"},
		{1_234_567_890, "12.3억원"},
		{16_800_000_000, "168억원"},
		{999_949_999_999, "9,999.5억원"},
		{999_994_999_999, "9,999.9억원"},
		{999_995_000_000, "1조원"},
		{1_250_000_000_000, "1.3조원"},
		{-48_300_000, "-4,830만원"},
		{9_223_372_036_854_775_807, "9,223,372조원"},
		{-9_223_372_036_854_775_808, "-9,223,372조원"},
	}
	tp, err := httptemplate.Parse(httptemplate.Spec{URL: "https://h/", Body: `{{krw (index .Values "n")}}`, Headers: map[string]string{"Content-Type": "text/plain"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		// As the engine holds it (int64) and as the outbox returns it
		// (float64, exact up to 2^53).
		ins := []any{tt.n}
		if tt.n > -1<<53 && tt.n < 1<<53 {
			ins = append(ins, float64(tt.n))
		}
		for _, in := range ins {
			req, err := tp.Render(httptemplate.Data{Values: map[string]any{"n": in}})
			if err != nil {
				t.Fatal(err)
			}
			if string(req.Body) != tt.want {
				t.Errorf("krw(%T %d) = %q, want %q", in, tt.n, req.Body, tt.want)
			}
		}
	}
	req, err := tp.Render(httptemplate.Data{Values: map[string]any{}})
	if err != nil || string(req.Body) != "-" {
		t.Errorf("krw(missing) = %q, %v; want -", req.Body, err)
	}
}

// TestRenderingFailureIsPermanent: a notification the templates cannot
// render is rejected (not retried, nothing sent) with an error that names
// the template and says it is permanent; the next one still goes out.
func TestRenderingFailureIsPermanent(t *testing.T) {
	srv := notifytest.NewServer(t, http.StatusOK)
	n := newNotifier(t, httptemplate.Config{Spec: httptemplate.Spec{
		// Merchant 777's name is not a number: only real data shows it.
		URL:  srv.URL + "/x",
		Body: `{"m": {{if eq .MerchantID 777}}{{krw .MerchantName}}{{else}}1{{end}}}`,
	}})
	bad := httptemplate.Samples()[0]
	bad.MerchantID = 777
	retry, err := n.Notify(context.Background(), bad)
	if err == nil || retry {
		t.Fatalf("Notify = (%v, %v), want a permanent error", retry, err)
	}
	for _, want := range []string{"body:", "krw: not a number", "permanent", "not retried"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if len(srv.Requests()) != 0 {
		t.Fatalf("a request was sent for a notification that did not render")
	}
	if retry, err := n.Notify(context.Background(), httptemplate.Samples()[0]); err != nil || retry {
		t.Fatalf("next notification: (%v, %v)", retry, err)
	}

	// A URL that renders invalid for one merchant: rejected, the URL (which
	// may hold a token) not repeated.
	n = newNotifier(t, httptemplate.Config{Spec: httptemplate.Spec{URL: srv.URL + `/s3cr3t/{{if eq .MerchantID 777}}%zz{{end}}`}})
	retry, err = n.Notify(context.Background(), bad)
	if err == nil || retry || !strings.Contains(err.Error(), "url: rendered URL") || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("Notify = (%v, %v), want a permanent url error without the URL", retry, err)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		spec httptemplate.Spec
		want string
	}{
		{"content type templated", httptemplate.Spec{URL: "https://h/", Headers: map[string]string{"Content-Type": "{{.Rule}}"}, Body: "x"}, "headers[Content-Type]: must be fixed text"},
		{"bad content type", httptemplate.Spec{URL: "https://h/", Headers: map[string]string{"Content-Type": "a b c"}, Body: "x"}, "headers[Content-Type]: not a media type"},
		{"header twice", httptemplate.Spec{URL: "https://h/", Headers: map[string]string{"X-A": "1", "x-a": "2"}}, "given twice"},
		{"bad header name", httptemplate.Spec{URL: "https://h/", Headers: map[string]string{"X A": "1"}}, "headers[X A]: not a valid header name"},
		{"truncate zero", httptemplate.Spec{URL: "https://h/", Body: `{{json (truncate 0 .Summary)}}`}, "truncate: length must be at least 1"},
		{"json not used on a string", httptemplate.Spec{URL: "https://h/", Body: `{"s": {{.Summary}}}`}, "rendered body is not valid JSON"},
		{"url secret kept out", httptemplate.Spec{URL: "ftp://user:s3cr3t@h/{{.Rule}}"}, "url: with a sample firing cancel_rate_spike notification: rendered URL must be an absolute http or https URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := httptemplate.Parse(tt.spec, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error %q repeats the URL's secret", err)
			}
		})
	}
	// A form-encoded body is not checked as JSON, and GET takes a query.
	for _, s := range []httptemplate.Spec{
		{URL: "https://h/", Headers: map[string]string{"content-type": "application/x-www-form-urlencoded"}, Body: `msg={{urlquery .Headline}}`},
		{Method: "GET", URL: `https://h/send?text={{urlquery .Headline}}`},
	} {
		if _, err := httptemplate.Parse(s, nil); err != nil {
			t.Errorf("Parse(%+v): %v", s, err)
		}
	}
}

func TestTestNotificationIsMarked(t *testing.T) {
	srv := notifytest.NewServer(t, http.StatusOK)
	n := newNotifier(t, httptemplate.Config{Spec: httptemplate.Spec{URL: srv.URL,
		Body: `{"test": {{.Test}}, "headline": {{json .Headline}}, "summary": {{json .Summary}}}`}})
	x := notify.TestNotification("chat", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "https://rw.example/")
	if _, err := n.Notify(context.Background(), x); err != nil {
		t.Fatal(err)
	}
	r := srv.Requests()[0]
	var body struct {
		Test              bool
		Headline, Summary string
	}
	r.Decode(t, &body)
	if !body.Test || body.Headline != "[TEST] [P3] firing: test" || !strings.HasPrefix(body.Summary, "[TEST] ") {
		t.Fatalf("test notification rendered as %+v", body)
	}
	if k := r.Header.Get("Idempotency-Key"); !strings.HasPrefix(k, "riskwatch-test-chat-") {
		t.Fatalf("Idempotency-Key %q", k)
	}
}
