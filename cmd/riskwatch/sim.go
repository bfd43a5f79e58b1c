package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/progress"
	"github.com/riskwatch/riskwatch/internal/sim"
)

// simFlags are the flags both sim subcommands share.
type simFlags struct {
	flags
	dsn, timeZone *string
}

func newSimFlags(name, zoneDefault string, stderr io.Writer) simFlags {
	fs := newFlags(name, stderr)
	return simFlags{flags: fs,
		dsn: fs.String("dsn", "", "source database, postgres://… or mysql://USER:PASSWORD@HOST:PORT/DATABASE (default: source.dsn of --config / RISKWATCH_SOURCE_DSN)"),
		timeZone: fs.String("time-zone", "", "MySQL/MariaDB only: the IANA zone of the DATETIME wall clocks written; riskwatch must read them with the same source.time_zone (default: "+
			zoneDefault+")"),
	}
}

// simSetup resolves the DSN, the logger and --time-zone of a sim
// subcommand. The simulator writes the source database, so only source.dsn
// matters.
func simSetup(fs simFlags, args []string, stderr io.Writer, getenv func(string) string) (*config.Config, *slog.Logger, string, *time.Location, error) {
	// --dsn must be known before the config is loaded.
	if err := fs.Parse(args); err != nil {
		return nil, nil, "", nil, usageError{err.Error()}
	}
	args = fs.Args()
	env := getenv
	getenv = func(k string) string {
		switch v := env(k); {
		case k == config.EnvSourceDSN && *fs.dsn != "":
			// Satisfy the config's required source.dsn without a file.
			return *fs.dsn
		case k == config.EnvSinkDSN && v == "":
			// The sink a MySQL source's config requires is never opened
			// here: the simulator writes only the source.
			return "postgres://sink.unused.invalid/riskwatch"
		default:
			return v
		}
	}
	cfg, log, err := setup(fs.flags, args, stderr, getenv)
	if err != nil {
		return nil, nil, "", nil, err
	}
	dsn := cfg.Source.DSN
	if *fs.dsn != "" {
		dsn = *fs.dsn
	}
	var zone *time.Location
	if *fs.timeZone != "" {
		if !sim.IsMySQL(dsn) {
			return nil, nil, "", nil, usageError{fs.Name() + ": --time-zone is for MySQL/MariaDB sources (PostgreSQL's timestamptz is absolute)"}
		}
		if zone, err = time.LoadLocation(*fs.timeZone); err != nil {
			return nil, nil, "", nil, usageError{fmt.Sprintf("%s: --time-zone: %v", fs.Name(), err)}
		}
	}
	return cfg, log, dsn, zone, nil
}

// checkSimZone refuses to continue a MySQL simulation in another zone than
// the one its rows are in, and warns when riskwatch, configured as cfg,
// would read them in another.
func checkSimZone(cfg *config.Config, log *slog.Logger, meta *sim.Meta, zone *time.Location) error {
	if meta == nil || meta.TimeZone == "" {
		return nil
	}
	if zone != nil && zone.String() != meta.TimeZone {
		return fmt.Errorf("the simulation in this database writes its times in %s, not --time-zone %s (--reload it to start over in %s)",
			meta.TimeZone, zone, zone)
	}
	if read := cfg.Source.TimeLocation.String(); read != meta.TimeZone {
		log.Warn("riskwatch reads DATETIME columns in source.time_zone, which is not the zone this simulation writes; set source.time_zone to it",
			"source.time_zone", read, "simulation", meta.TimeZone)
	}
	return nil
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

// openSim connects to the source, creates its schema when missing and reads
// what `sim history` generated there (nil before it ran). zone is the
// DATETIME zone of a MySQL source (nil: the one sim_meta records).
func openSim(ctx context.Context, dsn string, conns int, zone *time.Location) (sim.DB, *sim.Meta, error) {
	db, err := sim.Open(ctx, dsn, sim.OpenOptions{Conns: conns, TimeZone: zone})
	if err != nil {
		return nil, nil, err
	}
	meta, err := db.ReadMeta(ctx)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, meta, nil
}

// offsetChanges reports whether loc's UTC offset differs anywhere in
// [from, to], looking every hour (offsets last far longer than that).
func offsetChanges(loc *time.Location, from, to time.Time) bool {
	_, first := from.In(loc).Zone()
	for t := from; ; t = t.Add(time.Hour) {
		if t.After(to) {
			t = to
		}
		if _, off := t.In(loc).Zone(); off != first {
			return true
		}
		if t.Equal(to) {
			return false
		}
	}
}

func cmdSimHistory(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newSimFlags("sim history", "source.time_zone of --config, UTC", stderr)
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
	cfg, log, dsn, flagZone, err := simSetup(fs, args, stderr, getenv)
	if err != nil {
		return err
	}
	zone := flagZone
	if zone == nil && sim.IsMySQL(dsn) {
		zone = cfg.Source.TimeLocation
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
	db, meta, err := openSim(ctx, dsn, 4, zone)
	if err != nil {
		return err
	}
	defer db.Close()
	if meta != nil && !*reload {
		if err := checkSimZone(cfg, log, meta, flagZone); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "history already loaded (anchor %s, %d payments/day, seed %d); reusing it (--reload to start over)\n",
			meta.Anchor.In(cfg.Location).Format(time.RFC3339), meta.PaymentsDay, meta.Seed)
		return nil
	}
	if *reload {
		if err := db.Empty(ctx); err != nil {
			return err
		}
	}
	meta = &sim.Meta{Seed: *seed, Merchants: *merchants, PaymentsDay: *ppd, Anchor: now, HistoryFrom: sim.HistoryStart(now, *days, cfg.Location),
		Incidents: *incidents, LargeAmount: *large, WrittenUntil: now, Profile: *profile}
	if *scored {
		// The scored day's rules look back 7 days: the history holds them.
		meta.ScoredDay = sim.LastWholeDay(now, cfg.Location)
		if from := sim.HistoryStart(meta.ScoredDay, sim.DefaultHistoryDays, cfg.Location); from.Before(meta.HistoryFrom) {
			meta.HistoryFrom = from
		}
	}
	if zone != nil {
		meta.TimeZone = zone.String()
		if err := checkSimZone(cfg, log, meta, nil); err != nil {
			return err
		}
		if offsetChanges(zone, meta.HistoryFrom, now) {
			log.Warn("the time zone changes its UTC offset within the history: the wall clocks of a repeated hour are ambiguous and riskwatch reads them as the earlier instant; a zone without daylight saving (UTC, Asia/Seoul) keeps every row at its generated time",
				"time_zone", zone.String())
		}
	}
	g, err := meta.Generator(cfg.Location)
	if err != nil {
		return err
	}
	rep := progress.New("history", "payments", 0, progress.Options{Out: stderr, Logger: log})
	start := time.Now()
	payments, cancels, err := sim.LoadHistoryInto(ctx, db, g, meta.HistoryFrom, now, func(done, total int64) {
		rep.SetTotal(total)
		rep.Set(done)
	})
	rep.Done()
	if err != nil {
		return fmt.Errorf("loading history: %w", err)
	}
	if err := db.WriteMeta(ctx, meta); err != nil {
		return err
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
	fs := newSimFlags("sim live", "the zone sim history wrote in", stderr)
	tps := fs.Float64("tps", 0, "steady payments per second (0: the generated curve's own rate)")
	burst := fs.Float64("burst-tps", 0, "payments per second during bursts (0: 5,000; negative: no bursts)")
	batch := fs.Int("batch", 1, "payments per transaction (1: one per transaction, as a gateway commits)")
	workers := fs.Int("workers", 16, "connections committing concurrently")
	dur := fs.Duration("for", 0, "stop after this long (0: until interrupted)")
	cfg, log, dsn, zone, err := simSetup(fs, args, stderr, getenv)
	if err != nil {
		return err
	}
	if *batch < 1 || *workers < 1 {
		return usageError{"sim live: --batch and --workers must be positive"}
	}
	db, meta, err := openSim(ctx, dsn, *workers+2, zone)
	if err != nil {
		return err
	}
	defer db.Close()
	if meta == nil {
		return fmt.Errorf("no simulation in this database: run `riskwatch sim history` first")
	}
	if err := checkSimZone(cfg, log, meta, zone); err != nil {
		return err
	}
	g, err := meta.Generator(cfg.Location)
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
			if err := db.MarkWritten(context.WithoutCancel(ctx), time.Now().Add(-st.Lag)); err != nil {
				log.Warn("recording progress", "err", err)
			}
		}}
	if *dur > 0 {
		o.Until = time.Now().Add(*dur)
	}
	st, err := sim.LiveInto(ctx, db, g, o)
	if err != nil {
		return fmt.Errorf("live traffic: %w", err)
	}
	fmt.Fprintf(stdout, "committed %d payments (%d filler) and %d cancels in %s: %.1f payments/s achieved\n",
		st.Payments, st.Filler, st.Cancels, st.Elapsed.Round(time.Millisecond), st.AchievedTPS)
	return nil
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }
