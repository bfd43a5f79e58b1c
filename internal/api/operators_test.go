package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/config"
)

// logBuffer collects the server's log for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proxied are the headers an SSO proxy adds for a signed-in person, plus
// more (X-Forwarded-For) as given.
func proxied(user, email string, more ...string) map[string]string {
	h := map[string]string{"Content-Type": "application/json", "X-Forwarded-User": user}
	if email != "" {
		h["X-Forwarded-Email"] = email
	}
	for i := 0; i+1 < len(more); i += 2 {
		h[more[i]] = more[i+1]
	}
	return h
}

// withProxy enables http.auth.proxy for the test server's clients, which
// connect from 127.0.0.1, when trusted lists it.
func withProxy(trusted ...string) func(*config.Config) {
	return func(c *config.Config) {
		c.HTTP.Auth.Proxy = config.Proxy{Enabled: true, Header: config.DefaultProxyHeader, EmailHeader: config.DefaultProxyEmailHeader,
			Trusted: trusted, Operators: []string{"kim", "Lee@Example.com"}}
	}
}

type auditEntry struct {
	ID           int64
	At           time.Time
	Action       string
	By           string
	Via          string
	Email        *string
	AlertID      *int64  `json:"alert_id"`
	SilenceID    *int64  `json:"silence_id"`
	MerchantID   *int64  `json:"merchant_id"`
	Rule         *string `json:"rule"`
	Comment      string
	Peer         *string
	ForwardedFor *string `json:"forwarded_for"`
}

func (e auditEntry) String() string {
	s := func(p *string) string {
		if p == nil {
			return "-"
		}
		return *p
	}
	n := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(*p)
	}
	return fmt.Sprintf("%s by %s/%s/%s alert=%s silence=%s merchant=%s rule=%s %q peer=%s xff=%s", e.Action, e.By, e.Via, s(e.Email),
		n(e.AlertID), n(e.SilenceID), n(e.MerchantID), s(e.Rule), e.Comment, s(e.Peer), s(e.ForwardedFor))
}

type silenceOut struct {
	ID         int64
	MerchantID int64 `json:"merchant_id"`
	Rule       *string
	StartsAt   time.Time `json:"starts_at"`
	EndsAt     time.Time `json:"ends_at"`
	Reason     string
	CreatedBy  string `json:"created_by"`
}

func (w *world) acmeAlert(t *testing.T) int64 {
	t.Helper()
	for _, a := range w.alerts {
		if a.Merchant == 7 {
			return a.ID
		}
	}
	t.Fatal("no alert of merchant 7")
	return 0
}

func (w *world) alertAudit(t *testing.T, id int64) []string {
	t.Helper()
	var r struct{ Entries []auditEntry }
	w.getJSON(t, fmt.Sprintf("/api/alerts/%d/audit", id), &r)
	out := []string{}
	for _, e := range r.Entries {
		out = append(out, e.String())
	}
	return out
}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%v in %s", err, body)
	}
	return v
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s =\n%s\nwant\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestNamedOperators: behind a trusted SSO proxy, acknowledgements,
// comments and silences record the proxied person (a typed name is
// ignored) with where the request came from, readers through the proxy
// may not act, and the existing credentials work as before.
func TestNamedOperators(t *testing.T) {
	t.Parallel()
	w := newWorld(t, withProxy("10.0.0.0/8", "127.0.0.1"))
	id := w.acmeAlert(t)
	now := lastClosed.End().Add(1500 * time.Millisecond)
	ack := fmt.Sprintf("/api/alerts/%d/ack", id)

	t.Run("status names the caller", func(t *testing.T) {
		for _, c := range []struct {
			user, email string
			canAck      bool
		}{{"kim", "kim@example.com", true}, {"park", "park@example.com", false}, {"lee", "lee@example.com", true}} {
			h := proxied(c.user, c.email)
			delete(h, "Content-Type")
			code, _, body := w.send(t, noCreds, "GET", "/api/status", h, nil)
			s := decode[struct {
				CanAck   bool `json:"can_ack"`
				Identity struct{ Name, Via, Email string }
			}](t, body)
			if code != 200 || s.CanAck != c.canAck || s.Identity.Name != c.user || s.Identity.Via != "proxy" || s.Identity.Email != c.email {
				t.Errorf("%s: %d %s", c.user, code, body)
			}
		}
		code, _, body := w.do(t, operator, "GET", "/api/status", "")
		if s := decode[struct{ Identity struct{ Name, Via string } }](t, body); code != 200 || s.Identity.Name != "oncall" || s.Identity.Via != "basic" {
			t.Errorf("Basic operator: %d %s", code, body)
		}
		code, _, body = w.do(t, creds{bearer: "read-token"}, "GET", "/api/status", "")
		if code != 200 || !strings.Contains(string(body), `"identity":null`) {
			t.Errorf("a token names nobody: %d %s", code, body)
		}
	})

	t.Run("readers through the proxy may not act", func(t *testing.T) {
		for _, c := range []struct{ path, body string }{
			{ack, `{"comment":"x"}`},
			{fmt.Sprintf("/api/alerts/%d/comments", id), `{"comment":"x"}`},
			{"/api/silences", `{"merchant_id":7,"for":"1h","reason":"x"}`},
			{"/api/silences/1/expire", `{}`},
		} {
			code, _, body := w.send(t, noCreds, "POST", c.path, proxied("park", "park@example.com"), strings.NewReader(c.body))
			if code != 403 || !strings.Contains(string(body), "park may read but not operate") {
				t.Errorf("POST %s as park: %d %s", c.path, code, body)
			}
		}
		// Even with the operator's password: the proxy's word decides.
		code, _, body := w.send(t, operator, "POST", ack, proxied("park", ""), strings.NewReader(`{}`))
		if code != 403 {
			t.Errorf("park with the operator password: %d %s", code, body)
		}
		h := proxied("park", "")
		delete(h, "Content-Type")
		if code, _, body := w.send(t, noCreds, "GET", "/api/alerts?state=firing", h, nil); code != 200 {
			t.Errorf("park reads: %d %s", code, body)
		}
		if a := w.alertAudit(t, id); len(a) != 0 {
			t.Errorf("refused actions left audit rows: %v", a)
		}
	})

	t.Run("ack, comment and silences record the proxied person", func(t *testing.T) {
		code, _, body := w.send(t, noCreds, "POST", ack, proxied("kim", "kim@example.com", "X-Forwarded-For", "203.0.113.9"),
			strings.NewReader(`{"by":"someone else","comment":"called the merchant"}`))
		if a := decode[alertJSON](t, body); code != 200 || a.Ack == nil || a.Ack.By != "kim" || a.Ack.Comment != "called the merchant" {
			t.Fatalf("ack as kim: %d %s", code, body)
		}
		// An operator by email, case aside.
		code, _, body = w.send(t, noCreds, "POST", fmt.Sprintf("/api/alerts/%d/comments", id), proxied("lee", "LEE@example.com", "X-Forwarded-For", "198.51.100.4, 10.1.2.3"),
			strings.NewReader(`{"comment":"refunds are a known batch"}`))
		if e := decode[auditEntry](t, body); code != 200 || e.By != "lee" || e.Action != "comment" || e.AlertID == nil || *e.AlertID != id {
			t.Fatalf("comment as lee: %d %s", code, body)
		}
		code, _, body = w.send(t, noCreds, "POST", "/api/silences", proxied("kim", "kim@example.com"),
			strings.NewReader(`{"merchant_id":7,"rule":"cancel_rate_spike","for":"2h","reason":"merchant under review","by":"typed"}`))
		sl := decode[silenceOut](t, body)
		if code != 200 || sl.ID == 0 || sl.MerchantID != 7 || sl.Rule == nil || *sl.Rule != "cancel_rate_spike" || sl.CreatedBy != "kim" ||
			!sl.StartsAt.Equal(now) || !sl.EndsAt.Equal(now.Add(2*time.Hour)) || sl.Reason != "merchant under review" {
			t.Fatalf("silence as kim: %d %s", code, body)
		}
		var list struct{ Silences []silenceOut }
		w.getJSON(t, "/api/silences?merchant=7", &list)
		if len(list.Silences) != 1 || list.Silences[0].ID != sl.ID {
			t.Fatalf("silences of merchant 7: %+v", list)
		}
		code, _, body = w.send(t, noCreds, "POST", fmt.Sprintf("/api/silences/%d/expire", sl.ID), proxied("lee", "lee@example.com"), strings.NewReader(""))
		if ex := decode[silenceOut](t, body); code != 200 || ex.ID != sl.ID || !ex.EndsAt.Equal(now.Add(time.Microsecond)) {
			t.Fatalf("expire as lee: %d %s", code, body)
		}
		// The frozen clock made it end a microsecond after it started.
		w.later.Store(int64(time.Millisecond))
		w.getJSON(t, "/api/silences?merchant=7", &list)
		if len(list.Silences) != 0 {
			t.Fatalf("an expired silence is listed: %+v", list)
		}
		if code, _, body := w.send(t, noCreds, "POST", fmt.Sprintf("/api/silences/%d/expire", sl.ID), proxied("kim", ""), strings.NewReader("{}")); code != 404 {
			t.Errorf("expiring it again: %d %s", code, body)
		}
		w.later.Store(0)
		s := fmt.Sprint
		sameLines(t, "the alert's audit", w.alertAudit(t, id), []string{
			"ack by kim/proxy/kim@example.com alert=" + s(id) + ` silence=- merchant=7 rule=cancel_rate_spike "called the merchant" peer=127.0.0.1 xff=203.0.113.9`,
			"comment by lee/proxy/LEE@example.com alert=" + s(id) + ` silence=- merchant=7 rule=cancel_rate_spike "refunds are a known batch" peer=127.0.0.1 xff=198.51.100.4, 10.1.2.3`,
			"silence_create by kim/proxy/kim@example.com alert=- silence=" + s(sl.ID) + ` merchant=7 rule=cancel_rate_spike "merchant under review" peer=127.0.0.1 xff=-`,
			"silence_expire by lee/proxy/lee@example.com alert=- silence=" + s(sl.ID) + ` merchant=7 rule=cancel_rate_spike "" peer=127.0.0.1 xff=-`,
		})
		// The list of everything, newest first, and its bounds.
		var all struct{ Entries []auditEntry }
		w.getJSON(t, "/api/audit?limit=2", &all)
		if len(all.Entries) != 2 || all.Entries[0].Action != "silence_expire" || all.Entries[1].Action != "silence_create" {
			t.Fatalf("GET /api/audit?limit=2: %+v", all.Entries)
		}
		w.getJSON(t, fmt.Sprintf("/api/audit?before=%d", all.Entries[1].ID), &all)
		if len(all.Entries) != 2 || all.Entries[0].Action != "comment" || all.Entries[1].Action != "ack" {
			t.Fatalf("GET /api/audit?before=: %+v", all.Entries)
		}
		w.getJSON(t, "/api/audit?since="+now.Add(time.Second).Format(time.RFC3339), &all)
		if len(all.Entries) != 0 {
			t.Fatalf("nothing happened after now: %+v", all.Entries)
		}
		w.getJSON(t, "/api/audit?since="+now.Format(time.RFC3339Nano), &all)
		if len(all.Entries) != 4 {
			t.Fatalf("everything happened at now: %+v", all.Entries)
		}
	})

	t.Run("existing credentials", func(t *testing.T) {
		// The operator's Basic username is who acts; a typed name is ignored.
		code, _, body := w.do(t, operator, "POST", "/api/silences", `{"merchant_id":9,"ends_at":"2026-11-21T09:00","reason":"promotion","by":"kim"}`)
		sl := decode[silenceOut](t, body)
		if code != 200 || sl.CreatedBy != "oncall" || sl.Rule != nil || !sl.EndsAt.Equal(time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("silence with Basic: %d %s", code, body)
		}
		// A token names nobody: the typed name is recorded, and required.
		code, _, body = w.do(t, creds{bearer: "op-token"}, "POST", fmt.Sprintf("/api/silences/%d/expire", sl.ID), `{"by":"script"}`)
		if code != 200 {
			t.Fatalf("expire with a token: %d %s", code, body)
		}
		code, _, body = w.do(t, creds{bearer: "op-token"}, "POST", fmt.Sprintf("/api/alerts/%d/comments", id), `{"comment":"x"}`)
		if code != 400 || !strings.Contains(string(body), "by: who comments is required") {
			t.Errorf("a token without a name: %d %s", code, body)
		}
		if code, _, body := w.do(t, reader, "POST", "/api/silences", `{"merchant_id":9,"for":"1h","reason":"x"}`); code != 403 {
			t.Errorf("silence as reader: %d %s", code, body)
		}
		if code, h, body := w.do(t, noCreds, "GET", "/api/silences", ""); code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("silences without credentials: %d %s", code, body)
		}
		var r struct{ Entries []auditEntry }
		w.getJSON(t, "/api/audit?limit=2", &r)
		if len(r.Entries) != 2 || r.Entries[0].String() != fmt.Sprintf(`silence_expire by script/typed/- alert=- silence=%d merchant=9 rule=- "" peer=127.0.0.1 xff=-`, sl.ID) ||
			r.Entries[1].String() != fmt.Sprintf(`silence_create by oncall/basic/- alert=- silence=%d merchant=9 rule=- "promotion" peer=127.0.0.1 xff=-`, sl.ID) {
			t.Errorf("audit: %v", r.Entries)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, c := range []struct{ path, body, want string }{
			{"/api/silences", `{"for":"1h","reason":"x"}`, "merchant_id: want a positive integer id"},
			{"/api/silences", `{"merchant_id":7,"rule":"fraud","for":"1h","reason":"x"}`, `rule: want cancel_rate_spike, volume_drop or empty (every rule), got "fraud"`},
			{"/api/silences", `{"merchant_id":7,"reason":"x"}`, "ends_at or for: give exactly one"},
			{"/api/silences", `{"merchant_id":7,"for":"1h","ends_at":"2027-01-01T00:00:00Z","reason":"x"}`, "ends_at or for: give exactly one"},
			{"/api/silences", `{"merchant_id":7,"for":"-1h","reason":"x"}`, "for: want a duration"},
			{"/api/silences", `{"merchant_id":7,"for":"soon","reason":"x"}`, "for: want a duration"},
			{"/api/silences", `{"merchant_id":7,"ends_at":"2026-11-20T05:00:00Z","reason":"x"}`, "ends_at: 2026-11-20T05:00:00Z is not in the future"},
			{"/api/silences", `{"merchant_id":7,"ends_at":"tomorrow","reason":"x"}`, "ends_at: want an RFC 3339 time"},
			{"/api/silences", `{"merchant_id":7,"for":"1h","reason":" "}`, "reason: required"},
			{"/api/silences", `{"merchant_id":7,"for":"1h","reason":"x","who":"kim"}`, "unknown field"},
			{"/api/silences/x/expire", `{}`, "silence id: want a positive integer id"},
			{fmt.Sprintf("/api/alerts/%d/comments", id), `{"comment":""}`, "comment: required"},
			{"/api/alerts/0/comments", `{"comment":"x"}`, "alert id: want a positive integer id"},
		} {
			code, _, body := w.do(t, operator, "POST", c.path, c.body)
			if code != 400 || !strings.Contains(decode[struct{ Error string }](t, body).Error, c.want) {
				t.Errorf("POST %s %s: %d %s; want 400 with %q", c.path, c.body, code, body, c.want)
			}
		}
		for _, c := range []struct {
			method, path, body string
			code               int
		}{
			{"POST", "/api/silences/99999/expire", `{}`, 404},
			{"POST", "/api/alerts/99999/comments", `{"comment":"x"}`, 404},
			{"GET", "/api/alerts/99999/audit", "", 404},
			{"GET", "/api/alerts/99999", "", 404},
			{"GET", "/api/audit?since=yesterday", "", 400},
			{"GET", "/api/audit?limit=501", "", 400},
			{"GET", "/api/silences?merchant=-1", "", 400},
		} {
			if code, _, body := w.do(t, operator, c.method, c.path, c.body); code != c.code {
				t.Errorf("%s %s: %d %s; want %d", c.method, c.path, code, body, c.code)
			}
		}
		var a alertJSON
		w.getJSON(t, fmt.Sprintf("/api/alerts/%d", id), &a)
		if a.ID != id || a.MerchantName != "Acme Books" || a.Ack == nil || a.Ack.By != "kim" {
			t.Errorf("GET /api/alerts/%d: %+v", id, a)
		}
	})
}

// TestProxyHeaderFromUntrustedPeer: from a peer not in trusted the
// identity header is ignored and logged; the credentials decide alone.
func TestProxyHeaderFromUntrustedPeer(t *testing.T) {
	t.Parallel()
	w := newWorld(t, withProxy("10.0.0.7", "192.168.0.0/16"))
	id := w.acmeAlert(t)
	h := proxied("kim", "kim@example.com", "X-Forwarded-For", "203.0.113.9")
	if code, _, body := w.send(t, noCreds, "POST", fmt.Sprintf("/api/alerts/%d/ack", id), h, strings.NewReader(`{}`)); code != 401 {
		t.Fatalf("the header alone from 127.0.0.1: %d %s", code, body)
	}
	if !strings.Contains(w.logs.String(), "level=WARN msg=\"identity header from an untrusted peer ignored\" header=X-Forwarded-User peer=127.0.0.1:") {
		t.Errorf("no warning logged:\n%s", w.logs.String())
	}
	code, _, body := w.send(t, operator, "POST", fmt.Sprintf("/api/alerts/%d/ack", id), h, strings.NewReader(`{"comment":"c"}`))
	if a := decode[alertJSON](t, body); code != 200 || a.Ack == nil || a.Ack.By != "oncall" {
		t.Fatalf("ack with Basic and the header: %d %s", code, body)
	}
	sameLines(t, "audit", w.alertAudit(t, id), []string{
		fmt.Sprintf(`ack by oncall/basic/- alert=%d silence=- merchant=7 rule=cancel_rate_spike "c" peer=127.0.0.1 xff=-`, id),
	})
	hs := proxied("kim", "")
	delete(hs, "Content-Type")
	code, _, body = w.send(t, reader, "GET", "/api/status", hs, nil)
	if s := decode[struct{ Identity struct{ Name string } }](t, body); code != 200 || s.Identity.Name != "viewer" {
		t.Errorf("status: %d %s", code, body)
	}
}

// TestProxyOnly: with the proxy and no credentials, only proxied people
// get in; without a proxy and without credentials, everyone operates as
// before.
func TestProxyOnly(t *testing.T) {
	t.Parallel()
	w := newWorld(t, withProxy("127.0.0.0/8"), func(c *config.Config) {
		c.HTTP.Auth.Read, c.HTTP.Auth.Operator = config.Credentials{}, config.Credentials{}
	})
	if code, h, body := w.do(t, noCreds, "GET", "/api/status", ""); code != 401 || h.Get("WWW-Authenticate") != "" || !strings.Contains(string(body), "sign in through the SSO proxy") {
		t.Errorf("no header: %d %v %s", code, h, body)
	}
	hs := proxied("kim", "")
	delete(hs, "Content-Type")
	if code, _, body := w.send(t, noCreds, "GET", "/api/status", hs, nil); code != 200 || !strings.Contains(string(body), `"can_ack":true`) {
		t.Errorf("kim: %d %s", code, body)
	}
	// A repeated header is one the client added beside the proxy's.
	req, _ := http.NewRequest("GET", w.base+"/api/status", nil)
	req.Header.Add("X-Forwarded-User", "kim")
	req.Header.Add("X-Forwarded-User", "mallory")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("a repeated header: %d", resp.StatusCode)
	}

	open := newWorld(t, func(c *config.Config) { c.HTTP.Auth = config.Auth{} })
	id := open.acmeAlert(t)
	code, _, body := open.do(t, noCreds, "POST", fmt.Sprintf("/api/alerts/%d/ack", id), `{"by":"kim"}`)
	if a := decode[alertJSON](t, body); code != 200 || a.Ack == nil || a.Ack.By != "kim" {
		t.Errorf("no auth at all: %d %s", code, body)
	}
	if code, _, body := open.do(t, noCreds, "POST", fmt.Sprintf("/api/alerts/%d/ack", id), `{}`); code != 400 || !strings.Contains(string(body), "by: who acknowledges is required") {
		t.Errorf("no auth and no name: %d %s", code, body)
	}
}
