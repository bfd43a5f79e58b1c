package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/riskwatch/riskwatch/internal/store/alertstore"
)

// acked reads the alert's acknowledgement straight from the store.
func (w *world) acked(t *testing.T, id int64) *string {
	t.Helper()
	list, err := w.st.Alerts(context.Background(), alertstore.AlertFilter{Merchant: 7})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range list {
		if a.ID == id && a.Ack != nil {
			return &a.Ack.By
		}
	}
	return nil
}

// TestStateChangeGuard: a page of another site cannot acknowledge with the
// operator's cached Basic credentials, a body must be JSON of at most 64
// KiB, and the dashboard itself (directly or behind its external URL) and
// API clients keep working.
func TestStateChangeGuard(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var id int64
	for _, a := range w.alerts {
		if a.Merchant == 7 {
			id = a.ID
		}
	}
	path := fmt.Sprintf("/api/alerts/%d/ack", id)
	const attack = `{"by":"attacker","comment":"x"}`
	tenMB := []byte(`{"by":"kim","comment":"` + strings.Repeat("a", 10<<20) + `"}`)
	jsonType := map[string]string{"Content-Type": "application/json"}
	with := func(kv ...string) map[string]string {
		h := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}

	refused := []struct {
		name    string
		c       creds
		headers map[string]string
		body    io.Reader
		code    int
		want    string // in the JSON error
	}{
		{"cross-site form with cached Basic credentials", operator,
			with("Content-Type", "text/plain", "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"), strings.NewReader(attack),
			http.StatusForbidden, "from another site refused"},
		{"cross-site JSON", operator,
			with("Content-Type", "application/json", "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"), strings.NewReader(attack),
			http.StatusForbidden, "from another site refused"},
		{"same-site page of another origin", operator,
			with("Content-Type", "application/json", "Origin", "http://other.127.0.0.1.example", "Sec-Fetch-Site", "same-site"), strings.NewReader(attack),
			http.StatusForbidden, "from another site refused"},
		{"old browser: Origin only", operator,
			with("Content-Type", "application/json", "Origin", "http://evil.example"), strings.NewReader(attack),
			http.StatusForbidden, "from another site refused"},
		{"cross-site with a bearer token too", creds{bearer: "op-token"},
			with("Content-Type", "application/json", "Sec-Fetch-Site", "cross-site"), strings.NewReader(attack),
			http.StatusForbidden, "from another site refused"},
		{"text/plain from an API client", operator, with("Content-Type", "text/plain"), strings.NewReader(attack),
			http.StatusUnsupportedMediaType, `Content-Type: want application/json, got "text/plain"`},
		{"form encoding", operator, with("Content-Type", "application/x-www-form-urlencoded"), strings.NewReader("by=attacker"),
			http.StatusUnsupportedMediaType, "Content-Type: want application/json"},
		{"no Content-Type", operator, nil, strings.NewReader(attack),
			http.StatusUnsupportedMediaType, `Content-Type: want application/json, got ""`},
		{"10 MB with a Content-Length", operator, jsonType, bytes.NewReader(tenMB),
			http.StatusRequestEntityTooLarge, "body: at most 65536 bytes"},
		// Without a known length the client sends it chunked: only reading
		// finds out.
		{"10 MB chunked", operator, jsonType, io.MultiReader(bytes.NewReader(tenMB)),
			http.StatusRequestEntityTooLarge, "body: at most 65536 bytes"},
		{"10 MB of padding", operator, jsonType, bytes.NewReader(bytes.Repeat([]byte(" "), 10<<20)),
			http.StatusRequestEntityTooLarge, "body: at most 65536 bytes"},
		{"just over the limit", operator, jsonType, strings.NewReader(`{"by":"` + strings.Repeat("a", 64<<10) + `"}`),
			http.StatusRequestEntityTooLarge, "body: at most 65536 bytes"},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			code, _, body := w.send(t, c.c, "POST", path, c.headers, c.body)
			var e struct{ Error string }
			if code != c.code || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, c.want) {
				t.Errorf("%d %s; want %d with %q", code, body, c.code, c.want)
			}
			if by := w.acked(t, id); by != nil {
				t.Fatalf("the alert was acknowledged by %q", *by)
			}
		})
	}

	accepted := []struct {
		name    string
		c       creds
		headers map[string]string
		by      string
		// want is who the ack records: the Basic username when there is
		// one, else the typed name.
		want string
	}{
		{"the dashboard's own page", operator,
			with("Content-Type", "application/json", "Origin", w.base, "Sec-Fetch-Site", "same-origin"), "page", "oncall"},
		{"the dashboard behind its external URL", creds{user: "proxied", pass: "op-token"},
			with("Content-Type", "application/json; charset=utf-8", "Origin", "https://risk.example.com"), "", "proxied"},
		{"a bearer-token API client", creds{bearer: "op-token"}, jsonType, "script", "script"},
		{"a user-initiated request", operator, with("Content-Type", "application/json", "Sec-Fetch-Site", "none"), "typed", "oncall"},
	}
	for _, c := range accepted {
		t.Run(c.name, func(t *testing.T) {
			code, _, body := w.send(t, c.c, "POST", path, c.headers, strings.NewReader(`{"by":"`+c.by+`"}`))
			if code != http.StatusOK {
				t.Fatalf("%d %s; want 200", code, body)
			}
			if by := w.acked(t, id); by == nil || *by != c.want {
				t.Fatalf("acknowledged by %v, want %s", by, c.want)
			}
		})
	}

	// Reads stay as they were: a cross-site GET is the browser's business
	// (it will not let the other site read the answer).
	req, _ := http.NewRequest("GET", w.base+"/api/status", nil)
	req.SetBasicAuth(reader.user, reader.pass)
	req.Header.Set("Origin", "http://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("cross-site GET: %d", resp.StatusCode)
	}
	// An unknown endpoint is guarded like a known one.
	if code, _, body := w.send(t, operator, "POST", "/api/alerts/1/close", with("Content-Type", "text/plain", "Sec-Fetch-Site", "cross-site"), strings.NewReader("x")); code != http.StatusForbidden {
		t.Errorf("cross-site POST to an unknown endpoint: %d %s", code, body)
	}
}
