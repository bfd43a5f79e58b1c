package sim

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func truthFor(ts []Truth, kind, rule string) (Truth, bool) {
	for _, t := range ts {
		if t.Scenario == kind && t.Rule == rule {
			return t, true
		}
	}
	return Truth{}, false
}

// TestGroundTruthDefaultScenarios runs the default scenarios at full scale
// in the afternoon: every incident becomes true within the first 20
// minutes of a live run starting at now, no control ever does, and the
// ground truth of the silent merchant (SPEC §6) and of the cancel surge
// (SPEC §5) equal a brute-force evaluation over the raw rows.
func TestGroundTruthDefaultScenarios(t *testing.T) {
	loc := seoul(t)
	pop := NewPopulation(testSeed, 0)
	now := time.Date(2026, 11, 25, 14, 7, 23, 0, loc)
	sc := newGen(t, Options{Seed: testSeed, Population: pop}).DefaultScenarios(now)
	if len(sc) != 7 {
		t.Fatalf("%d default scenarios", len(sc))
	}
	g := newGen(t, Options{Seed: testSeed, Population: pop, Scenarios: sc})
	until := now.Add(45 * time.Minute)
	truth := g.GroundTruth(now, until)
	var buf bytes.Buffer
	if err := WriteTruth(&buf, truth); err != nil {
		t.Fatal(err)
	}
	t.Logf("scenarios %+v\ntruth %s", sc, buf.String())
	var back []map[string]any
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || len(back) != len(truth) {
		t.Fatalf("truth JSON does not read back: %v", err)
	}

	start := now.Truncate(time.Minute)
	for _, tr := range truth {
		primary := tr.ShouldFire && tr.Note == ""
		if tr.Rule == RuleVolumeDrop && primary {
			lead := map[string]time.Duration{KindSilent: leadSilent, KindVolumeDrop: leadDrop}[tr.Scenario]
			if tr.From.Before(start) || tr.From.After(start.Add(lead)) {
				t.Errorf("%s placed on the data becomes true at %v, want in [%v, %v]", tr.Scenario, tr.From, start, start.Add(lead))
			}
		}
		switch {
		case primary && (tr.From.Before(start) || tr.From.After(start.Add(20*time.Minute))):
			t.Errorf("%s/%s becomes true at %v, want within 20 minutes after %v", tr.Scenario, tr.Rule, tr.From, start)
		case !tr.ShouldFire && !tr.From.IsZero():
			t.Errorf("%s/%s: should not fire, yet the condition holds at %v", tr.Scenario, tr.Rule, tr.From)
		}
	}
	for _, kind := range []string{KindTiny, KindPromotion, KindSteadyHighCancel} {
		if tr, ok := truthFor(truth, kind, RuleCancelRateSpike); !ok || tr.ShouldFire {
			t.Errorf("control %s: %+v", kind, tr)
		}
	}

	// Brute force over the raw rows of the two merchants.
	silent, _ := truthFor(truth, KindSilent, RuleVolumeDrop)
	surge, _ := truthFor(truth, KindCancelSurge, RuleCancelRateSpike)
	ps, cs := merchantRows(t, g, HistoryStart(now, DefaultHistoryDays, loc), until, silent.Merchant, surge.Merchant)
	sp, up, uc := ps[silent.Merchant], ps[surge.Merchant], cs[surge.Merchant]
	var silentStart, surgeStart time.Time
	for _, s := range sc {
		switch s.Kind {
		case KindSilent:
			silentStart = s.Start
		case KindCancelSurge:
			surgeStart = s.Start
		}
	}
	if got := bruteVolumeDrop(sp, silentStart, until, loc, LargeDailyAmount); !got.Equal(silent.From) {
		t.Errorf("silent: ground truth from %v, brute force %v", silent.From, got)
	}
	if got := bruteCancelSpike(up, uc, surgeStart, until); !got.Equal(surge.From) {
		t.Errorf("cancel surge: ground truth from %v, brute force %v", surge.From, got)
	}
}

// merchantRows generates [from, until) and keeps the given merchants'
// payments and their cancels due before until, as a source loaded up to
// until holds them.
func merchantRows(t *testing.T, g *Generator, from, until time.Time, ids ...int64) (map[int64][]Payment, map[int64][]Cancel) {
	t.Helper()
	ps, cs := map[int64][]Payment{}, map[int64][]Cancel{}
	err := g.Generate(from, until, func(p Payment) error {
		if slices.Contains(ids, p.MerchantID) {
			ps[p.MerchantID] = append(ps[p.MerchantID], p)
		}
		return nil
	}, func(c Cancel) error {
		if slices.Contains(ids, c.MerchantID) && c.CanceledAt.Before(until) {
			cs[c.MerchantID] = append(cs[c.MerchantID], c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ps, cs
}

// bruteVolumeDrop is SPEC §6 with the default thresholds but
// large_daily_amount (largeDaily), summing the raw
// payments for every minute (no prefix sums, no calendar arithmetic
// beyond Seoul's fixed 24-hour days).
func bruteVolumeDrop(ps []Payment, from, until time.Time, loc *time.Location, largeDaily int64) time.Time {
	sum := func(a, b time.Time) (s int64) {
		for _, p := range ps {
			if !p.ApprovedAt.Before(a) && p.ApprovedAt.Before(b) {
				s += p.Amount
			}
		}
		return s
	}
	for m := from.Truncate(time.Minute); m.Add(time.Minute).Compare(until) <= 0; m = m.Add(time.Minute) {
		l := m.In(loc)
		midnight := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, loc)
		t := m.Add(time.Minute).Sub(midnight)
		var sum7, cum7 int64
		for k := 1; k <= 7; k++ {
			d := midnight.Add(-time.Duration(k) * 24 * time.Hour)
			sum7 += sum(d, d.Add(24*time.Hour))
			cum7 += sum(d, d.Add(t))
		}
		today := sum(midnight, m.Add(time.Minute))
		large := sum7 >= 7*largeDaily
		if large && 100*cum7 >= 5*sum7 && 14*today <= cum7 {
			return m
		}
	}
	return time.Time{}
}

// bruteCancelSpike is SPEC §5 with the default thresholds over one
// merchant's raw rows (its own baseline: it has far more than 100
// approvals a week).
func bruteCancelSpike(ps []Payment, cs []Cancel, from, until time.Time) time.Time {
	for m := from; m.Add(time.Minute).Compare(until) <= 0; m = m.Add(time.Minute) {
		hLo, hHi := m.Add(-59*time.Minute), m.Add(time.Minute)
		bLo := hLo.Add(-7 * 24 * time.Hour)
		var aH, cH, aB, cB int64
		for _, p := range ps {
			switch t := p.ApprovedAt; {
			case !t.Before(hLo) && t.Before(hHi):
				aH++
			case !t.Before(bLo) && t.Before(hLo):
				aB++
			}
		}
		for _, c := range cs {
			switch t := c.CanceledAt; {
			case !t.Before(hLo) && t.Before(hHi):
				cH++
			case !t.Before(bLo) && t.Before(hLo):
				cB++
			}
		}
		if aB < 100 {
			panic("brute force assumes a merchant baseline")
		}
		n := max(aH, 20)
		var fires bool
		if 1000*cB >= 2*aB { // baseline ≥ floor 0.002
			fires = cH*aB >= 2*cB*n
		} else {
			fires = 1000*cH >= 4*n
		}
		if cH >= 5 && fires {
			return m
		}
	}
	return time.Time{}
}

// TestDefaultScenariosEarlyInTheDay: before the rule can judge volumes
// (expected < 5% of a daily average) the volume scenarios say so, and the
// truth shows them becoming true only once it can.
func TestDefaultScenariosEarlyInTheDay(t *testing.T) {
	loc := seoul(t)
	pop := NewPopulation(testSeed, 0)
	now := time.Date(2026, 11, 25, 0, 40, 0, 0, loc)
	sc := DefaultScenarios(pop, now, loc)
	judged := time.Date(2026, 11, 25, 0, 0, 0, 0, loc).Add(time.Duration(firstJudged(0.05)) * time.Minute)
	midnight := time.Date(2026, 11, 25, 0, 0, 0, 0, loc)
	for _, s := range sc {
		if (s.Kind == KindSilent || s.Kind == KindVolumeDrop) && (s.Note == "" || !s.Start.Equal(midnight)) {
			t.Errorf("%s at 00:40: start %v, note %q", s.Kind, s.Start, s.Note)
		}
	}
	if placed := newGen(t, Options{Seed: testSeed, Population: pop}).DefaultScenarios(now); !slices.EqualFunc(placed, sc, sameScenario) {
		t.Errorf("placing on the data changed scenarios it cannot place: %+v vs %+v", placed, sc)
	}
	g := newGen(t, Options{Seed: testSeed, Population: pop, Scenarios: sc})
	truth := g.GroundTruth(now, now.Add(90*time.Minute))
	for _, kind := range []string{KindSilent, KindVolumeDrop} {
		tr, _ := truthFor(truth, kind, RuleVolumeDrop)
		t.Logf("%s: from %v (rule can judge from about %v)", kind, tr.From.In(loc), judged)
		if tr.From.IsZero() || tr.From.Before(judged) || tr.From.After(judged.Add(15*time.Minute)) {
			t.Errorf("%s: from %v, want shortly after %v", kind, tr.From, judged)
		}
	}
}

func TestVolumeScenarioNearMidnight(t *testing.T) {
	loc := seoul(t)
	now := time.Date(2026, 11, 25, 23, 57, 0, 0, loc)
	s := volumeScenario(KindSilent, 1, 1, now, now.Add(leadSilent), loc)
	if s.Note == "" || !s.Start.After(now) {
		t.Errorf("near midnight: %+v", s)
	}
	s = volumeScenario(KindVolumeDrop, 1, 0.8, now.Add(-10*time.Hour), now.Add(-10*time.Hour+leadDrop), loc)
	if s.Note != "" || !s.Start.Before(now.Add(-10*time.Hour)) {
		t.Errorf("in the afternoon: %+v", s)
	}
}

// TestControlsQuietForADay: the default controls' conditions never hold
// over a whole day (night included) after a start in the evening.
func TestControlsQuietForADay(t *testing.T) {
	loc := seoul(t)
	pop := NewPopulation(testSeed, 0)
	now := time.Date(2026, 11, 26, 21, 0, 0, 0, loc)
	sc := newGen(t, Options{Seed: testSeed, Population: pop}).DefaultScenarios(now)
	g := newGen(t, Options{Seed: testSeed, Population: pop, Scenarios: sc})
	for _, tr := range g.GroundTruth(now, now.Add(24*time.Hour)) {
		if !tr.ShouldFire && !tr.From.IsZero() {
			t.Errorf("%s/%s: condition holds at %v", tr.Scenario, tr.Rule, tr.From.In(loc))
		}
		if tr.ShouldFire && tr.Note == "" && (tr.From.Before(now) || tr.From.After(now.Add(20*time.Minute))) {
			t.Errorf("%s/%s becomes true at %v", tr.Scenario, tr.Rule, tr.From.In(loc))
		}
	}
}
