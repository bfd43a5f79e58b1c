package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Browser test fixtures: merchant ids and the operator accounts.
const (
	browserAlertMerchant = 101 // a cancellation surge in the last hour: fires at the first close
	browserXSSMerchant   = 102 // named like an HTML injection
	browserSSEMerchant   = 103 // busts out only once the page is open
	browserP3Merchant    = 104 // five cancellations in one minute: fires at P3, with more at stake than 101's P1
	browserXSSName       = `<img src=x onerror=alert(1)>`
)

// TestDashboardInBrowser runs the real engine and dashboard over a seeded
// source and drives Debian's Chromium through web/e2e/dashboard.mjs
// (playwright-core): seeded alerts on the overview with their priority
// badges, evidence and money, most urgent first and then by money, the
// merchant page's charts, 2× line and same-hour-of-day baseline, a page of
// another site failing to acknowledge with the operator's cached
// credentials, acknowledging as an operator across a reload, sorting and
// filtering the alerts page by priority, "riskiest now" by evidence, an
// HTML-named merchant rendered as text, the language switch, an alert
// arriving over SSE without a reload, the banner of a stuck pipeline, and
// on an alert's page a silence created and expired, a comment, and the
// audit naming the operator for each; then the Korean pages drawn by the
// bundled webfont in a Chromium without CJK fonts (web/e2e/fonts.mjs,
// checkKoreanGlyphs).
// Screenshots go to artifacts/browser.
func TestDashboardInBrowser(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "web", "e2e", "dashboard.mjs")
	for _, need := range []string{"/usr/bin/chromium", filepath.Join(root, "web", "node_modules", "playwright-core", "package.json"), script} {
		if _, err := os.Stat(need); err != nil {
			t.Fatalf("%s is missing: run scripts/ensure-browser.sh (make test does)", need)
		}
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is missing: run scripts/ensure-browser.sh (make test does)")
	}

	c := newCLIEnv(t)
	seedBrowserSource(c)
	cfg := c.writeConfig(`  auth:
    read: {username: viewer, password: view-pw}
    operator: {username: oncall, password: op-pw}
merchant_names:
  refresh: 1s
rules:
  volume_drop:
    large_daily_amount: 1000000
`)
	ch := startChild(t, "run", "--config", cfg)
	addr := waitReady(t, ch, 90*time.Second)
	base := "http://" + addr

	// The seeded surge fires when the first minute closes after the start.
	get := func(path string, dst any) error {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.SetBasicAuth("viewer", "view-pw")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return json.NewDecoder(resp.Body).Decode(dst)
	}
	deadline := time.Now().Add(100 * time.Second)
	for {
		var alerts struct {
			Alerts []struct {
				MerchantID int64 `json:"merchant_id"`
			}
		}
		var names struct{ Merchants []struct{ ID int64 } }
		var p3 struct{ Alerts []struct{ Priority *string } }
		errA := get(fmt.Sprintf("/api/alerts?state=firing&merchant=%d", browserAlertMerchant), &alerts)
		errN := get("/api/merchants?q=onerror", &names)
		errP := get(fmt.Sprintf("/api/alerts?state=firing&merchant=%d", browserP3Merchant), &p3)
		if errA == nil && errN == nil && errP == nil && len(alerts.Alerts) == 1 && len(names.Merchants) == 1 && len(p3.Alerts) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("seeded alerts or merchant names not there (%v, %v, %v, %+v, %+v, %+v):\n%s", errA, errN, errP, alerts, names, p3, ch.stderr.String())
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Another site's page (localhost is another site than 127.0.0.1) that
	// posts the ack's JSON as a text/plain form, as a CSRF attack would.
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.URL.Query().Get("alert"), 10, 64)
		if err != nil {
			http.Error(w, "alert: want an id", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// The body is name=value: the name is the whole JSON and the
		// trailing "=" is after the value a JSON decoder reads.
		fmt.Fprintf(w, `<!doctype html><title>You won</title>
<form method="POST" enctype="text/plain" action="%s/api/alerts/%d/ack"><input type="hidden" name='{"by":"attacker","comment":"x"}' value=""></form>
<script>document.forms[0].submit()</script>`, html.EscapeString(base), id)
	}))
	defer attacker.Close()
	attackerURL := strings.Replace(attacker.URL, "127.0.0.1", "localhost", 1)

	artifacts := filepath.Join(root, "artifacts", "browser")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = filepath.Join(root, "web")
	cmd.Env = append(os.Environ(),
		"RW_BASE_URL="+base, "RW_READ_USER=viewer", "RW_READ_PASSWORD=view-pw",
		"RW_OPERATOR_USER=oncall", "RW_OPERATOR_PASSWORD=op-pw",
		fmt.Sprintf("RW_ALERT_MERCHANT=%d", browserAlertMerchant), fmt.Sprintf("RW_XSS_MERCHANT=%d", browserXSSMerchant),
		fmt.Sprintf("RW_SSE_MERCHANT=%d", browserSSEMerchant), fmt.Sprintf("RW_P3_MERCHANT=%d", browserP3Merchant), "RW_ATTACKER_URL="+attackerURL,
		"RW_ARTIFACTS="+artifacts, "CHROMIUM=/usr/bin/chromium")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var out []string
	for sc.Scan() {
		line := sc.Text()
		out = append(out, line)
		t.Logf("browser: %s", line)
		switch line {
		case "SSE-READY":
			// A bust-out: no sales, ten cancellations, now. It fires when
			// this minute closes, and the open page must show it.
			c.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, $1, 30000, now() FROM generate_series(1, 10)`, browserSSEMerchant)
		case "STUCK-READY":
			// The sink refuses every minute row, so every flush of the next
			// payment fails at the same position: after pipeline.stuck_after
			// failures the engine reports itself stuck.
			c.exec(`CREATE FUNCTION riskwatch.fail() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'injected failure'; END$$`)
			c.exec(`CREATE TRIGGER fail BEFORE INSERT ON riskwatch.minute_agg FOR EACH ROW EXECUTE FUNCTION riskwatch.fail()`)
			c.exec(`INSERT INTO payments (id, merchant_id, amount, status, approved_at) VALUES (nextval('ids'), 1, 10000, 'approved', now())`)
		case "UNSTICK":
			c.exec(`DROP TRIGGER fail ON riskwatch.minute_agg`)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("browser test failed: %v\nstdout:\n%s\nstderr:\n%s\nengine:\n%s", err, strings.Join(out, "\n"), stderr.String(), tail(ch.stderr.String(), 4000))
	}
	if len(out) == 0 || out[len(out)-1] != "PASS" {
		t.Fatalf("browser test did not pass:\n%s\n%s", strings.Join(out, "\n"), stderr.String())
	}
	for _, shot := range []string{"overview.png", "merchant.png", "cross-site.png", "alerts.png", "alert.png", "alert-silenced.png", "merchants.png", "merchant-ko.png", "overview-live.png", "stuck.png"} {
		if st, err := os.Stat(filepath.Join(artifacts, shot)); err != nil || st.Size() < 10_000 {
			t.Errorf("screenshot %s: %v", shot, err)
		}
	}
	// Whatever the page saw, the store must not hold the other site's ack.
	var acked struct {
		Alerts []struct {
			ID  int64
			Ack *struct{ By string }
		}
	}
	if err := get(fmt.Sprintf("/api/alerts?merchant=%d", browserAlertMerchant), &acked); err != nil {
		t.Fatal(err)
	}
	for _, a := range acked.Alerts {
		// The operator's Basic username, not the name typed in the dialog.
		if a.Ack == nil || a.Ack.By != "oncall" {
			t.Errorf("alert %d: ack %+v, want the dashboard's own by oncall", a.ID, a.Ack)
		}
	}
	checkKoreanGlyphs(t, c, get, root, node, base, artifacts)
}

// seedBrowserSource writes eight days of traffic for the pages to draw:
// fifty ordinary merchants, a large merchant (101) selling every ten
// minutes whose last hour turns into a cancellation surge, the HTML-named
// merchant, the one that busts out later, and one (104) selling every three
// minutes whose hour holds one batch of cancellations.
func seedBrowserSource(c *cliEnv) {
	c.exec(`INSERT INTO merchants (id, name, created_at) SELECT g, 'Shop ' || g, now() - interval '30 days' FROM generate_series(1, 50) g`)
	c.exec(`INSERT INTO merchants (id, name, created_at) VALUES ($1, 'Acme Books', now()), ($2, $3, now()), ($4, 'Live Surge Shop', now()), ($5, 'Batch Refund Mart', now())`,
		browserAlertMerchant, browserXSSMerchant, browserXSSName, browserSSEMerchant, browserP3Merchant)
	// Ordinary merchants: one payment each per merchant per 20 minutes, 2%
	// cancelled an hour later.
	c.exec(`INSERT INTO payments (id, merchant_id, amount, status, approved_at)
		SELECT nextval('ids'), 1 + (g % 50), 10000 + (g % 7) * 1000, 'approved', now() - g * interval '24 seconds'
		FROM generate_series(1, 28800) g`)
	c.exec(`INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at)
		SELECT nextval('ids'), id, merchant_id, amount, approved_at + interval '1 hour'
		FROM payments WHERE id % 50 = 0 AND approved_at < now() - interval '2 hours'`)
	// Merchant 101: 50,000 KRW every ten minutes for eight days (7.2M a day,
	// large at the test's threshold), 1% cancelled; in the last hour 25
	// cancellations.
	c.exec(`INSERT INTO payments (id, merchant_id, amount, status, approved_at)
		SELECT nextval('ids'), $1, 50000, 'approved', now() - g * interval '10 minutes' FROM generate_series(1, 1152) g`, browserAlertMerchant)
	c.exec(`INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at)
		SELECT nextval('ids'), id, merchant_id, amount, approved_at + interval '5 minutes'
		FROM payments WHERE merchant_id = $1 AND id % 100 = 0 AND approved_at < now() - interval '2 hours'`, browserAlertMerchant)
	c.exec(`INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at)
		SELECT nextval('ids'), 0, $1, 50000, now() - g * interval '2 minutes' FROM generate_series(1, 25) g`, browserAlertMerchant)
	c.exec(`INSERT INTO payments (id, merchant_id, amount, status, approved_at)
		SELECT nextval('ids'), m, 20000, 'approved', now() - g * interval '30 minutes' FROM generate_series(1, 300) g, (VALUES ($1::bigint), ($2::bigint)) v(m)`,
		browserXSSMerchant, browserSSEMerchant)
	// Merchant 104: 50,000 KRW every three minutes for eight days (enough
	// for a same-hour-of-day baseline; ₩168M approved within 7 days against
	// 101's ₩50M), 2% cancelled; in the last hour five cancellations in one
	// minute: the rule fires, but one batch is weak evidence (P3).
	c.exec(`INSERT INTO payments (id, merchant_id, amount, status, approved_at)
		SELECT nextval('ids'), $1, 50000, 'approved', now() - g * interval '3 minutes' FROM generate_series(1, 3840) g`, browserP3Merchant)
	c.exec(`INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at)
		SELECT nextval('ids'), id, merchant_id, amount, approved_at + interval '5 minutes'
		FROM payments WHERE merchant_id = $1 AND id % 50 = 0 AND approved_at < now() - interval '2 hours'`, browserP3Merchant)
	c.exec(`INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at)
		SELECT nextval('ids'), 0, $1, 50000, date_trunc('minute', now()) - interval '10 minutes' FROM generate_series(1, 5)`, browserP3Merchant)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
