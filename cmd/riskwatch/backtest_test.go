package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/store/alertstore"
)

// isUsage reports whether err is a command-line usage error (exit code 2).
func isUsage(err error) bool {
	var ue usageError
	return errors.As(err, &ue)
}

// minuteOf is the start of t's minute bucket in RFC 3339 UTC, the form
// backtest transitions are labelled with.
func minuteOf(t time.Time) string { return t.UTC().Truncate(time.Minute).Format(time.RFC3339) }

func addMinutes(t *testing.T, m string, n int) string {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, m)
	if err != nil {
		t.Fatal(err)
	}
	return tm.Add(time.Duration(n) * time.Minute).Format(time.RFC3339)
}

type backtestLine struct {
	Rule       string         `json:"rule"`
	MerchantID int64          `json:"merchant_id"`
	State      string         `json:"state"`
	Minute     string         `json:"minute"`
	Values     map[string]any `json:"values"`
	Priority   string         `json:"priority"`
}

// TestBacktestCommand replays two hours of stored minutes: a cancellation
// burst (merchant 100, against its own 1% baseline) and a bust-out
// (merchant 200, no sales, against the platform baseline) fire at their
// minutes and resolve resolve_after (5) minutes after they leave the hour
// window; a merchant with a high but steady rate (300) never fires.
func TestBacktestCommand(t *testing.T) {
	t.Parallel()
	c := newCLIEnv(t)
	base := time.Now().UTC()
	// History, all within days 1–7 ago: merchant 100 has 2,000 approvals
	// and 20 cancels (1%); merchant 300 1,000 approvals and 100 cancels
	// (10%). Amounts stay far below the volume rule's 1e9 KRW a day.
	c.exec(`INSERT INTO payments SELECT nextval('ids'), 100, 10000, 'approved', $1::timestamptz - interval '1 day' - g * interval '259 seconds' FROM generate_series(0, 1999) g`, base)
	c.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 100, 5000, $1::timestamptz - interval '1 day' - g * interval '7 hours' FROM generate_series(0, 19) g`, base)
	c.exec(`INSERT INTO payments SELECT nextval('ids'), 300, 10000, 'approved', $1::timestamptz - interval '1 day' - g * interval '518 seconds' FROM generate_series(0, 999) g`, base)
	c.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 300, 5000, $1::timestamptz - interval '1 day' - g * interval '84 minutes' FROM generate_series(0, 99) g`, base)
	// Merchant 300 keeps its rate over the last three hours: one approval
	// every minute and one cancel every ten, so any hour holds at most 60
	// approvals and 6 cancels: 6 < 2 × ~0.1 × ~60.
	c.exec(`INSERT INTO payments SELECT nextval('ids'), 300, 10000, 'approved', $1::timestamptz - g * interval '1 minute' - interval '17 seconds' FROM generate_series(1, 180) g`, base)
	c.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 300, 5000, $1::timestamptz - g * interval '10 minutes' - interval '23 seconds' FROM generate_series(1, 18) g`, base)
	// The burst: 30 approvals and 12 cancels for merchant 100 90 minutes
	// ago; the bust-out: 10 cancels for merchant 200 80 minutes ago.
	burstAt, bustAt := base.Add(-90*time.Minute), base.Add(-80*time.Minute)
	c.exec(`INSERT INTO payments SELECT nextval('ids'), 100, 10000, 'approved', $1::timestamptz FROM generate_series(1, 30)`, burstAt)
	c.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 100, 10000, $1::timestamptz FROM generate_series(1, 12)`, burstAt)
	c.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 200, 50000, $1::timestamptz FROM generate_series(1, 10)`, bustAt)

	// The minutes, from what the source holds.
	ctx := context.Background()
	var burstA, burstC, bustC time.Time
	var nA, nC, nB int
	if err := c.pool.QueryRow(ctx, `SELECT (SELECT max(approved_at) FROM payments WHERE merchant_id = 100), (SELECT count(*) FROM payments WHERE merchant_id = 100 AND approved_at > $1),
			(SELECT max(canceled_at) FROM payment_cancels WHERE merchant_id = 100), (SELECT count(*) FROM payment_cancels WHERE merchant_id = 100 AND canceled_at > $1),
			(SELECT max(canceled_at) FROM payment_cancels WHERE merchant_id = 200), (SELECT count(*) FROM payment_cancels WHERE merchant_id = 200)`,
		base.Add(-3*time.Hour)).Scan(&burstA, &nA, &burstC, &nC, &bustC, &nB); err != nil {
		t.Fatal(err)
	}
	mBurst, mBust := minuteOf(burstA), minuteOf(bustC)
	if nA != 30 || nC != 12 || nB != 10 || minuteOf(burstC) != mBurst || mBust != addMinutes(t, mBurst, 10) {
		t.Fatalf("seed: %d approvals at %s, %d cancels at %s, bust-out %d at %s", nA, burstA, nC, burstC, nB, bustC)
	}
	// The platform baseline merchant 200 is compared with: every cancel
	// and approval in B = the 7 days before the hour ending with its
	// minute M, i.e. [M-10139, M-60] in minutes.
	platformB := func(m string) (approvals, cancels int64) {
		t.Helper()
		mt, err := time.Parse(time.RFC3339, m)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM payments WHERE approved_at >= $1 AND approved_at < $2),
				(SELECT count(*) FROM payment_cancels WHERE canceled_at >= $1 AND canceled_at < $2)`,
			mt.Add(-10139*time.Minute), mt.Add(-59*time.Minute)).Scan(&approvals, &cancels); err != nil {
			t.Fatal(err)
		}
		return approvals, cancels
	}
	platA, platC := platformB(mBust)
	platform := float64(platC) / float64(platA)
	// 10 cancels with no approvals fire when 10 >= 2 × eff × 20.
	if platA < 3000 || platform > 0.25 {
		t.Fatalf("seed: platform baseline %d/%d", platC, platA)
	}

	cfg := c.writeConfig("")
	ch := startChild(t, "run", "--config", cfg)
	waitReady(t, ch, 60*time.Second)
	c.waitSink(c.walLSN(), 60*time.Second, ch)
	ch.kill(t)

	from, to := base.Add(-2*time.Hour).Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339)
	out, errOut, err := runCLI(ctx, "backtest", "--config", cfg, "--from", from, "--to", to)
	if err != nil {
		t.Fatalf("backtest: %v\n%s", err, errOut)
	}
	var got []backtestLine
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l backtestLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("backtest line %q: %v", sc.Text(), err)
		}
		got = append(got, l)
	}
	// Each stays true while its events are in H (M … M+59), is false from
	// M+60 and resolves at the fifth false evaluation, M+64.
	// Each hour's cancels came in one minute, a batch (see the evidence
	// below): merchant 100's is still evidence enough for P2, merchant
	// 200's (no history of its own) is P3, and nothing escalates them.
	want := []backtestLine{
		{Rule: "cancel_rate_spike", MerchantID: 100, State: "firing", Minute: mBurst, Priority: "P2"},
		{Rule: "cancel_rate_spike", MerchantID: 200, State: "firing", Minute: mBust, Priority: "P3"},
		{Rule: "cancel_rate_spike", MerchantID: 100, State: "resolved", Minute: addMinutes(t, mBurst, 64), Priority: "P2"},
		{Rule: "cancel_rate_spike", MerchantID: 200, State: "resolved", Minute: addMinutes(t, mBust, 64), Priority: "P3"},
	}
	if len(got) != len(want) {
		t.Fatalf("backtest printed %d transitions, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Rule != w.Rule || g.MerchantID != w.MerchantID || g.State != w.State || g.Minute != w.Minute || g.Priority != w.Priority {
			t.Fatalf("transition %d = %s %d %s %s %s, want %s %d %s %s %s\n%s", i, g.Rule, g.MerchantID, g.State, g.Minute, g.Priority, w.Rule, w.MerchantID, w.State, w.Minute, w.Priority, out)
		}
	}
	// Merchant 100 at its burst: H holds 30 approvals and 12 cancels; B
	// its 2,000 and 20: baseline 1% (its own), rate 40%, ratio 40.
	checkValues(t, "100 firing", got[0].Values, map[string]any{
		"a_h": 30.0, "c_h": 12.0, "rate_h": 0.4, "a_b": 2000.0, "c_b": 20.0,
		"baseline": 0.01, "baseline_source": "merchant", "effective_baseline": 0.01, "ratio": 40.0,
	})
	// The evidence: 12 cancels in one minute of the hour's 60 are a batch,
	// index of dispersion b = 144/12 − 12/60 = 11.8, counted as √b-sized
	// (cancel_batch_weight 0.5): 12/√11.8 events against
	// 0.01 × max(30, 20) / √11.8 expected, judged as a negative binomial
	// with cv² 0.1 (negBinUpper): about 4.6, P2 (3 ≤ 4.6 < 5). The same hours of the day have
	// too few approvals (about 2,000 / 24) for a rate of their own, and the
	// last three hours' approvals (30) explain less; nothing was canceled
	// earlier that day. Money: 12 × 10,000 canceled; 2,030 approvals of
	// 10,000 within the 7 days. Values carry three decimals.
	r3 := func(v float64) float64 { return math.Round(v*1000) / 1000 }
	bw100 := math.Sqrt(11.8)
	ev100 := r3(-math.Log10(negBinUpper(12/bw100, 0.3/bw100, 0.1)))
	checkValues(t, "100 firing evidence", got[0].Values, map[string]any{
		"evidence": ev100, "evidence_7d": ev100, "evidence_same_hour": ev100, "batch_factor": 11.8,
		"expected_7d": 0.3, "canceled_amount_h": 120000.0, "exposure": 20300000.0,
	})
	// Merchant 200: nothing but 10 cancels; no history of its own, so the
	// platform's rate over B; no rate and no ratio without approvals.
	checkValues(t, "200 firing", got[1].Values, map[string]any{
		"a_h": 0.0, "c_h": 10.0, "rate_h": nil, "a_b": 0.0, "c_b": 0.0,
		"baseline": platform, "baseline_source": "platform", "effective_baseline": math.Max(platform, 0.002), "ratio": nil,
	})
	// One batch of 10 (b = 100/10 − 10/60, counted at √b) against
	// platform × 20 expected; nothing approved, nothing at stake: P3.
	b200 := 10 - 10.0/60
	mu200 := math.Max(platform, 0.002) * 20
	checkValues(t, "200 firing evidence", got[1].Values, map[string]any{
		"evidence": r3(-math.Log10(negBinUpper(10/math.Sqrt(b200), mu200/math.Sqrt(b200), 0.1))), "batch_factor": r3(b200), "canceled_amount_h": 500000.0, "exposure": 0.0,
	})
	// At the resolving minutes the hour is empty and the burst is in B:
	// merchant 100 has 2,030 approvals and 32 cancels there; merchant 200
	// its 10 cancels, still on the platform's rate.
	checkValues(t, "100 resolved", got[2].Values, map[string]any{
		"a_h": 0.0, "c_h": 0.0, "rate_h": nil, "a_b": 2030.0, "c_b": 32.0,
		"baseline": 32.0 / 2030, "baseline_source": "merchant", "effective_baseline": 32.0 / 2030, "ratio": nil,
	})
	platA, platC = platformB(want[3].Minute)
	checkValues(t, "200 resolved", got[3].Values, map[string]any{
		"a_h": 0.0, "c_h": 0.0, "rate_h": nil, "a_b": 0.0, "c_b": 10.0,
		"baseline": float64(platC) / float64(platA), "baseline_source": "platform", "ratio": nil,
	})

	// The same as a table: a header and one row per transition.
	out, errOut, err = runCLI(ctx, "backtest", "--config", cfg, "--from", from, "--to", to, "--format", "table")
	if err != nil {
		t.Fatalf("backtest --format table: %v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 1+len(want) || strings.Join(strings.Fields(lines[0]), " ") != "MINUTE RULE MERCHANT STATE PRIORITY VALUES" {
		t.Fatalf("table:\n%s", out)
	}
	for i, w := range want {
		f := strings.Fields(lines[1+i])
		if len(f) < 6 || f[0] != w.Minute || f[1] != w.Rule || f[2] != strconv.FormatInt(w.MerchantID, 10) || f[3] != w.State || f[4] != w.Priority {
			t.Fatalf("table row %d = %q, want %s %s %d %s …", i+1, lines[1+i], w.Minute, w.Rule, w.MerchantID, w.State)
		}
	}
	if !strings.Contains(lines[1], "c_h=12") || !strings.Contains(lines[1], "baseline_source=merchant") {
		t.Fatalf("table row 1 lacks its values: %q", lines[1])
	}

	// Bad flags are usage errors.
	for _, args := range [][]string{
		{"--from", to, "--to", from},
		{"--from", from, "--to", from},
		{"--from", from, "--to", to, "--format", "xml"},
		{"--from", "yesterday", "--to", to},
		{"--to", to},
	} {
		_, _, err := runCLI(ctx, append([]string{"backtest", "--config", cfg}, args...)...)
		if !isUsage(err) {
			t.Errorf("backtest %v: err = %v, want a usage error", args, err)
		}
	}
}

func checkValues(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: values lack %s: %v", what, k, got)
			continue
		}
		wf, wnum := w.(float64)
		gf, gnum := g.(float64)
		switch {
		case wnum && gnum:
			if math.Abs(gf-wf) > 1e-9*math.Max(1, math.Abs(wf)) {
				t.Errorf("%s: %s = %v, want %v", what, k, g, w)
			}
		case g != w:
			t.Errorf("%s: %s = %v (%T), want %v (%T)", what, k, g, g, w, w)
		}
	}
}

// migrated is a CLI environment with a migrated, empty sink.
func migrated(t *testing.T) string {
	t.Helper()
	c := newCLIEnv(t)
	cfg := c.writeConfig("")
	if out, errOut, err := runCLI(context.Background(), "migrate", "--config", cfg); err != nil {
		t.Fatalf("migrate: %v\n%s%s", err, out, errOut)
	}
	return cfg
}

// silenceListed finds the silence's row in `silence list`.
func silenceListed(t *testing.T, cfg string, id int64) []string {
	t.Helper()
	out, errOut, err := runCLI(context.Background(), "silence", "list", "--config", cfg)
	if err != nil {
		t.Fatalf("silence list: %v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if f := strings.Fields(lines[0]); len(f) < 6 || f[0] != "ID" || f[1] != "MERCHANT" || f[2] != "RULE" {
		t.Fatalf("silence list header: %q", lines[0])
	}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 && f[0] == strconv.FormatInt(id, 10) {
			return f
		}
	}
	return nil
}

func TestSilenceCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := migrated(t)
	out, errOut, err := runCLI(ctx, "silence", "add", "--config", cfg, "--merchant", "7", "--rule", "volume_drop", "--for", "1h", "--reason", "promo", "--by", "lee")
	if err != nil {
		t.Fatalf("silence add: %v\n%s", err, errOut)
	}
	var id, merchant int64
	if _, err := fmt.Sscanf(out, "silence %d: merchant %d,", &id, &merchant); err != nil || id <= 0 || merchant != 7 || !strings.Contains(out, "volume_drop") {
		t.Fatalf("silence add printed %q (%v)", out, err)
	}
	// ID MERCHANT RULE UNTIL(date time) BY REASON
	f := silenceListed(t, cfg, id)
	if len(f) != 7 || f[1] != "7" || f[2] != "volume_drop" || f[5] != "lee" || f[6] != "promo" {
		t.Fatalf("silence list row for %d = %q", id, f)
	}
	// A silence of every rule lists as such.
	out, _, err = runCLI(ctx, "silence", "add", "--config", cfg, "--merchant", "8", "--until", time.Now().Add(48*time.Hour).Format(time.RFC3339), "--reason", "under review", "--by", "kim")
	var id2 int64
	if _, serr := fmt.Sscanf(out, "silence %d:", &id2); err != nil || serr != nil || !strings.Contains(out, "all rules") {
		t.Fatalf("silence add of all rules: %q %v", out, err)
	}
	if f := silenceListed(t, cfg, id2); len(f) < 4 || f[1] != "8" || f[2] != "all" {
		t.Fatalf("silence list row for %d = %q", id2, f)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no reason", []string{"--merchant", "7", "--for", "1h", "--by", "lee"}, "--reason"},
		{"blank reason", []string{"--merchant", "7", "--for", "1h", "--reason", " ", "--by", "lee"}, "--reason"},
		{"no by", []string{"--merchant", "7", "--for", "1h", "--reason", "promo"}, "--by"},
		{"no merchant", []string{"--for", "1h", "--reason", "promo", "--by", "lee"}, "--merchant"},
		{"no end", []string{"--merchant", "7", "--reason", "promo", "--by", "lee"}, "--for"},
		{"two ends", []string{"--merchant", "7", "--for", "1h", "--until", "2099-01-01", "--reason", "promo", "--by", "lee"}, "--until"},
		{"past end", []string{"--merchant", "7", "--until", "2001-01-01", "--reason", "promo", "--by", "lee"}, "past"},
		{"bad rule", []string{"--merchant", "7", "--rule", "fraud", "--for", "1h", "--reason", "promo", "--by", "lee"}, "--rule"},
	} {
		_, _, err := runCLI(ctx, append([]string{"silence", "add", "--config", cfg}, tc.args...)...)
		if !isUsage(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("silence add, %s: err = %v, want a usage error naming %s", tc.name, err, tc.want)
		}
	}

	out, errOut, err = runCLI(ctx, "silence", "expire", strconv.FormatInt(id, 10), "--config", cfg)
	if err != nil || !strings.Contains(out, fmt.Sprintf("silence %d expired", id)) {
		t.Fatalf("silence expire: %q %v\n%s", out, err, errOut)
	}
	if f := silenceListed(t, cfg, id); f != nil {
		t.Fatalf("expired silence still listed: %q", f)
	}
	if f := silenceListed(t, cfg, id2); f == nil {
		t.Fatal("expiring one silence removed another")
	}
	for _, arg := range []string{strconv.FormatInt(id, 10), "999999"} {
		if _, _, err := runCLI(ctx, "silence", "expire", arg, "--config", cfg); err == nil || !errors.Is(err, alertstore.ErrNotFound) {
			t.Errorf("silence expire %s: err = %v, want not found", arg, err)
		}
	}
	if _, _, err := runCLI(ctx, "silence", "expire", "--config", cfg); !isUsage(err) {
		t.Errorf("silence expire without an id: err = %v, want a usage error", err)
	}
	if _, _, err := runCLI(ctx, "silence", "expire", "x1", "--config", cfg); !isUsage(err) {
		t.Errorf("silence expire x1: err = %v, want a usage error", err)
	}
}

func TestAckCommandErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := migrated(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no id", []string{"--by", "x"}, "alert ID"},
		{"two ids", []string{"1", "2", "--by", "x"}, "alert ID"},
		{"not a number", []string{"abc", "--by", "x"}, "alert ID"},
		{"zero", []string{"0", "--by", "x"}, "alert ID"},
		{"no by", []string{"17"}, "--by"},
		{"blank by", []string{"17", "--by", "  "}, "--by"},
	} {
		_, _, err := runCLI(ctx, append([]string{"ack", "--config", cfg}, tc.args...)...)
		if !isUsage(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ack %s: err = %v, want a usage error mentioning %q", tc.name, err, tc.want)
		}
	}
	// Flags after the ID work as well as before it.
	_, _, err := runCLI(ctx, "ack", "424242", "--by", "x", "--config", cfg)
	if err == nil || isUsage(err) || !strings.Contains(err.Error(), "not found") || !errors.Is(err, alertstore.ErrNotFound) {
		t.Fatalf("ack of an unknown alert: err = %v, want not found", err)
	}
}

// negBinUpper is P(X ≥ x) for a negative binomial count with mean mu and
// squared coefficient of variation cv2, extended to real x as the
// regularized incomplete beta I_p(x, k), p = mu/(mu+k), k = 1/cv2 —
// integrated here with Simpson's rule after u = t^x (which makes the
// integrand smooth), independently of the continued fraction the rules
// use.
func negBinUpper(x, mu, cv2 float64) float64 {
	k := 1 / cv2
	p := mu / (mu + k)
	f := func(u float64) float64 { return math.Pow(1-math.Pow(u, 1/x), k-1) }
	const n = 20000
	hi := math.Pow(p, x)
	h := hi / n
	sum := f(0) + f(hi)
	for i := 1; i < n; i++ {
		w := 2.0
		if i%2 == 1 {
			w = 4
		}
		sum += w * f(float64(i)*h)
	}
	lx, _ := math.Lgamma(x)
	lk, _ := math.Lgamma(k)
	lxk, _ := math.Lgamma(x + k)
	return sum * h / 3 / x / math.Exp(lx+lk-lxk)
}
