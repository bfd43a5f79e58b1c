package rules

import "math"

// Priority is what an alert means to a person (SPEC §7a): P1 pages someone
// now, P2 tells the team, P3 is recorded and shown only. Lower is more
// urgent; the zero value is no priority (no alert).
type Priority int

const (
	P1 Priority = iota + 1
	P2
	P3
)

func (p Priority) String() string {
	switch p {
	case P1:
		return "P1"
	case P2:
		return "P2"
	case P3:
		return "P3"
	}
	return ""
}

// ParsePriority reads "P1", "P2" or "P3".
func ParsePriority(s string) (Priority, bool) {
	switch s {
	case "P1":
		return P1, true
	case "P2":
		return P2, true
	case "P3":
		return P3, true
	}
	return 0, false
}

// PriorityParams decide how sure and how much money makes an alert a page,
// a message or a record (rules.priority.* in the configuration; the
// defaults and how they were measured are in docs/design.md, "Evidence and
// priority").
type PriorityParams struct {
	// CancelDispersion is the squared coefficient of variation of a
	// merchant's cancel rate from one day to the next: the hour's cancels
	// are a negative binomial count, not a Poisson one.
	CancelDispersion float64
	// CancelBatchWeight (0…1) is how much a batch of cancels in one minute
	// counts as one event: the hour is judged at c/b^w against μ/b^w,
	// b the index of dispersion of the hour's per-minute cancels
	// (batchFactor). 1: a batch of n is one event; 0: batches count in
	// full.
	CancelBatchWeight float64
	// CancelTodayWeight (0…1) is how far today's cancels before the hour
	// count as evidence of today's own level (Today): 0 judges the hour
	// against the 7 days alone, as if today had just begun.
	CancelTodayWeight float64
	// VolumeMinSpread is the least day-to-day spread (coefficient of
	// variation of the same-time amount) a merchant is credited with: seven
	// days that happened to agree do not prove it never varies.
	VolumeMinSpread float64
	// CancelP1Evidence, CancelP2Evidence: −log10 of the probability the
	// least surprising explanation leaves, at and above which a firing
	// cancel_rate_spike is P1 (when its exposure is at least
	// P1MinExposure) or P2.
	CancelP1Evidence, CancelP2Evidence float64
	// VolumeP1Evidence, VolumeP2Evidence: the same for volume_drop.
	VolumeP1Evidence, VolumeP2Evidence float64
	// P1MinExposure (KRW): less money at stake than this never pages.
	P1MinExposure int64
}

// DefaultPriorityParams are the measured defaults.
func DefaultPriorityParams() PriorityParams {
	return PriorityParams{
		CancelDispersion: 0.1, CancelBatchWeight: 0.5, CancelTodayWeight: 0, VolumeMinSpread: 0.05,
		CancelP1Evidence: 5, CancelP2Evidence: 3,
		VolumeP1Evidence: 1.6, VolumeP2Evidence: 1.6,
		P1MinExposure: 3_000_000,
	}
}

// CancelEvidence is how improbable a cancel_rate_spike hour is under the
// merchant's own history, and the money at stake. Each Evidence figure is
// −log10 of an upper-tail probability of the hour's cancels, under one
// explanation of how many there should be:
//   - Hour: the 7-day rate (the rule's eff) applied to max(a_H, min_approvals);
//   - SameHour: the same 60 minutes of the day over the last 7 days (the
//     night's cancels of the day's payments are normal at night);
//   - Recent: the 7-day rate applied to the last three hours' approvals per
//     hour (the cancels of a sale that just ended are normal after it);
//   - Usual: the cancels the same hours of the day had per day over the
//     last 7 days, whatever today's sales (cancels are of payments made
//     days ago: a merchant whose sales fell today still gets yesterday's;
//     UsualCancels).
//
// Evidence is the least of them: an hour is only as alarming as its most
// ordinary explanation allows, which is the one expecting the most. Cancels
// that come in batches (many in one minute) count as fewer independent
// events, by Batch.
//
// Days differ: each explanation's count is a gamma mixture of Poissons
// whose day level has mean 1 and squared coefficient of variation
// CancelDispersion, which caps what a busy merchant's hour can prove. The
// cancels the merchant had earlier today (Today) measure today's level:
// the level's gamma distribution is updated with them (shape k + c_T,
// rate k + E_T, k = 1/dispersion), so a merchant whose morning ran as
// usual has a narrow day level and an hour twice as high proves much,
// while one whose whole day runs high has that level expected. The level
// is never taken below 1 (TodayRate, TodayUsual): a quiet morning does not
// make an ordinary afternoon alarming.
//
// Evidence is computed for a firing hour only (it is what its priority
// needs; the tail probabilities cost microseconds and 60,000 merchants are
// evaluated every minute); Tails gives each explanation's.
type CancelEvidence struct {
	Evidence float64
	// ExpectedHour, ExpectedSameHour, ExpectedRecent, ExpectedUsual are the
	// explanations' expected cancels in the hour.
	ExpectedHour, ExpectedSameHour, ExpectedRecent, ExpectedUsual float64
	// Batch is the index of dispersion of the hour's per-minute cancels,
	// Σc²/Σc − Σc/60 (batchFactor): 1 when they arrive independently at
	// any rate, about the batch size when they come in batches.
	Batch float64
	// CanceledAmount is what was canceled in the hour (KRW); Exposure what
	// the merchant had approved within the exposure window (KRW): what the
	// gateway has paid out or will, and may have to claw back.
	CanceledAmount, Exposure int64
	// TodayCancels are the merchant's cancels earlier today (before the
	// hour); TodayRate and TodayUsual the day levels the explanations'
	// expected counts are multiplied by: the rate-based ones (7d, same
	// hour, recent) and the usual cancels (both at least 1).
	TodayCancels          int64
	TodayRate, TodayUsual float64
	Priority              Priority
	// bw and cv2 are the batch divisor and the dispersion the tails are
	// taken with (bw 0: no evidence, the hour had too few cancels).
	bw, cv2 float64
}

// Today is what a merchant's business day before the hour says of its
// level: its cancels, and the cancels the rate-based explanations (the
// 7-day rate × today's approvals) and the usual one (the same hours of
// the day over the 7 days) expected of it.
type Today struct {
	Cancels                     int64
	ExpectedRate, ExpectedUsual float64
}

// Tails returns each explanation's evidence for an hour of c cancels, and
// the least of them (zeros when the hour had too few cancels to judge).
func (ev *CancelEvidence) Tails(c int64) (hour, sameHour, recent, usual, least float64) {
	if ev.bw == 0 {
		return 0, 0, 0, 0, 0
	}
	hour = cancelSurprise(c, ev.ExpectedHour*ev.TodayRate, ev.bw, ev.cv2)
	sameHour = cancelSurprise(c, ev.ExpectedSameHour*ev.TodayRate, ev.bw, ev.cv2)
	recent = cancelSurprise(c, ev.ExpectedRecent*ev.TodayRate, ev.bw, ev.cv2)
	usual = cancelSurprise(c, ev.ExpectedUsual*ev.TodayUsual, ev.bw, ev.cv2)
	return hour, sameHour, recent, usual, min(hour, sameHour, recent, usual)
}

// judge sets the day levels, and the evidence and priority: the tail under
// the explanation expecting the most, the least surprising one.
func (ev *CancelEvidence) judge(p PriorityParams, c int64, fires bool, bw float64, today Today) {
	ev.bw = bw
	ev.TodayCancels = today.Cancels
	ev.TodayRate, ev.TodayUsual, ev.cv2 = dayLevels(p, bw, today)
	if !fires {
		return
	}
	ev.Evidence = cancelSurprise(c, max(ev.TodayRate*max(ev.ExpectedHour, ev.ExpectedSameHour, ev.ExpectedRecent), ev.TodayUsual*ev.ExpectedUsual), bw, ev.cv2)
	ev.Priority = cancelPriority(p, fires, ev)
}

// dayLevels are the means of today's level under the rate-based and the
// usual explanations, at least 1, and the squared coefficient of variation
// left of it, after today's cancels (weighted by CancelTodayWeight, counted
// in batches of bw like the hour's) updated the 7 days' gamma prior.
func dayLevels(p PriorityParams, bw float64, t Today) (rate, usual, cv2 float64) {
	if p.CancelDispersion <= 1e-9 || bw <= 0 {
		return 1, 1, p.CancelDispersion
	}
	k := 1 / p.CancelDispersion
	w := p.CancelTodayWeight / bw
	shape := k + w*float64(max(t.Cancels, 0))
	return max(1, shape/(k+w*max(t.ExpectedRate, 0))), max(1, shape/(k+w*max(t.ExpectedUsual, 0))), 1 / shape
}

// TodayUsualCancels is the cancels per day over B of the part of the
// business day before the hour (hours 0…hour−1 of the day and minute
// minutes of hour): what the usual explanation expects of today's cancels
// before the hour. Hours are the clock's, so a day with a clock change
// counts its hours as they read.
func TodayUsualCancels(hod func(h int) (approvals, cancels int64), hour, minute int) float64 {
	var c float64
	for h := range min(hour, 24) {
		_, ch := hod(h)
		c += float64(ch)
	}
	if hour < 24 {
		_, ch := hod(hour)
		c += float64(minute) / 60 * float64(ch)
	}
	return c / (BaselineMinutes / MinutesPerDay)
}

// SameHourRate is the cancel rate of the same 60 minutes of the day over B:
// H = M−59…M spans the end of one hour of the business day (h1) and the
// start of the next (h2, M's own), and each hour's sums over B (hod) count
// by H's minutes in it (minuteOfHour is M's minute within h2, 0…59). ok is
// false when those approvals are fewer than min_baseline_approvals: too
// little history to say what the hour is like. The rate is at least
// baseline_floor, like the rule's eff.
func SameHourRate(p CancelRateParams, hod func(h int) (approvals, cancels int64), h1, h2, minuteOfHour int) (rate float64, ok bool) {
	w2 := float64(minuteOfHour+1) / 60
	a1, c1 := hod(h1)
	a2, c2 := hod(h2)
	a := (1-w2)*float64(a1) + w2*float64(a2)
	c := (1-w2)*float64(c1) + w2*float64(c2)
	if a < float64(p.MinBaselineApprovals) || a <= 0 {
		return 0, false
	}
	return max(c/a, p.BaselineFloor.Float64()), true
}

// UsualCancels is what the usual explanation expects of H: the cancels
// per day over B of the clock hours of the day H overlaps (h1, h2), the
// larger of the two. The hour-of-day sums do not say where within its hour
// the cancels came, and the least alarming reading is that H held a whole
// hour's worth: a merchant that refunds in a batch at 10:00 every day has
// the 10 o'clock hour's cancels in its first minute, which spreading them
// over the hour would expect a sixtieth of.
func UsualCancels(hod func(h int) (approvals, cancels int64), h1, h2 int) float64 {
	_, c1 := hod(h1)
	_, c2 := hod(h2)
	return float64(max(c1, c2)) / (BaselineMinutes / MinutesPerDay)
}

// cancelSurprise is −log10 P(X ≥ c/batch) for a negative binomial X with
// mean mu/batch and dispersion cv2.
func cancelSurprise(c int64, mu, batch, cv2 float64) float64 {
	if c <= 0 {
		return 0
	}
	if batch < 1 {
		batch = 1
	}
	ln := lnNegBinUpper(float64(c)/batch, mu/batch, cv2)
	if math.IsInf(ln, -1) {
		return maxEvidence
	}
	return min(maxEvidence, max(0, -ln/math.Ln10))
}

// batchFactor is the index of dispersion (variance over mean) of the
// cancels of the hour's 60 minutes, sq = Σc² and sum = Σc, at least 1.
// Independent cancels at a steady rate λ a minute have Σc²/Σc ≈ 1 + λ: a
// busy merchant's every hour would look batched without the −Σc/60, and
// its evidence divided by its own rate. A batch of n in one minute gives
// about n.
func batchFactor(sq, sum int64) float64 {
	if sum <= 0 {
		return 1
	}
	return max(1, float64(sq)/float64(sum)-float64(sum)/HourMinutes)
}

// maxEvidence caps the figure where it stops meaning anything (and keeps
// +Inf, which JSON cannot carry, out of the values).
const maxEvidence = 300

// VolumeEvidence is how improbable today's shortfall is against the spread
// of the last 7 days' same-time amounts.
type VolumeEvidence struct {
	Evidence float64
	// Spread is the coefficient of variation of the 7 days' same-time
	// amounts (at least PriorityParams.VolumeMinSpread).
	Spread float64
	// Exposure is what the merchant approved within the exposure window.
	Exposure int64
	Priority Priority
}

// volumeSurprise is −log10 P(Y ≤ y) where y = today / expected and Y is a
// new day like the 7 whose relative same-time amounts have spread s: a
// Student t prediction with 6 degrees of freedom.
func volumeSurprise(y, s float64) float64 {
	if s <= 0 || y >= 1 {
		return 0
	}
	t := (y - 1) / (s * math.Sqrt(1+1.0/7))
	return min(maxEvidence, max(0, -lnStudentLower(t, 6)/math.Ln10))
}

// cancelPriority ranks a firing cancel_rate_spike; one that does not fire
// has no priority.
func cancelPriority(p PriorityParams, fires bool, ev *CancelEvidence) Priority {
	return rank(fires, ev.Evidence, ev.Exposure, p.CancelP1Evidence, p.CancelP2Evidence, p.P1MinExposure)
}

// volumePriority ranks a firing volume_drop.
func volumePriority(p PriorityParams, fires bool, ev *VolumeEvidence) Priority {
	return rank(fires, ev.Evidence, ev.Exposure, p.VolumeP1Evidence, p.VolumeP2Evidence, p.P1MinExposure)
}

// rank is P1 from p1 evidence with minExposure at stake, P2 from p2, else P3.
func rank(fires bool, evidence float64, exposure int64, p1, p2 float64, minExposure int64) Priority {
	switch {
	case !fires:
		return 0
	case evidence >= p1 && exposure >= minExposure:
		return P1
	case evidence >= p2:
		return P2
	}
	return P3
}
