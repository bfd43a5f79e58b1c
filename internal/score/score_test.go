package score

import (
	"strings"
	"testing"
	"time"
)

var day = time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC) // 00:00 KST

func at(h, m int) time.Time {
	return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

func tp(t time.Time) *time.Time { return &t }

func line(rule string, merchant int64, state string, t time.Time, prio, notify, notifyPrio string) Transition {
	return Transition{Rule: rule, MerchantID: merchant, State: state, Minute: t.Format(time.RFC3339), Priority: prio, Notify: notify, NotifyPriority: notifyPrio}
}

const spike, drop = "cancel_rate_spike", "volume_drop"

// A scored day with four incidents, two controls and ordinary merchants,
// each case worked out by hand below.
func fixture() ([]Truth, []Transition) {
	yes, no := true, false
	truth := []Truth{
		// 1: bust-out, literal at 10:03 as P2, P1 at 10:06.
		// Its literal condition also held at 03:00, before the incident
		// (From); delays count from IncidentFrom.
		{Scenario: "bust_out", Merchant: 1, Rule: spike, ShouldFire: true, From: tp(at(3, 0)), IncidentFrom: tp(at(10, 2)), Factor: 0.6, Start: at(10, 0), DailyPayments: 300},
		{Scenario: "bust_out", Merchant: 1, Rule: drop, ShouldFire: false, Factor: 0.6, Start: at(10, 0), DailyPayments: 300},
		// 2: a 3× surge at a busy merchant: literal P3 at 12:00, P2 12:04, P1 12:20 (too late).
		{Scenario: "cancel_surge", Merchant: 2, Rule: spike, ShouldFire: true, From: tp(at(11, 58)), Factor: 3, Start: at(11, 0), DailyPayments: 5000},
		// 3: silent large merchant: P1 at once.
		{Scenario: "silent", Merchant: 3, Rule: drop, ShouldFire: true, From: tp(at(13, 0)), Factor: 1, Start: at(9, 0), DailyPayments: 30000},
		// 10: a 3× surge the literal rule never fired for: outside the
		// targets measured from the first literal firing, counted apart.
		{Scenario: "cancel_surge", Merchant: 10, Rule: spike, ShouldFire: true, Factor: 3, Start: at(16, 0), DailyPayments: 2000},
		// 4: a 1.5× surge that never fired.
		{Scenario: "cancel_surge", Merchant: 4, Rule: spike, ShouldFire: true, Factor: 1.5, Start: at(14, 0), DailyPayments: 300},
		// Controls: 5 stays P3, 6 reaches P2 (a failure).
		{Scenario: "promotion", Merchant: 5, Rule: spike, Incident: &no, Factor: 2, Start: at(9, 0)},
		{Scenario: "batch_refunds", Merchant: 6, Rule: spike, Incident: &no},
		// 7: marked an incident explicitly although its kind is unknown here.
		{Scenario: "new_kind", Merchant: 7, Rule: spike, Incident: &yes, Start: at(1, 0)},
	}
	trs := []Transition{
		line(spike, 9, "firing", at(1, 0), "P1", "firing", "P1"), // ordinary merchant paged
		line(spike, 9, "resolved", at(1, 10), "P1", "resolved", "P1"),
		line(spike, 9, "firing", at(1, 12), "P1", "continued", "P2"), // its flap: told as P2
		line(spike, 1, "firing", at(10, 3), "P2", "firing", "P2"),
		line(spike, 6, "firing", at(10, 4), "P3", "firing", "P3"),
		line(spike, 6, "escalated", at(10, 5), "P2", "escalated", "P2"),
		line(spike, 1, "escalated", at(10, 6), "P1", "escalated", "P1"),
		line(spike, 5, "firing", at(11, 0), "P3", "firing", "P3"),
		line(spike, 2, "firing", at(12, 0), "P3", "firing", "P3"),
		line(spike, 2, "escalated", at(12, 4), "P2", "escalated", "P2"),
		line(spike, 2, "escalated", at(12, 20), "P1", "escalated", "P1"),
		line(drop, 3, "firing", at(13, 0), "P1", "firing", "P1"),
		line(spike, 8, "firing", at(15, 0), "P3", "firing", "P3"),
		line(spike, 8, "resolved", at(15, 5), "P3", "resolved", "P3"),
	}
	return truth, trs
}

func TestScore(t *testing.T) {
	truth, trs := fixture()
	r, err := Score(truth, trs, day, day.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// Alerts by tier: P1 reached by 9 (twice), 1, 2, 3 = 5 alerts, 4
	// merchants; P1–P2 adds 6 = 6 alerts; all adds 5 and 8 = 8 alerts.
	// Incidents (own rule): 1, 2, 3, 4 (7 is of an unknown kind: no own
	// rule, so not scored as an incident, but its merchant counts as one).
	want := []struct {
		name                                   string
		alerts, merchants, caught, controls    int
		others                                 int
		share, notified, medianDelay, maxDelay float64
		flaps                                  int
	}{
		// P1: 1 at 10:06 (From 10:02: 4), 2 at 12:20 (22), 3 at 13:00 (0):
		// median 4, max 22. On incidents 3 of 5. Notified at P1: 9's
		// firing, 1's and 2's escalations, 3's firing = 4.
		{"P1", 5, 4, 3, 0, 1, 0.6, 4, 4, 22, 1},
		// P1–P2: 1 at 10:03 (1), 2 at 12:04 (6), 3 (0): median 1, max 6.
		// Notified at ≤P2: + 9's continuation, 1's firing, 6's and 2's
		// escalations = 8.
		{"P1-P2", 6, 5, 3, 1, 1, 0.5, 8, 1, 6, 1},
		// all: 1 at 10:03, 2 at 12:00 (2), 3: median 1, max 2. On
		// incidents 3 of 8. Every start or raise is notified: 12.
		{"all", 8, 7, 3, 2, 2, 3.0 / 8, 12, 1, 2, 1},
	}
	for i, w := range want {
		g := r.Tiers[i]
		if g.Name != w.name || g.Alerts != w.alerts || g.Merchants != w.merchants || g.IncidentsCaught != w.caught || g.Incidents != 5 ||
			g.ControlsFired != w.controls || g.Controls != 2 || g.OtherMerchants != w.others || g.IncidentAlertShare != w.share ||
			g.NotificationsPerDay != w.notified || *g.DelayMedian != w.medianDelay || *g.DelayMax != w.maxDelay || g.Flaps != w.flaps {
			t.Errorf("tier %s: %+v (delay %v/%v), want %+v", w.name, g, *g.DelayMedian, *g.DelayMax, w)
		}
	}
	// Targets: false P1 = 2 (merchant 9) ≤ 5: pass; 60% < 80%: fail;
	// bust-out P2 at the literal minute: pass; P1 3 minutes later: pass;
	// silent: pass; the 3× surge at 5,000/day: P1 20 minutes after: fail;
	// ≥ 2× surges (only merchant 2): P2 4 minutes after the literal: fail;
	// a control at P2: fail; pages 4 ≤ 8/20 = 0.4: fail.
	wantPass := []bool{true, false, true, true, true, false, false, false, false}
	if len(r.Targets) != len(wantPass) {
		t.Fatalf("%d targets, want %d", len(r.Targets), len(wantPass))
	}
	for i, tg := range r.Targets {
		if tg.Pass != wantPass[i] {
			t.Errorf("target %q: pass %v (%s), want %v", tg.Name, tg.Pass, tg.Detail, wantPass[i])
		}
	}
	if d := r.Targets[5].Detail; !strings.HasPrefix(d, "0 of 1 (1 more never fired literally)") {
		t.Errorf("3× surge target detail %q: want merchant 10 counted apart", d)
	}
	if len(r.ControlsAbove) != 1 || r.ControlsAbove[0].Merchant != 6 || r.ControlsAbove[0].Best != "P2" || r.ControlsAbove[0].Scenario != "batch_refunds" {
		t.Errorf("controls above P3: %+v", r.ControlsAbove)
	}
	var never *Incident
	for i := range r.Incidents {
		if r.Incidents[i].Merchant == 4 {
			never = &r.Incidents[i]
		}
	}
	if never == nil || never.FirstLiteral != nil || never.Best != "" {
		t.Errorf("the 1.5× surge that never fired: %+v", never)
	}
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"P1-P2", "bust_out", "+3m", "FAIL", "P2 +4m P1 +20m"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, b.String())
		}
	}
}

func TestScoreErrors(t *testing.T) {
	if _, err := Score(nil, nil, day, day); err == nil {
		t.Error("an empty range scored")
	}
	if _, err := Score(nil, []Transition{{State: "firing", Minute: "yesterday"}}, day, day.Add(time.Hour)); err == nil {
		t.Error("a bad minute accepted")
	}
	if _, err := Score(nil, []Transition{{State: "pending", Minute: day.Format(time.RFC3339)}}, day, day.Add(time.Hour)); err == nil {
		t.Error("an unknown state accepted")
	}
	if _, err := ParseTruth([]byte("{")); err == nil {
		t.Error("broken truth accepted")
	}
}

// An alert already open when an incident begins is the incident's from its
// first minute: its escalations are the incident's pages. One that
// resolved before is not.
func TestScoreAlertOpenBeforeTheIncident(t *testing.T) {
	truth := []Truth{
		{Scenario: "bust_out", Merchant: 11, Rule: spike, ShouldFire: true, From: tp(at(14, 30)), Factor: 0.6, Start: at(14, 30), DailyPayments: 20000},
		{Scenario: "bust_out", Merchant: 12, Rule: spike, ShouldFire: true, From: tp(at(14, 30)), Factor: 0.6, Start: at(14, 30), DailyPayments: 20000},
	}
	trs := []Transition{
		line(spike, 11, "firing", at(14, 0), "P3", "firing", "P3"),
		line(spike, 12, "firing", at(14, 0), "P3", "firing", "P3"),
		line(spike, 12, "resolved", at(14, 30), "P3", "resolved", "P3"),
		line(spike, 11, "escalated", at(14, 31), "P2", "escalated", "P2"),
		line(spike, 11, "escalated", at(14, 32), "P1", "escalated", "P1"),
	}
	r, err := Score(truth, trs, day, day.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]Incident{}
	for _, in := range r.Incidents {
		got[in.Merchant] = in
	}
	if in := got[11]; in.FirstLiteral == nil || !in.FirstLiteral.Equal(at(14, 30)) || in.FirstP2 == nil || !in.FirstP2.Equal(at(14, 31)) ||
		in.FirstP1 == nil || !in.FirstP1.Equal(at(14, 32)) || in.Best != "P1" {
		t.Errorf("open before the incident: %+v, want literal 14:30, P2 14:31, P1 14:32", in)
	}
	if in := got[12]; in.FirstLiteral != nil || in.Best != "" {
		t.Errorf("resolved as the incident began: %+v, want never fired", in)
	}
}

// A control that rises above P3 again and again is one control above P3,
// at the most urgent priority any of its alerts reached and from the first
// minute one reached P2.
func TestControlAboveP3CountsOnce(t *testing.T) {
	no := false
	truth := []Truth{{Scenario: "flash_sale", Merchant: 5, Rule: spike, Incident: &no, Start: at(9, 0)}}
	trs := []Transition{
		line(spike, 5, "firing", at(9, 10), "P2", "firing", "P2"),
		line(spike, 5, "resolved", at(9, 20), "P2", "resolved", "P2"),
		line(spike, 5, "firing", at(11, 0), "P3", "firing", "P3"),
		line(spike, 5, "escalated", at(11, 3), "P1", "escalated", "P1"),
		line(spike, 5, "resolved", at(11, 30), "P1", "resolved", "P1"),
		line(drop, 5, "firing", at(12, 0), "P2", "firing", "P2"),
	}
	r, err := Score(truth, trs, day, day.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ControlsAbove) != 2 {
		t.Fatalf("controls above P3: %+v, want merchant 5 once per rule", r.ControlsAbove)
	}
	c := r.ControlsAbove[0]
	if c.Merchant != 5 || c.Rule != spike || c.Best != "P1" || !c.FirstP2.Equal(at(9, 10)) || !c.FirstP1.Equal(at(11, 3)) || c.Scenario != "flash_sale" {
		t.Errorf("cancel_rate_spike entry %+v (P2 %v, P1 %v): want P1, first P2 09:10, first P1 11:03", c, c.FirstP2, c.FirstP1)
	}
	if d := r.ControlsAbove[1]; d.Rule != drop || d.Best != "P2" || d.FirstP1 != nil {
		t.Errorf("volume_drop entry %+v: want P2 only", d)
	}
}
