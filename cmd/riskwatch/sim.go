package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/progress"
	"github.com/riskwatch/riskwatch/internal/sim"
)

// simFlags are the flags both sim subcommands share.
type simFlags struct {
	flags
	dsn *string
}

func newSimFlags(name string, stderr io.Writer) simFlags {
	fs := newFlags(name, stderr)
	return simFlags{flags: fs, dsn: fs.String("dsn", "", "source database (default: source.dsn of --config / RISKWATCH_SOURCE_DSN)")}
}

// simSetup resolves the DSN and the logger of a sim subcommand. The
// simulator writes the source database, so only source.dsn matters.
func simSetup(fs simFlags, args []string, stderr io.Writer, getenv func(string) string) (*config.Config, *slog.Logger, string, error) {
	// --dsn must be known before the config is loaded.
	if err := fs.Parse(args); err != nil {
		return nil, nil, "", usageError{err.Error()}
	}
	args = fs.Args()
	if *fs.dsn != "" {
		// Satisfy the config's required source.dsn without a file.
		env := getenv
		getenv = func(k string) string {
			if k == config.EnvSourceDSN {
				return *fs.dsn
			}
			return env(k)
		}
	}
	cfg, log, err := setup(fs.flags, args, stderr, getenv)
	if err != nil {
		return nil, nil, "", err
	}
	dsn := cfg.Source.DSN
	if *fs.dsn != "" {
		dsn = *fs.dsn
	}
	return cfg, log, dsn, nil
}

func cmdSim(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return usageError{"sim: missing subcommand (history, live or score)"}
	}
	switch args[0] {
	case "history":
		return cmdSimHistory(ctx, args[1:], stdout, stderr, getenv)
	case "live":
		return cmdSimLive(ctx, args[1:], stdout, stderr, getenv)
	case "score":
		return cmdSimScore(ctx, args[1:], stdout, stderr, getenv)
	}
	return usageError{fmt.Sprintf("sim: unknown subcommand %q", args[0])}
}

// simMeta is what `sim history` generated, so `sim live` continues it.
type simMeta struct {
	Seed         uint64
	Merchants    int
	PaymentsDay  int
	Anchor       time.Time
	HistoryFrom  time.Time
	Incidents    bool
	LargeAmount  int64
	WrittenUntil time.Time
	// Profile is the traffic profile. ScoredDay, when not zero, is the
	// midnight starting the scored day, whose incident mix replaces the
	// incidents placed at the anchor.
	Profile   string
	ScoredDay time.Time
}

// generator rebuilds the generator of a simulation: the same seed, scale,
// profile and anchor (or scored day) give the same merchants, traffic and
// incidents.
func (m *simMeta) generator(loc *time.Location) (*sim.Generator, error) {
	pop := sim.NewPopulation(m.Seed, m.Merchants)
	o := sim.Options{Seed: m.Seed, Population: pop, PaymentsPerDay: m.PaymentsDay, Location: loc, HistoryFrom: m.HistoryFrom,
		Rules: sim.RuleParams{LargeDailyAmount: m.LargeAmount}, Profile: m.Profile}
	if m.Incidents {
		base, err := sim.NewGenerator(o)
		if err != nil {
			return nil, err
		}
		if m.ScoredDay.IsZero() {
			o.Scenarios = base.DefaultScenarios(m.Anchor)
		} else if o.Scenarios, err = base.ScoredDayScenarios(m.ScoredDay); err != nil {
			return nil, err
		}
	}
	return sim.NewGenerator(o)
}

// openSim connects to the source, creates its schema when missing and reads
// what `sim history` generated there (nil before it ran).
func openSim(ctx context.Context, dsn string, conns int32) (*pgxpool.Pool, *simMeta, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing dsn: %w", err)
	}
	pc.MaxConns = conns
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to the source: %w", err)
	}
	if _, err := pool.Exec(ctx, sim.Schema); err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("creating the source schema: %w", err)
	}
	var m simMeta
	var seed int64
	var scored *time.Time
	err = pool.QueryRow(ctx, `SELECT seed, merchants, payments_day, anchor, history_from, incidents, large_amount, written_until, profile, scored_day
		FROM sim_meta WHERE id = 1`).
		Scan(&seed, &m.Merchants, &m.PaymentsDay, &m.Anchor, &m.HistoryFrom, &m.Incidents, &m.LargeAmount, &m.WrittenUntil, &m.Profile, &scored)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return pool, nil, nil
	case err != nil:
		pool.Close()
		return nil, nil, fmt.Errorf("reading sim_meta: %w", err)
	}
	m.Seed = uint64(seed)
	if scored != nil {
		m.ScoredDay = *scored
	}
	return pool, &m, nil
}

func cmdSimHistory(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newSimFlags("sim history", stderr)
	days := fs.Int("days", sim.DefaultHistoryDays, "business days of history, today included")
	ppd := fs.Int("payments-per-day", sim.DefaultPaymentsPerDay, "payments per day (3,000,000 is the spec's load)")
	merchants := fs.Int("merchants", sim.DefaultMerchants, "merchants in the population")
	seed := fs.Uint64("seed", 1, "seed: the same seed gives the same merchants and traffic")
	incidents := fs.Bool("incidents", true, "inject the incident scenarios and controls (placed to become true a few minutes after now)")
	large := fs.Int64("large-daily-amount", 0, "the volume rule's large-merchant threshold the ground truth uses (default: 1e9 KRW scaled by payments-per-day / 3,000,000; give the engine the same)")
	truth := fs.String("truth", "", "write the incidents' ground truth (JSON) to this file")
	reload := fs.Bool("reload", false, "empty the source tables and load again (drop the engine's slot and sink too)")
	profile := fs.String("profile", sim.ProfileDefault, "traffic profile: empty for calm traffic (every day alike), realistic for weekday effects, day-to-day spread of volumes and cancel rates, and cancels delayed by hours")
	scored := fs.Bool("scored-day", false, "instead of incidents placed a few minutes after --now, inject the scored day's fixed mix (40 incidents, 30 controls) on the last whole business day before --now (with --now at a midnight, the day that just ended); the history then starts at least 7 days before it and --truth covers that day, 00:00–24:00")
	nowFlag := fs.String("now", "", "the history's end, RFC 3339 (default: the current time); a fixed --now makes a run reproducible")
	cfg, log, dsn, err := simSetup(fs, args, stderr, getenv)
	if err != nil {
		return err
	}
	if *days < 1 || *ppd < 1 || *merchants < 1 {
		return usageError{"sim history: --days, --payments-per-day and --merchants must be positive"}
	}
	if err := sim.ValidProfile(*profile); err != nil {
		return usageError{fmt.Sprintf("sim history: --profile: %v", err)}
	}
	if *scored && !*incidents {
		return usageError{"sim history: --scored-day injects incidents; it does not go with --incidents=false"}
	}
	now := time.Now()
	if *nowFlag != "" {
		if now, err = time.Parse(time.RFC3339, *nowFlag); err != nil {
			return usageError{fmt.Sprintf("sim history: --now: %v", err)}
		}
	}
	if *large == 0 {
		*large = int64(float64(sim.LargeDailyAmount) * float64(*ppd) / float64(sim.DefaultPaymentsPerDay))
	}
	pool, meta, err := openSim(ctx, dsn, 4)
	if err != nil {
		return err
	}
	defer pool.Close()
	if meta != nil && !*reload {
		fmt.Fprintf(stdout, "history already loaded (anchor %s, %d payments/day, seed %d); reusing it (--reload to start over)\n",
			meta.Anchor.In(cfg.Location).Format(time.RFC3339), meta.PaymentsDay, meta.Seed)
		return nil
	}
	if *reload {
		if _, err := pool.Exec(ctx, "TRUNCATE payments, payment_cancels, merchants; DELETE FROM sim_meta"); err != nil {
			return fmt.Errorf("emptying the source tables: %w", err)
		}
	}
	meta = &simMeta{Seed: *seed, Merchants: *merchants, PaymentsDay: *ppd, Anchor: now, HistoryFrom: sim.HistoryStart(now, *days, cfg.Location),
		Incidents: *incidents, LargeAmount: *large, WrittenUntil: now, Profile: *profile}
	if *scored {
		// The scored day's rules look back 7 days: the history holds them.
		meta.ScoredDay = sim.LastWholeDay(now, cfg.Location)
		if from := sim.HistoryStart(meta.ScoredDay, sim.DefaultHistoryDays, cfg.Location); from.Before(meta.HistoryFrom) {
			meta.HistoryFrom = from
		}
	}
	g, err := meta.generator(cfg.Location)
	if err != nil {
		return err
	}
	rep := progress.New("history", "payments", 0, progress.Options{Out: stderr, Logger: log})
	start := time.Now()
	payments, cancels, err := sim.LoadHistory(ctx, pool, g, meta.HistoryFrom, now, func(done, total int64) {
		rep.SetTotal(total)
		rep.Set(done)
	})
	rep.Done()
	if err != nil {
		return fmt.Errorf("loading history: %w", err)
	}
	var scoredDay *time.Time
	if !meta.ScoredDay.IsZero() {
		scoredDay = &meta.ScoredDay
	}
	_, err = pool.Exec(ctx, `INSERT INTO sim_meta (id, seed, merchants, payments_day, anchor, history_from, incidents, large_amount, written_until, profile, scored_day)
		VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, int64(meta.Seed), meta.Merchants, meta.PaymentsDay, meta.Anchor, meta.HistoryFrom, meta.Incidents,
		meta.LargeAmount, meta.WrittenUntil, meta.Profile, scoredDay)
	if err != nil {
		return fmt.Errorf("recording sim_meta: %w", err)
	}
	fmt.Fprintf(stdout, "loaded %d payments and %d cancels from %s to %s in %s (%.0f rows/s); large merchants from %d KRW/day\n",
		payments, cancels, meta.HistoryFrom.Format(time.RFC3339), now.In(cfg.Location).Format(time.RFC3339),
		time.Since(start).Round(time.Millisecond), float64(payments+cancels)/time.Since(start).Seconds(), meta.LargeAmount)
	truthFrom, truthTo := now, now.Add(2*time.Hour)
	if *scored {
		truthFrom, truthTo = meta.ScoredDay, meta.ScoredDay.AddDate(0, 0, 1)
		n := 0
		for _, s := range g.Scenarios() {
			if sim.Incident(s.Kind) {
				n++
			}
		}
		fmt.Fprintf(stdout, "scored day %s (%s): %d incidents and %d controls\n", meta.ScoredDay.Format(time.DateOnly), cfg.Location,
			n, len(g.Scenarios())-n)
	}
	if *truth != "" {
		f, err := os.Create(*truth)
		if err != nil {
			return fmt.Errorf("writing ground truth: %w", err)
		}
		defer f.Close()
		if err := sim.WriteTruth(f, g.GroundTruth(truthFrom, truthTo)); err != nil {
			return fmt.Errorf("writing ground truth: %w", err)
		}
		fmt.Fprintf(stdout, "ground truth written to %s\n", *truth)
	}
	return nil
}

func cmdSimLive(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newSimFlags("sim live", stderr)
	tps := fs.Float64("tps", 0, "steady payments per second (0: the generated curve's own rate)")
	burst := fs.Float64("burst-tps", 0, "payments per second during bursts (0: 5,000; negative: no bursts)")
	batch := fs.Int("batch", 1, "payments per transaction (1: one per transaction, as a gateway commits)")
	workers := fs.Int("workers", 16, "connections committing concurrently")
	dur := fs.Duration("for", 0, "stop after this long (0: until interrupted)")
	cfg, log, dsn, err := simSetup(fs, args, stderr, getenv)
	if err != nil {
		return err
	}
	if *batch < 1 || *workers < 1 {
		return usageError{"sim live: --batch and --workers must be positive"}
	}
	pool, meta, err := openSim(ctx, dsn, int32(*workers+2))
	if err != nil {
		return err
	}
	defer pool.Close()
	if meta == nil {
		return fmt.Errorf("no simulation in this database: run `riskwatch sim history` first")
	}
	g, err := meta.generator(cfg.Location)
	if err != nil {
		return err
	}
	// Continue where the previous writer stopped, so a restarted demo has
	// no hole in its traffic; after a day away, start from now instead.
	from := meta.WrittenUntil
	if time.Since(from) > 24*time.Hour {
		log.Warn("the simulation was stopped more than a day ago; continuing from now, leaving a gap", "stopped", from)
		from = time.Now()
	}
	o := sim.LiveOptions{TPS: *tps, BurstTPS: *burst, Batch: *batch, Workers: *workers, From: from, HistoryFrom: meta.HistoryFrom,
		Report: func(st sim.LiveStats) {
			log.Info("live traffic", "payments", st.Payments, "cancels", st.Cancels, "achieved_tps", round1(st.AchievedTPS),
				"interval_tps", round1(st.IntervalTPS), "lag", st.Lag.Round(time.Millisecond))
			if _, err := pool.Exec(context.WithoutCancel(ctx), `UPDATE sim_meta SET written_until = greatest(written_until, $1) WHERE id = 1`, time.Now().Add(-st.Lag)); err != nil {
				log.Warn("recording progress", "err", err)
			}
		}}
	if *dur > 0 {
		o.Until = time.Now().Add(*dur)
	}
	st, err := sim.Live(ctx, pool, g, o)
	if err != nil {
		return fmt.Errorf("live traffic: %w", err)
	}
	fmt.Fprintf(stdout, "committed %d payments (%d filler) and %d cancels in %s: %.1f payments/s achieved\n",
		st.Payments, st.Filler, st.Cancels, st.Elapsed.Round(time.Millisecond), st.AchievedTPS)
	return nil
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }
