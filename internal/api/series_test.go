package api

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store/dashboard"
	"github.com/riskwatch/riskwatch/internal/window"
)

func TestMinuteSums(t *testing.T) {
	lo := window.Minute(1000)
	pts := []dashboard.Point{
		{At: (lo - 1).Start(), Agg: window.Agg{Approvals: 100}}, // before the range: ignored
		{At: lo.Start(), Agg: window.Agg{Approvals: 1, Cancels: 1}},
		{At: (lo + 2).Start(), Agg: window.Agg{Approvals: 2}},
		{At: (lo + 2).Start(), Agg: window.Agg{Cancels: 5}}, // same minute twice adds up
		{At: (lo + 4).Start(), Agg: window.Agg{Approvals: 4}},
		{At: (lo + 5).Start(), Agg: window.Agg{Approvals: 100}}, // at hi: ignored
	}
	s := newMinuteSums(lo, lo+5, pts)
	for _, c := range []struct {
		name     string
		from, to window.Minute
		a, c     int64
	}{
		{"all", lo, lo + 5, 7, 6},
		{"clipped both sides", lo - 50, lo + 50, 7, 6},
		{"one minute", lo + 2, lo + 3, 2, 5},
		{"empty", lo + 3, lo + 3, 0, 0},
		{"reversed", lo + 4, lo + 1, 0, 0},
		{"entirely before", lo - 10, lo - 1, 0, 0},
		{"entirely after", lo + 6, lo + 9, 0, 0},
		{"tail", lo + 3, lo + 99, 4, 0},
	} {
		if a, cc := s.sum(c.from, c.to); a != c.a || cc != c.c {
			t.Errorf("%s: sum = %d, %d; want %d, %d", c.name, a, cc, c.a, c.c)
		}
	}
}

// TestCancelLinesPlatformBaseline: a merchant below min_baseline_approvals
// is drawn against the platform's 7-day rate, as the rule judges it, and a
// minute not yet closed has no values.
func TestCancelLinesPlatformBaseline(t *testing.T) {
	p := rules.DefaultCancelRateParams()
	m := window.Minute(50_000)
	lo := m - rules.HourMinutes + 1 - rules.BaselineMinutes
	merchant := newMinuteSums(lo, m+2, []dashboard.Point{
		{At: (m - 100).Start(), Agg: window.Agg{Approvals: 10}},            // B: 10 approvals, too few
		{At: (m - 10).Start(), Agg: window.Agg{Approvals: 40, Cancels: 4}}, // H
	})
	platform := newMinuteSums(lo, m+2, []dashboard.Point{
		{At: (m - 100).Start(), Agg: window.Agg{Approvals: 1000, Cancels: 30}}, // 3%
	})
	got := cancelLines(p, time.UTC, merchant, platform, []window.Minute{m, m + 1}, m)
	if got[0].Source != rules.BaselinePlatform || *got[0].Effective != 0.03 || *got[0].AlertLine != 0.06 || *got[0].RateH != 0.1 {
		t.Fatalf("at m: %+v (eff %v line %v rate %v)", got[0], *got[0].Effective, *got[0].AlertLine, *got[0].RateH)
	}
	if got[0].SameHour != nil {
		t.Fatalf("a same-hour rate from 10 approvals: %v", *got[0].SameHour)
	}
	if got[1] != (ratePoint{}) {
		t.Fatalf("a minute after the last closed one has values: %+v", got[1])
	}
}

// TestCancelLinesSameHour: the same-hour-of-day line weighs the two
// business hours H spans by its minutes in each, in the business zone
// (Kolkata's hours start at half past UTC ones).
func TestCancelLinesSameHour(t *testing.T) {
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	p := rules.DefaultCancelRateParams()
	at := func(d, h, mi int) window.Minute { return window.MinuteOf(time.Date(2026, 11, d, h, mi, 0, 0, kolkata)) }
	m := at(20, 3, 29) // H = 02:30 … 03:29: half of hour 2, half of hour 3
	lo := m - rules.HourMinutes + 1 - rules.BaselineMinutes
	merchant := newMinuteSums(lo, m+1, []dashboard.Point{
		{At: at(19, 2, 10).Start(), Agg: window.Agg{Approvals: 1000, Cancels: 20}},
		{At: at(19, 3, 10).Start(), Agg: window.Agg{Approvals: 1000, Cancels: 60}},
		{At: at(19, 5, 10).Start(), Agg: window.Agg{Approvals: 5000}},
		{At: at(20, 3, 0).Start(), Agg: window.Agg{Approvals: 30, Cancels: 6}},
	})
	platform := newMinuteSums(lo, m+1, nil)
	got := cancelLines(p, kolkata, merchant, platform, []window.Minute{m}, m)[0]
	// Same hours: (½·20 + ½·60) / (½·1000 + ½·1000) = 0.04; the 7 days:
	// 80 / 7000.
	if got.SameHour == nil || math.Abs(*got.SameHour-0.04) > 1e-12 {
		t.Fatalf("same-hour rate %v, want 0.04", fmt.Sprint(derefOr(got.SameHour)))
	}
	if math.Abs(*got.Effective-80.0/7000) > 1e-12 || got.Source != rules.BaselineMerchant {
		t.Fatalf("7-day rate %v (%s), want 80/7000 (merchant)", *got.Effective, got.Source)
	}
	// In UTC the same data falls in other hours of the day.
	utc := cancelLines(p, time.UTC, merchant, platform, []window.Minute{m}, m)[0]
	if utc.SameHour != nil && math.Abs(*utc.SameHour-0.04) < 1e-9 {
		t.Fatal("the business zone made no difference")
	}
}

// TestVolumeCurvesDST: on a 25-hour day (New York, 2026-11-01) the repeated
// 01:xx hour adds the week's minutes once, as the rule's minute-of-day does.
func TestVolumeCurvesDST(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	p := rules.DefaultVolumeDropParams()
	p.LargeDailyAmount = 100
	day := time.Date(2026, 11, 1, 0, 0, 0, 0, ny)
	var pts []dashboard.Point
	for d := 1; d <= 7; d++ {
		pts = append(pts, dashboard.Point{At: time.Date(2026, 11, 1-d, 1, 30, 0, 0, ny), Agg: window.Agg{ApprovedAmount: 700}})
	}
	// Today: 100 at the first 01:30 (EDT) and 100 at the second (EST).
	first := time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC)
	pts = append(pts, dashboard.Point{At: first, Agg: window.Agg{ApprovedAmount: 100}}, dashboard.Point{At: first.Add(time.Hour), Agg: window.Agg{ApprovedAmount: 100}})
	c := volumeCurves(p, ny, day, 7*700, pts, window.MinuteOf(first.Add(time.Hour)))
	if len(c.Starts) != 25*60 || !c.Large || c.DailyAvg != 700 {
		t.Fatalf("%d points, large %v, avg %v", len(c.Starts), c.Large, c.DailyAvg)
	}
	i1 := 90      // 01:30 EDT
	i2 := 90 + 60 // 01:30 EST
	if c.Expected[i1-1] != 0 || c.Expected[i1] != 700 || c.Expected[i2] != 700 || c.Expected[len(c.Expected)-1] != 700 {
		t.Errorf("expected around the repeated hour: %v %v %v", c.Expected[i1-1], c.Expected[i1], c.Expected[i2])
	}
	if *c.Today[i1] != 100 || *c.Today[i2] != 200 || c.Today[i2+1] != nil || c.AlertLine[i1] != 350 {
		t.Errorf("today %v %v, after last closed %v, line %v", *c.Today[i1], *c.Today[i2], c.Today[i2+1], c.AlertLine[i1])
	}
}

func derefOr(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
