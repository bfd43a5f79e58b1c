package rules

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/riskwatch/riskwatch/internal/window"
)

// Rule scenarios in testdata/scenarios/*.yaml read like promtool's rule
// tests: input_series describe stored minutes, alert_rule_test lists, per
// evaluation minute, the exact set of firing alerts (exp_alerts) and any other
// evaluations to check (exp_evaluations). The harness rebuilds State from a
// snapshot taken just before start, then closes every minute from start to
// the last eval_time the way the pipeline does: add the deltas that arrive,
// load the volume day when a day begins, close with the leaving minute read
// from the stored rows, evaluate. Merchants that fired earlier in the
// scenario are passed as open alerts (also), as the alert lifecycle would.
type scenario struct {
	Name     string        `yaml:"name"`
	Timezone string        `yaml:"timezone"`
	Start    time.Time     `yaml:"start"`
	Params   scenarioParam `yaml:"params"`
	Series   []series      `yaml:"input_series"`
	Tests    []evalTest    `yaml:"alert_rule_test"`
}

// scenarioParam overrides defaults; ratios are written as decimals.
type scenarioParam struct {
	CancelRateSpike struct {
		MinBaselineApprovals *int64 `yaml:"min_baseline_approvals"`
		BaselineFloor        string `yaml:"baseline_floor"`
		MinCancels           *int64 `yaml:"min_cancels"`
		Multiplier           string `yaml:"multiplier"`
		MinApprovals         *int64 `yaml:"min_approvals"`
	} `yaml:"cancel_rate_spike"`
	VolumeDrop struct {
		LargeDailyAmount    *int64 `yaml:"large_daily_amount"`
		MinExpectedFraction string `yaml:"min_expected_fraction"`
		DropRatio           string `yaml:"drop_ratio"`
	} `yaml:"volume_drop"`
}

// series puts the same aggregate in every minute from..to (inclusive),
// optionally only every N minutes counted from `from`, only between two
// wall-clock times of each day, and arriving late (just before `arrives`
// closes) instead of on time.
type series struct {
	Merchant       int64      `yaml:"merchant"`
	From           time.Time  `yaml:"from"`
	To             time.Time  `yaml:"to"`
	Every          string     `yaml:"every"`
	Between        []string   `yaml:"between"`
	Approvals      int64      `yaml:"approvals"`
	ApprovedAmount int64      `yaml:"approved_amount"`
	Cancels        int64      `yaml:"cancels"`
	CanceledAmount int64      `yaml:"canceled_amount"`
	Arrives        *time.Time `yaml:"arrives"`
}

type evalTest struct {
	EvalTime       time.Time `yaml:"eval_time"`
	ExpAlerts      []expEval `yaml:"exp_alerts"`
	ExpEvaluations []expEval `yaml:"exp_evaluations"`
}

type expEval struct {
	Rule     string         `yaml:"rule"`
	Merchant int64          `yaml:"merchant"`
	Fires    *bool          `yaml:"fires"`
	Absent   bool           `yaml:"absent"` // not evaluated at all
	Values   map[string]any `yaml:"values"`
}

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("scenario files: %v, %v", files, err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var sc scenario
			dec := yaml.NewDecoder(strings.NewReader(string(data)))
			dec.KnownFields(true)
			if err := dec.Decode(&sc); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			runScenario(t, sc)
		})
	}
}

func (p scenarioParam) resolve(t *testing.T) (CancelRateParams, VolumeDropParams) {
	t.Helper()
	cp, vp := DefaultCancelRateParams(), DefaultVolumeDropParams()
	ratio := func(s string, dst *Ratio) {
		if s == "" {
			return
		}
		r, err := ParseRatio(s)
		if err != nil {
			t.Fatal(err)
		}
		*dst = r
	}
	c := p.CancelRateSpike
	if c.MinBaselineApprovals != nil {
		cp.MinBaselineApprovals = *c.MinBaselineApprovals
	}
	if c.MinCancels != nil {
		cp.MinCancels = *c.MinCancels
	}
	if c.MinApprovals != nil {
		cp.MinApprovals = *c.MinApprovals
	}
	ratio(c.BaselineFloor, &cp.BaselineFloor)
	ratio(c.Multiplier, &cp.Multiplier)
	v := p.VolumeDrop
	if v.LargeDailyAmount != nil {
		vp.LargeDailyAmount = *v.LargeDailyAmount
	}
	ratio(v.MinExpectedFraction, &vp.MinExpectedFraction)
	ratio(v.DropRatio, &vp.DropRatio)
	return cp, vp
}

// expand turns the series into deltas, each with the minute before whose
// Close it is applied.
func (s series) expand(t *testing.T, loc *time.Location) (ds []window.Delta, arrive []window.Minute) {
	t.Helper()
	every := time.Minute
	if s.Every != "" {
		var err error
		if every, err = time.ParseDuration(s.Every); err != nil || every%time.Minute != 0 || every <= 0 {
			t.Fatalf("series of %d: every %q: want whole minutes", s.Merchant, s.Every)
		}
	}
	lo, hi := 0, 1439
	if len(s.Between) == 2 {
		lo, hi = wallMinute(t, s.Between[0]), wallMinute(t, s.Between[1])
	} else if len(s.Between) != 0 {
		t.Fatalf("series of %d: between wants two HH:MM", s.Merchant)
	}
	from, to := window.MinuteOf(s.From), window.MinuteOf(s.To)
	if to < from {
		t.Fatalf("series of %d: to before from", s.Merchant)
	}
	step := window.Minute(every / time.Minute)
	for m := from; m <= to; m += step {
		w := m.Start().In(loc)
		if mod := w.Hour()*60 + w.Minute(); mod < lo || mod > hi {
			continue
		}
		ds = append(ds, window.Delta{
			Key: window.Key{Merchant: s.Merchant, Minute: m},
			Agg: window.Agg{Approvals: s.Approvals, ApprovedAmount: s.ApprovedAmount, Cancels: s.Cancels, CanceledAmount: s.CanceledAmount},
		})
		a := m
		if s.Arrives != nil {
			if a = window.MinuteOf(*s.Arrives); a <= m {
				t.Fatalf("series of %d: arrives %s is not after minute %s", s.Merchant, a, m)
			}
		}
		arrive = append(arrive, a)
	}
	return ds, arrive
}

func wallMinute(t *testing.T, s string) int {
	t.Helper()
	hm, err := time.Parse("15:04", s)
	if err != nil {
		t.Fatalf("wall-clock time %q: %v", s, err)
	}
	return hm.Hour()*60 + hm.Minute()
}

func runScenario(t *testing.T, sc scenario) {
	loc, err := time.LoadLocation(sc.Timezone)
	if err != nil {
		t.Fatal(err)
	}
	cal := window.NewCalendar(loc)
	cp, vp := sc.Params.resolve(t)
	start := window.MinuteOf(sc.Start)
	if len(sc.Tests) == 0 {
		t.Fatal("no alert_rule_test")
	}
	tests := map[window.Minute]evalTest{}
	end := start
	for _, et := range sc.Tests {
		m := window.MinuteOf(et.EvalTime)
		if m < start || !m.Start().Equal(et.EvalTime) {
			t.Fatalf("eval_time %s: want the start of a minute at or after start", et.EvalTime)
		}
		if _, dup := tests[m]; dup {
			t.Fatalf("eval_time %s listed twice", et.EvalTime)
		}
		tests[m] = et
		end = max(end, m)
	}

	sink := newFakeSink(cal)
	arrivals := map[window.Minute][]window.Delta{}
	for _, s := range sc.Series {
		ds, arrive := s.expand(t, loc)
		for i, d := range ds {
			if arrive[i] < start {
				sink.add(d) // stored before the snapshot
			} else {
				arrivals[arrive[i]] = append(arrivals[arrive[i]], d)
			}
		}
	}
	state := NewState(sink.snapshot(start-1, 0), cal)
	openAlerts := map[string][]int64{}
	for m := start; m <= end; m++ {
		for _, d := range arrivals[m] {
			sink.add(d)
			state.Add(d)
		}
		if day, needed := state.NeedsVolumeDay(m); needed {
			state.SetVolumeDay(sink.volumeDay(day, state.LastClosed(), vp.LargeDailyAmount))
		}
		if err := state.Close(m, sink.minute(LeavingMinute(m))); err != nil {
			t.Fatal(err)
		}
		evals := map[string]map[int64]any{CancelRateSpike: {}, VolumeDrop: {}}
		var firing []string
		for _, e := range state.CancelEvals(cp, openAlerts[CancelRateSpike]) {
			evals[CancelRateSpike][e.Merchant] = e.CancelResult
			if e.Fires {
				firing = append(firing, fmt.Sprintf("%s/%d", CancelRateSpike, e.Merchant))
			}
		}
		for _, e := range state.VolumeEvals(vp, openAlerts[VolumeDrop]) {
			evals[VolumeDrop][e.Merchant] = e.VolumeResult
			if e.Fires {
				firing = append(firing, fmt.Sprintf("%s/%d", VolumeDrop, e.Merchant))
			}
		}
		for _, f := range firing {
			rule, id, _ := strings.Cut(f, "/")
			var n int64
			fmt.Sscan(id, &n)
			if !slices.Contains(openAlerts[rule], n) {
				openAlerts[rule] = append(openAlerts[rule], n)
			}
		}
		et, ok := tests[m]
		if !ok {
			continue
		}
		at := m.Start().In(loc).Format("2006-01-02T15:04")
		var want []string
		for _, e := range et.ExpAlerts {
			want = append(want, fmt.Sprintf("%s/%d", e.Rule, e.Merchant))
			checkEval(t, at, e, evals, true)
		}
		slices.Sort(want)
		slices.Sort(firing)
		if !slices.Equal(firing, want) {
			t.Errorf("%s: firing %v, want %v", at, firing, want)
		}
		for _, e := range et.ExpEvaluations {
			checkEval(t, at, e, evals, false)
		}
	}
}

// checkEval compares one evaluation with its expectation. Values written in
// a scenario are rounded by hand, so floats match to 6 significant digits.
func checkEval(t *testing.T, at string, e expEval, evals map[string]map[int64]any, alert bool) {
	t.Helper()
	byID, ok := evals[e.Rule]
	if !ok {
		t.Fatalf("%s: unknown rule %q", at, e.Rule)
	}
	got, ok := byID[e.Merchant]
	if e.Absent {
		if ok {
			t.Errorf("%s: %s/%d evaluated, want absent", at, e.Rule, e.Merchant)
		}
		return
	}
	if !ok {
		t.Errorf("%s: %s/%d not evaluated", at, e.Rule, e.Merchant)
		return
	}
	var fields map[string]any
	var fires bool
	switch r := got.(type) {
	case CancelResult:
		fires = r.Fires
		fields = map[string]any{
			"a_h": r.AH, "c_h": r.CH, "a_b": r.AB, "c_b": r.CB, "rate_h": r.RateH, "ratio": r.Ratio,
			"baseline": r.Baseline, "baseline_source": r.BaselineSource, "effective": r.Effective,
		}
	case VolumeResult:
		fires = r.Fires
		fields = map[string]any{
			"large": r.Large, "daily_avg": r.DailyAvg, "expected": r.Expected, "today": r.Today, "drop": r.Drop,
		}
	}
	if e.Fires != nil && *e.Fires != fires && !alert {
		t.Errorf("%s: %s/%d fires %v, want %v", at, e.Rule, e.Merchant, fires, *e.Fires)
	}
	for k, want := range e.Values {
		g, ok := fields[k]
		if !ok {
			t.Fatalf("%s: %s/%d: unknown value %q", at, e.Rule, e.Merchant, k)
		}
		if !sameValue(g, want) {
			t.Errorf("%s: %s/%d %s = %v, want %v", at, e.Rule, e.Merchant, k, show(g), want)
		}
	}
}

func show(v any) any {
	if p, ok := v.(*float64); ok {
		return fmtPtr(p)
	}
	return v
}

func sameValue(got, want any) bool {
	if p, ok := got.(*float64); ok {
		if p == nil || want == nil {
			return p == nil && want == nil
		}
		got = *p
	}
	switch g := got.(type) {
	case int64:
		w, ok := want.(int)
		return ok && int64(w) == g
	case float64:
		var w float64
		switch x := want.(type) {
		case int:
			w = float64(x)
		case float64:
			w = x
		default:
			return false
		}
		return g == w || math.Abs(g-w) <= 1e-6*math.Max(math.Abs(g), math.Abs(w))
	default:
		return got == want
	}
}
