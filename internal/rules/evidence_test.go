package rules

import (
	"math"
	"testing"
)

func TestCancelSurprise(t *testing.T) {
	for _, c := range []struct {
		name          string
		c             int64
		mu, batch, cv float64
		want          float64
	}{
		// P(Poisson(2) ≥ 5) = 1 − 7e⁻² = 0.052653.
		{"poisson", 5, 2, 1, 0, 1.278577},
		// Ten minutes of one cancel each or one minute of ten: a batch of
		// 10 counts as one event, so 20 cancels in two batches against 2
		// expected is P(Poisson(0.2) ≥ 2) = 1 − 1.2e^−0.2 = 0.017523.
		{"batched", 20, 2, 10, 0, 1.756391},
		{"batch below one is one", 5, 2, 0.5, 0, 1.278577},
		{"no cancels", 0, 2, 1, 0.1, 0},
		{"none expected, some seen", 3, 0, 1, 0.1, maxEvidence},
	} {
		if got := cancelSurprise(c.c, c.mu, c.batch, c.cv); math.Abs(got-c.want) > 1e-5 {
			t.Errorf("%s: cancelSurprise(%d, %g, %g, %g) = %.6f, want %.6f", c.name, c.c, c.mu, c.batch, c.cv, got, c.want)
		}
	}
	// The same 20 cancels spread over twenty minutes are far stronger
	// evidence than in two batches; day-to-day dispersion weakens both.
	spread, batched := cancelSurprise(20, 2, 1, 0), cancelSurprise(20, 2, 10, 0)
	if !(spread > 5*batched) {
		t.Errorf("20 independent cancels give %.2f, two batches of ten %.2f: want the spread ones far stronger", spread, batched)
	}
	if !(cancelSurprise(20, 2, 1, 0.3) < spread) {
		t.Error("dispersion does not weaken the evidence")
	}
}

func TestVolumeSurprise(t *testing.T) {
	s := 0.1
	// The 5% point of Student's t with 6 degrees of freedom is −1.943: a
	// day that far below 1 in units of the prediction's spread has
	// probability 0.05, evidence −log10 0.05 = 1.30103.
	y := 1 - 1.943*s*math.Sqrt(1+1.0/7)
	if got := volumeSurprise(y, s); math.Abs(got-1.30103) > 2e-3 {
		t.Errorf("volumeSurprise(%.4f, %g) = %.5f, want 1.30103", y, s, got)
	}
	for _, c := range []struct {
		y, s float64
	}{{1, 0.1}, {1.5, 0.1}, {0.5, 0}} {
		if got := volumeSurprise(c.y, c.s); got != 0 {
			t.Errorf("volumeSurprise(%g, %g) = %g, want 0", c.y, c.s, got)
		}
	}
	// The same −50% is alarming for a steady merchant, not for a volatile one.
	if steady, volatile := volumeSurprise(0.5, 0.05), volumeSurprise(0.5, 0.4); !(steady > 4 && volatile < 1) {
		t.Errorf("−50%%: steady (5%%) %.2f, volatile (40%%) %.2f: want > 4 and < 1", steady, volatile)
	}
	if got := volumeSurprise(0, 0.01); got <= 0 || got > maxEvidence || math.IsInf(got, 0) {
		t.Errorf("a silent steady merchant: %g, want finite, positive, at most %d", got, maxEvidence)
	}
}

func TestSevenDaySpread(t *testing.T) {
	for _, c := range []struct {
		x    [7]float64
		want float64
	}{
		{[7]float64{5, 5, 5, 5, 5, 5, 5}, 0},
		{[7]float64{}, 0},
		// mean 4, Σ(x−4)² = 28, sample sd √(28/6) = 2.160247
		{[7]float64{1, 2, 3, 4, 5, 6, 7}, 0.540062},
	} {
		if got := sevenDaySpread(&c.x); math.Abs(got-c.want) > 1e-6 {
			t.Errorf("sevenDaySpread(%v) = %.6f, want %.6f", c.x, got, c.want)
		}
	}
}

func TestSameHourRate(t *testing.T) {
	p := CancelRateParams{MinBaselineApprovals: 1000, BaselineFloor: Ratio{1, 100}}
	hod := func(h int) (int64, int64) {
		switch h {
		case 3:
			return 800, 40
		case 4:
			return 1600, 16
		case 5:
			return 100, 0
		}
		return 0, 0
	}
	for _, c := range []struct {
		name         string
		h1, h2, mins int
		want         float64
		ok           bool
	}{
		// 45 minutes of hour 3, 15 of hour 4: a = 600 + 400, c = 30 + 4.
		{"straddling", 3, 4, 14, 0.034, true},
		// All of hour 4: 16/1600 = 1% = the floor.
		{"whole hour", 4, 4, 59, 0.01, true},
		// All of hour 4 by the other path: 59 minutes' weight is 1.
		{"whole hour from h1", 3, 4, 59, 0.01, true},
		// 45 of hour 4, 15 of hour 5: a = 1200 + 25, c = 12 → 0.98% < floor.
		{"floor", 4, 5, 14, 0.01, true},
		{"too little history", 5, 5, 59, 0, false},
	} {
		got, ok := SameHourRate(p, hod, c.h1, c.h2, c.mins)
		if ok != c.ok || math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: SameHourRate = %g, %v; want %g, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

func TestPriorityFromEvidenceAndMoney(t *testing.T) {
	p := DefaultPriorityParams()
	p.CancelP1Evidence, p.CancelP2Evidence = 6, 2
	p.VolumeP1Evidence, p.VolumeP2Evidence = 3, 1
	p.P1MinExposure = 1_000_000
	for _, c := range []struct {
		name     string
		fires    bool
		evidence float64
		exposure int64
		cancel   Priority
		volume   Priority
	}{
		{"does not fire", false, 50, 1e9, 0, 0},
		{"sure and large", true, 6, 1_000_000, P1, P1},
		{"sure, too little money to page", true, 50, 999_999, P2, P2},
		{"between", true, 2.5, 1e9, P2, P2},
		{"cancel P2 edge", true, 2, 1e9, P2, P2},
		{"volume P1 only", true, 3, 1e9, P2, P1},
		{"volume P2 only", true, 1, 1e9, P3, P2},
		{"ordinary", true, 0.9, 1e9, P3, P3},
	} {
		if got := cancelPriority(p, c.fires, &CancelEvidence{Evidence: c.evidence, Exposure: c.exposure}); got != c.cancel {
			t.Errorf("%s: cancel priority %v, want %v", c.name, got, c.cancel)
		}
		if got := volumePriority(p, c.fires, &VolumeEvidence{Evidence: c.evidence, Exposure: c.exposure}); got != c.volume {
			t.Errorf("%s: volume priority %v, want %v", c.name, got, c.volume)
		}
	}
}

func TestPriorityNames(t *testing.T) {
	for _, p := range []Priority{P1, P2, P3} {
		if got, ok := ParsePriority(p.String()); !ok || got != p {
			t.Errorf("ParsePriority(%q) = %v, %v", p.String(), got, ok)
		}
	}
	for _, s := range []string{"", "p1", "P0", "P4", "critical"} {
		if _, ok := ParsePriority(s); ok {
			t.Errorf("ParsePriority(%q) accepted", s)
		}
	}
	if !(P1 < P2 && P2 < P3) || Priority(0).String() != "" {
		t.Error("P1 must be the most urgent and 0 no priority")
	}
}

func TestDayLevels(t *testing.T) {
	p := DefaultPriorityParams()
	p.CancelDispersion, p.CancelTodayWeight = 0.1, 1 // prior shape k = 10
	half := p
	half.CancelTodayWeight = 0.5
	off := p
	off.CancelTodayWeight = 0
	poisson := p
	poisson.CancelDispersion = 0
	for _, c := range []struct {
		name             string
		p                PriorityParams
		bw               float64
		today            Today
		rate, usual, cv2 float64
	}{
		// Shape 10 + 30 = 40; rate level 40/(10+20), usual 40/(10+40) < 1.
		{"a high day by the rate, calm by the usual", p, 1, Today{30, 20, 40}, 4.0 / 3, 1, 1.0 / 40},
		// In batches of 2 today's cancels are 15 events: shape 25,
		// levels 25/(10+10) and 25/(10+20).
		{"batches", p, 2, Today{30, 20, 40}, 1.25, 1, 1.0 / 25},
		// Weight ½: the same as batches of 2.
		{"half weight", half, 1, Today{30, 20, 40}, 1.25, 1, 1.0 / 25},
		{"weight 0: the 7 days alone", off, 1, Today{30, 20, 40}, 1, 1, 0.1},
		{"nothing today yet", p, 1, Today{}, 1, 1, 0.1},
		// 90 where 45 were expected: level (10+90)/(10+45).
		{"a whole day running high", p, 1, Today{90, 45, 45}, 100.0 / 55, 100.0 / 55, 0.01},
		{"no dispersion: Poisson, nothing to learn", poisson, 1, Today{30, 20, 40}, 1, 1, 0},
	} {
		rate, usual, cv2 := dayLevels(c.p, c.bw, c.today)
		if math.Abs(rate-c.rate) > 1e-12 || math.Abs(usual-c.usual) > 1e-12 || math.Abs(cv2-c.cv2) > 1e-12 {
			t.Errorf("%s: dayLevels = %.6f, %.6f, %.6f; want %.6f, %.6f, %.6f", c.name, rate, usual, cv2, c.rate, c.usual, c.cv2)
		}
	}
}

func TestEvidenceOnTodaysLevel(t *testing.T) {
	p := DefaultPriorityParams()
	p.CancelDispersion, p.CancelTodayWeight, p.CancelBatchWeight = 0.1, 1, 1
	// 20 cancels in the hour. The tails below are negative binomial upper
	// tails summed term by term (size = the day level's shape, mean = the
	// largest expected count times its level).
	for _, c := range []struct {
		name  string
		usual float64
		today Today
		want  float64
	}{
		// No day yet: size 10, mean max(6, 5, 4, 5) = 6.
		{"the 7 days alone", 5, Today{}, 3.233512},
		// Levels 4/3 (rate) and 1 (usual), size 40: the rate-based 6 × 4/3
		// = 8 expects the most.
		{"a day running a third high", 7, Today{30, 20, 40}, 3.012193},
		// The usual 9 expects more than 8: size 40, mean 9.
		{"the usual explains more", 9, Today{30, 20, 40}, 2.487964},
	} {
		ev := CancelEvidence{ExpectedHour: 6, ExpectedSameHour: 5, ExpectedRecent: 4, ExpectedUsual: c.usual, Exposure: 1 << 40}
		ev.judge(p, 20, true, 1, c.today)
		if math.Abs(ev.Evidence-c.want) > 1e-5 {
			t.Errorf("%s: evidence %.6f, want %.6f", c.name, ev.Evidence, c.want)
		}
		if _, _, _, _, least := ev.Tails(20); math.Abs(least-ev.Evidence) > 1e-9 {
			t.Errorf("%s: the least of the tails is %.6f, the evidence %.6f", c.name, least, ev.Evidence)
		}
	}
	// A calm morning makes the same afternoon far stronger evidence than
	// the 7 days alone can: 40 where 20 were expected.
	calm := CancelEvidence{ExpectedHour: 20, ExpectedSameHour: 20, ExpectedRecent: 20, ExpectedUsual: 20}
	calm.judge(p, 40, true, 1, Today{200, 200, 200})
	prior := CancelEvidence{ExpectedHour: 20, ExpectedSameHour: 20, ExpectedRecent: 20, ExpectedUsual: 20}
	prior.judge(p, 40, true, 1, Today{})
	if !(calm.Evidence > prior.Evidence+2) {
		t.Errorf("40 of 20 after a calm day: %.2f, with no day yet %.2f: want the day to prove more", calm.Evidence, prior.Evidence)
	}
}

func TestBatchFactor(t *testing.T) {
	for _, c := range []struct {
		name    string
		sq, sum int64
		want    float64
	}{
		{"no cancels", 0, 0, 1},
		{"one cancel", 1, 1, 1},
		// Two a minute, every minute: variance 0, so no batches at all,
		// though Σc²/Σc alone would say 2.
		{"steady, busy", 60 * 4, 60 * 2, 1},
		// Minutes of 3 and 1 alternating: mean 2, variance 1, index ½.
		{"less varied than Poisson", 30*9 + 30*1, 120, 1},
		// One minute of 10: mean 1/6, variance 100/60 − 1/36.
		{"one batch of ten", 100, 10, 10 - 10.0/60},
		// 50 single cancels and a batch of 20.
		{"a batch among singles", 50 + 400, 70, 450.0/70 - 70.0/60},
	} {
		if got := batchFactor(c.sq, c.sum); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: batchFactor(%d, %d) = %.6f, want %.6f", c.name, c.sq, c.sum, got, c.want)
		}
	}
}

func TestUsualCancels(t *testing.T) {
	// Seven days of a merchant that refunds in a batch at 10:00 every day:
	// 7 cancels at 9 o'clock, 280 at 10 (in its first minute).
	hod := func(h int) (int64, int64) {
		return 0, map[int]int64{9: 7, 10: 280, 11: 14}[h]
	}
	for _, c := range []struct {
		name   string
		h1, h2 int
		want   float64
	}{
		// H = 09:01…10:00 holds the batch minute: a whole 10 o'clock hour
		// a day is expected of it, not a sixtieth.
		{"the hour ending with the batch minute", 9, 10, 40},
		{"the batch hour itself", 10, 10, 40},
		{"after it", 10, 11, 40},
		{"the hours around neither", 11, 12, 2},
		{"nothing at that time", 3, 4, 0},
	} {
		if got := UsualCancels(hod, c.h1, c.h2); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: UsualCancels(%d, %d) = %g, want %g", c.name, c.h1, c.h2, got, c.want)
		}
	}
}
