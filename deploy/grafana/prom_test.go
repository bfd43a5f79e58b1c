package grafana

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"gopkg.in/yaml.v3"
)

// scrapeInterval is the test Prometheus's; the dashboards' rate windows
// ($__rate_interval) must work at it.
const scrapeInterval = time.Second

const rulesFile = "../prometheus/riskwatch-rules.yml"

type promClient struct{ base string }

// sample is one series of an instant query's vector.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s sample) float(t *testing.T) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
	if err != nil {
		t.Fatalf("sample value %v: %v", s.Value, err)
	}
	return f
}

func (p promClient) get(path string, params url.Values, dst any) error {
	resp, err := http.Get(p.base + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s", path, env.Error)
	}
	return json.Unmarshal(env.Data, dst)
}

// query runs an instant query now and returns its vector (a scalar is
// one sample without labels).
func (p promClient) query(expr string) ([]sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	switch data.ResultType {
	case "vector":
		var v []sample
		return v, json.Unmarshal(data.Result, &v)
	case "scalar":
		var s [2]any
		return []sample{{Value: s}}, json.Unmarshal(data.Result, &s)
	}
	return nil, fmt.Errorf("%s: result type %s", expr, data.ResultType)
}

type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p promClient) alerts(t *testing.T) []promAlert {
	t.Helper()
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	if err := p.get("/api/v1/alerts", nil, &data); err != nil {
		t.Fatal(err)
	}
	return data.Alerts
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startPrometheus runs Debian's Prometheus on a free loopback port,
// scraping riskwatch every second as job "riskwatch" and evaluating the
// rules file every second.
func startPrometheus(t *testing.T, target string) promClient {
	t.Helper()
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	body := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  evaluation_interval: %[1]s
rule_files: [%[2]q]
scrape_configs:
  - job_name: riskwatch
    static_configs:
      - targets: [%[3]q]
`, durationText(scrapeInterval), rules, target)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	log := startProcess(t, "prometheus", "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("prometheus log:\n%s", tail(log.String(), 4000))
		}
	})
	p := promClient{base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	waitFor(t, 60*time.Second, "Prometheus to be ready", func() (bool, string) {
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

// promTargets are the PromQL queries of the dashboards, by where they are.
func promTargets(t *testing.T) map[string]string {
	out := map[string]string{}
	for file := range dashboardFiles {
		d := readDashboard(t, file)
		for _, p := range d.allPanels() {
			for _, tg := range p.Targets {
				if tg.Datasource != nil && tg.Datasource.UID == promUID {
					out[fmt.Sprintf("%s / %s %s", d.UID, p.Title, tg.RefID)] = tg.Expr
				}
			}
		}
	}
	return out
}

type ruleGroups struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) ruleGroups {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rg ruleGroups
	if err := yaml.Unmarshal(b, &rg); err != nil {
		t.Fatal(err)
	}
	return rg
}

// metricNames are the metrics an expression selects.
var metricNameRE = regexp.MustCompile(`\b(riskwatch_[a-z0-9_]+|process_[a-z0-9_]+|up)\b`)

// testPromQL: with traffic flowing, every dashboard expression returns
// data from a real Prometheus, every alert rule evaluates cleanly with
// every metric it reads present, none is active on a healthy engine, and
// RiskwatchDeadLetters fires once a row is dead-lettered.
func testPromQL(t *testing.T, e *env) {
	out, err := exec.Command("promtool", "check", "rules", rulesFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	out, err = exec.Command("promtool", "check", "config", "../prometheus/prometheus.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}

	p := startPrometheus(t, e.addr)
	// Live traffic: a payment every 100 ms, so rates and the commit →
	// aggregate histogram have something to show.
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-tick.C:
				// The status update is no event: an ignored change.
				if _, err := e.admin.Exec(gctx, `INSERT INTO payments (id, merchant_id, amount, status, approved_at) VALUES (nextval('ids'), 1, 10000, 'approved', now());
					UPDATE payments SET status = 'settled' WHERE id = (SELECT min(id) FROM payments)`); err != nil && gctx.Err() == nil {
					return fmt.Errorf("live payment: %w", err)
				}
			}
		}
	})
	defer func() {
		cancel()
		if err := g.Wait(); err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, 60*time.Second, "ten scrapes and a rule evaluation", func() (bool, string) {
		s, err := p.query(`count_over_time(up{job="riskwatch"}[1m])`)
		if err != nil || len(s) != 1 || s[0].float(t) < 10 {
			return false, fmt.Sprint(s, err)
		}
		var rules struct {
			Groups []struct {
				Rules []struct {
					Name           string    `json:"name"`
					Health         string    `json:"health"`
					LastError      string    `json:"lastError"`
					LastEvaluation time.Time `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := p.get("/api/v1/rules", nil, &rules); err != nil || len(rules.Groups) != 1 {
			return false, fmt.Sprint(rules, err)
		}
		for _, r := range rules.Groups[0].Rules {
			if r.Health != "ok" || r.LastEvaluation.IsZero() {
				return false, fmt.Sprintf("rule %s: health %q %s", r.Name, r.Health, r.LastError)
			}
		}
		return true, ""
	})

	// Grafana's range for an instant look at the last 15 minutes.
	now := time.Now()
	q := query{from: now.Add(-15 * time.Minute), to: now, maxDataPoints: 1000, minInterval: scrapeInterval}
	for where, expr := range promTargets(t) {
		expanded, err := expandPromQL(expr, q)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		s, err := p.query(expanded)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		if len(s) == 0 {
			t.Errorf("%s: no data for %s", where, expanded)
			continue
		}
		// A quantile of a window without observations is NaN (rule
		// evaluations happen once a minute): the series is there.
		if !strings.Contains(expr, "histogram_quantile") {
			for _, x := range s {
				if f := x.float(t); math.IsNaN(f) || math.IsInf(f, 0) {
					t.Errorf("%s: %s = %v", where, expanded, f)
				}
			}
		}
	}
	wantSeries := map[string]bool{"receiver=oncall": false, "kind=approval": false, "ignored changes": false}
	if s, err := p.query(`sum by (kind) (rate(riskwatch_events_total[4s]))`); err == nil {
		for _, x := range s {
			if x.Metric["kind"] == "approval" && x.float(t) > 0 {
				wantSeries["kind=approval"] = true
			}
		}
	}
	if s, err := p.query(`sum(rate(riskwatch_ignored_changes_total[4s]))`); err == nil && len(s) == 1 && s[0].float(t) > 0 {
		wantSeries["ignored changes"] = true
	}
	if s, err := p.query(`riskwatch_notifications_sent_total`); err == nil {
		for _, x := range s {
			if x.Metric["receiver"] == "oncall" && x.float(t) >= 2 {
				wantSeries["receiver=oncall"] = true
			}
		}
	}
	for k, ok := range wantSeries {
		if !ok {
			t.Errorf("Prometheus lacks %s (approvals and updates flowing, the seeded alerts' notifications sent)", k)
		}
	}

	rg := readRules(t)
	var names []string
	for _, grp := range rg.Groups {
		for _, r := range grp.Rules {
			names = append(names, r.Alert)
			if _, err := p.query(r.Expr); err != nil {
				t.Errorf("rule %s: %v", r.Alert, err)
			}
			for _, m := range metricNameRE.FindAllString(r.Expr, -1) {
				if s, err := p.query(fmt.Sprintf(`{__name__=%q, job="riskwatch"}`, m)); err != nil || len(s) == 0 {
					t.Errorf("rule %s reads %s, which Prometheus does not have (%v)", r.Alert, m, err)
				}
			}
		}
	}
	if !slices.Contains(names, "RiskwatchDeadLetters") || !slices.Contains(names, "RiskwatchPipelineStuck") || !slices.Contains(names, "RiskwatchNotificationsFailing") {
		t.Fatalf("rules %v", names)
	}
	// A healthy engine sets nothing off (the seed's dead letter came before
	// the first scrape, so its counter never moves in Prometheus's view).
	if a := p.alerts(t); len(a) != 0 {
		t.Fatalf("alerts on a healthy engine: %+v", a)
	}
	if _, err := e.admin.Exec(context.Background(), `INSERT INTO payments (id, merchant_id, amount, status, approved_at) VALUES (nextval('ids'), 2, -1, 'approved', now())`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "RiskwatchDeadLetters to fire", func() (bool, string) {
		a := p.alerts(t)
		for _, x := range a {
			if x.Labels["alertname"] == "RiskwatchDeadLetters" && x.Labels["reason"] == "negative_amount" && x.State == "firing" {
				return len(a) == 1, fmt.Sprintf("%+v", a)
			}
		}
		return false, fmt.Sprintf("%+v", a)
	})
}
