package pagerduty_test

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/riskwatch/riskwatch/internal/notify"
	"github.com/riskwatch/riskwatch/internal/notify/notifytest"
	"github.com/riskwatch/riskwatch/internal/notify/pagerduty"
)

const key = "R0UT1NGK3Y0123456789abcdefABCDEF" // 32 characters, like a real integration key

// checkEvent checks a decoded body against the Events API v2 "send an alert
// event" documentation (developer.pagerduty.com, Events API v2 > Send an
// Alert Event) and returns the violations.
func checkEvent(e map[string]any) (errs []string) {
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	known := []string{"routing_key", "event_action", "dedup_key", "payload", "client", "client_url", "links", "images"}
	for k := range e {
		if !slices.Contains(known, k) {
			bad("unknown top-level field %q", k)
		}
	}
	// routing_key: string, required.
	if s, ok := e["routing_key"].(string); !ok || s == "" {
		bad("routing_key: required string, got %#v", e["routing_key"])
	}
	// event_action: trigger, acknowledge or resolve; required.
	action, _ := e["event_action"].(string)
	if !slices.Contains([]string{"trigger", "acknowledge", "resolve"}, action) {
		bad("event_action = %#v, want trigger, acknowledge or resolve", e["event_action"])
	}
	// dedup_key: string up to 255 characters; required for acknowledge and resolve.
	dk, hasDK := e["dedup_key"].(string)
	if hasDK && (dk == "" || len(dk) > 255) || !hasDK && action != "trigger" {
		bad("dedup_key = %#v, want 1..255 characters (required for %s)", e["dedup_key"], action)
	}
	// payload: required for trigger.
	p, hasPayload := e["payload"].(map[string]any)
	if action == "trigger" && !hasPayload {
		bad("payload: required for trigger")
	}
	if hasPayload {
		pknown := []string{"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}
		for k := range p {
			if !slices.Contains(pknown, k) {
				bad("unknown payload field %q", k)
			}
		}
		// payload.summary: required, at most 1024 characters.
		if s, ok := p["summary"].(string); !ok || s == "" || utf8.RuneCountInString(s) > 1024 {
			bad("payload.summary: required string of 1..1024 characters")
		}
		// payload.source: required string.
		if s, ok := p["source"].(string); !ok || s == "" {
			bad("payload.source: required string")
		}
		// payload.severity: critical, error, warning or info; required.
		if s, _ := p["severity"].(string); !slices.Contains([]string{"critical", "error", "warning", "info"}, s) {
			bad("payload.severity = %#v, want critical, error, warning or info", p["severity"])
		}
		// payload.timestamp: ISO 8601 (riskwatch sends RFC 3339).
		if v, ok := p["timestamp"]; ok {
			if s, _ := v.(string); s == "" {
				bad("payload.timestamp = %#v, want a string", v)
			} else if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				bad("payload.timestamp %q: %v", s, err)
			}
		}
		// payload.component, group, class: strings.
		for _, k := range []string{"component", "group", "class"} {
			if v, ok := p[k]; ok {
				if _, isStr := v.(string); !isStr {
					bad("payload.%s = %#v, want a string", k, v)
				}
			}
		}
		// payload.custom_details: an object.
		if v, ok := p["custom_details"]; ok {
			if _, isObj := v.(map[string]any); !isObj {
				bad("payload.custom_details = %#v, want an object", v)
			}
		}
	}
	// links: array of {href (required), text}.
	if v, ok := e["links"]; ok {
		ls, isArr := v.([]any)
		if !isArr {
			bad("links = %#v, want an array", v)
		}
		for i, l := range ls {
			o, _ := l.(map[string]any)
			if h, _ := o["href"].(string); h == "" {
				bad("links[%d].href: required", i)
			} else if u, err := url.Parse(h); err != nil || !u.IsAbs() {
				bad("links[%d].href %q: want an absolute URL", i, h)
			}
			if t, ok := o["text"]; ok {
				if _, isStr := t.(string); !isStr {
					bad("links[%d].text: want a string", i)
				}
			}
		}
	}
	return errs
}

func send(t *testing.T, ns ...notify.Notification) []map[string]any {
	t.Helper()
	out := sendAll(t, ns...)
	if len(out) != len(ns) {
		t.Fatalf("%d requests for %d notifications, want one each", len(out), len(ns))
	}
	return out
}

// sendAll sends ns and returns every event posted.
func sendAll(t *testing.T, ns ...notify.Notification) []map[string]any {
	t.Helper()
	srv := notifytest.NewServer(t, 202)
	n, err := pagerduty.New(pagerduty.Config{URL: srv.URL + "/v2/enqueue", RoutingKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), ns...); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, r := range srv.Requests() {
		if r.Method != "POST" || r.Path != "/v2/enqueue" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("request %s %s (%s), want a JSON POST to /v2/enqueue", r.Method, r.Path, r.Header.Get("Content-Type"))
		}
		var e map[string]any
		r.Decode(t, &e)
		for _, msg := range checkEvent(e) {
			t.Error(msg)
		}
		out = append(out, e)
	}
	return out
}

func TestTriggerEvent(t *testing.T) {
	in := notifytest.Sample(notify.KindFiring)
	e := send(t, in)[0]
	want := map[string]any{
		"routing_key":  key,
		"event_action": "trigger",
		"dedup_key":    "riskwatch-cancel_rate_spike-1001-7-P1", // routed at P1: a page of its own
		"client":       "riskwatch",
		"client_url":   "https://riskwatch.example.com/merchants/1001",
		"links":        []any{map[string]any{"href": "https://riskwatch.example.com/merchants/1001", "text": "riskwatch dashboard"}},
		"payload": map[string]any{
			"summary":   in.Summary,
			"source":    "riskwatch",
			"severity":  "critical",
			"timestamp": "2025-03-14T01:02:00Z",
			"component": "1001",
			"class":     "cancel_rate_spike",
			"group":     "P1",
			"custom_details": map[string]any{
				"a_H": float64(120), "c_H": float64(15), "rate_H": 0.125, "baseline": 0.02,
				"baseline_source": "merchant", "ratio": 6.25,
			},
		},
	}
	if !slices.Equal(sortedKeys(e), sortedKeys(want)) {
		t.Errorf("fields %v, want %v", sortedKeys(e), sortedKeys(want))
	}
	for k, w := range want {
		if !reflect.DeepEqual(e[k], w) {
			t.Errorf("%s = %#v, want %#v", k, e[k], w)
		}
	}
}

// asP2 is a notification of a P2 alert.
func asP2(n notify.Notification) notify.Notification {
	n.Priority, n.RoutedAt, n.Severity = "P2", "P2", "warning"
	return n
}

func TestLifecycleSharesDedupKey(t *testing.T) {
	fire, rep, res := asP2(notifytest.Sample(notify.KindFiring)), asP2(notifytest.Sample(notify.KindRepeat)), asP2(notifytest.Sample(notify.KindResolved))
	rep.CreatedAt = fire.StartsAt.Add(4 * time.Hour)
	es := send(t, fire, rep, res)
	for i, want := range []string{"trigger", "trigger", "resolve"} {
		if es[i]["event_action"] != want {
			t.Errorf("event %d action %v, want %s", i, es[i]["event_action"], want)
		}
		if es[i]["dedup_key"] != "riskwatch-cancel_rate_spike-1001-7" {
			t.Errorf("event %d dedup_key %v, want the alert's key", i, es[i]["dedup_key"])
		}
	}
	// timestamp is the transition's own time.
	for i, want := range []string{"2025-03-14T01:02:00Z", "2025-03-14T05:02:00Z", "2025-03-14T01:39:00Z"} {
		if got := es[i]["payload"].(map[string]any)["timestamp"]; got != want {
			t.Errorf("event %d timestamp %v, want %s", i, got, want)
		}
	}
	if cd := es[2]["payload"].(map[string]any)["custom_details"].(map[string]any); cd["rate_H"] != nil {
		t.Errorf("resolved custom_details.rate_H = %v, want null", cd["rate_H"])
	}
}

// TestEscalationPagesUnderItsOwnKey: a trigger deduplicated into an open
// warning pages nobody, so an escalation to P1 (and what follows at P1)
// goes under a key of its own at critical severity, and the resolve closes
// both.
func TestEscalationPagesUnderItsOwnKey(t *testing.T) {
	fire := asP2(notifytest.Sample(notify.KindFiring))
	esc := notifytest.Sample(notify.KindEscalated) // P1, from P2
	rep := notifytest.Sample(notify.KindRepeat)
	res := notifytest.Sample(notify.KindResolved) // routed at P1, the most urgent it was told at
	cont := asP2(notifytest.Sample(notify.KindContinued))
	cont.Priority, cont.AlertID = "P1", 8 // a P1 re-fire after that page: told at P2
	es := sendAll(t, fire, esc, rep, res, cont)
	base, page := "riskwatch-cancel_rate_spike-1001-7", "riskwatch-cancel_rate_spike-1001-7-P1"
	want := []struct{ action, key, severity string }{
		{"trigger", base, "warning"},
		{"trigger", page, "critical"},
		{"trigger", page, "critical"},
		{"resolve", base, "critical"},
		{"resolve", page, "critical"},
		{"trigger", "riskwatch-cancel_rate_spike-1001-8", "warning"},
	}
	if len(es) != len(want) {
		t.Fatalf("%d events, want %d", len(es), len(want))
	}
	for i, w := range want {
		p := es[i]["payload"].(map[string]any)
		if es[i]["event_action"] != w.action || es[i]["dedup_key"] != w.key || p["severity"] != w.severity {
			t.Errorf("event %d: %v %v %v, want %s %s %s", i, es[i]["event_action"], es[i]["dedup_key"], p["severity"], w.action, w.key, w.severity)
		}
	}
}

func TestSummaryAndSeverity(t *testing.T) {
	in := notifytest.Sample(notify.KindFiring)
	in.Summary = strings.Repeat("취소", 700) // 1400 runes, 4200 bytes
	in.Severity = "page-everyone"
	in.DashboardURL = ""
	e := send(t, in)[0]
	p := e["payload"].(map[string]any)
	s := p["summary"].(string)
	if n := utf8.RuneCountInString(s); n != 1024 || !strings.HasSuffix(s, "…") {
		t.Errorf("summary has %d runes (suffix %q), want 1024 ending in …", n, s[len(s)-3:])
	}
	if p["severity"] != "error" {
		t.Errorf("severity %v for an unknown one, want error", p["severity"])
	}
	if _, ok := e["links"]; ok {
		t.Errorf("links present without a dashboard URL")
	}
	warn := notifytest.Sample(notify.KindFiring)
	warn.Severity = "warning"
	if got := send(t, warn)[0]["payload"].(map[string]any)["severity"]; got != "warning" {
		t.Errorf("severity %v, want warning", got)
	}
}

func TestUnknownKindIsRejectedWithoutSending(t *testing.T) {
	srv := notifytest.NewServer(t, 202)
	n, err := pagerduty.New(pagerduty.Config{URL: srv.URL, RoutingKey: key})
	if err != nil {
		t.Fatal(err)
	}
	in := notifytest.Sample("acknowledged")
	retry, err := n.Notify(context.Background(), in)
	if err == nil || retry {
		t.Fatalf("Notify = (%v, %v), want a permanent error", retry, err)
	}
	if len(srv.Requests()) != 0 {
		t.Errorf("sent %d requests for an unknown kind", len(srv.Requests()))
	}
}

func TestNewValidates(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  pagerduty.Config
		want string
	}{
		{"default url", pagerduty.Config{RoutingKey: key}, ""},
		{"eu url", pagerduty.Config{URL: "https://events.eu.pagerduty.com/v2/enqueue", RoutingKey: key}, ""},
		{"no routing key", pagerduty.Config{}, "pagerduty: routing_key: is required"},
		{"blank routing key", pagerduty.Config{RoutingKey: "  "}, "pagerduty: routing_key: is required"},
		{"padded routing key", pagerduty.Config{RoutingKey: key + "\n"}, "pagerduty: routing_key:"},
		{"bad url", pagerduty.Config{URL: "events.pagerduty.com", RoutingKey: key}, "pagerduty: url:"},
		{"negative timeout", pagerduty.Config{RoutingKey: key, Timeout: -1}, "pagerduty: timeout:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n, err := pagerduty.New(tt.cfg)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("New error = %v, want %q", err, tt.want)
			}
			if err == nil && n.MaxBatch() != 1 {
				t.Errorf("MaxBatch = %d, want 1", n.MaxBatch())
			}
		})
	}
	if pagerduty.DefaultURL != "https://events.pagerduty.com/v2/enqueue" {
		t.Errorf("DefaultURL = %s", pagerduty.DefaultURL)
	}
}

func TestRetryCodes(t *testing.T) {
	notifytest.RetryCodes(t, func(t *testing.T, url string, timeout time.Duration) notify.Notifier {
		n, err := pagerduty.New(pagerduty.Config{URL: url, RoutingKey: key, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		return n
	})
}

func TestCheckEventCatches(t *testing.T) {
	good := func() map[string]any {
		return map[string]any{"routing_key": key, "event_action": "trigger", "dedup_key": "k",
			"payload": map[string]any{"summary": "s", "source": "riskwatch", "severity": "critical"}}
	}
	if errs := checkEvent(good()); len(errs) > 0 {
		t.Fatalf("valid event got %q", errs)
	}
	tests := []struct {
		name   string
		mutate func(map[string]any)
		want   string
	}{
		{"no routing key", func(e map[string]any) { delete(e, "routing_key") }, "routing_key"},
		{"bad action", func(e map[string]any) { e["event_action"] = "fire" }, "event_action"},
		{"resolve without key", func(e map[string]any) { e["event_action"] = "resolve"; delete(e, "dedup_key") }, "dedup_key"},
		{"no payload", func(e map[string]any) { delete(e, "payload") }, "payload: required"},
		{"bad severity", func(e map[string]any) { e["payload"].(map[string]any)["severity"] = "high" }, "severity"},
		{"long summary", func(e map[string]any) { e["payload"].(map[string]any)["summary"] = strings.Repeat("x", 1025) }, "summary"},
		{"typo", func(e map[string]any) { e["payload"].(map[string]any)["customdetails"] = map[string]any{} }, "unknown payload field"},
		{"relative link", func(e map[string]any) { e["links"] = []any{map[string]any{"href": "/x"}} }, "links[0].href"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := good()
			tt.mutate(e)
			if errs := checkEvent(e); !strings.Contains(strings.Join(errs, "\n"), tt.want) {
				t.Errorf("violations %q, want one mentioning %q", errs, tt.want)
			}
		})
	}
}

func sortedKeys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}
