// Package sim generates the payment gateway's traffic for demos, tests and
// benchmarks: a merchant population with the skew of SPEC §1, a diurnal
// curve, payments and their cancellations minute by minute, incidents and
// controls injected on top with their ground truth, a history loader and a
// live writer that commits payments as their time comes, into PostgreSQL
// (binary COPY, pgx) or MySQL/MariaDB (multi-row INSERTs, go-mysql): a DB
// only turns rows into its server's statements, so both get the same rows.
//
// Determinism. Everything is a function of the seed. A minute's payments come
// from a PCG seeded with (seed, minute), each payment's cancel from a
// SplitMix stream seeded with (seed, payment id), so any range can be
// generated alone, in parallel, or twice with the same rows, and a scenario
// changes only its own merchant's rows. Money is int64 KRW; times are
// instants (timestamptz) on PostgreSQL and DATETIME(6) wall clocks in a
// zone of the caller's (OpenOptions.TimeZone, recorded in sim_meta) on
// MySQL; the business time zone (Asia/Seoul by default) only shapes the
// curve and the rules' days.
//
// Profiles. The default profile is calm: every day follows the same
// curve, a merchant's volume and cancel rate differ from day to day only
// by Poisson noise, and cancels follow the curve exactly. Options.Profile
// "realistic" (ProfileRealistic) makes the traffic as hard to judge as a
// real gateway's, every factor a function of (seed, merchant, business
// day):
//
//   - day of the week: volume × 0.90 (Sun), 0.94 (Mon), 0.96 (Tue),
//     0.98 (Wed), 1.00 (Thu), 1.10 (Fri), 1.12 (Sat), averaging 1;
//   - a merchant's day volume factor, log-normal with mean 1 and σ 0.12:
//     the same-time amounts of a merchant differ day to day;
//   - a merchant's day cancel-rate factor, log-normal with mean 1 and σ 0.3
//     (overdispersion: some days run a third above the long-run rate);
//   - a quarter of the cancels come after a wall-clock delay of hours
//     (log-normal, median 3 h, σ 0.6, 30 min – 16 h) instead of the
//     business-clock delay, so the evening's sales are canceled through
//     the night while approvals fall; the day offsets (cancelDays) stay.
//
// The volume factors are applied through one alias table per business
// day, built over every merchant's weight × its factors (about 13 ms at
// 100,000 merchants, cached for the generator's most recent 16 days):
// a minute's Poisson count takes the day's total volume, and each payment
// draws its merchant from the day's table, as cheaply as from the
// population's. Thinning each payment would cost a draw per payment and
// could not raise a merchant's volume; per-merchant extra streams would
// cost a Poisson draw per merchant and minute. A scenario's own volume
// changes (a drop, a flash sale, a volatile merchant's day) thin or add to
// its merchant's payments with the payments' own streams, so a scenario
// still changes only its own merchant's rows.
//
// Scenarios. Incidents (cancel_surge, bust_out, volume_drop, silent) and
// controls (tiny, promotion, steady_high_cancel, batch_refunds,
// flash_sale, volatile_large) are injected per merchant; their kinds are
// documented with their constants. DefaultScenarios places one of each of
// the first seven relative to a live run's start; ScoredDayScenarios
// places a fixed mix of 40 incidents and 30 controls on a whole business
// day that is then scored against GroundTruth(day, day+24h).
//
// Ids. A payment's id is minute-since-epoch × 10,000,000 + its index: normal
// traffic uses indexes below 4,000,000, scenario extras 4,000,000 +
// scenario × 10,000 + j, live filler 5,000,000 and up. A cancel has the id
// of its payment (a payment gets at most one cancel).
//
// Typical use:
//
//	base, _ := sim.NewGenerator(sim.Options{Seed: seed, PaymentsPerDay: ppd, Location: loc})
//	scenarios := base.DefaultScenarios(now)              // placed on the data
//	g, _ := sim.NewGenerator(sim.Options{Seed: seed, PaymentsPerDay: ppd, Location: loc, Scenarios: scenarios})
//	from := sim.HistoryStart(now, sim.DefaultHistoryDays, loc)
//	db, _ := sim.Open(ctx, dsn, sim.OpenOptions{Conns: 4})  // postgres:// or mysql://
//	sim.LoadHistoryInto(ctx, db, g, from, now, progress)   // before the engine's first start
//	sim.WriteTruth(w, g.GroundTruth(now, now.Add(time.Hour)))
//	sim.LiveInto(ctx, db, g, sim.LiveOptions{From: now, HistoryFrom: from})
//
// At full scale (100,000 merchants, 3,000,000 payments a day) a day is
// generated in about 0.4 s on one core in either profile (the realistic
// one costs the same per payment, plus its day table), and 8 days of
// history load into PostgreSQL in about 32 s on 2 cores (MariaDB:
// LoadHistoryInto).
package sim
