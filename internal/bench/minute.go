package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/pgserver"
	"github.com/riskwatch/riskwatch/internal/source"
)

const drainCount = "riskwatch_drain_seconds_count"

// minuteLoad runs the engine again, with source.delivery: minute, at the
// steady average rate of averageLoad and with a bust-out injected every
// minute. Measured over whole drains (one a minute, three in a full run):
// the source CPU of the drains and of riskwatch's other connections per
// drain, the drains' durations and the alert latency.
//
// A drain's walsender lives for one drain, so its CPU is read where the
// kernel puts it when the postmaster reaps it: the postmaster's children's
// times. Every other backend that exits in the window would count there
// too. The generator's, the bench's and riskwatch's other connections stay
// open; autovacuum's workers do not (the launcher starts one per database
// every naptime), so autovacuum is paused for the window and nothing else
// is counted. What is left can only overstate riskwatch's cost.
func (s *pgSource) minuteLoad(ctx context.Context, r *runner) error {
	r.engine.stop(30 * time.Second)
	path, err := r.writeConfig("riskwatch-minute.yaml", config.DeliveryMinute)
	if err != nil {
		return err
	}
	p, err := r.startEngine("minute delivery", path)
	if err != nil {
		return err
	}
	if _, err := r.waitFor(ctx, p, 2*time.Minute, "the first drain", func(s status) bool { return s.Ready && s.LastClosed != nil }); err != nil {
		return err
	}
	pm, err := pgserver.PostmasterPID(s.cluster.Dir)
	if err != nil {
		return err
	}
	if err := s.autovacuum(ctx, false); err != nil {
		return err
	}
	defer func() {
		if err := s.autovacuum(context.WithoutCancel(ctx), true); err != nil {
			r.log.Warn("turning autovacuum back on", "err", err)
		}
	}()

	avg := float64(r.sc.PaymentsPerDay) / 86400
	sim, err := r.startLive(ctx, "sim-live-minute", "--tps", fmt.Sprintf("%.2f", avg), "--burst-tps", "-1", "--for", "1h")
	if err != nil {
		return err
	}
	defer sim.kill()
	injected, stopInject := make(chan struct{}), make(chan struct{})
	go func() { defer close(injected); r.injectBustOuts(ctx, stopInject, time.Time{}) }()
	stopInjecting := sync.OnceFunc(func() { close(stopInject); <-injected })
	defer stopInjecting()

	type sample struct {
		at     time.Time
		m      metrics
		reaped time.Duration
		others map[int]time.Duration
	}
	// take samples between drains only: a drain's walsender is counted
	// once it has exited.
	take := func() (smp sample, err error) {
		for {
			var n int
			if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_replication WHERE application_name = $1`, source.ApplicationName).Scan(&n); err != nil {
				return smp, fmt.Errorf("looking for a drain: %w", err)
			}
			if n == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The backend leaves pg_stat_activity just before it exits.
		time.Sleep(200 * time.Millisecond)
		smp.at = time.Now()
		if smp.m, err = r.scrape(ctx); err != nil {
			return smp, err
		}
		st, err := readStat(pm)
		if err != nil {
			return smp, fmt.Errorf("reading the postmaster's children's CPU: %w", err)
		}
		smp.reaped = time.Duration(st.cutime+st.cstime) * tick
		smp.others, err = s.others(ctx)
		return smp, err
	}
	// afterDrain waits for the drain after the count-th and samples.
	afterDrain := func(count float64) (sample, error) {
		for {
			select {
			case <-sim.exited:
				return sample{}, fmt.Errorf("sim live ended early: %v", sim.err)
			case <-ctx.Done():
				return sample{}, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			m, err := r.scrape(ctx)
			if err != nil {
				return sample{}, err
			}
			if m[drainCount] > count {
				return take()
			}
		}
	}
	drains := 3
	var s0 sample
	if r.opts.Quick {
		// One drain, from the first one's end: not whole minutes, but CI
		// only checks that the phase runs.
		drains = 1
		s0, err = take()
	} else {
		// After the generator's starting burst, from a drain's end.
		time.Sleep(15 * time.Second)
		var m metrics
		if m, err = r.scrape(ctx); err == nil {
			s0, err = afterDrain(m[drainCount])
		}
	}
	if err != nil {
		return err
	}
	s1 := s0
	for range drains {
		if s1, err = afterDrain(s1.m[drainCount]); err != nil {
			return err
		}
	}
	stopInjecting()
	// The last drain's alerts are on their way to the receiver.
	time.Sleep(3 * time.Second)

	md := &r.res.Baseline.Minute
	n := s1.m[drainCount] - s0.m[drainCount]
	md.Drains = int(n)
	md.AverageTPS = (s1.m.approvals() - s0.m.approvals()) / s1.at.Sub(s0.at).Seconds()
	md.DrainCPU = (s1.reaped - s0.reaped).Seconds() / n
	md.OtherCPU = r.cpuSince(s0.others, s1.others).Seconds() / n
	md.CPU = md.DrainCPU + md.OtherCPU
	md.DrainSeconds = histQuantiles(diffBuckets(s1.m.histogram("riskwatch_drain_seconds"), s0.m.histogram("riskwatch_drain_seconds")))
	for _, n := range r.hook.since(s0.at) {
		if n.Kind == "firing" && !n.Minute.Add(time.Minute).After(s1.at) {
			md.AlertSamples = append(md.AlertSamples, n.At.Sub(n.Minute.Add(time.Minute)).Seconds())
		}
	}
	md.AlertLatency = quantiles(slices.Clone(md.AlertSamples))
	return nil
}

func (s *pgSource) autovacuum(ctx context.Context, on bool) error {
	if _, err := s.pool.Exec(ctx, fmt.Sprintf(`ALTER SYSTEM SET autovacuum = %t`, on)); err != nil {
		return fmt.Errorf("setting autovacuum: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		return fmt.Errorf("reloading the configuration: %w", err)
	}
	return nil
}
