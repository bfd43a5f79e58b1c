package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestMalformedParameters sends every GET endpoint ids, times, days, steps
// and limits that are malformed, out of range or extreme: whatever the
// input, the answer is never a 5xx (400 for a bad parameter, 404 for an
// unknown endpoint, 200 where the value is merely unusual).
func TestMalformedParameters(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ids := []string{"-1", "0", "7", "2147483647", "2147483648", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
		"99999999999999999999999", "abc", "7.5", "0x10", "1e3", "%20", "+7"}
	times := []string{"", "0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00", "9999-12-31T23:59:59Z",
		"10000-01-01T00:00:00Z", "-0001-01-01T00:00:00Z", "yesterday", "2026-13-45T00:00", "2026-11-20T05:00:00+23:59",
		"2026-11-20T05:00:00-23:59", "1970-01-01T00:00:00Z", "2026-11-20T05:29:00Z", "2026-11-20T05:30:00Z"}
	ranges := [][2]string{{"2026-11-20T05:00:00Z", "2026-11-20T04:00:00Z"}, {"2026-11-20T05:00:00Z", "2026-11-20T05:00:00Z"},
		{"0001-01-01T00:00:00Z", "0001-01-01T01:00:00Z"}, {"0000-01-01T00:00:00Z", "0000-01-02T00:00:00Z"},
		{"0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"}, {"9999-12-30T00:00:00Z", "9999-12-31T23:59:59Z"},
		{"2026-11-12T00:00:00Z", "2026-11-20T05:00:00Z"}}
	days := []string{"", "0000-01-01", "0001-01-01", "0001-01-08", "9999-12-31", "10000-01-01", "-0001-01-01", "2026-02-30",
		"2026-11-20", "2026-11-21", "2026-11-12", "2026-11-11", "1970-01-01", "20261120", "garbage"}
	steps := []string{"", "1m", "1h", "1d", "5m", "1M", "-1m", "x"}
	limits := []string{"-1", "0", "1", "200", "201", "500", "501", "abc", "99999999999999999999", "1e2", "9223372036854775807"}

	var paths []string
	add := func(path string, q url.Values) {
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		paths = append(paths, path)
	}
	one := func(k, v string) url.Values { return url.Values{k: {v}} }
	add("/api/status", nil)
	for _, v := range times {
		add("/api/platform/minutes", one("from", v))
		add("/api/platform/minutes", one("to", v))
	}
	for _, r := range ranges {
		add("/api/platform/minutes", url.Values{"from": {r[0]}, "to": {r[1]}})
	}
	for _, v := range append(ids, strings.Repeat("x", 201)) {
		add("/api/merchants", one("q", v))
	}
	for _, v := range limits {
		add("/api/merchants", url.Values{"q": {"a"}, "limit": {v}})
		add("/api/rankings/risk", one("limit", v))
		add("/api/rankings/volume-drop", one("limit", v))
		add("/api/alerts", one("limit", v))
	}
	for _, id := range ids {
		p := "/api/merchants/" + url.PathEscape(id)
		add(p, nil)
		add(p+"/volume", nil)
		add(p+"/series", nil)
		for _, step := range steps {
			add(p+"/series", one("step", step))
		}
		add("/api/alerts", one("merchant", id))
		add("/api/alerts", one("before", id))
	}
	for _, step := range steps {
		for _, v := range times {
			add("/api/merchants/7/series", url.Values{"step": {step}, "from": {v}})
			add("/api/merchants/7/series", url.Values{"step": {step}, "to": {v}})
		}
		for _, r := range ranges {
			add("/api/merchants/7/series", url.Values{"step": {step}, "from": {r[0]}, "to": {r[1]}})
		}
	}
	for _, d := range days {
		add("/api/merchants/7/volume", one("day", d))
		add("/api/merchants/9/volume", one("day", d))
	}
	for _, v := range []string{"firing", "resolved", "open", ""} {
		add("/api/alerts", one("state", v))
	}
	for _, v := range []string{"cancel_rate_spike", "volume_drop", "fraud"} {
		add("/api/alerts", one("rule", v))
	}
	add("/api/events", one("x", "1"))
	add("/api/nope", nil)

	for _, p := range paths {
		code, body := w.status(t, p)
		var e struct{ Error string }
		switch {
		case code == http.StatusOK:
		case code == http.StatusBadRequest || code == http.StatusNotFound:
			if json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
				t.Errorf("GET %s: %d without a JSON error: %s", p, code, body)
			}
		default:
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}

	// What the out-of-range values are told. L is 2026-11-20 05:29 UTC,
	// 14:29 in Seoul, and the retention 8 days: its first minute is 14:30
	// on 2026-11-12 in Seoul.
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/api/merchants/692/volume?day=0000-01-01", 400, `day: want a business day from 2026-11-12 to 2026-11-20 (the retention up to the last closed minute), got "0000-01-01"`},
		{"/api/merchants/7/volume?day=2026-11-11", 400, "day: want a business day from 2026-11-12 to 2026-11-20"},
		{"/api/merchants/7/volume?day=2026-11-21", 400, "day: want a business day from 2026-11-12 to 2026-11-20"},
		{"/api/merchants/7/volume?day=2026-11-12", 200, ""},
		{"/api/merchants/7/series?step=1d&to=0001-01-01T00:00:00Z", 400, `to: want a time from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z, got "0001-01-01T00:00:00Z"`},
		{"/api/merchants/7/series?step=1h&from=1969-12-31T23:59:59Z", 400, "from: want a time from 1970-01-01T00:00:00Z"},
		{"/api/platform/minutes?from=9999-12-31T23:59:59-01:00", 400, "from: want a time from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z"},
		{"/api/merchants/7/series?step=1d&from=1970-01-01T00:00:00Z", 400, "more than 20000 points"},
		{"/api/merchants/0", 400, `merchant id: want a positive integer id, got "0"`},
		{"/api/merchants/-1/series", 400, "merchant id: want a positive integer id"},
		{"/api/merchants/9223372036854775808/volume", 400, "merchant id: want a positive integer id"},
		{"/api/alerts?merchant=0", 400, "merchant: want a positive integer id"},
		{"/api/alerts?before=0", 400, "before: want a positive integer id"},
	} {
		code, body := w.status(t, c.path)
		var e struct{ Error string }
		if code != c.code || (c.want != "" && (json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, c.want))) {
			t.Errorf("GET %s: %d %s; want %d with %q", c.path, code, body, c.code, c.want)
		}
	}
	// Search does not offer id 0, which no merchant has, as a merchant.
	var found struct{ Merchants []struct{ ID int64 } }
	w.getJSON(t, "/api/merchants?q=0", &found)
	if len(found.Merchants) != 0 {
		t.Errorf("q=0 offers %+v", found.Merchants)
	}
}

// status GETs path as the reader and returns the code and the answer
// (none for a stream, which it does not wait for).
func (w *world) status(t *testing.T, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", w.base+path, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	req.SetBasicAuth(reader.user, reader.pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		return resp.StatusCode, ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}
