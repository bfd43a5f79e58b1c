// Package score measures alerts against the simulator's ground truth: per
// priority tier, how many alerts and merchants, which incidents were caught
// and how many minutes after their ground-truth minute, which controls and
// ordinary merchants fired, how often alerts flapped and how many pages
// went out; and whether the detection targets of docs/design.md ("Evidence
// and priority") hold. It is pure: the caller reads the truth file and the
// backtest's transitions.
package score

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// Truth is one entry of the simulator's ground truth file (the fields
// scoring needs).
type Truth struct {
	Scenario   string `json:"scenario"`
	Merchant   int64  `json:"merchant"`
	Rule       string `json:"rule"`
	ShouldFire bool   `json:"should_fire"`
	// From is the first minute the rule's literal condition holds (nil:
	// never in the scored range).
	From *time.Time `json:"from"`
	// IncidentFrom is the first minute at or after the incident's start the
	// condition holds (the minute detection delays count from; From may be
	// an ordinary minute before the incident, e.g. a night's cancels).
	IncidentFrom *time.Time `json:"incident_from"`
	// Incident says whether the scenario is an incident (true) or a
	// control (false); nil falls back to the scenario kind.
	Incident      *bool     `json:"incident"`
	Factor        float64   `json:"factor"`
	Start         time.Time `json:"start"`
	DailyPayments float64   `json:"daily_payments"`
}

// ParseTruth reads a ground truth file (a JSON array).
func ParseTruth(b []byte) ([]Truth, error) {
	var ts []Truth
	if err := json.Unmarshal(b, &ts); err != nil {
		return nil, fmt.Errorf("reading ground truth: %w", err)
	}
	return ts, nil
}

// incidentKinds are the simulator's incident scenarios; every other kind
// is a control.
var incidentKinds = map[string]string{ // kind → the rule it is for
	"cancel_surge": "cancel_rate_spike",
	"bust_out":     "cancel_rate_spike",
	"volume_drop":  "volume_drop",
	"silent":       "volume_drop",
}

func (t *Truth) isIncident() bool {
	if t.Incident != nil {
		return *t.Incident
	}
	_, ok := incidentKinds[t.Scenario]
	return ok
}

// ownRule: the entry is of the rule its incident is for.
func (t *Truth) ownRule() bool { return incidentKinds[t.Scenario] == t.Rule }

// Transition is one backtest line (engine.Transition's JSON).
type Transition struct {
	Rule           string `json:"rule"`
	MerchantID     int64  `json:"merchant_id"`
	State          string `json:"state"`
	Minute         string `json:"minute"`
	Priority       string `json:"priority"`
	Notify         string `json:"notify"`
	NotifyPriority string `json:"notify_priority"`
}

// rank is a priority's urgency, 1 (P1) to 3; no priority ranks with P3.
func rank(p string) int {
	switch p {
	case "P1":
		return 1
	case "P2":
		return 2
	}
	return 3
}

// step is an alert at a priority from a minute on.
type step struct {
	at   time.Time
	rank int
}

// alertKey names the alerts of one rule and merchant.
type alertKey struct {
	rule     string
	merchant int64
}

// alertLife is one alert as the backtest lists it.
type alertLife struct {
	rule      string
	merchant  int64
	start     time.Time
	end       time.Time // the minute it resolved (zero: open at the end)
	steps     []step    // firing first, then escalations
	continued bool      // its firing was notified as a continuation
}

// reached is the first minute the alert was at least as urgent as tier.
func (a *alertLife) reached(tier int) (time.Time, bool) {
	for _, s := range a.steps {
		if s.rank <= tier {
			return s.at, true
		}
	}
	return time.Time{}, false
}

// reachedFrom is the first minute at or after from that the alert was at
// least as urgent as tier: from itself when it already was.
func (a *alertLife) reachedFrom(tier int, from time.Time) (time.Time, bool) {
	at, ok := a.reached(tier)
	if ok && at.Before(from) {
		at = from
	}
	return at, ok
}

// openAt reports whether the alert was firing in minute m.
func (a *alertLife) openAt(m time.Time) bool {
	return !a.start.After(m) && (a.end.IsZero() || a.end.After(m))
}

// Tier is one row of the report: the alerts at least as urgent as it.
type Tier struct {
	Name string `json:"tier"`
	max  int
	// Alerts reaching the tier, on how many merchants.
	Alerts    int `json:"alerts"`
	Merchants int `json:"merchants"`
	// Incidents caught (an alert of the incident's rule reaching the tier
	// at or after its start), of how many, and the minutes from the
	// ground-truth minute to reaching the tier (median, worst).
	IncidentsCaught int      `json:"incidents_caught"`
	Incidents       int      `json:"incidents"`
	DelayMedian     *float64 `json:"delay_minutes_median"`
	DelayMax        *float64 `json:"delay_minutes_max"`
	// Alerts on incident merchants, as a share of Alerts.
	IncidentAlertShare float64 `json:"incident_alert_share"`
	// Control merchants with an alert reaching the tier, of how many.
	ControlsFired int `json:"controls_fired"`
	Controls      int `json:"controls"`
	// Merchants without any scenario with an alert reaching the tier, and
	// their alerts per day.
	OtherMerchants    int     `json:"other_merchants"`
	OtherAlertsPerDay float64 `json:"other_alerts_per_day"`
	// Flaps: alerts that fired again soon after an earlier one of the same
	// rule and merchant was notified (notified as a continuation).
	Flaps int `json:"flaps"`
	// Notifications routed at the tier or more urgent that start or raise
	// an alert (firing, continued, escalated), per day: for P1, the pages.
	NotificationsPerDay float64 `json:"notifications_per_day"`
}

// Incident is one incident's detection.
type Incident struct {
	Merchant      int64      `json:"merchant"`
	Scenario      string     `json:"scenario"`
	Rule          string     `json:"rule"`
	Factor        float64    `json:"factor"`
	DailyPayments float64    `json:"daily_payments"`
	Start         time.Time  `json:"start"`
	From          *time.Time `json:"from"`
	// The first minutes at or after Start the rule's literal alert fired,
	// and the alert was at least P2 and P1.
	FirstLiteral *time.Time `json:"first_literal"`
	FirstP2      *time.Time `json:"first_p2"`
	FirstP1      *time.Time `json:"first_p1"`
	// Best is the most urgent priority reached ("" when never fired).
	Best string `json:"best"`
}

// Target is one detection target and whether it holds.
type Target struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}

// Report is the whole score.
type Report struct {
	From      time.Time  `json:"from"`
	To        time.Time  `json:"to"`
	Days      float64    `json:"days"`
	Tiers     []Tier     `json:"tiers"`
	Incidents []Incident `json:"incidents"`
	// ControlsAbove lists the controls that reached P2 or P1, once per
	// merchant and rule.
	ControlsAbove []Incident `json:"controls_above_p3"`
	Targets       []Target   `json:"targets"`
}

// Score measures transitions of [from, to) against truth.
func Score(truth []Truth, trs []Transition, from, to time.Time) (*Report, error) {
	days := to.Sub(from).Hours() / 24
	if days <= 0 {
		return nil, fmt.Errorf("score: empty range %s … %s", from, to)
	}
	alerts, notes, err := lives(trs)
	if err != nil {
		return nil, err
	}
	incident, control := map[int64]bool{}, map[int64]bool{}
	for i := range truth {
		if truth[i].isIncident() {
			incident[truth[i].Merchant] = true
		} else {
			control[truth[i].Merchant] = true
		}
	}
	r := &Report{From: from, To: to, Days: days}

	// Incidents, by their own rule's entry.
	for _, t := range truth {
		if !t.isIncident() || !t.ownRule() {
			continue
		}
		from := t.IncidentFrom
		if from == nil {
			from = t.From
		}
		in := Incident{Merchant: t.Merchant, Scenario: t.Scenario, Rule: t.Rule, Factor: t.Factor, DailyPayments: t.DailyPayments, Start: t.Start, From: from}
		// Its alerts: those that started with it or after, and one
		// already open when it began (an ordinary hour's alert that the
		// incident then escalates: the literal rule fires from the
		// incident's first minute, and its escalations are its pages).
		start := t.Start.Truncate(time.Minute)
		for _, a := range alerts {
			if a.rule != t.Rule || a.merchant != t.Merchant || (a.start.Before(start) && !a.openAt(start)) {
				continue
			}
			for tier, dst := range map[int]**time.Time{3: &in.FirstLiteral, 2: &in.FirstP2, 1: &in.FirstP1} {
				if at, ok := a.reachedFrom(tier, start); ok && (*dst == nil || at.Before(**dst)) {
					*dst = &at
				}
			}
		}
		switch {
		case in.FirstP1 != nil:
			in.Best = "P1"
		case in.FirstP2 != nil:
			in.Best = "P2"
		case in.FirstLiteral != nil:
			in.Best = "P3"
		}
		r.Incidents = append(r.Incidents, in)
	}
	slices.SortFunc(r.Incidents, func(a, b Incident) int {
		return cmp.Or(cmp.Compare(a.Scenario, b.Scenario), cmp.Compare(a.Factor, b.Factor), cmp.Compare(a.DailyPayments, b.DailyPayments), cmp.Compare(a.Merchant, b.Merchant))
	})

	for _, tier := range []Tier{{Name: "P1", max: 1}, {Name: "P1-P2", max: 2}, {Name: "all", max: 3}} {
		merchants, controls, others := map[int64]bool{}, map[int64]bool{}, map[int64]bool{}
		var onIncident, otherAlerts int
		for _, a := range alerts {
			if _, ok := a.reached(tier.max); !ok {
				continue
			}
			tier.Alerts++
			merchants[a.merchant] = true
			if a.continued {
				tier.Flaps++
			}
			switch {
			case incident[a.merchant]:
				onIncident++
			case control[a.merchant]:
				controls[a.merchant] = true
			default:
				others[a.merchant] = true
				otherAlerts++
			}
		}
		tier.Merchants, tier.ControlsFired, tier.OtherMerchants = len(merchants), len(controls), len(others)
		tier.Controls = len(control)
		tier.OtherAlertsPerDay = float64(otherAlerts) / days
		if tier.Alerts > 0 {
			tier.IncidentAlertShare = float64(onIncident) / float64(tier.Alerts)
		}
		var delays []float64
		for _, in := range r.Incidents {
			tier.Incidents++
			at := map[int]*time.Time{1: in.FirstP1, 2: in.FirstP2, 3: in.FirstLiteral}[tier.max]
			if at == nil {
				continue
			}
			tier.IncidentsCaught++
			if in.From != nil {
				delays = append(delays, at.Sub(*in.From).Minutes())
			}
		}
		if len(delays) > 0 {
			slices.Sort(delays)
			med, worst := median(delays), delays[len(delays)-1]
			tier.DelayMedian, tier.DelayMax = &med, &worst
		}
		var n int
		for _, x := range notes {
			if x.rank <= tier.max {
				n++
			}
		}
		tier.NotificationsPerDay = float64(n) / days
		r.Tiers = append(r.Tiers, tier)
	}

	// Controls above P3: one entry per control and rule, however many of
	// its alerts rose (a flapping control counts once), with the first
	// minutes it was at P2 and P1.
	above := map[alertKey]int{}
	for _, a := range alerts {
		if !control[a.merchant] {
			continue
		}
		p2, ok := a.reached(2)
		if !ok {
			continue
		}
		k := alertKey{a.rule, a.merchant}
		i, seen := above[k]
		if !seen {
			c := Incident{Merchant: a.merchant, Rule: a.rule, Start: a.start, FirstP2: &p2, Best: "P2"}
			for _, t := range truth {
				if t.Merchant == a.merchant {
					c.Scenario, c.Factor, c.DailyPayments = t.Scenario, t.Factor, t.DailyPayments
				}
			}
			i = len(r.ControlsAbove)
			above[k] = i
			r.ControlsAbove = append(r.ControlsAbove, c)
		}
		if p1, ok := a.reached(1); ok && r.ControlsAbove[i].FirstP1 == nil {
			r.ControlsAbove[i].FirstP1, r.ControlsAbove[i].Best = &p1, "P1"
		}
	}
	r.Targets = targets(r)
	return r, nil
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// note is a notification that starts or raises an alert.
type note struct {
	at   time.Time
	rank int
}

// lives rebuilds the alerts from the transitions (in minute order, as the
// backtest lists them).
func lives(trs []Transition) ([]*alertLife, []note, error) {
	open := map[alertKey]*alertLife{}
	var all []*alertLife
	var notes []note
	for i, t := range trs {
		at, err := time.Parse(time.RFC3339, t.Minute)
		if err != nil {
			return nil, nil, fmt.Errorf("transition %d: minute %q: %w", i+1, t.Minute, err)
		}
		k := alertKey{t.Rule, t.MerchantID}
		switch t.State {
		case "firing":
			a := &alertLife{rule: t.Rule, merchant: t.MerchantID, start: at, steps: []step{{at, rank(t.Priority)}}, continued: t.Notify == "continued"}
			open[k] = a
			all = append(all, a)
		case "escalated":
			if a := open[k]; a != nil {
				a.steps = append(a.steps, step{at, rank(t.Priority)})
			}
		case "resolved":
			if a := open[k]; a != nil {
				a.end = at
			}
			delete(open, k)
		default:
			return nil, nil, fmt.Errorf("transition %d: unknown state %q", i+1, t.State)
		}
		switch t.Notify {
		case "firing", "continued", "escalated":
			notes = append(notes, note{at, rank(t.NotifyPriority)})
		}
	}
	return all, notes, nil
}

// targets checks the detection targets (docs/design.md).
func targets(r *Report) []Target {
	var out []Target
	p1, all := r.Tiers[0], r.Tiers[2]
	falseP1 := float64(p1.Alerts) * (1 - p1.IncidentAlertShare) / r.Days
	out = append(out, Target{Name: "false P1 alerts ≤ 5 per day", Pass: falseP1 <= 5,
		Detail: fmt.Sprintf("%.1f per day on merchants without an incident", falseP1)})
	out = append(out, Target{Name: "≥ 80% of P1 alerts on incident merchants", Pass: p1.Alerts == 0 || p1.IncidentAlertShare >= 0.8,
		Detail: fmt.Sprintf("%.0f%% of %d", 100*p1.IncidentAlertShare, p1.Alerts)})

	// A target measured from the first literal firing applies to the
	// incidents the literal rule fired for; the others are counted apart.
	check := func(name string, applies func(in *Incident) bool, ok func(in *Incident) bool) {
		var n, good, never int
		var bad []string
		for i := range r.Incidents {
			in := &r.Incidents[i]
			if !applies(in) {
				continue
			}
			if in.FirstLiteral == nil {
				never++
				continue
			}
			n++
			if ok(in) {
				good++
			} else {
				bad = append(bad, fmt.Sprintf("%d (%s ×%g, %s)", in.Merchant, in.Scenario, in.Factor, describe(in)))
			}
		}
		d := fmt.Sprintf("%d of %d", good, n)
		if never > 0 {
			d += fmt.Sprintf(" (%d more never fired literally)", never)
		}
		if len(bad) > 0 {
			d += "; missed: " + fmt.Sprint(bad)
		}
		out = append(out, Target{Name: name, Pass: good == n, Detail: d})
	}
	within := func(at *time.Time, lit *time.Time, minutes float64) bool {
		return at != nil && lit != nil && at.Sub(*lit).Minutes() <= minutes
	}
	check("bust-outs: at least P2 in the first literal minute", func(in *Incident) bool { return in.Scenario == "bust_out" },
		func(in *Incident) bool { return within(in.FirstP2, in.FirstLiteral, 0) })
	check("bust-outs: P1 within 5 minutes of the first literal firing", func(in *Incident) bool { return in.Scenario == "bust_out" },
		func(in *Incident) bool { return within(in.FirstP1, in.FirstLiteral, 5) })
	check("large drops ≥ 50% and silent: P1 in the first volume_drop minute",
		func(in *Incident) bool {
			return in.Scenario == "silent" || in.Scenario == "volume_drop" && in.Factor >= 0.5
		},
		func(in *Incident) bool { return within(in.FirstP1, in.FirstLiteral, 0) })
	check("surges ≥ 3× at ≥ 1,000 payments/day: P1 within 10 minutes of the first literal firing",
		func(in *Incident) bool {
			return in.Scenario == "cancel_surge" && in.Factor >= 3 && in.DailyPayments >= 1000
		},
		func(in *Incident) bool { return within(in.FirstP1, in.FirstLiteral, 10) })
	check("surges ≥ 2×: at least P2 from the first literal minute",
		func(in *Incident) bool { return in.Scenario == "cancel_surge" && in.Factor >= 2 },
		func(in *Incident) bool { return within(in.FirstP2, in.FirstLiteral, 0) })

	var above []string
	for _, c := range r.ControlsAbove {
		above = append(above, fmt.Sprintf("%d (%s, %s)", c.Merchant, c.Scenario, c.Best))
	}
	out = append(out, Target{Name: "no control above P3", Pass: len(above) == 0, Detail: fmt.Sprintf("%d above P3 %v", len(above), above)})

	literal := float64(all.Alerts) / r.Days
	out = append(out, Target{Name: "pages per day ≤ 1/20 of literal firings", Pass: p1.NotificationsPerDay <= literal/20,
		Detail: fmt.Sprintf("%.1f pages, %.0f literal firings per day (limit %.1f)", p1.NotificationsPerDay, literal, literal/20)})
	return out
}

// describe says how far an incident got.
func describe(in *Incident) string {
	if in.FirstLiteral == nil {
		return "literal rule never fired"
	}
	var s string
	for _, x := range []struct {
		name string
		at   *time.Time
	}{{"P2", in.FirstP2}, {"P1", in.FirstP1}} {
		if x.at == nil {
			s += fmt.Sprintf(" %s never", x.name)
		} else {
			s += fmt.Sprintf(" %s +%.0fm", x.name, x.at.Sub(*in.FirstLiteral).Minutes())
		}
	}
	return "best " + cmp.Or(in.Best, "none") + ";" + s
}

// WriteTable renders the report for a terminal.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "scored %s … %s (%.2g days)\n\n", r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339), r.Days)
	fmt.Fprintln(tw, "TIER\tALERTS\tMERCHANTS\tINCIDENTS CAUGHT\tDELAY MEDIAN/MAX (min)\tON INCIDENTS\tCONTROLS FIRED\tOTHER MERCHANTS\tOTHER ALERTS/DAY\tFLAPS\tNOTIFIED/DAY")
	for _, t := range r.Tiers {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d/%d\t%s/%s\t%.0f%%\t%d/%d\t%d\t%.1f\t%d\t%.1f\n", t.Name, t.Alerts, t.Merchants, t.IncidentsCaught, t.Incidents,
			minutes(t.DelayMedian), minutes(t.DelayMax), 100*t.IncidentAlertShare, t.ControlsFired, t.Controls, t.OtherMerchants, t.OtherAlertsPerDay, t.Flaps, t.NotificationsPerDay)
	}
	fmt.Fprintln(tw, "\nINCIDENT\tMERCHANT\tFACTOR\tPAYMENTS/DAY\tRULE\tTRUTH FROM\tLITERAL\tP2\tP1\tBEST")
	for _, in := range r.Incidents {
		fmt.Fprintf(tw, "%s\t%d\t%g\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\n", in.Scenario, in.Merchant, in.Factor, in.DailyPayments, in.Rule,
			clock(in.From), clock(in.FirstLiteral), after(in.FirstP2, in.FirstLiteral), after(in.FirstP1, in.FirstLiteral), cmp.Or(in.Best, "-"))
	}
	fmt.Fprintln(tw, "\nTARGET\tRESULT\tDETAIL")
	for _, t := range r.Targets {
		res := "FAIL"
		if t.Pass {
			res = "pass"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, res, t.Detail)
	}
	return tw.Flush()
}

func minutes(d *float64) string {
	if d == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f", *d)
}

func clock(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format("15:04")
}

// after is t as minutes after the first literal firing.
func after(t, literal *time.Time) string {
	if t == nil || literal == nil {
		return "-"
	}
	return fmt.Sprintf("+%.0fm", t.Sub(*literal).Minutes())
}
