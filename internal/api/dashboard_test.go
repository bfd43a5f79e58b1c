package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riskwatch/riskwatch/internal/alert"
	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/engine"
	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
	"github.com/riskwatch/riskwatch/internal/store/dashboard"
	"github.com/riskwatch/riskwatch/internal/window"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

// fakeEngine stands in for the running pipeline: the API only reads its
// status and ranking, and the ranking it holds is the real evaluator's.
type fakeEngine struct {
	mu      sync.Mutex // a test changes the status while the server reads it
	status  engine.Status
	ranking *rules.Ranking
}

func (f *fakeEngine) Status() engine.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeEngine) Ranking() *rules.Ranking { return f.ranking }

func (f *fakeEngine) setStuck(s *engine.Stuck) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status.Stuck = s
}

// The seeded world. L is the last closed minute: 2026-11-20 05:29 UTC,
// 14:29 in Seoul. H = 04:30…05:29; B = the 7 days before 04:30.
//
//   - merchant 7 "Acme Books": 100 approvals + 1 cancel at 05:00 UTC on each
//     of Nov 13…19 (a_B 700, c_B 7: baseline 1%), then 50 approvals at 05:00
//     and 12 cancels at 05:20 on Nov 20. At L: rate 12/50 = 24%, effective
//     baseline 1%, the 2× line 2%, score 12 / (2 × 1% × 50) = 12: fires.
//   - merchant 9 "Big Mart": 1,000,000 KRW at 09:00 and at 13:00 Seoul on
//     each of Nov 13…19 (daily_avg 2,000,000 ≥ large_daily_amount 1,500,000),
//     and only the 09:00 one on Nov 20: at 14:29 today 1,000,000 against
//     2,000,000 expected, exactly the 50% line: fires.
//   - merchant 3, named like an HTML injection, 1 approval at 05:10.
var (
	lastClosed = window.MinuteOf(time.Date(2026, 11, 20, 5, 29, 0, 0, time.UTC))
	seoulLoc   = mustLoc("Asia/Seoul")
)

func mustLoc(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

const xssName = `<img src=x onerror=alert(1)>`

type seedRow struct {
	merchant     int64
	at           time.Time
	a, aa, c, ca int64
}

func seedRows() []seedRow {
	var rows []seedRow
	for d := 1; d <= 7; d++ {
		day := time.Date(2026, 11, 20-d, 0, 0, 0, 0, seoulLoc)
		rows = append(rows,
			seedRow{7, time.Date(2026, 11, 20-d, 5, 0, 0, 0, time.UTC), 100, 1_000_000, 1, 10_000},
			seedRow{9, day.Add(9 * time.Hour), 100, 1_000_000, 0, 0},
			seedRow{9, day.Add(13 * time.Hour), 100, 1_000_000, 0, 0},
		)
	}
	return append(rows,
		seedRow{7, time.Date(2026, 11, 20, 5, 0, 0, 0, time.UTC), 50, 500_000, 0, 0},
		seedRow{7, time.Date(2026, 11, 20, 5, 20, 0, 0, time.UTC), 0, 0, 12, 120_000},
		seedRow{9, time.Date(2026, 11, 20, 9, 0, 0, 0, seoulLoc), 100, 1_000_000, 0, 0},
		seedRow{3, time.Date(2026, 11, 20, 5, 10, 0, 0, time.UTC), 1, 5_000, 0, 0},
	)
}

type world struct {
	base   string
	srv    *Server
	st     *alertstore.Store
	engine *fakeEngine
	alerts []*alert.Alert
	// logs is what the server logged.
	logs *logBuffer
	// later moves the server's clock on (nanoseconds after its start).
	later atomic.Int64
}

// externalURL is where the test dashboard claims to be reached through a
// reverse proxy.
const externalURL = "https://risk.example.com/dashboard"

// newWorld seeds a sink and serves it; configure, when given, changes the
// configuration first.
func newWorld(t *testing.T, configure ...func(*config.Config)) *world {
	t.Helper()
	ctx := context.Background()
	cfg := config.Default()
	cfg.Location = seoulLoc
	cfg.Rules.VolumeDrop.LargeDailyAmount = 1_500_000
	cfg.HTTP.ExternalURL = externalURL
	cfg.HTTP.Auth = config.Auth{
		Read:     config.Credentials{Token: "read-token", Username: "viewer", Password: "view-pw"},
		Operator: config.Credentials{Token: "op-token", Username: "oncall", Password: "op-pw"},
	}
	for _, f := range configure {
		f(cfg)
	}
	db, err := store.Open(ctx, cluster.NewDB(t), "riskwatch", seoulLoc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	agg, st := aggregates.New(db), alertstore.New(db)
	cp := aggregates.Checkpoint{Slot: "rw", Position: "0/1", LastClosed: lastClosed - 1, Progress: lastClosed.Start()}
	err = agg.Bootstrap(ctx, cp, func(ctx context.Context, l *aggregates.Loader) error {
		_, err := l.CopyMinutes(ctx, func(w *aggregates.MinuteWriter) error {
			for _, r := range seedRows() {
				if _, err := fmt.Fprintf(w, "%d\t%s\t%d\t%d\t%d\t%d\n", r.merchant, r.at.UTC().Format("2006-01-02 15:04:05+00"), r.a, r.aa, r.c, r.ca); err != nil {
					return err
				}
			}
			return nil
		})
		return err
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cp, err = agg.Claim(ctx, "rw"); err != nil {
		t.Fatal(err)
	}
	if _, err := dashboard.New(db).UpsertMerchants(ctx, []dashboard.Merchant{{ID: 7, Name: "Acme Books"}, {ID: 9, Name: "Big Mart"}, {ID: 3, Name: xssName}}); err != nil {
		t.Fatal(err)
	}
	// The real evaluator closes L over the seeded sink: its alerts are
	// stored as the engine stores them, and its ranking is what the API serves.
	eng := &fakeEngine{status: engine.Status{Ready: true, LastClosed: lastClosed, LagBytes: 2048, LagSeconds: 0.25, EventsPerSecond: 812.5}}
	ev, err := engine.NewEvaluator(ctx, agg, cfg, lastClosed-1, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev.Ranked = func(r *rules.Ranking) { eng.ranking = r }
	changes, err := ev.Close(ctx, lastClosed, lastClosed, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{st: st, engine: eng}
	batch := &alertstore.AlertBatch{Closed: cp.At(cp.Position, lastClosed-1, lastClosed.Start()), LastClosed: lastClosed}
	for _, ch := range changes {
		batch.Changes = append(batch.Changes, alertstore.AlertChange{Live: ch.Alert, Snap: ch.After, Minute: ch.Minute, Fires: ch.Fires,
			Values: ch.Values, New: ch.New, Notify: ch.Notify})
		w.alerts = append(w.alerts, ch.Alert)
	}
	if _, err := st.ApplyAlerts(ctx, batch); err != nil {
		t.Fatal(err)
	}
	now := lastClosed.End().Add(1500 * time.Millisecond)
	w.logs = &logBuffer{}
	srv, err := New(Options{Listen: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(w.logs, nil)),
		Ready: func() (bool, any) { return true, nil }, Config: cfg, DB: db, Engine: eng, Version: "test",
		Assets:      fstest.MapFS{"index.html": {Data: []byte("<!doctype html><title>riskwatch</title>")}, "assets/app.js": {Data: []byte("console.log(1)")}},
		Now:         func() time.Time { return now.Add(time.Duration(w.later.Load())) },
		StatusEvery: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.srv = srv
	sctx, cancel := context.WithCancel(ctx)
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx, addr) }()
	w.base = "http://" + <-addr
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return w
}

type creds struct{ user, pass, bearer string }

var (
	reader   = creds{user: "viewer", pass: "view-pw"}
	operator = creds{user: "oncall", pass: "op-pw"}
	noCreds  = creds{}
)

// do sends a request as an API client does: a JSON body for anything but
// GET, no browser headers.
func (w *world) do(t *testing.T, c creds, method, path, body string) (int, http.Header, []byte) {
	t.Helper()
	var headers map[string]string
	if method != "GET" {
		headers = map[string]string{"Content-Type": "application/json"}
	}
	return w.send(t, c, method, path, headers, strings.NewReader(body))
}

// send sends a request with the credentials and exactly these headers.
func (w *world) send(t *testing.T, c creds, method, path string, headers map[string]string, body io.Reader) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, w.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (w *world) getJSON(t *testing.T, path string, dst any) {
	t.Helper()
	code, _, body := w.do(t, reader, "GET", path, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal(body, dst); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestDashboardAPI(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	L := lastClosed.Start()

	t.Run("status", func(t *testing.T) {
		var s struct {
			Ready           bool       `json:"ready"`
			LastClosed      *time.Time `json:"last_closed_minute"`
			Timezone        string     `json:"business_timezone"`
			EventsPerSecond float64    `json:"events_per_second"`
			CanAck          bool       `json:"can_ack"`
			Delivery        string     `json:"delivery"`
			Rules           map[string]map[string]float64
		}
		w.getJSON(t, "/api/status", &s)
		if !s.Ready || s.LastClosed == nil || !s.LastClosed.Equal(L) || s.Timezone != "Asia/Seoul" || s.EventsPerSecond != 812.5 || s.Delivery != "stream" ||
			s.CanAck || s.Rules["cancel_rate_spike"]["multiplier"] != 2 || s.Rules["volume_drop"]["large_daily_amount"] != 1_500_000 {
			t.Fatalf("status = %+v", s)
		}
	})

	t.Run("status when stuck", func(t *testing.T) {
		var s map[string]json.RawMessage
		w.getJSON(t, "/api/status", &s)
		if stuck, ok := s["stuck"]; !ok || string(stuck) != "null" {
			t.Fatalf("stuck = %s (present %v), want null while the pipeline moves", stuck, ok)
		}
		since := time.Date(2026, 11, 20, 14, 28, 5, 0, seoulLoc)
		w.engine.setStuck(&engine.Stuck{Since: since, Failures: 4, Error: "writing minutes: injected failure", Position: "0/16B3748"})
		defer w.engine.setStuck(nil)
		var got struct {
			Stuck struct {
				Since    string
				Failures int
				Error    string
				Position string
			}
		}
		w.getJSON(t, "/api/status", &got)
		if k := got.Stuck; k.Since != "2026-11-20T05:28:05Z" || k.Failures != 4 || k.Error != "writing minutes: injected failure" || k.Position != "0/16B3748" {
			t.Fatalf("stuck = %+v", k)
		}
	})

	t.Run("platform minutes", func(t *testing.T) {
		var p struct {
			T, Approvals, Cancels []int64
			CanceledAmount        []int64 `json:"canceled_amount"`
		}
		w.getJSON(t, "/api/platform/minutes", &p)
		// Three hours up to L; in them merchant 7's 50 approvals and 12
		// cancels and merchant 3's one approval (Big Mart's 09:00 Seoul is
		// 00:00 UTC, before the window).
		if len(p.T) != 180 || p.T[179] != L.Unix() || p.T[0] != L.Add(-179*time.Minute).Unix() {
			t.Fatalf("%d points from %d to %d", len(p.T), p.T[0], p.T[len(p.T)-1])
		}
		var a, c, ca int64
		for i := range p.T {
			a, c, ca = a+p.Approvals[i], c+p.Cancels[i], ca+p.CanceledAmount[i]
		}
		if a != 51 || c != 12 || ca != 120_000 {
			t.Fatalf("sums %d approvals, %d cancels, %d canceled; want 51, 12, 120000", a, c, ca)
		}
		i := int(time.Date(2026, 11, 20, 5, 20, 0, 0, time.UTC).Sub(L.Add(-179*time.Minute)) / time.Minute)
		if p.Cancels[i] != 12 {
			t.Fatalf("cancels at 05:20 = %d", p.Cancels[i])
		}
	})

	t.Run("search", func(t *testing.T) {
		var r struct{ Merchants []dashboard.Merchant }
		w.getJSON(t, "/api/merchants?q=MART", &r)
		if len(r.Merchants) != 1 || r.Merchants[0] != (dashboard.Merchant{ID: 9, Name: "Big Mart"}) {
			t.Fatalf("q=MART: %+v", r.Merchants)
		}
		w.getJSON(t, "/api/merchants?q=onerror", &r)
		if len(r.Merchants) != 1 || r.Merchants[0].Name != xssName {
			t.Fatalf("q=onerror: %+v", r.Merchants)
		}
		w.getJSON(t, "/api/merchants?q=424242", &r)
		if len(r.Merchants) != 1 || r.Merchants[0].ID != 424242 || r.Merchants[0].Name != "" {
			t.Fatalf("an unnamed id is still offered: %+v", r.Merchants)
		}
	})

	t.Run("risk ranking", func(t *testing.T) {
		var r struct {
			AsOf      time.Time `json:"as_of_minute"`
			Merchants []struct {
				ID    int64
				Name  string
				AH    int64   `json:"a_h"`
				CH    int64   `json:"c_h"`
				Rate  float64 `json:"rate_h"`
				Eff   float64 `json:"effective_baseline"`
				Ratio float64
				Score float64
				Fires bool
			}
		}
		w.getJSON(t, "/api/rankings/risk?limit=5", &r)
		if !r.AsOf.Equal(L) || len(r.Merchants) != 1 {
			t.Fatalf("ranking = %+v; want only merchant 7 (the only one with cancels in H)", r)
		}
		m := r.Merchants[0]
		if m.ID != 7 || m.Name != "Acme Books" || m.AH != 50 || m.CH != 12 || !near(m.Rate, 0.24) || !near(m.Eff, 0.01) ||
			!near(m.Ratio, 24) || !near(m.Score, 12) || !m.Fires {
			t.Fatalf("merchant 7 = %+v", m)
		}
	})

	t.Run("volume ranking", func(t *testing.T) {
		var r struct {
			Merchants []struct {
				ID       int64
				DailyAvg float64 `json:"daily_avg"`
				Expected float64
				Today    int64
				Drop     float64
				Fires    bool
			}
		}
		w.getJSON(t, "/api/rankings/volume-drop", &r)
		if len(r.Merchants) != 1 {
			t.Fatalf("volume ranking = %+v; want Big Mart only", r)
		}
		m := r.Merchants[0]
		if m.ID != 9 || m.DailyAvg != 2_000_000 || m.Expected != 2_000_000 || m.Today != 1_000_000 || !near(m.Drop, 0.5) || !m.Fires {
			t.Fatalf("Big Mart = %+v", m)
		}
	})

	t.Run("series 1m", func(t *testing.T) {
		var s struct {
			T, Approvals, Cancels []int64
			Rate                  []*float64 `json:"rate_h"`
			Eff                   []*float64 `json:"effective_baseline"`
			Line                  []*float64 `json:"alert_line"`
			Source                string     `json:"baseline_source"`
			Alerts                []alertJSON
			Merchant              struct {
				ID   int64
				Name string
			}
		}
		w.getJSON(t, "/api/merchants/7/series?step=1m&from=2026-11-20T04:55:00Z", &s)
		// 04:55 … 05:29: 35 minutes.
		if len(s.T) != 35 || s.T[0] != time.Date(2026, 11, 20, 4, 55, 0, 0, time.UTC).Unix() || s.Merchant.Name != "Acme Books" {
			t.Fatalf("%d points, first %d, merchant %+v", len(s.T), s.T[0], s.Merchant)
		}
		at := func(hh, mm int) int { return int(time.Date(2026, 11, 20, hh, mm, 0, 0, time.UTC).Unix()-s.T[0]) / 60 }
		if s.Approvals[at(5, 0)] != 50 || s.Cancels[at(5, 20)] != 12 {
			t.Fatalf("counts at 05:00 %d, at 05:20 %d", s.Approvals[at(5, 0)], s.Cancels[at(5, 20)])
		}
		// 04:59: no approvals in its hour, so no rate; the baseline is 1%.
		if s.Rate[at(4, 59)] != nil || !near(*s.Eff[at(4, 59)], 0.01) || !near(*s.Line[at(4, 59)], 0.02) {
			t.Fatalf("04:59: rate %v eff %v line %v", s.Rate[at(4, 59)], *s.Eff[at(4, 59)], *s.Line[at(4, 59)])
		}
		// 05:19: 50 approvals, no cancels yet. 05:20 onwards 12/50.
		if !near(*s.Rate[at(5, 19)], 0) || !near(*s.Rate[at(5, 20)], 0.24) || !near(*s.Rate[at(5, 29)], 0.24) || s.Source != "merchant" {
			t.Fatalf("rates 05:19 %v, 05:20 %v, 05:29 %v, source %s", *s.Rate[at(5, 19)], *s.Rate[at(5, 20)], *s.Rate[at(5, 29)], s.Source)
		}
		if len(s.Alerts) != 1 || s.Alerts[0].Rule != "cancel_rate_spike" || s.Alerts[0].State != "firing" || !s.Alerts[0].ActiveAt.Equal(L) {
			t.Fatalf("alerts on the axis = %+v", s.Alerts)
		}
	})

	t.Run("series 1h and 1d", func(t *testing.T) {
		var s struct {
			T, Approvals, Cancels []int64
			Rate                  []*float64 `json:"rate_h"`
		}
		w.getJSON(t, "/api/merchants/7/series?step=1h&from=2026-11-19T00:00:00Z", &s)
		// 2026-11-19 00:00 UTC … 05:29 on the 20th: 30 hours, the last partial.
		if len(s.T) != 30 || s.Approvals[5] != 100 || s.Approvals[29] != 50 || s.Cancels[29] != 12 || s.Cancels[5] != 1 {
			t.Fatalf("hours: %d points, approvals[5] %d, [29] %d, cancels[29] %d", len(s.T), s.Approvals[5], s.Approvals[29], s.Cancels[29])
		}
		// The rule's line at the last hour's last closed minute (05:29).
		if s.Rate[29] == nil || !near(*s.Rate[29], 0.24) {
			t.Fatalf("rate at the last hour = %v", s.Rate[29])
		}
		w.getJSON(t, "/api/merchants/9/series?step=1d", &s)
		// The default 8 days end with Nov 20 (Seoul): Nov 12 … Nov 20 is 9
		// days since the range starts mid-day on the 12th.
		n := len(s.T)
		if n != 9 || s.T[n-1] != time.Date(2026, 11, 20, 0, 0, 0, 0, seoulLoc).Unix() || s.Approvals[n-1] != 100 || s.Approvals[n-2] != 200 || s.Approvals[0] != 0 {
			t.Fatalf("days: %d points, last %d, approvals %v", n, s.T[n-1], s.Approvals)
		}
	})

	t.Run("volume curve", func(t *testing.T) {
		var v struct {
			Day       string
			Large     bool
			DailyAvg  float64 `json:"daily_avg"`
			T         []int64
			Today     []*int64
			Expected  []float64
			AlertLine []float64 `json:"alert_line"`
		}
		w.getJSON(t, "/api/merchants/9/volume", &v)
		if v.Day != "2026-11-20" || !v.Large || v.DailyAvg != 2_000_000 || len(v.T) != 1440 ||
			v.T[0] != time.Date(2026, 11, 20, 0, 0, 0, 0, seoulLoc).Unix() {
			t.Fatalf("volume: day %s large %v avg %v points %d", v.Day, v.Large, v.DailyAvg, len(v.T))
		}
		for _, c := range []struct {
			i              int
			expected, line float64
			today          int64 // -1: not closed
		}{
			{539, 0, 0, 0}, {540, 1_000_000, 500_000, 1_000_000}, {779, 1_000_000, 500_000, 1_000_000},
			{780, 2_000_000, 1_000_000, 1_000_000}, {869, 2_000_000, 1_000_000, 1_000_000}, {870, 2_000_000, 1_000_000, -1}, {1439, 2_000_000, 1_000_000, -1},
		} {
			got := int64(-1)
			if v.Today[c.i] != nil {
				got = *v.Today[c.i]
			}
			if v.Expected[c.i] != c.expected || v.AlertLine[c.i] != c.line || got != c.today {
				t.Errorf("minute %d: expected %v line %v today %d; want %v %v %d", c.i, v.Expected[c.i], v.AlertLine[c.i], got, c.expected, c.line, c.today)
			}
		}
	})

	t.Run("alerts and ack", func(t *testing.T) {
		var r struct{ Alerts []alertJSON }
		w.getJSON(t, "/api/alerts?state=firing", &r)
		if len(r.Alerts) != 2 {
			t.Fatalf("firing alerts = %+v; want Acme's cancel surge and Big Mart's drop", r.Alerts)
		}
		var acme alertJSON
		for _, a := range r.Alerts {
			if a.MerchantID == 7 {
				acme = a
			}
		}
		if acme.Rule != "cancel_rate_spike" || acme.MerchantName != "Acme Books" || acme.Ack != nil || !strings.Contains(acme.Summary, "12 cancels / 50 approvals") {
			t.Fatalf("Acme's alert = %+v", acme)
		}
		path := fmt.Sprintf("/api/alerts/%d/ack", acme.ID)
		// 401 without a Basic challenge: the page's own dialog asks.
		if code, h, _ := w.do(t, noCreds, "POST", path, `{"by":"kim"}`); code != 401 || h.Get("WWW-Authenticate") != `Bearer realm="riskwatch"` {
			t.Fatalf("ack without credentials: %d %v", code, h)
		}
		if code, h, _ := w.do(t, creds{user: "oncall", pass: "typo"}, "POST", path, `{"by":"kim"}`); code != 401 || strings.Contains(h.Get("WWW-Authenticate"), "Basic") {
			t.Fatalf("ack with a wrong password: %d %v", code, h)
		}
		if code, h, _ := w.do(t, noCreds, "GET", "/api/alerts", ""); code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic") {
			t.Fatalf("a read without credentials must challenge Basic: %d %v", code, h)
		}
		if code, _, body := w.do(t, reader, "POST", path, `{"by":"kim"}`); code != 403 {
			t.Fatalf("ack as reader: %d %s", code, body)
		}
		code, _, body := w.do(t, operator, "POST", path, `{"comment":"called the merchant"}`)
		var acked alertJSON
		if code != 200 || json.Unmarshal(body, &acked) != nil || acked.Ack == nil || acked.Ack.By != "oncall" || acked.Ack.Comment != "called the merchant" {
			t.Fatalf("ack as operator: %d %s", code, body)
		}
		w.getJSON(t, "/api/alerts?merchant=7", &r)
		if len(r.Alerts) != 1 || r.Alerts[0].Ack == nil || r.Alerts[0].Ack.By != "oncall" || !r.Alerts[0].Ack.At.Equal(lastClosed.End().Add(1500*time.Millisecond)) {
			t.Fatalf("after ack: %+v", r.Alerts)
		}
		if code, _, body := w.do(t, operator, "POST", "/api/alerts/99999/ack", `{"by":"kim"}`); code != 404 || !strings.Contains(string(body), "not found") {
			t.Fatalf("unknown alert: %d %s", code, body)
		}
		w.getJSON(t, "/api/alerts?rule=volume_drop", &r)
		if len(r.Alerts) != 1 || r.Alerts[0].MerchantID != 9 {
			t.Fatalf("rule filter: %+v", r.Alerts)
		}
		w.getJSON(t, fmt.Sprintf("/api/alerts?before=%d", max(r.Alerts[0].ID, acme.ID)), &r)
		if len(r.Alerts) != 1 {
			t.Fatalf("paging before the newest id: %+v", r.Alerts)
		}
	})

	t.Run("bad parameters", func(t *testing.T) {
		for _, c := range []struct{ path, want string }{
			{"/api/merchants/7/series?step=5m", "step: want 1m, 1h or 1d"},
			{"/api/merchants/7/series?from=yesterday", "from: want an RFC 3339 time"},
			{"/api/merchants/7/series?from=2026-11-20T06:00:00Z", "from must be before to"},
			{"/api/merchants/7/series?step=1m&from=2026-11-01T00:00:00Z", "at most the retention"},
			{"/api/merchants/x7/series", "merchant id: want a positive integer"},
			{"/api/merchants/7/volume?day=20261120", "day: want YYYY-MM-DD"},
			{"/api/alerts?state=open", "state: want firing or resolved"},
			{"/api/alerts?rule=fraud", "rule: want cancel_rate_spike, volume_drop or pipeline_stuck"},
			{"/api/alerts?limit=0", "limit: want an integer from 1 to 500"},
			{"/api/rankings/risk?limit=501", "limit: want an integer from 1 to 500"},
			{"/api/platform/minutes?from=2026-11-10T00:00:00Z", "more than the retention"},
		} {
			code, _, body := w.do(t, reader, "GET", c.path, "")
			var e struct{ Error string }
			if code != 400 || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, c.want) {
				t.Errorf("GET %s: %d %s; want 400 with %q", c.path, code, body, c.want)
			}
		}
		if code, _, body := w.do(t, operator, "POST", "/api/alerts/1/ack", `{"who":"kim"}`); code != 400 || !strings.Contains(string(body), "unknown field") {
			t.Errorf("ack with a bad body: %d %s", code, body)
		}
		if code, _, _ := w.do(t, reader, "GET", "/api/nope", ""); code != 404 {
			t.Errorf("unknown endpoint: %d", code)
		}
	})

	t.Run("auth", func(t *testing.T) {
		for _, c := range []struct {
			name string
			c    creds
			code int
		}{
			{"none", noCreds, 401}, {"wrong password", creds{user: "viewer", pass: "nope"}, 401},
			{"read basic", reader, 200}, {"read bearer", creds{bearer: "read-token"}, 200},
			{"token as basic password", creds{user: "anyone", pass: "read-token"}, 200},
			{"operator reads", operator, 200}, {"wrong bearer", creds{bearer: "op-pw"}, 401},
		} {
			if code, _, _ := w.do(t, c.c, "GET", "/api/status", ""); code != c.code {
				t.Errorf("%s: %d, want %d", c.name, code, c.code)
			}
		}
		for _, path := range []string{"/", "/merchants/7", "/assets/app.js", "/api/events"} {
			if code, _, _ := w.do(t, noCreds, "GET", path, ""); code != 401 {
				t.Errorf("%s without credentials: %d", path, code)
			}
		}
		if code, _, _ := w.do(t, noCreds, "GET", "/healthz", ""); code != 200 {
			t.Errorf("healthz must stay open: %d", code)
		}
		var s struct {
			CanAck bool `json:"can_ack"`
		}
		code, _, body := w.do(t, operator, "GET", "/api/status", "")
		if code != 200 || json.Unmarshal(body, &s) != nil || !s.CanAck {
			t.Errorf("operator status: %d %s", code, body)
		}
	})

	t.Run("pages", func(t *testing.T) {
		for _, path := range []string{"/", "/merchants", "/merchants/7", "/alerts"} {
			code, h, body := w.do(t, reader, "GET", path, "")
			if code != 200 || !strings.Contains(string(body), "<title>riskwatch</title>") || !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") {
				t.Errorf("GET %s: %d %v", path, code, h)
			}
		}
		if code, h, body := w.do(t, reader, "GET", "/assets/app.js", ""); code != 200 || string(body) != "console.log(1)" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("asset: %d %s", code, body)
		}
	})
}

// TestEventsStream: a client gets a status at once, then the alert
// transitions and the closed minute the pipeline reports, and an ack made
// through the API.
func TestEventsStream(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	req, _ := http.NewRequest("GET", w.base+"/api/events", nil)
	req.SetBasicAuth(reader.user, reader.pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, ct)
	}
	events := make(chan [2]string, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		var name string
		for sc.Scan() {
			line := sc.Text()
			if n, ok := strings.CutPrefix(line, "event: "); ok {
				name = n
			} else if d, ok := strings.CutPrefix(line, "data: "); ok {
				events <- [2]string{name, d}
			}
		}
		close(events)
	}()
	next := func(want string) string {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("stream ended waiting for %s", want)
				}
				if ev[0] == want {
					return ev[1]
				}
			case <-timeout:
				t.Fatalf("no %s event", want)
			}
		}
	}
	if s := next("status"); !strings.Contains(s, `"ready":true`) {
		t.Fatalf("first status: %s", s)
	}
	// The pipeline reports L closed with Acme's alert firing.
	var acme *alert.Alert
	for _, a := range w.alerts {
		if a.Merchant == 7 {
			acme = a
		}
	}
	w.srv.Closed(context.Background(), engine.ClosedMinutes{First: lastClosed, Last: lastClosed, Transitions: []*alert.Change{
		{Alert: acme, After: *acme, Minute: lastClosed, Fires: true, Transition: alert.Firing},
	}})
	var a alertJSON
	if err := json.Unmarshal([]byte(next("alert")), &a); err != nil || a.ID != acme.ID || a.Transition != "firing" || a.MerchantName != "Acme Books" {
		t.Fatalf("alert event: %+v %v", a, err)
	}
	var m struct {
		T       int64
		Cancels int64
	}
	if err := json.Unmarshal([]byte(next("minute")), &m); err != nil || m.T != lastClosed.Start().Unix() {
		t.Fatalf("minute event: %+v %v", m, err)
	}
	// A token carries no user name: the typed one is recorded.
	if code, _, body := w.do(t, creds{bearer: "op-token"}, "POST", fmt.Sprintf("/api/alerts/%d/ack", acme.ID), `{"by":"lee"}`); code != 200 {
		t.Fatalf("ack: %d %s", code, body)
	}
	if err := json.Unmarshal([]byte(next("alert")), &a); err != nil || a.Transition != "acknowledged" || a.Ack == nil || a.Ack.By != "lee" {
		t.Fatalf("ack event: %+v %v", a, err)
	}
	next("status") // the periodic status keeps coming
}
