package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

func startKafka(t *testing.T) *kfake.Cluster {
	t.Helper()
	kc, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	return kc
}

func kafkaConfig(kc *kfake.Cluster, topic string) string {
	return fmt.Sprintf(`kafka:
  brokers: [%s]
  topic: %s
  group: %s-group
  partitions: 12
  session_timeout: 1s
  watermark_interval: 100ms
`, strings.Join(kc.ListenAddrs(), ", "), topic, topic)
}

// hotLoad commits single-payment transactions until stopped: every other
// one for merchant 4242 (half of all traffic, the hot merchant), the rest
// spread over merchants 1–97; every third payment is also partly
// cancelled, so every merchant's hour runs far above the platform's 1% and
// each fires on the platform-wide baseline.
func hotLoad(t *testing.T, dsn string) *load {
	return runLoad(t, dsn, `WITH p AS (
			INSERT INTO payments VALUES (nextval('ids'), $2, 100 + $1 % 9000, 'approved', clock_timestamp() - ($1 % 500) * interval '1 millisecond')
			RETURNING id, merchant_id, amount, approved_at)
		INSERT INTO payment_cancels SELECT nextval('ids'), id, merchant_id, amount / 4, approved_at FROM p WHERE $1 % 3 = 0`,
		func(i int) []any {
			m := 4242
			if i%2 == 1 {
				m = 1 + (i/2)%97
			}
			return []any{i, m}
		})
}

type transition struct {
	Rule     string
	Merchant int64
	State    string
	Minute   string
}

// TestScaleOutKafka is the scale-out end to end on an in-process Kafka (kfake,
// three brokers, 12 partitions): capture and three workers as child
// processes under a steady load where one merchant carries half the
// traffic; one worker is SIGKILLed and later another joins, and capture is
// SIGKILLed mid-stream and restarted. Afterwards every stored minute equals
// the source's GROUP BY, the alerts the workers raised equal a single-node
// backtest over the same minutes, none twice, and the hot merchant's
// partition never held the others' closing back.
func TestScaleOutKafka(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCLIEnv(t)
	kc := startKafka(t)
	// History for the baselines: a platform rate of about 1% over the
	// last days, and merchant 777's own 2,000 approvals and 10 cancels.
	c.exec(`INSERT INTO payments SELECT nextval('ids'), 5000 + g % 50, 10000, 'approved', now() - interval '1 day' - g * interval '20 seconds' FROM generate_series(1, 6000) g`)
	c.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 5000 + g % 50, 5000, now() - interval '1 day' - g * interval '40 minutes' FROM generate_series(1, 60) g`)
	c.exec(`INSERT INTO payments SELECT nextval('ids'), 777, 10000, 'approved', now() - interval '2 hours' - g * interval '2 minutes' FROM generate_series(1, 2000) g`)
	c.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 777, 5000, now() - interval '2 hours' - g * interval '6 hours' FROM generate_series(1, 10) g`)
	hook := &hookReceiver{accepted: map[string]int{}, gotAt: map[string]time.Time{}}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()
	cfg := c.writeConfig(kafkaConfig(kc, c.slot) + fmt.Sprintf(`notify:
  backoff_min: 100ms
  backoff_max: 1s
  receivers:
    - {name: hook, type: webhook, url: %q, timeout: 2s}
`, hookSrv.URL))

	capture := startChild(t, "capture", "--config", cfg)
	waitFor(t, 60*time.Second, "capture to initialise 12 partitions", capture, func() bool {
		var n int
		_ = c.pool.QueryRow(ctx, `SELECT count(*) FROM riskwatch.kafka_partitions WHERE topic = $1`, c.slot).Scan(&n)
		return n == 12
	})
	workers := map[string]*child{}
	for _, m := range []string{"w1", "w2", "w3"} {
		workers[m] = startChild(t, "worker", "--config", cfg, "--member", m)
	}
	for _, w := range workers {
		waitReady(t, w, 60*time.Second)
	}
	ld := hotLoad(t, c.dsn)
	var spread atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(200 * time.Millisecond):
			}
			var s float64
			if err := c.pool.QueryRow(ctx, `SELECT extract(epoch FROM max(last_closed) - min(last_closed)) FROM riskwatch.kafka_partitions WHERE topic = $1`, c.slot).Scan(&s); err == nil {
				spread.Store(max(spread.Load(), int64(s)))
			}
		}
	}()
	time.Sleep(4 * time.Second)
	workers["w2"].kill(t)
	t.Log("worker w2 killed")
	time.Sleep(3 * time.Second)
	// The bust-out: merchant 777 stops selling and 8 cancels arrive.
	c.exec(`INSERT INTO payment_cancels SELECT nextval('ids'), 0, 777, 9000, now() FROM generate_series(1, 8)`)
	capture.kill(t)
	t.Log("capture killed")
	time.Sleep(500 * time.Millisecond)
	capture = startChild(t, "capture", "--config", cfg)
	time.Sleep(2 * time.Second)
	workers["w4"] = startChild(t, "worker", "--config", cfg, "--member", "w4")
	t.Log("worker w4 started")
	time.Sleep(4 * time.Second)
	n := ld.halt()
	halted := time.Now()
	// Everything applied, and every minute up to the one the load ended in
	// closed and evaluated by every partition's owner.
	haltMinute := halted.UTC().Truncate(time.Minute)
	waitFor(t, 120*time.Second, "every partition to close the load's last minute", capture, func() bool {
		var lc time.Time
		err := c.pool.QueryRow(ctx, `SELECT min(last_closed) FROM riskwatch.kafka_partitions WHERE topic = $1`, c.slot).Scan(&lc)
		return err == nil && !lc.Before(haltMinute)
	})
	close(stopSampling)
	<-sampled
	t.Logf("load: %d payment transactions; closing spread across partitions at most %d s", n, spread.Load())

	from, to := time.Now().Add(-8*24*time.Hour).Truncate(time.Minute).Add(time.Minute), time.Now().Add(time.Hour)
	out, errOut, err := runCLI(ctx, "export", "minutes", "--config", cfg, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339))
	if err != nil {
		t.Fatalf("export: %v\n%s", err, errOut)
	}
	if want := c.sourceCSV(from, to); out != want {
		t.Fatalf("minutes differ from the source GROUP BY:\n%s", firstDiff(out, want))
	}
	t.Logf("every one of %d merchant-minutes equals the source", strings.Count(out, "\n")-1)

	// The alerts the workers raised against a single-node backtest of the
	// minutes they evaluated.
	var first, last time.Time
	if err := c.pool.QueryRow(ctx, `SELECT last_closed FROM riskwatch.checkpoint WHERE slot = $1`, c.slot).Scan(&first); err != nil {
		t.Fatal(err)
	}
	first = first.Add(time.Minute)
	last = haltMinute
	bt, errOut, err := runCLI(ctx, "backtest", "--config", cfg, "--from", first.Format(time.RFC3339), "--to", last.Add(time.Minute).Format(time.RFC3339))
	if err != nil {
		t.Fatalf("backtest: %v\n%s", err, errOut)
	}
	var want []transition
	// The values each alert fired with, which the workers stored with the
	// alert's first evaluation.
	wantValues := map[string]map[string]any{}
	sc := bufio.NewScanner(strings.NewReader(bt))
	for sc.Scan() {
		var l backtestLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("backtest line %q: %v", sc.Text(), err)
		}
		// The alerts table holds when each alert fired and resolved, not
		// its escalations (only its latest priority): those are what the
		// workers' transitions are read from below.
		if l.State != "firing" && l.State != "resolved" {
			continue
		}
		want = append(want, transition{l.Rule, l.MerchantID, l.State, l.Minute})
		if l.State == "firing" {
			wantValues[fmt.Sprint(l.Rule, l.MerchantID, l.Minute)] = l.Values
		}
	}
	rows, err := c.pool.Query(ctx, `SELECT rule, merchant_id, 'firing', active_at FROM riskwatch.alerts
		UNION ALL SELECT rule, merchant_id, 'resolved', resolved_at FROM riskwatch.alerts WHERE resolved_at IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	var got []transition
	for rows.Next() {
		var tr transition
		var at time.Time
		if err := rows.Scan(&tr.Rule, &tr.Merchant, &tr.State, &at); err != nil {
			t.Fatal(err)
		}
		if !at.Before(first) && !at.After(last) {
			tr.Minute = at.UTC().Format(time.RFC3339)
			got = append(got, tr)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	order := func(a, b transition) int {
		return strings.Compare(fmt.Sprint(a.Minute, a.Rule, a.Merchant, a.State), fmt.Sprint(b.Minute, b.Rule, b.Merchant, b.State))
	}
	slices.SortFunc(got, order)
	slices.SortFunc(want, order)
	if !slices.Equal(got, want) {
		t.Fatalf("workers raised\n%v\nsingle-node backtest over %s..%s\n%v", got, first.Format(time.RFC3339), last.Format(time.RFC3339), want)
	}
	bust := slices.ContainsFunc(got, func(tr transition) bool { return tr.Merchant == 777 && tr.State == "firing" })
	if !bust || len(got) < 90 {
		t.Fatalf("want the bust-out of merchant 777 and the load's ~98 merchants on the platform baseline firing: %v", got)
	}
	vrows, err := c.pool.Query(ctx, `SELECT a.rule, a.merchant_id, a.active_at, e."values" FROM riskwatch.alerts a
		JOIN riskwatch.alert_evaluations e ON e.alert_id = a.id AND e.minute = a.active_at`)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for vrows.Next() {
		var rule string
		var m int64
		var at time.Time
		var v map[string]any
		if err := vrows.Scan(&rule, &m, &at, &v); err != nil {
			t.Fatal(err)
		}
		w, ok := wantValues[fmt.Sprint(rule, m, at.UTC().Format(time.RFC3339))]
		if !ok {
			continue
		}
		// Platform baselines included: the workers' comes from every
		// worker's totals in the sink, the backtest's from its own sums.
		checkValues(t, fmt.Sprintf("%s %d", rule, m), v, w)
		checked++
	}
	if checked != len(wantValues) {
		t.Fatalf("compared the values of %d alerts, want all %d that fired", checked, len(wantValues))
	}
	t.Logf("%d alert transitions over %s..%s (load halted at %s), equal to the single-node backtest", len(got),
		first.Format(time.RFC3339), last.Format(time.RFC3339), halted.Format(time.RFC3339Nano))
	var dup int
	if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM riskwatch.alerts GROUP BY rule, merchant_id, active_at HAVING count(*) > 1) d`).Scan(&dup); err != nil || dup != 0 {
		t.Fatalf("alerts raised twice: %d (%v)", dup, err)
	}
	// Notified once each, by whichever worker holds the sender's lock (w2,
	// killed, may have held it).
	var firing int
	if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM riskwatch.alerts WHERE state = 'firing'`).Scan(&firing); err != nil {
		t.Fatal(err)
	}
	var accepted map[string]int
	var bodies []map[string]any
	waitFor(t, 30*time.Second, "every firing alert's notification", capture, func() bool {
		_, accepted, bodies = hook.snapshot()
		return len(accepted) >= firing
	})
	seen := map[string]bool{}
	for _, body := range bodies {
		items, _ := body["notifications"].([]any)
		if len(items) != 1 {
			t.Fatalf("webhook body = %v", body)
		}
		b, _ := items[0].(map[string]any)
		k := fmt.Sprint(b["rule"], b["merchant_id"], b["kind"])
		if seen[k] {
			t.Fatalf("alert notified twice as %v: %s", b["kind"], k)
		}
		seen[k] = true
	}
	if len(accepted) != firing {
		t.Fatalf("%d notifications for %d firing alerts", len(accepted), firing)
	}
	// Any worker serves the dashboard's API over every worker's merchants.
	var rank struct {
		Merchants []struct{ ID int64 }
	}
	waitFor(t, 10*time.Second, "the merged risk ranking", capture, func() bool {
		resp, err := http.Get("http://" + workers["w4"].httpAddr(t, time.Second) + "/api/rankings/risk?limit=500")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		rank.Merchants = nil
		return json.NewDecoder(resp.Body).Decode(&rank) == nil && len(rank.Merchants) >= 90
	})
	ids := map[int64]bool{}
	for _, m := range rank.Merchants {
		if ids[m.ID] {
			t.Fatalf("merchant %d ranked twice", m.ID)
		}
		ids[m.ID] = true
	}
	if !ids[777] || !ids[4242] {
		t.Fatalf("w4's ranking lacks merchants of other workers: %v", rank.Merchants)
	}
	if s := spread.Load(); s > 60 {
		t.Fatalf("one partition's closing trailed another's by %d s: the hot merchant (or the rebalance) held minutes back", s)
	}
	// Capture's restart published rows again; the workers dropped them.
	var dups float64
	for _, w := range []string{"w1", "w3", "w4"} {
		m := scrape(t, "http://"+workers[w].httpAddr(t, time.Second)+"/metrics")
		line := metricLine(m, "riskwatch_worker_duplicates_total")
		var d float64
		fmt.Sscanf(strings.TrimPrefix(line, "riskwatch_worker_duplicates_total "), "%g", &d)
		dups += d
		t.Logf("%s: %s; %s", w, line, metricLine(m, `riskwatch_events_total{kind="approval"}`))
	}
	if dups == 0 {
		t.Fatal("no redelivered record was seen: capture's kill did not exercise deduplication")
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, ch *child, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\n%s", what, ch.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
