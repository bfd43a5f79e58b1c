package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/riskwatch/riskwatch/internal/notify/notifytest"
)

// notifyTest runs `riskwatch notify test` as a process and returns its
// stdout, stderr and exit code.
func notifyTest(t *testing.T, cfg string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"notify", "test", "--config", cfg}, args...)...)
	cmd.Env = append(os.Environ(), "RISKWATCH_TEST_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	}
	t.Fatalf("running notify test: %v", err)
	return "", "", -1
}

// TestNotifyTest: `riskwatch notify test --receiver NAME` sends one marked
// test notification through each receiver type, prints the receiver's
// answer and exits 0; a failing receiver exits non-zero with its error; an
// unknown name lists the configured ones. No sink is needed.
func TestNotifyTest(t *testing.T) {
	t.Parallel()
	ok := notifytest.NewServer(t, http.StatusOK)
	accepted := notifytest.NewServer(t, http.StatusAccepted)
	down := notifytest.NewServer(t, http.StatusServiceUnavailable)
	bad := notifytest.NewServer(t, http.StatusBadRequest)
	cfg := filepath.Join(t.TempDir(), "riskwatch.yaml")
	body := fmt.Sprintf(`source: {dsn: "postgres://u@127.0.0.1:1/db"}
http: {external_url: "https://risk.example.com"}
notify:
  receivers:
    - name: chat
      type: template
      url: "%[1]s/chat?rule={{.Rule}}"
      headers: {X-Chat-Token: "t0k"}
      body: '{"text": {{json .Headline}}, "summary": {{json .Summary}}, "link": {{json .DashboardURL}}}'
    - {name: hook, type: webhook, url: "%[1]s/hook"}
    - {name: slack, type: slack, url: "%[1]s/slack"}
    - {name: pd, type: pagerduty, url: "%[2]s/v2/enqueue", routing_key: rk}
    - {name: am, type: alertmanager, url: "%[1]s"}
    - {name: printer, type: log}
    - {name: down, type: template, url: "%[3]s/", body: "{}"}
    - {name: bad, type: webhook, url: "%[4]s/"}
`, ok.URL, accepted.URL, down.URL, bad.URL)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ name, typ, outcome string }{
		{"chat", "template", "HTTP 200 OK"}, {"hook", "webhook", "HTTP 200 OK"}, {"slack", "slack", "HTTP 200 OK"},
		{"pd", "pagerduty", "HTTP 202 Accepted"}, {"am", "alertmanager", "HTTP 200 OK"}, {"printer", "log", "logged"},
	} {
		out, errOut, code := notifyTest(t, cfg, "--receiver", tc.name)
		want := fmt.Sprintf("test notification sent to %s (%s): %s in ", tc.name, tc.typ, tc.outcome)
		if code != 0 || !strings.HasPrefix(out, want) || !strings.Contains(out, "idempotency key riskwatch-test-"+tc.name+"-") {
			t.Errorf("%s: exit %d, stdout %q, stderr %s; want exit 0 and %q", tc.name, code, out, errOut, want)
		}
		if tc.name == "printer" && (!strings.Contains(errOut, "[TEST]") || !strings.Contains(errOut, "rule=test")) {
			t.Errorf("log receiver printed %s", errOut)
		}
	}

	// What the receivers got: one request each, marked as a test.
	byPath := map[string]notifytest.Request{}
	for _, r := range append(ok.Requests(), accepted.Requests()...) {
		if _, dup := byPath[r.Path]; dup {
			t.Errorf("more than one request to %s", r.Path)
		}
		byPath[r.Path] = r
	}
	chat := byPath["/chat"]
	var msg struct{ Text, Summary, Link string }
	chat.Decode(t, &msg)
	if chat.Method != http.MethodPost || chat.Header.Get("X-Chat-Token") != "t0k" || !strings.HasPrefix(chat.Header.Get("Idempotency-Key"), "riskwatch-test-chat-") ||
		msg.Text != "[TEST] [P3] firing: test" || !strings.HasPrefix(msg.Summary, "[TEST] riskwatch test notification to receiver chat") || msg.Link != "https://risk.example.com/" {
		t.Errorf("chat request %s %v %+v", chat.Method, chat.Header, msg)
	}
	for _, p := range []string{"/hook", "/slack", "/v2/enqueue", "/api/v2/alerts"} {
		if r, ok := byPath[p]; !ok || !strings.Contains(string(r.Body), "[TEST]") {
			t.Errorf("%s got %q, want a request marked [TEST]", p, r.Body)
		}
	}
	if s := string(byPath["/v2/enqueue"].Body); !strings.Contains(s, `"severity":"info"`) {
		t.Errorf("pagerduty test event is not info: %s", s)
	}

	// Failures exit 1 and say what the receiver answered.
	for _, tc := range []struct{ name, want string }{
		{"down", "unexpected status 503"},
		{"bad", "unexpected status 400"},
	} {
		out, errOut, code := notifyTest(t, cfg, "--receiver", tc.name)
		if code != 1 || out != "" || !strings.Contains(errOut, "notify test: receiver "+tc.name) || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 naming %q", tc.name, code, out, errOut, tc.want)
		}
	}
	if _, errOut, _ := notifyTest(t, cfg, "--receiver", "down"); !strings.Contains(errOut, "retried") {
		t.Errorf("a 503 does not say alerts would be retried: %s", errOut)
	}

	// An unknown receiver names the configured ones; a missing flag is a usage error.
	_, errOut, code := notifyTest(t, cfg, "--receiver", "sms")
	if code != 1 || !strings.Contains(errOut, `no receiver named "sms"; configured: chat, hook, slack, pd, am, printer, down, bad`) {
		t.Errorf("unknown receiver: exit %d, %s", code, errOut)
	}
	if _, _, code := notifyTest(t, cfg); code != 2 {
		t.Errorf("without --receiver: exit %d, want 2", code)
	}
}
