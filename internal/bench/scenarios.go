package bench

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/riskwatch/riskwatch/internal/config"
)

// metrics is one scrape of the engine's /metrics: the samples named in it.
type metrics map[string]float64

func (r *runner) scrape(ctx context.Context) (metrics, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", r.httpURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

func (m metrics) approvals() float64 { return m[`riskwatch_events_total{kind="approval"}`] }

func (m metrics) events() float64 { return m.approvals() + m[`riskwatch_events_total{kind="cancel"}`] }

// usage is what a phase is measured by, taken before and after it: the
// engine's metrics and the CPU time of the engine and of the source's
// reader serving it (PostgreSQL's walsender, MariaDB's binlog dump thread).
type usage struct {
	at          time.Time
	m           metrics
	engine, wal time.Duration
}

func (r *runner) usage(ctx context.Context, wal cpuClock) (usage, error) {
	u := usage{at: time.Now()}
	var err error
	if u.m, err = r.scrape(ctx); err != nil {
		return u, err
	}
	if u.engine, err = ProcCPU(r.engine.pid()); err != nil {
		return u, err
	}
	if u.wal, err = wal(); err != nil {
		return u, err
	}
	return u, nil
}

// histogram returns the cumulative buckets of name from m, in order.
func (m metrics) histogram(name string) []Bucket {
	var out []Bucket
	prefix := name + `_bucket{le="`
	for k, v := range m {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			le, err := strconv.ParseFloat(strings.TrimSuffix(rest, `"}`), 64)
			if err == nil {
				out = append(out, Bucket{LE: le, Count: v})
			}
		}
	}
	slices.SortFunc(out, func(a, b Bucket) int { return cmp.Compare(a.LE, b.LE) })
	return out
}

// histQuantile is Prometheus' histogram_quantile over cumulative buckets:
// linear within the bucket holding the rank.
func histQuantile(q float64, b []Bucket) float64 {
	if len(b) == 0 || b[len(b)-1].Count == 0 {
		return math.NaN()
	}
	rank := q * b[len(b)-1].Count
	prevLE, prevC := 0.0, 0.0
	for _, x := range b {
		if x.Count >= rank {
			if math.IsInf(x.LE, 1) {
				return prevLE
			}
			if x.Count == prevC {
				return x.LE
			}
			return prevLE + (x.LE-prevLE)*(rank-prevC)/(x.Count-prevC)
		}
		prevLE, prevC = x.LE, x.Count
	}
	return prevLE
}

// diffBuckets subtracts an earlier scrape's cumulative buckets.
func diffBuckets(after, before []Bucket) []Bucket {
	out := slices.Clone(after)
	for i := range out {
		for _, b := range before {
			if b.LE == out[i].LE {
				out[i].Count -= b.Count
			}
		}
	}
	return out
}

// startLive runs `riskwatch sim live` in the background.
func (r *runner) startLive(ctx context.Context, name string, args ...string) (*proc, error) {
	args = append([]string{"sim", "live", "--dsn", r.src.simDSN()}, args...)
	return r.startProc(exec.CommandContext(ctx, r.opts.Riskwatch, args...), name, "")
}

// peak is scenario 1: steady live load at the target rate with the
// generator's incidents; the engine's CPU, memory, latencies and lag.
func (r *runner) peak(ctx context.Context) error {
	if err := r.ensureEngine(ctx); err != nil {
		return err
	}
	wal, err := r.src.reader(ctx)
	if err != nil {
		return err
	}
	u0, err := r.usage(ctx, wal)
	if err != nil {
		return err
	}
	t0 := u0.at
	sim, err := r.startLive(ctx, "sim-live-peak", "--tps", fmt.Sprint(r.sc.PeakTPS), "--burst-tps", "-1",
		"--for", r.sc.PeakFor.String())
	if err != nil {
		return err
	}
	rss := newSampler(r.engine.pid())
	defer rss.stop()
	injected, stopInject := make(chan struct{}), make(chan struct{})
	var lastInjected time.Time
	go func() { defer close(injected); lastInjected = r.injectBustOuts(ctx, stopInject, t0) }()
	var lagS, lagB []float64
	var series [][2]float64
	// The latencies are read from the end of the generator's warm-up (see
	// warmUp); CPU, rates and alerts from the start.
	var mw metrics
	simStarted := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
loop:
	for {
		select {
		case <-sim.exited:
			close(stopInject)
			<-injected
			if sim.err != nil {
				return fmt.Errorf("sim live: %w", sim.err)
			}
			break loop
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if mw == nil && time.Since(simStarted) >= r.sc.warmUp() {
				m, err := r.scrape(ctx)
				if err != nil {
					return fmt.Errorf("reading the engine's metrics after the warm-up: %w", err)
				}
				mw = m
			}
			if s, err := r.status(ctx); err == nil {
				lagS, lagB = append(lagS, s.LagSeconds), append(lagB, float64(s.LagBytes))
				series = append(series, [2]float64{time.Since(t0).Seconds(), s.LagSeconds})
			}
		}
	}
	if mw == nil {
		return fmt.Errorf("sim live ended within the %s warm-up", r.sc.warmUp())
	}
	wall := time.Since(t0)
	// The last injected bust-outs fire when their minute closes.
	if !lastInjected.IsZero() {
		time.Sleep(time.Until(lastInjected.Truncate(time.Minute).Add(time.Minute + 4*time.Second)))
	}
	u1, err := r.usage(ctx, wal)
	if err != nil {
		return err
	}
	cpuWall := u1.at.Sub(t0)
	m0, m1 := u0.m, u1.m
	p := &r.res.Peak
	p.Seconds, p.TargetTPS = wall.Seconds(), r.sc.PeakTPS
	p.PaymentsPerS = (m1.approvals() - m0.approvals()) / wall.Seconds()
	p.EventsPerS = (m1.events() - m0.events()) / wall.Seconds()
	p.EngineCores = (u1.engine - u0.engine).Seconds() / cpuWall.Seconds()
	readerCores := (u1.wal - u0.wal).Seconds() / cpuWall.Seconds()
	*r.src.slots(r.res).peakReaderCores = readerCores
	p.EngineMaxRSS = rss.maxRSS()
	p.WarmUp = r.sc.warmUp().Seconds()
	p.CommitToAggregateWholeRun = histQuantiles(diffBuckets(m1.histogram("riskwatch_commit_to_aggregate_seconds"), m0.histogram("riskwatch_commit_to_aggregate_seconds")))
	b := diffBuckets(m1.histogram("riskwatch_commit_to_aggregate_seconds"), mw.histogram("riskwatch_commit_to_aggregate_seconds"))
	p.CommitToAggregate = histQuantiles(b)
	// JSON has no +Inf; the last bucket's count is the total above.
	p.C2ABuckets = slices.DeleteFunc(b, func(x Bucket) bool { return math.IsInf(x.LE, 1) })
	p.SinkFlush = histQuantiles(diffBuckets(m1.histogram("riskwatch_sink_flush_seconds"), mw.histogram("riskwatch_sink_flush_seconds")))
	// The least commit → aggregate can be: a flush interval's wait for
	// the next flush, and the sink's transaction. The interval is the one
	// the engine ran with (a MySQL source has a shorter default).
	cfg, err := config.Load(r.cfgPath, os.Getenv)
	if err != nil {
		return fmt.Errorf("reading the engine's configuration: %w", err)
	}
	p.C2AFloor = cfg.Pipeline.FlushInterval.D().Seconds() + p.SinkFlush.P99
	if p.C2AFloor > 0 {
		p.C2ARatio = p.CommitToAggregate.P99 / p.C2AFloor
		p.C2AP50Ratio = p.CommitToAggregate.P50 / p.C2AFloor
	}
	if readerCores > 0 {
		p.CPURatio = p.EngineCores / readerCores
	}
	// Alerts of minutes wholly within the peak: the minute the peak starts
	// in is the first the engine closes live after the first start's
	// snapshot (one run measured its close 1.4 s slower than the rest).
	for _, n := range r.hook.since(t0) {
		if n.Kind == "firing" && !n.Minute.Before(t0) {
			p.AlertSamples = append(p.AlertSamples, n.At.Sub(n.Minute.Add(time.Minute)).Seconds())
		}
	}
	p.AlertLatency = quantiles(p.AlertSamples)
	p.Grace = config.Default().Grace.D().Seconds()
	p.AlertRatio = p.AlertLatency.P99 / p.Grace
	p.LagSeconds, p.LagBytes, p.LagSeries = quantiles(lagS), quantiles(lagB), series
	r.res.Baseline.RiskwatchPeakCPU = (u1.wal - u0.wal).Seconds() / cpuWall.Minutes()
	return nil
}

// histQuantiles are a histogram's count, p50 and p99 (none when empty).
func histQuantiles(b []Bucket) Quantiles {
	if len(b) == 0 || b[len(b)-1].Count == 0 {
		return Quantiles{}
	}
	return Quantiles{Count: int64(b[len(b)-1].Count), P50: histQuantile(0.5, b), P99: histQuantile(0.99, b)}
}

func quantiles(xs []float64) Quantiles {
	if len(xs) == 0 {
		return Quantiles{}
	}
	c := slices.Clone(xs)
	return Quantiles{Count: int64(len(c)), P50: quantile(c, 0.5), P99: quantile(c, 0.99), Max: slices.Max(c)}
}

// restart is scenario 4: SIGKILL the engine under load, start it again, and
// time until it serves live data (ready, lag under a second).
func (r *runner) restart(ctx context.Context) error {
	if err := r.ensureEngine(ctx); err != nil {
		return err
	}
	kills := 3
	if r.opts.Quick {
		kills = 1
	}
	sim, err := r.startLive(ctx, "sim-live-restart", "--tps", fmt.Sprint(r.sc.PeakTPS), "--burst-tps", "-1",
		"--for", (time.Duration(kills)*30*time.Second + 20*time.Second).String())
	if err != nil {
		return err
	}
	for i := 0; i < kills; i++ {
		select {
		case <-time.After(20 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
		r.engine.kill()
		t0 := time.Now()
		p, err := r.startEngine(fmt.Sprintf("restart %d after SIGKILL", i+1), r.cfgPath)
		if err != nil {
			return err
		}
		if _, err := r.waitFor(ctx, p, 2*time.Minute, "live after restart", live); err != nil {
			return err
		}
		r.res.Restart.Seconds = append(r.res.Restart.Seconds, time.Since(t0).Seconds())
	}
	if err := sim.wait(); err != nil {
		return fmt.Errorf("sim live: %w", err)
	}
	r.res.Restart.Median = quantile(slices.Clone(r.res.Restart.Seconds), 0.5)
	return nil
}

// catchUp is scenario 2: the engine stopped, a backlog of committed changes
// written in transactions of 100 payments, then the engine started: its
// sustained events/s until it is live again.
func (r *runner) catchUp(ctx context.Context) error {
	if err := r.ensureEngine(ctx); err != nil {
		return err
	}
	r.engine.stop(30 * time.Second)
	// The floor reads the same backlog, from where the engine stopped.
	bl, err := r.src.beginBacklog(ctx)
	if err != nil {
		return err
	}
	defer bl.close(context.WithoutCancel(ctx))
	n0, err := r.src.inserted(ctx)
	if err != nil {
		return err
	}
	for {
		time.Sleep(time.Second) // the statistics are flushed about once a second
		n, err := r.src.inserted(ctx)
		if err != nil {
			return err
		}
		if n-n0 >= r.sc.Backlog {
			r.res.CatchUp.Backlog = n - n0
			break
		}
		left := r.sc.Backlog - (n - n0)
		sim, err := r.startLive(ctx, "sim-live-backlog", "--tps", "60000", "--burst-tps", "-1", "--batch", "100", "--workers", "4",
			"--for", (time.Duration(left/60000+1) * time.Second).String())
		if err != nil {
			return err
		}
		if err := sim.wait(); err != nil {
			return fmt.Errorf("writing the backlog: %w", err)
		}
	}
	if err := bl.written(ctx); err != nil {
		return err
	}
	t0 := time.Now()
	p, err := r.startEngine("catch-up", r.cfgPath)
	if err != nil {
		return err
	}
	// The engine reports catch-up progress itself; here only "live" counts.
	if _, err := r.waitFor(ctx, p, 30*time.Minute, "live after the backlog", live); err != nil {
		return err
	}
	wall := time.Since(t0)
	cpu, _ := ProcCPU(p.pid())
	m, err := r.scrape(ctx)
	if err != nil {
		return err
	}
	c := &r.res.CatchUp
	c.Events, c.Seconds = int64(m.events()), wall.Seconds()
	c.EventsPerS = m.events() / wall.Seconds()
	c.Cores = cpu.Seconds() / wall.Seconds()
	floor, err := bl.drain(ctx)
	if err != nil {
		return err
	}
	sl := r.src.slots(r.res)
	floorRate := float64(c.Events) / floor.Seconds()
	*sl.catchUpFloorSeconds, *sl.catchUpFloorRate = floor.Seconds(), floorRate
	c.Ratio = c.EventsPerS / floorRate
	return nil
}

// baseline is scenario 5: the SQL-polling job over the same data, on a
// quiet server (the engine stopped), for the last closed minutes; its
// firing merchants are checked against the engine's own evaluations of
// those minutes.
func (r *runner) baseline(ctx context.Context) error {
	if err := r.ensureEngine(ctx); err != nil {
		return err
	}
	if err := r.averageLoad(ctx); err != nil {
		return err
	}
	if err := r.src.minuteLoad(ctx, r); err != nil {
		return err
	}
	b := &r.res.Baseline
	job, err := r.src.sqlJob(ctx)
	if err != nil {
		return err
	}
	if job == nil {
		b.Note = "The SQL-polling job is not run on this source."
		return nil
	}
	r.engine.stop(30 * time.Second)
	t0 := time.Now()
	if err := job.prepare(ctx); err != nil {
		return err
	}
	prepared := time.Since(t0)
	var last time.Time
	if err := r.sinkPool.QueryRow(ctx, `SELECT last_closed FROM riskwatch.checkpoint LIMIT 1`).Scan(&last); err != nil {
		return fmt.Errorf("reading the engine's last closed minute: %w", err)
	}
	loc, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		return err
	}
	p := DefaultBaselineParams(loc)
	p.LargeDailyAmount = int64(1_000_000_000) * int64(r.sc.PaymentsPerDay) / 3_000_000
	mismatches := 0
	for i := r.sc.BaselineRuns - 1; i >= 0; i-- {
		m := last.Add(-time.Duration(i) * time.Minute)
		run, err := job.run(ctx, p, m)
		if err != nil {
			return err
		}
		b.RunSeconds = append(b.RunSeconds, (run.CancelDur + run.VolumeDur).Seconds())
		b.SourceCPU = append(b.SourceCPU, run.SourceCPU.Seconds())
		for rule, got := range map[string][]int64{"cancel_rate_spike": run.CancelFiring, "volume_drop": run.VolumeFiring} {
			rows, _ := r.sinkPool.Query(ctx, `SELECT a.merchant_id FROM riskwatch.alert_evaluations e JOIN riskwatch.alerts a ON a.id = e.alert_id
				WHERE e.minute = $1 AND e.fires AND a.rule = $2 ORDER BY 1`, m, rule)
			want, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				return fmt.Errorf("reading the engine's evaluations: %w", err)
			}
			if !slices.Equal(got, want) {
				mismatches++
				r.log.Warn("baseline and engine disagree", "minute", m, "rule", rule, "sql", got, "engine", want)
			}
		}
	}
	b.Runs = len(b.RunSeconds)
	b.MedianSeconds = quantile(slices.Clone(b.RunSeconds), 0.5)
	b.MedianCPU = quantile(slices.Clone(b.SourceCPU), 0.5)
	// A ratio over a cost too small to measure stays 0 (not reported).
	over := func(cost float64) float64 {
		if cost > 0 {
			return b.MedianCPU / cost
		}
		return 0
	}
	b.CPURatio, b.PeakCPURatio = over(b.RiskwatchCPU), over(b.RiskwatchPeakCPU)
	b.Minute.CPURatio = over(b.Minute.CPU)
	for _, f := range r.src.slots(r.res).streamFloors {
		*f.ratio = over(*f.cpu)
	}
	b.AgreesWithRule = mismatches == 0
	b.Note = fmt.Sprintf("The SQL job's indexes took %.0f s to build. Its firing merchants %s the engine's evaluations of the same %d minutes (%d rule-minutes differ).",
		prepared.Seconds(), map[bool]string{true: "equal", false: "differ from"}[b.AgreesWithRule], b.Runs, mismatches)
	return nil
}

// injectBustOuts gives the peak alerts to time: 15 s into every minute
// that starts at or after from, three merchants with no history each get
// ten cancellations and no sales (a bust-out), which fires at that minute's
// close. The generator's own incidents happen on their own schedule, which
// may miss a short peak.
func (r *runner) injectBustOuts(ctx context.Context, stop <-chan struct{}, from time.Time) (last time.Time) {
	// Far above the simulator's merchant and row ids; numbered on across
	// the phases that inject.
	const firstMerchant, firstRow = 900_000_000, 9_000_000_000_000_000
	for {
		now := time.Now()
		at := now.Truncate(time.Minute).Add(15 * time.Second)
		for !at.After(now) || at.Truncate(time.Minute).Before(from) {
			at = at.Add(time.Minute)
		}
		select {
		case <-ctx.Done():
			return last
		case <-stop:
			return last
		case <-time.After(time.Until(at)):
		}
		last = time.Now()
		if err := r.src.insertBustOut(ctx, int64(firstMerchant+r.bustOuts), firstRow+int64(r.bustOuts)*10); err != nil {
			r.log.Warn("injecting bust-outs", "err", err)
		}
		r.bustOuts += 3
	}
}

// averageLoad measures riskwatch's cost at the source at the day's average
// rate (payments per day over 86,400 s, steady, no bursts): the CPU per
// minute of its reader (walsender, binlog dump thread) and of its other
// source connections, which is what replaces the SQL job's run each
// minute. A fixed rate, not the generated curve's rate at the hour the
// bench runs, so that two runs compare; the reader's cost per transaction
// is far higher at night's few payments a second than at the average. The
// server's own streaming clients run beside it at the same traffic
// (floors), with the rate the change log is written at.
func (r *runner) averageLoad(ctx context.Context) error {
	fl, err := r.src.startStreamFloors(ctx, r)
	if err != nil {
		return err
	}
	defer fl.stop(context.WithoutCancel(ctx))
	wal, err := r.src.reader(ctx)
	if err != nil {
		return err
	}
	type sample struct {
		u      usage
		others map[int]time.Duration
		floors []time.Duration
		log    int64
	}
	d, warm := 2*time.Minute, 15*time.Second
	if r.opts.Quick {
		d = 30 * time.Second
	}
	avg := float64(r.sc.PaymentsPerDay) / 86400
	// The generator starts with a burst (the rows already due when it
	// starts); the measurement starts after it, at the steady rate.
	sim, err := r.startLive(ctx, "sim-live-average", "--tps", fmt.Sprintf("%.2f", avg), "--burst-tps", "-1", "--for", (warm + d + 5*time.Second).String())
	if err != nil {
		return err
	}
	// after waits d while the generator runs, then samples.
	after := func(d time.Duration) (s sample, err error) {
		select {
		case <-sim.exited:
			return s, fmt.Errorf("sim live ended early: %v", sim.err)
		case <-time.After(d):
		}
		if s.u, err = r.usage(ctx, wal); err != nil {
			return s, err
		}
		if s.others, err = r.src.others(ctx); err != nil {
			return s, err
		}
		if s.floors, err = fl.cpu(); err != nil {
			return s, err
		}
		if s.log, err = r.src.logBytes(ctx); err != nil {
			return s, err
		}
		return s, nil
	}
	s0, err := after(warm)
	if err != nil {
		return err
	}
	s1, err := after(d)
	if err != nil {
		return err
	}
	if err := sim.wait(); err != nil {
		return fmt.Errorf("sim live: %w", err)
	}
	wall := s1.u.at.Sub(s0.u.at)
	perMin := func(d time.Duration) float64 { return d.Seconds() / wall.Minutes() }
	b := &r.res.Baseline
	sl := r.src.slots(r.res)
	b.AverageTPS = (s1.u.m.approvals() - s0.u.m.approvals()) / wall.Seconds()
	readerCPU := perMin(s1.u.wal - s0.u.wal)
	*sl.averageReaderCPU = readerCPU
	b.RiskwatchOtherCPU = perMin(r.cpuSince(s0.others, s1.others))
	b.RiskwatchCPU = readerCPU + b.RiskwatchOtherCPU
	for i, f := range sl.streamFloors {
		*f.cpu = perMin(s1.floors[i] - s0.floors[i])
	}
	*sl.logBytesPerMin = float64(s1.log-s0.log) / wall.Minutes()
	return nil
}
