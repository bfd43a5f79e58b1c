package aggregates

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/window"
)

// applyAt writes the points in one batch, as a flush after minute
// evaluated was evaluated, and returns the flush's number.
func applyAt(t *testing.T, s *Store, cp Checkpoint, points []window.Delta, evaluated window.Minute) int64 {
	t.Helper()
	sum := seeded{}
	for _, p := range points {
		sum.add(p.Merchant, p.Minute, p.Agg)
	}
	var deltas []window.Delta
	for k, a := range sum {
		deltas = append(deltas, window.Delta{Key: k, Agg: a})
	}
	slices.SortFunc(deltas, func(x, y window.Delta) int {
		return cmp.Or(cmp.Compare(x.Minute, y.Minute), cmp.Compare(x.Merchant, y.Merchant))
	})
	b := &Batch{Deltas: deltas, Position: cp.At(lsn(uint64(evaluated)), evaluated, evaluated.End()), Evaluated: evaluated}
	if err := s.Apply(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if b.Seq == 0 {
		t.Fatal("Apply set no flush number")
	}
	return b.Seq
}

// TestResumeEqualsReadingTheWeek: a state restored from an image taken at
// x, with everything written after it (late deltas into B(x), E(x) and
// H(x), minutes entering and leaving both windows, open minutes), is the
// snapshot a full read of the week gives at every later l — on and off
// hour boundaries, with and without an exposure window, in a zone whose
// hours of the day are not UTC's.
func TestResumeEqualsReadingTheWeek(t *testing.T) {
	t.Parallel()
	x := minute(t, "2026-11-20T07:37:00Z")
	eachZoneAndWindow(t, func(t *testing.T, loc *time.Location, expo int) {
		s := openStore(t, loc)
		cp := bootstrapEmpty(t, s, 1)
		rng := rand.New(rand.NewPCG(uint64(expo), 3))
		var points []window.Delta
		point := func(merchant int64, m window.Minute) {
			a := window.Agg{Approvals: rng.Int64N(4), Cancels: rng.Int64N(3)}
			if a.Approvals == 0 && a.Cancels == 0 {
				a.Cancels = 1
			}
			a.ApprovedAmount, a.CanceledAmount = a.Approvals*(1000+rng.Int64N(9000)), a.Cancels*700
			points = append(points, window.Delta{Key: window.Key{Merchant: merchant, Minute: m}, Agg: a})
		}
		lo := x - rules.BaselineMinutes - rules.HourMinutes - 300
		for range 4000 {
			point(1+rng.Int64N(30), lo+window.Minute(rng.Int64N(int64(x+20-lo))))
		}
		// The history, written before the image as flushes before x
		// was evaluated.
		applyAt(t, s, cp, points[:2000], x-500)
		seq := applyAt(t, s, cp, points[2000:], x-1)
		before, err := s.RulesSnapshot(context.Background(), x, true, expo)
		if err != nil {
			t.Fatal(err)
		}
		// The state at x holds x's business day of volume curves, as
		// its close left it. With this threshold (Sum7 ≥ 7 × 85,000)
		// most of merchants 1…30 are large; 31…40, written only after
		// the image, are not.
		p := rules.Params{ExposureMinutes: expo, Volume: rules.VolumeDropParams{LargeDailyAmount: 85_000}}
		st := rules.NewState(before, s.cal)
		vd, err := s.VolumeDay(context.Background(), s.cal.Day(x), p.Volume.LargeDailyAmount, x)
		if err != nil || len(vd.Curves) < 10 {
			t.Fatalf("%d curves at x (%v)", len(vd.Curves), err)
		}
		st.SetVolumeDay(vd)
		if _, err := s.SaveRulesResume(context.Background(), cp, seq, p, st); err != nil {
			t.Fatal(err)
		}

		// After the image: late deltas at every edge of B(x), E(x)
		// and H(x), and minutes up to l+10 (entering, open).
		points = points[:0]
		for _, off := range []window.Minute{-10200, -10141, -10140, -10139, -10138, -10080, -4000, -151, -150, -149, -61, -60, -59, -1, 0} {
			for m := int64(1); m <= 4; m++ {
				point(m*7, x+off)
			}
		}
		point(99, x-10139) // a merchant only in B(x)'s first minute, leaving at once
		point(98, x-100)   // one whose only minute arrives late
		for range 1500 {
			point(1+rng.Int64N(40), x-10300+window.Minute(rng.Int64N(10300+260)))
		}
		for i := range points {
			// As flushes after the minutes between x and x+200 were
			// evaluated: deltas to minutes before are logged.
			applyAt(t, s, cp, points[i:i+1], x+window.Minute(i%200))
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		withCurves, wantCurves, withToday := 0, 0, 0
		// x+480 is past midnight in Seoul (the image's sums of
		// today are another day's there), not in Kolkata.
		for _, l := range []window.Minute{x, x + 1, x + 23, x + 60, x + 61, x + 83, x + 199, x + 240, x + 480} {
			if s.cal.Day(l + 1).Equal(s.cal.Day(x + 1)) {
				wantCurves++
			}
			want, err := s.RulesSnapshot(context.Background(), l, true, expo)
			if err != nil {
				t.Fatal(err)
			}
			got, imageAt, err := s.ResumeRulesSnapshot(context.Background(), cp.Slot, l, p, log)
			if err != nil || imageAt != x {
				t.Fatalf("l = x+%d: resumed from the image at %s (want %s), %v", l-x, imageAt, x, err)
			}
			// The day's curves are what reading them at l+1 gives for
			// the day's large merchants, fixed when it was loaded (a
			// late sale may have made another one large since).
			if got.Volume != nil {
				withCurves++
				fresh, err := s.VolumeDay(context.Background(), s.cal.Day(l+1), p.Volume.LargeDailyAmount, l)
				if err != nil {
					t.Fatal(err)
				}
				maps.DeleteFunc(fresh.Curves, func(id int64, _ *rules.Curve) bool { return vd.Curves[id] == nil })
				maps.DeleteFunc(fresh.Today, func(id, v int64) bool { return v == 0 || vd.Curves[id] == nil })
				if !reflect.DeepEqual(*got.Volume, fresh) {
					t.Fatalf("l = x+%d: resumed volume day differs from reading it: %d curves, want %d; today %v, want %v",
						l-x, len(got.Volume.Curves), len(fresh.Curves), got.Volume.Today, fresh.Today)
				}
				got.Volume = nil
			}
			if len(want.Today) > 0 {
				withToday++
			}
			if len(want.Baseline) < 30 || len(want.HourOfDay) < 100 {
				t.Fatalf("l = x+%d: too little data to compare: %d merchants, %d hours", l-x, len(want.Baseline), len(want.HourOfDay))
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("l = x+%d: resumed snapshot differs from reading the week:\n baseline %v\n want     %v\n hours %d, want %d\n exposure %v\n want     %v",
					l-x, got.Baseline, want.Baseline, len(got.HourOfDay), len(want.HourOfDay), got.Exposure, want.Exposure)
			}
		}
		if withCurves != wantCurves || withToday < 8 {
			t.Fatalf("%d of %d resumes used the image's volume curves; %d had sums of today", withCurves, wantCurves, withToday)
		}
	})
}

// TestResumeFallsBack: an image that cannot be used (none, too old, taken
// with another exposure window, stored by a writer that lost its claim,
// cleared by a new first snapshot) is not used; the week is read instead.
func TestResumeFallsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	cp := bootstrapEmpty(t, s, 1)
	x := minute(t, "2026-11-20T07:37:00Z")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	resumes := func(l window.Minute, expo int) bool {
		t.Helper()
		_, imageAt, err := s.ResumeRulesSnapshot(ctx, cp.Slot, l, rules.Params{ExposureMinutes: expo}, log)
		if err != nil {
			t.Fatal(err)
		}
		return imageAt != 0
	}
	if resumes(x, 150) {
		t.Fatal("resumed with no image")
	}
	seq := applyAt(t, s, cp, []window.Delta{{Key: window.Key{Merchant: 1, Minute: x - 90}, Agg: window.Agg{Approvals: 2, ApprovedAmount: 9000}}}, x-1)
	snap, err := s.RulesSnapshot(ctx, x, true, 150)
	if err != nil {
		t.Fatal(err)
	}
	st := rules.NewState(snap, s.cal)
	if _, err := s.SaveRulesResume(ctx, cp, seq, rules.Params{ExposureMinutes: 150}, st); err != nil {
		t.Fatal(err)
	}
	switch {
	case !resumes(x+ResumeWithin, 150):
		t.Fatal("not resumed within ResumeWithin")
	case resumes(x+ResumeWithin+1, 150):
		t.Fatal("resumed from an image older than ResumeWithin")
	case resumes(x-1, 150):
		t.Fatal("resumed before the image's minute")
	case resumes(x, 60):
		t.Fatal("resumed with another exposure window")
	}
	// An older image never replaces a newer one.
	if _, err := s.SaveRulesResume(ctx, cp, seq-1, rules.Params{ExposureMinutes: 150}, st); !errors.Is(err, ErrFenced) {
		t.Fatalf("older image stored: %v", err)
	}
	stale := cp
	if cp, err = s.Claim(ctx, cp.Slot); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SaveRulesResume(ctx, stale, seq+1, rules.Params{ExposureMinutes: 150}, st); !errors.Is(err, ErrFenced) {
		t.Fatalf("a writer that lost its claim stored an image: %v", err)
	}
	if !resumes(x, 150) {
		t.Fatal("the refused writes removed the image")
	}
	// A corrupt image is reported and the week read.
	if _, err := s.db.Pool().Exec(ctx, `UPDATE `+s.db.Table("rules_resume")+` SET data = '\x0102'`); err != nil {
		t.Fatal(err)
	}
	if resumes(x, 150) {
		t.Fatal("resumed from a corrupt image")
	}
	cp = bootstrapEmpty(t, s, 2)
	var n int
	if err := s.db.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM `+s.db.Table("rules_resume")+`) + (SELECT count(*) FROM `+s.db.Table("late_deltas")+`)`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after a new first snapshot: %d rows of images and late deltas (%v)", n, err)
	}
}

// TestLateDeltasPruned: an image deletes the late deltas it covers; the
// ones after it stay.
func TestLateDeltasPruned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, time.UTC)
	cp := bootstrapEmpty(t, s, 1)
	x := minute(t, "2026-11-20T07:37:00Z")
	d := func(m window.Minute) []window.Delta {
		return []window.Delta{{Key: window.Key{Merchant: 1, Minute: m}, Agg: window.Agg{Cancels: 1, CanceledAmount: 100}}}
	}
	applyAt(t, s, cp, d(x-5), x-1) // late: logged
	applyAt(t, s, cp, d(x+5), x-1) // open: not logged
	seq := applyAt(t, s, cp, d(x-2), x)
	applyAt(t, s, cp, d(x-3), x+1) // after the image: kept
	count := func() (n int) {
		t.Helper()
		if err := s.db.Pool().QueryRow(ctx, `SELECT count(*) FROM `+s.db.Table("late_deltas")).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 3 {
		t.Fatalf("%d late deltas logged, want 3", n)
	}
	snap, err := s.RulesSnapshot(ctx, x, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SaveRulesResume(ctx, cp, seq, rules.Params{}, rules.NewState(snap, s.cal)); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d late deltas after the image, want 1", n)
	}
}

// TestResumeVolumeDay: the image's volume curves are used within their
// business day and with the same large threshold, brought forward by late
// deltas and closed minutes, with the day's large merchants as loaded;
// they are left for the first close to read when the next minute is on
// another day or the threshold changed. A version 1 image (no curves)
// still resumes the week sums.
func TestResumeVolumeDay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	cp := bootstrapEmpty(t, s, 1)
	x := minute(t, "2026-11-20T07:37:00Z") // 16:37 KST on the 20th
	approved := func(merchant int64, m window.Minute, amount int64) []window.Delta {
		return []window.Delta{{Key: window.Key{Merchant: merchant, Minute: m}, Agg: window.Agg{Approvals: 1, ApprovedAmount: amount}}}
	}
	// Merchant 1 sold 1,000,000 KRW at 12:00 KST on each of the 14th…19th
	// (Sum7 6,000,000 ≥ 7 × 100,000: large); merchant 2 sold 10 KRW on
	// the 18th (not).
	for d := range 6 {
		applyAt(t, s, cp, approved(1, minute(t, "2026-11-14T03:00:00Z")+window.Minute(d*1440), 1_000_000), x-1)
	}
	applyAt(t, s, cp, approved(2, minute(t, "2026-11-18T03:00:00Z"), 10), x-1)
	seq := applyAt(t, s, cp, approved(1, x-5, 70_000), x-1) // today
	p := rules.Params{Volume: rules.VolumeDropParams{LargeDailyAmount: 100_000}}
	snap, err := s.RulesSnapshot(ctx, x, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := rules.NewState(snap, s.cal)
	vd, err := s.VolumeDay(ctx, s.cal.Day(x), p.Volume.LargeDailyAmount, x)
	if err != nil || len(vd.Curves) != 1 || vd.Today[1] != 70_000 {
		t.Fatalf("volume day at x: %d curves, today %v (%v)", len(vd.Curves), vd.Today, err)
	}
	st.SetVolumeDay(vd)
	if _, err := s.SaveRulesResume(ctx, cp, seq, p, st); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	resume := func(l window.Minute, p rules.Params) *rules.VolumeDay {
		t.Helper()
		snap, imageAt, err := s.ResumeRulesSnapshot(ctx, cp.Slot, l, p, log)
		if err != nil || imageAt != x {
			t.Fatalf("resumed at %s from the image at %s, want %s (%v)", l, imageAt, x, err)
		}
		return snap.Volume
	}
	// After the image: a late sale of merchant 1 on the 15th, one today,
	// and minutes closing at 16:40 and (open) 16:50.
	applyAt(t, s, cp, approved(1, minute(t, "2026-11-15T03:30:00Z"), 5_000), x+1)
	applyAt(t, s, cp, approved(1, x-1, 300), x+1)
	applyAt(t, s, cp, approved(1, x+3, 20), x+1)
	applyAt(t, s, cp, approved(1, x+13, 1), x+1)
	// By hand at x+10 (16:47): Sum7 6,005,000; 12:00 KST's same-time
	// amount 6,000,000 and 12:30's 5,000 (the 15th is day k = 2 of the
	// 13th…19th: quarter 48 holds 1,000,000, quarter 50 holds 5,000);
	// today 70,000 + 300 + 20 (16:50 is not closed).
	v := resume(x+10, p)
	if v == nil {
		t.Fatal("the image's volume curves were not used within their day")
	}
	c := v.Curves[1]
	if c.Sum7 != 6_005_000 || c.PerMinute7[720] != 6_000_000 || c.PerMinute7[750] != 5_000 ||
		c.PerDay[2][48] != 1_000_000 || c.PerDay[2][50] != 5_000 || v.Today[1] != 70_320 || len(v.Curves) != 1 {
		t.Fatalf("resumed curve: Sum7 %d, 12:00 %d, 12:30 %d, day 2 %d/%d, today %v",
			c.Sum7, c.PerMinute7[720], c.PerMinute7[750], c.PerDay[2][48], c.PerDay[2][50], v.Today)
	}
	fresh, err := s.VolumeDay(ctx, s.cal.Day(x+11), p.Volume.LargeDailyAmount, x+10)
	if err != nil || !reflect.DeepEqual(*v, fresh) {
		t.Fatalf("resumed volume day differs from reading it (%v)", err)
	}
	// 23:59 KST closes: the next minute is on the 21st.
	if resume(minute(t, "2026-11-20T14:59:00Z"), p) != nil {
		t.Fatal("the image's curves were used for the next business day")
	}
	if resume(x+10, rules.Params{Volume: rules.VolumeDropParams{LargeDailyAmount: 200_000}}) != nil {
		t.Fatal("the image's curves were used with another large threshold")
	}
	// And then 1,000,000: enough to be large, but the day's large
	// merchants were fixed when it was loaded, as in a session that did
	// not stop.
	applyAt(t, s, cp, approved(2, minute(t, "2026-11-17T04:00:00Z"), 1_000_000), x+1)
	if v := resume(x+10, p); v == nil || len(v.Curves) != 1 || v.Curves[2] != nil || v.Today[2] != 0 {
		t.Fatalf("after a late sale that would make merchant 2 large: %+v", v)
	}

	// Images from before the sums of today (versions 1 and 2) are not
	// used: the week is read instead, and gives the same snapshot.
	data, _ := encodeImage(st, p.Volume.LargeDailyAmount)
	weeks, _ := encodeImage(rules.NewState(snap, s.cal), p.Volume.LargeDailyAmount)
	if len(data) <= len(weeks) || weeks[len(weeks)-1] != 0 {
		t.Fatalf("image of %d bytes with curves, %d without (ending %d)", len(data), len(weeks), weeks[len(weeks)-1])
	}
	for _, old := range [][]byte{append([]byte{1}, weeks[1:len(weeks)-1]...), append([]byte{2}, data[1:]...)} {
		if _, err := s.db.Pool().Exec(ctx, `UPDATE `+s.db.Table("rules_resume")+` SET data = $1`, old); err != nil {
			t.Fatal(err)
		}
		got, imageAt, err := s.ResumeRulesSnapshot(ctx, cp.Slot, x+10, p, log)
		if err != nil || imageAt != 0 {
			t.Fatalf("a version %d image was used (taken at %s, %v)", old[0], imageAt, err)
		}
		want, err := s.RulesSnapshot(ctx, x+10, true, 0)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("after a version %d image: the snapshot differs from reading the week (%v)", old[0], err)
		}
	}
}

// TestPrefetchVolumeDayReadsASnapshot: curves read ahead are those of the
// sink when the read began, whatever is committed while it runs.
func TestPrefetchVolumeDayReadsASnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	cp := bootstrapEmpty(t, s, 1)
	last := minute(t, "2026-11-20T14:59:00Z") // 23:59 KST on the 20th
	approved := func(m window.Minute, amount int64) []window.Delta {
		return []window.Delta{{Key: window.Key{Merchant: 1, Minute: m}, Agg: window.Agg{Approvals: 1, ApprovedAmount: amount}}}
	}
	// 1,000,000 KRW at 12:00 KST on each of the 14th…20th: the 7 days
	// before the 21st, Sum7 7,000,000.
	for d := range 7 {
		applyAt(t, s, cp, approved(minute(t, "2026-11-14T03:00:00Z")+window.Minute(d*1440), 1_000_000), last)
	}
	day := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	wait, err := s.PrefetchVolumeDay(ctx, day, 100_000, last)
	if err != nil {
		t.Fatal(err)
	}
	applyAt(t, s, cp, approved(minute(t, "2026-11-19T03:00:00Z"), 5_000), last) // committed after the call
	got, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	if c := got.Curves[1]; c == nil || c.Sum7 != 7_000_000 || c.PerMinute7[720] != 7_000_000 || c.PerDay[5][48] != 1_000_000 {
		t.Fatalf("read ahead: %+v", c)
	}
	now, err := s.VolumeDay(ctx, day, 100_000, last)
	if err != nil || now.Curves[1].Sum7 != 7_005_000 {
		t.Fatalf("read after: %v (%v)", now.Curves[1], err)
	}
}
