package sim

import (
	"math"
	"testing"
	"time"
)

// TestDiurnalShape: mean 1; night (02:30–05:30) below 0.3; the lunch peak
// (12:00–13:00) and the evening peak (19:00–22:00) above 1.5, and the
// quiet hours the quietest.
func TestDiurnalShape(t *testing.T) {
	var sum float64
	for m := range MinutesPerDay {
		sum += Diurnal(m)
	}
	if math.Abs(sum/MinutesPerDay-1) > 1e-12 {
		t.Errorf("mean %v, want 1", sum/MinutesPerDay)
	}
	peak := func(lo, hi int) (mx float64) {
		for m := lo; m < hi; m++ {
			mx = max(mx, Diurnal(m))
		}
		return mx
	}
	if n := peak(150, 330); n >= 0.3 {
		t.Errorf("night max %.3f, want < 0.3", n)
	}
	if l := peak(12*60, 13*60); l <= 1.5 {
		t.Errorf("lunch peak %.3f, want > 1.5", l)
	}
	if e := peak(19*60, 22*60); e <= 1.5 {
		t.Errorf("evening peak %.3f, want > 1.5", e)
	}
	if m := peak(9*60, 10*60); m >= peak(12*60, 13*60) || m <= peak(150, 330) {
		t.Errorf("morning %.3f should lie between night and lunch", m)
	}
	if Diurnal(-1) != Diurnal(MinutesPerDay-1) || Diurnal(MinutesPerDay) != Diurnal(0) {
		t.Error("Diurnal does not wrap")
	}
	var ppm float64
	for m := range MinutesPerDay {
		ppm += PaymentsPerMinute(DefaultPaymentsPerDay, m)
	}
	if math.Abs(ppm-DefaultPaymentsPerDay) > 1e-3 {
		t.Errorf("PaymentsPerMinute sums to %v", ppm)
	}
	if DiurnalCumulative(0) != 0 || math.Abs(DiurnalCumulative(MinutesPerDay)-1) > 1e-12 {
		t.Error("cumulative curve ends")
	}
	t.Logf("night %.2f, 09h %.2f, lunch %.2f, evening %.2f; 5%% of the day reached at %d min",
		peak(150, 330), peak(9*60, 10*60), peak(12*60, 13*60), peak(19*60, 22*60), firstMinuteReaching(0.05))
}

func firstMinuteReaching(f float64) int {
	m := 0
	for DiurnalCumulative(m) < f {
		m++
	}
	return m
}

// TestBusinessClock: a business-clock delay is longer at night than at
// lunch, and the clock is monotonic.
func TestBusinessClock(t *testing.T) {
	g := newGen(t, Options{Seed: 1, Population: NewPopulation(1, 10)})
	loc := g.Location()
	night := time.Date(2026, 11, 20, 4, 0, 0, 0, loc)
	lunch := time.Date(2026, 11, 20, 12, 30, 0, 0, loc)
	dn := g.afterActivity(night, 20*time.Minute).Sub(night)
	dl := g.afterActivity(lunch, 20*time.Minute).Sub(lunch)
	if !(dn > 80*time.Minute && dl < 15*time.Minute) {
		t.Errorf("20 business minutes: %s at 04:00, %s at 12:30", dn, dl)
	}
	prev := night
	for i := range 3000 {
		at := night.Add(time.Duration(i) * time.Minute)
		got := g.afterActivity(at, time.Minute)
		if !got.After(prev) && i > 0 || !got.After(at) {
			t.Fatalf("not monotonic at %s: %s", at, got)
		}
		prev = got
	}
	// A whole business day is a whole wall-clock day.
	if d := g.afterActivity(lunch, 24*time.Hour).Sub(lunch); d < 24*time.Hour-time.Second || d > 24*time.Hour+time.Second {
		t.Errorf("a business day after lunch is %s", d)
	}
}
