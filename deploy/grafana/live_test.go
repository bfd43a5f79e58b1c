package grafana

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/sim"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

// Seeded merchants.
const (
	surgeMerchant = 101 // a week of sales, then a cancellation surge in the last hour: its own baseline
	quietMerchant = 103 // a handful of sales, then a bust-out: the platform's baseline
	ordinaryShops = 30  // merchants 1..30
)

// env is one running riskwatch over a seeded source, its sink, and the
// reader login Grafana would use.
type env struct {
	t        *testing.T
	admin    *pgxpool.Pool // the source database, which is also the sink
	reader   *pgx.Conn     // a login in the role migrate --reader-role made
	addr     string        // riskwatch's HTTP address
	slot     string
	webhooks atomic.Int64
}

// buildRiskwatch builds the product binary the way make build does.
func buildRiskwatch(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "riskwatch")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/riskwatch/riskwatch/cmd/riskwatch")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building riskwatch: %v\n%s", err, out)
	}
	return bin
}

// processLog is a child's output, in a file the test reads while it runs.
type processLog string

func (l processLog) String() string {
	b, _ := os.ReadFile(string(l))
	return string(b)
}

// startProcess runs a child that the test stops (SIGINT, then SIGKILL)
// when it ends.
func startProcess(t *testing.T, name string, args ...string) processLog {
	t.Helper()
	path := filepath.Join(t.TempDir(), filepath.Base(name)+".log")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return processLog(path)
}

// seed writes eight days (less a margin inside the retention) of traffic:
// thirty ordinary shops, the surge merchant and the quiet one, and one row
// the engine must dead-letter.
func seed(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	for _, sql := range []string{
		sim.Schema,
		fmt.Sprintf(`INSERT INTO merchants (id, name, created_at) SELECT g, 'Shop ' || g, now() - interval '30 days' FROM generate_series(1, %d) g`, ordinaryShops),
		fmt.Sprintf(`INSERT INTO merchants (id, name, created_at) VALUES (%d, 'Acme Books', now()), (%d, 'Quiet Corner', now())`, surgeMerchant, quietMerchant),
		// A payment every 30 s over 7.6 days across the shops; 2% cancelled an hour later.
		fmt.Sprintf(`INSERT INTO payments (id, merchant_id, amount, status, approved_at)
			SELECT nextval('ids'), 1 + g %% %d, 10000 + (g %% 7) * 1000, 'approved', now() - g * interval '30 seconds' FROM generate_series(1, 22000) g`, ordinaryShops),
		`INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at)
			SELECT nextval('ids'), id, merchant_id, amount, approved_at + interval '1 hour'
			FROM payments WHERE id % 50 = 0 AND approved_at < now() - interval '2 hours'`,
		// The surge merchant: 50,000 KRW every ten minutes, 1% cancelled,
		// then 25 cancellations in the last 50 minutes.
		fmt.Sprintf(`INSERT INTO payments (id, merchant_id, amount, status, approved_at)
			SELECT nextval('ids'), %d, 50000, 'approved', now() - g * interval '10 minutes' FROM generate_series(1, 1100) g`, surgeMerchant),
		fmt.Sprintf(`INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at)
			SELECT nextval('ids'), id, merchant_id, amount, approved_at + interval '5 minutes'
			FROM payments WHERE merchant_id = %d AND id %% 100 = 0 AND approved_at < now() - interval '2 hours'`, surgeMerchant),
		fmt.Sprintf(`INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at)
			SELECT nextval('ids'), 0, %d, 50000, now() - g * interval '2 minutes' FROM generate_series(1, 25) g`, surgeMerchant),
		// The quiet merchant: 30 sales over the week, then six cancellations.
		fmt.Sprintf(`INSERT INTO payments (id, merchant_id, amount, status, approved_at)
			SELECT nextval('ids'), %d, 30000, 'approved', now() - interval '3 hours' - g * interval '5 hours' FROM generate_series(1, 30) g`, quietMerchant),
		fmt.Sprintf(`INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at)
			SELECT nextval('ids'), 0, %d, 30000, now() - g * interval '5 minutes' FROM generate_series(1, 6) g`, quietMerchant),
		// A negative amount: a dead letter of the first snapshot.
		`INSERT INTO payments (id, merchant_id, amount, status, approved_at) VALUES (nextval('ids'), 1, -100, 'approved', now() - interval '1 hour')`,
	} {
		if _, err := pool.Exec(context.Background(), sql); err != nil {
			t.Fatalf("seed: %v\n%s", err, sql)
		}
	}
}

// startEnv builds and runs riskwatch over a seeded source with a webhook
// receiver, makes the reader role with `migrate --reader-role` and a login
// in it, and waits until the sink holds the seed, the seeded alerts fired
// and were delivered, and the merchant names are copied.
func startEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	bin := buildRiskwatch(t)
	dsn := cluster.NewDB(t)
	admin, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	e := &env{t: t, admin: admin, slot: fmt.Sprintf("rw_grafana_%d", os.Getpid())}
	seed(t, admin)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.webhooks.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)

	cfg := filepath.Join(t.TempDir(), "riskwatch.yaml")
	body := fmt.Sprintf(`source:
  dsn: %q
  slot: %s
  publication: %s
http:
  listen: 127.0.0.1:0
merchant_names:
  refresh: 1s
notify:
  receivers:
    - name: oncall
      type: webhook
      url: %s
`, dsn, e.slot, e.slot, hook.URL)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}

	// The role Grafana reads through, made the documented way, twice.
	role := fmt.Sprintf("rw_grafana_reader_%d", os.Getpid())
	login := role + "_login"
	t.Cleanup(func() {
		admin.Exec(context.Background(), fmt.Sprintf("DROP OWNED BY %[1]s; DROP ROLE IF EXISTS %[2]s; DROP ROLE IF EXISTS %[1]s", role, login))
	})
	for i, want := range []string{"created", "exists"} {
		out, err := exec.Command(bin, "migrate", "--config", cfg, "--reader-role", role).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "reader role "+role+" "+want) {
			t.Fatalf("migrate --reader-role #%d: %v\n%s", i+1, err, out)
		}
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE %s", login, role)); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(login)
	e.reader, err = pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.reader.Close(context.Background()) })

	var target string
	if err := admin.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&target); err != nil {
		t.Fatal(err)
	}
	log := startProcess(t, bin, "run", "--config", cfg)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("riskwatch log:\n%s", tail(log.String(), 6000))
		}
	})
	e.addr = waitHTTPAddr(t, log)
	want, _ := pglogrepl.ParseLSN(target)
	// The seeded surges fire when the first minute after the start closes.
	waitFor(t, 150*time.Second, "the sink to hold the seed, its alerts delivered and names copied", func() (bool, string) {
		var pos string
		var firing, delivered, names int
		err := admin.QueryRow(ctx, `SELECT coalesce((SELECT position FROM riskwatch.checkpoint WHERE slot = $1), '0/0'),
			(SELECT count(*) FROM riskwatch.alerts WHERE state = 'firing' AND merchant_id IN ($2, $3)),
			(SELECT count(*) FROM riskwatch.deliveries WHERE status = 'delivered'),
			(SELECT count(*) FROM riskwatch.merchants)`, e.slot, surgeMerchant, quietMerchant).Scan(&pos, &firing, &delivered, &names)
		if err != nil {
			return false, err.Error()
		}
		got, _ := pglogrepl.ParseLSN(pos)
		state := fmt.Sprintf("position %s of %s, %d firing, %d delivered, %d names", got, want, firing, delivered, names)
		return got >= want && firing == 2 && delivered >= 2 && names == ordinaryShops+2, state
	})
	return e
}

func waitHTTPAddr(t *testing.T, log processLog) string {
	t.Helper()
	var addr string
	waitFor(t, 60*time.Second, "riskwatch's HTTP server", func() (bool, string) {
		sc := bufio.NewScanner(strings.NewReader(log.String()))
		for sc.Scan() {
			if i := strings.Index(sc.Text(), `msg="http listening" addr=`); i >= 0 {
				addr = strings.TrimSpace(sc.Text()[i+len(`msg="http listening" addr=`):])
				return true, ""
			}
		}
		return false, "no listening line yet"
	})
	return addr
}

// waitFor polls cond every 200 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %s", timeout, what, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// TestDashboardsLive runs every query of both dashboards and every
// expression of the alert rules against a riskwatch that is running:
// SQL through the reader role on the sink the engine filled, PromQL on a
// real Prometheus scraping the engine's /metrics every second.
func TestDashboardsLive(t *testing.T) {
	for _, tool := range []string{"prometheus", "promtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run scripts/ensure-prometheus.sh (make test does)", tool)
		}
	}
	e := startEnv(t)
	t.Run("SQL", func(t *testing.T) { testSQL(t, e) })
	t.Run("PromQL", func(t *testing.T) { testPromQL(t, e) })
}
