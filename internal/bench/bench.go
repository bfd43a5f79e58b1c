// Package bench runs riskwatch at full load on this machine and records what
// it measured: a private source database (PostgreSQL or MariaDB) and a
// private PostgreSQL sink, the simulator and the engine as separate
// processes (the riskwatch binary itself), a webhook receiver in this
// process, and the SQL-polling job riskwatch is compared with.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/pgserver"
)

// Options configure a run.
type Options struct {
	// Riskwatch is the riskwatch binary to measure.
	Riskwatch string
	// Out is where results.json, the plots and the engine's logs go.
	Out string
	// Quick is the reduced run for CI: 10,000 merchants, 300,000 payments
	// a day, an 80 s peak (so that one minute wholly within it has its
	// bust-outs), a 500,000-change backlog.
	Quick bool
	// Only, when not empty, runs just these scenarios (bootstrap, peak,
	// restart, catch-up, baseline); later ones may need earlier ones
	// (every scenario after bootstrap needs a running engine).
	Only   []string
	Logger *slog.Logger
	// Command is how the run was started, recorded with every figure.
	Command string
	// Source is the transaction database: SourcePostgres (the default)
	// or SourceMariaDB.
	Source string
}

// scale is what one run loads and drives.
type scale struct {
	Merchants      int           `json:"merchants"`
	PaymentsPerDay int           `json:"payments_per_day"`
	Days           int           `json:"days"`
	PeakTPS        float64       `json:"peak_tps"`
	PeakFor        time.Duration `json:"peak_for_ns"`
	Backlog        int64         `json:"backlog_changes"`
	BaselineRuns   int           `json:"baseline_runs"`
}

func scaleFor(quick bool) scale {
	if quick {
		return scale{Merchants: 10_000, PaymentsPerDay: 300_000, Days: 8, PeakTPS: 5000, PeakFor: 80 * time.Second, Backlog: 500_000, BaselineRuns: 2}
	}
	return scale{Merchants: 100_000, PaymentsPerDay: 3_000_000, Days: 8, PeakTPS: 5000, PeakFor: 10 * time.Minute, Backlog: 5_000_000, BaselineRuns: 5}
}

// warmUp is how long after the generator starts the peak's latencies are
// read from: a twentieth of the peak. Right after its start the generator
// catches up on its own start-up (a run measured 6,925 payments a second
// over its second 5 s against 5,000), the first start's sink and the
// source's buffer pool are cold, and the heartbeat has yet to see the
// load; the whole run's figure is reported beside.
func (s scale) warmUp() time.Duration { return s.PeakFor / 20 }

// runner holds one run's processes.
type runner struct {
	opts Options
	log  *slog.Logger
	sc   scale
	src  sourceDB
	// sinkCluster is a server of its own for the sink, as in production.
	sinkCluster *pgserver.Cluster
	sinkPool    *pgxpool.Pool
	cfgPath     string // the engine's configuration, streaming
	port        int
	httpURL     string
	hook        *hookReceiver
	engine      *proc
	res         *Results
	bustOuts    int // merchants injectBustOuts has used
}

// Run runs every scenario and writes results.json and the plots into
// opts.Out; BENCHMARKS.md is written from the results by WriteMarkdown.
func Run(ctx context.Context, opts Options) (*Results, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", opts.Out, err)
	}
	src, err := openSource(opts.Source)
	if err != nil {
		return nil, err
	}
	r := &runner{opts: opts, log: opts.Logger, sc: scaleFor(opts.Quick), src: src}
	r.res = &Results{Started: time.Now().UTC(), Machine: machine(), Command: opts.Command, Quick: opts.Quick, Scale: r.sc}
	if opts.Source == SourceMariaDB {
		r.res.Source, r.res.MariaDB = SourceMariaDB, &MariaDB{}
	}
	defer r.close()
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"private servers", r.startCluster},
		{"history", r.loadHistory},
		{"bootstrap", r.bootstrap},
		{"peak", r.peak},
		{"restart", r.restart},
		{"catch-up", r.catchUp},
		{"baseline", r.baseline},
	}
	for i, s := range steps {
		if len(opts.Only) > 0 && i >= 2 && !slices.Contains(opts.Only, s.name) {
			continue
		}
		r.log.Info("bench step", "step", fmt.Sprintf("%d/%d", i+1, len(steps)), "name", s.name)
		t0 := time.Now()
		if err := s.fn(ctx); err != nil {
			return r.res, fmt.Errorf("%s: %w", s.name, err)
		}
		r.log.Info("bench step done", "name", s.name, "elapsed", time.Since(t0).Round(time.Second))
	}
	r.res.Finished = time.Now().UTC()
	b, err := json.MarshalIndent(r.res, "", "  ")
	if err != nil {
		return r.res, err
	}
	if err := os.WriteFile(filepath.Join(opts.Out, "results.json"), b, 0o644); err != nil {
		return r.res, fmt.Errorf("writing results.json: %w", err)
	}
	return r.res, writePlots(opts.Out, r.res)
}

func (r *runner) close() {
	if r.engine != nil {
		r.engine.stop(10 * time.Second)
	}
	if r.hook != nil {
		r.hook.close()
	}
	if r.sinkPool != nil {
		r.sinkPool.Close()
	}
	if err := r.src.close(); err != nil {
		r.log.Warn("stopping the private source server", "err", err)
	}
	if r.sinkCluster != nil {
		if err := r.sinkCluster.Close(); err != nil {
			r.log.Warn("stopping the private sink cluster", "err", err)
		}
	}
}

func (r *runner) startCluster(ctx context.Context) error {
	if err := r.src.start(ctx, r); err != nil {
		return err
	}
	r.src.machine(ctx, &r.res.Machine)
	var err error
	if r.sinkCluster, err = pgserver.Start(ctx); err != nil {
		return err
	}
	if err := r.sinkCluster.Exec(ctx, "postgres", "CREATE DATABASE risk"); err != nil {
		return err
	}
	if r.sinkPool, err = pgxpool.New(ctx, r.sinkCluster.DSN("risk")); err != nil {
		return err
	}
	if r.hook, err = newHookReceiver(); err != nil {
		return err
	}
	if r.port, err = pgserver.FreePort(); err != nil {
		return err
	}
	r.httpURL = fmt.Sprintf("http://127.0.0.1:%d", r.port)
	r.cfgPath, err = r.writeConfig("riskwatch.yaml", config.DeliveryStream)
	return err
}

// writeConfig writes the engine's configuration with the given
// source.delivery into the output directory and returns its path.
func (r *runner) writeConfig(name, delivery string) (string, error) {
	large := int64(1_000_000_000) * int64(r.sc.PaymentsPerDay) / 3_000_000
	cfg := fmt.Sprintf(`source:
  dsn: %q
  delivery: %s
sink:
  dsn: %q
http:
  listen: 127.0.0.1:%d
rules:
  volume_drop:
    large_daily_amount: %d
notify:
  backoff_min: 100ms
  backoff_max: 1s
  receivers:
    - {name: bench, type: webhook, url: %q, timeout: 5s}
log:
  format: json
`, r.src.engineDSN(), delivery, r.sinkCluster.DSN("risk"), r.port, large, r.hook.url)
	path := filepath.Join(r.opts.Out, name)
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// sim runs `riskwatch sim ...` to completion.
func (r *runner) sim(ctx context.Context, args ...string) error {
	args = append([]string{"sim", args[0], "--dsn", r.src.simDSN()}, args[1:]...)
	cmd := exec.CommandContext(ctx, r.opts.Riskwatch, args...)
	logf, err := os.Create(filepath.Join(r.opts.Out, "sim-"+args[1]+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, io.MultiWriter(logf, os.Stderr)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("riskwatch %s: %w (log: %s)", strings.Join(args, " "), err, logf.Name())
	}
	return nil
}

func (r *runner) loadHistory(ctx context.Context) error {
	t0 := time.Now()
	err := r.sim(ctx, "history", "--days", fmt.Sprint(r.sc.Days), "--payments-per-day", fmt.Sprint(r.sc.PaymentsPerDay),
		"--merchants", fmt.Sprint(r.sc.Merchants), "--truth", filepath.Join(r.opts.Out, "ground-truth.json"))
	if err != nil {
		return err
	}
	payments, err := r.src.payments(ctx)
	if err != nil {
		return err
	}
	r.res.History = History{Payments: payments, Seconds: time.Since(t0).Seconds()}
	return nil
}

// proc is a child process running in the background.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has been reaped
	err    error         // its exit, once exited is closed
}

// startProc starts cmd with its output appended to name.log in the output
// folder (each run of a step appends), after header.
func (r *runner) startProc(cmd *exec.Cmd, name, header string) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(r.opts.Out, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprint(logf, header)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

func (r *runner) startEngine(name, cfgPath string) (*proc, error) {
	p, err := r.startProc(exec.Command(r.opts.Riskwatch, "run", "--config", cfgPath), "engine",
		fmt.Sprintf("--- %s %s\n", time.Now().UTC().Format(time.RFC3339), name))
	if err != nil {
		return nil, err
	}
	r.engine = p
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// wait waits for the process to exit and returns how it did.
func (p *proc) wait() error {
	<-p.exited
	return p.err
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *proc) stop(grace time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.kill()
	}
}

// status is the engine's /api/status.
type status struct {
	Ready           bool       `json:"ready"`
	LastClosed      *time.Time `json:"last_closed_minute"`
	LagBytes        int64      `json:"lag_bytes"`
	LagSeconds      float64    `json:"lag_seconds"`
	EventsPerSecond float64    `json:"events_per_second"`
}

func (r *runner) status(ctx context.Context) (status, error) {
	var s status
	req, err := http.NewRequestWithContext(ctx, "GET", r.httpURL+"/api/status", nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return s, fmt.Errorf("status: %s", resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// waitFor polls the engine's status every 50 ms until ok says so.
func (r *runner) waitFor(ctx context.Context, p *proc, timeout time.Duration, what string, ok func(status) bool) (status, error) {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.exited:
			return status{}, fmt.Errorf("the engine exited waiting for %s: %v (see engine.log)", what, p.err)
		default:
		}
		if s, err := r.status(ctx); err == nil && ok(s) {
			return s, nil
		}
		if time.Now().After(deadline) {
			return status{}, fmt.Errorf("no %s within %s (see engine.log)", what, timeout)
		}
		select {
		case <-ctx.Done():
			return status{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// live is "serving live data": ready, and the sink within a second of the
// source.
func live(s status) bool { return s.Ready && s.LastClosed != nil && s.LagSeconds < 1 }

func (r *runner) bootstrap(ctx context.Context) error {
	t0 := time.Now()
	p, err := r.startEngine("bootstrap", r.cfgPath)
	if err != nil {
		return err
	}
	peakRSS := newSampler(p.pid())
	defer peakRSS.stop()
	s, err := r.waitFor(ctx, p, 15*time.Minute, "first closed minute", func(s status) bool { return s.LastClosed != nil })
	if err != nil {
		return err
	}
	r.res.Bootstrap = Bootstrap{Seconds: time.Since(t0).Seconds(), FirstClosed: *s.LastClosed, PeakRSS: peakRSS.maxRSS()}
	if _, err = r.waitFor(ctx, p, 5*time.Minute, "live", live); err != nil {
		return err
	}
	// The floors: the snapshot's work alone, on the same data, with its
	// output thrown away.
	return r.src.bootstrapFloors(ctx, r.res)
}

// ensureEngine starts the engine when no scenario before left it running
// (a subset of the scenarios), and waits until it is live; a first start
// takes the first snapshot, unmeasured.
func (r *runner) ensureEngine(ctx context.Context) error {
	if r.engine != nil {
		select {
		case <-r.engine.exited:
		default:
			return nil
		}
	}
	p, err := r.startEngine("start for the next scenario", r.cfgPath)
	if err != nil {
		return err
	}
	_, err = r.waitFor(ctx, p, 20*time.Minute, "live", live)
	return err
}

// hookReceiver is the webhook the engine notifies; it records when each
// notification arrived.
type hookReceiver struct {
	srv *http.Server
	url string
	mu  sync.Mutex
	got []received
}

type received struct {
	Kind     string    `json:"kind"`
	Rule     string    `json:"rule"`
	Merchant int64     `json:"merchant_id"`
	Minute   time.Time `json:"minute"`
	At       time.Time `json:"received_at"`
}

func newHookReceiver() (*hookReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &hookReceiver{url: "http://" + ln.Addr().String() + "/hook"}
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		at := time.Now()
		var body struct{ Notifications []received }
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		for _, n := range body.Notifications {
			n.At = at
			h.got = append(h.got, n)
		}
		h.mu.Unlock()
	}), ReadHeaderTimeout: 5 * time.Second}
	go h.srv.Serve(ln)
	return h, nil
}

func (h *hookReceiver) since(t time.Time) []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []received
	for _, n := range h.got {
		if !n.At.Before(t) {
			out = append(out, n)
		}
	}
	return out
}

func (h *hookReceiver) close() { _ = h.srv.Close() }

// sampler records a process's largest RSS, sampled every 200 ms.
type sampler struct {
	max  atomic.Int64
	done chan struct{}
}

func newSampler(pid int) *sampler {
	s := &sampler{done: make(chan struct{})}
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if rss, err := ProcRSS(pid); err == nil && rss > s.max.Load() {
				s.max.Store(rss)
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) maxRSS() int64 { return s.max.Load() }

func (s *sampler) stop() { close(s.done) }

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryGiB = float64(kb) / (1 << 20)
		}
	}
	if out, err := exec.Command("pg_config", "--version").Output(); err == nil {
		m.PostgreSQL = strings.TrimSpace(string(out))
	}
	return m
}

// quantile is the q-quantile of xs (sorted in place), nearest rank.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(q*float64(len(xs))+0.5) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}
