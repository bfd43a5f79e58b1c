package rules

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/window"
)

// TestVolumeDayBoundarySeoul walks across midnight KST (15:00 UTC) by hand.
func TestVolumeDayBoundarySeoul(t *testing.T) {
	cal := seoul(t)
	p := DefaultVolumeDropParams()
	const id = 7
	at := func(s string) window.Minute { return minuteAt(t, s) }
	approved := func(m window.Minute, amount int64) window.Delta {
		return window.Delta{Key: window.Key{Merchant: id, Minute: m}, Agg: window.Agg{Approvals: 1, ApprovedAmount: amount}}
	}
	flat := func(perMinute int64) *Curve {
		c := &Curve{Sum7: perMinute * MinutesPerDay}
		for i := range c.PerMinute7 {
			c.PerMinute7[i] = perMinute
		}
		return c
	}
	mar10 := time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC)
	mar11 := time.Date(2024, 3, 11, 0, 0, 0, 0, time.UTC)

	// 14:58 UTC = 23:58 KST on March 10.
	s := NewState(Snapshot{LastClosed: at("2024-03-10T14:58:00Z")}, cal)
	day, needed := s.NeedsVolumeDay(at("2024-03-10T14:59:00Z"))
	if !needed || !day.Equal(mar10) {
		t.Fatalf("NeedsVolumeDay(23:59 KST) = %v, %v; want 2024-03-10, true (first use)", day, needed)
	}
	// 7 days × 1,000,000 KRW every minute: PerMinute7 = 7e6, Sum7 = 1440 × 7e6
	// = 10.08e9; 1e9 sold through 23:58.
	s.SetVolumeDay(VolumeDay{Day: mar10, Curves: map[int64]*Curve{id: flat(7_000_000)}, Today: map[int64]int64{id: 1_000_000_000}})
	if _, needed := s.NeedsVolumeDay(at("2024-03-10T14:59:00Z")); needed {
		t.Fatal("NeedsVolumeDay still true after SetVolumeDay")
	}
	s.Add(approved(at("2024-03-10T14:59:00Z"), 5_000_000))
	if err := s.Close(at("2024-03-10T14:59:00Z"), nil); err != nil {
		t.Fatal(err)
	}
	// 23:59 KST: t = 1439 + 1 = 1440 (the whole day), Prefix7 = Sum7 = 10.08e9,
	// expected 1.44e9, today 1e9 + 5e6 = 1,005,000,000 > 720e6 → no fire.
	ev := s.VolumeEvals(p, nil)
	want := VolumeResult{Large: true, Fires: false, DailyAvg: 1.44e9, Expected: 1.44e9, Today: 1_005_000_000, Drop: fptr(1 - 1005.0/1440)}
	checkVolume(t, "23:59 KST", ev, id, want)

	day, needed = s.NeedsVolumeDay(at("2024-03-10T15:00:00Z"))
	if !needed || !day.Equal(mar11) {
		t.Fatalf("NeedsVolumeDay(00:00 KST) = %v, %v; want 2024-03-11, true", day, needed)
	}
	if err := s.Close(at("2024-03-10T15:00:00Z"), nil); err == nil || !strings.Contains(err.Error(), "SetVolumeDay") {
		t.Fatalf("Close into a new day without its volume day: %v", err)
	}
	// New day: curve 6e6 per minute-of-day (Sum7 = 8.64e9); nothing sold yet.
	s.SetVolumeDay(VolumeDay{Day: mar11, Curves: map[int64]*Curve{id: flat(6_000_000)}})
	// LastClosed (23:59 on the 10th) is not in the new day: no curves apply.
	if ev := s.VolumeEvals(p, []int64{id}); len(ev) != 1 || ev[0].Large || ev[0].Fires {
		t.Fatalf("evaluation between SetVolumeDay and Close: %+v", ev)
	}
	s.Add(approved(at("2024-03-10T15:00:00Z"), 2_000_000))
	if err := s.Close(at("2024-03-10T15:00:00Z"), nil); err != nil {
		t.Fatal(err)
	}
	// 00:00 KST: t = 1, Prefix7 = 6e6, expected 6e6/7; today restarts at
	// 2e6 (the 1,005,000,000 of the 10th is gone). Guard: 6e6 < 5% of
	// 8.64e9 = 432e6 → no fire.
	checkVolume(t, "00:00 KST", s.VolumeEvals(p, nil), id, VolumeResult{
		Large: true, DailyAvg: 8.64e9 / 7, Expected: 6e6 / 7, Today: 2_000_000, Drop: fptr(1 - 2e6/(6e6/7)),
	})

	// Late deltas after midnight:
	s.Add(approved(at("2024-03-10T14:30:00Z"), 70_000_000)) // 23:30 KST on the 10th = D−1, minute-of-day 1410
	s.Add(approved(at("2024-03-03T15:00:00Z"), 1_000_000))  // 00:00 KST on the 4th = D−7, minute-of-day 0
	s.Add(approved(at("2024-03-03T14:59:00Z"), 9_000_000))  // 23:59 KST on the 3rd = D−8: outside the curve
	s.Add(approved(at("2024-03-10T15:00:00Z"), 3_000_000))  // today's closed 00:00: today
	// Sum7 = 8.64e9 + 7e7 + 1e6 = 8,711,000,000; Prefix7(1) = 6e6 + 1e6 = 7e6,
	// expected 1e6; today 2e6 + 3e6 = 5e6.
	checkVolume(t, "late deltas", s.VolumeEvals(p, nil), id, VolumeResult{
		Large: true, DailyAvg: 8.711e9 / 7, Expected: 1e6, Today: 5_000_000, Drop: fptr(1 - 5.0),
	})
	c := s.vol.curves[id]
	// prefix[1410] = 1e6 + 1410 × 6e6 = 8,461,000,000 (23:30 not yet in it);
	// prefix[1411] = 1e6 + 1411 × 6e6 + 7e7 = 8,537,000,000; prefix[1440] = Sum7.
	if c.prefix[1410] != 8_461_000_000 || c.prefix[1411] != 8_537_000_000 || c.prefix[1440] != 8_711_000_000 || c.sum7 != 8_711_000_000 {
		t.Fatalf("prefix[1410]=%d prefix[1411]=%d prefix[1440]=%d sum7=%d", c.prefix[1410], c.prefix[1411], c.prefix[1440], c.sum7)
	}
	if _, needed := s.NeedsVolumeDay(at("2024-03-10T15:01:00Z")); needed {
		t.Fatal("NeedsVolumeDay(00:01 KST) true within the loaded day")
	}
}

// TestMinuteOfDay pins t at both ends of the day in two zones.
func TestMinuteOfDay(t *testing.T) {
	seoulCal := seoul(t)
	tests := []struct {
		name string
		cal  window.Calendar
		m    string
		mod  int
		day  string
	}{
		{"14:59 UTC is 23:59 KST", seoulCal, "2024-03-10T14:59:00Z", 1439, "2024-03-10"},
		{"15:00 UTC is 00:00 KST next day", seoulCal, "2024-03-10T15:00:00Z", 0, "2024-03-11"},
		{"00:00 UTC is 09:00 KST", seoulCal, "2024-03-11T00:00:00Z", 540, "2024-03-11"},
		{"zero calendar is UTC", window.Calendar{}, "2024-03-10T23:59:00Z", 1439, "2024-03-10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewState(Snapshot{}, tt.cal)
			m := minuteAt(t, tt.m)
			day, _ := s.NeedsVolumeDay(m)
			if got := s.minuteOfDay(m); got != tt.mod || day.Format(time.DateOnly) != tt.day {
				t.Fatalf("minuteOfDay = %d, day %s; want %d, %s", got, day.Format(time.DateOnly), tt.mod, tt.day)
			}
		})
	}
}

func checkVolume(t *testing.T, when string, evals []VolumeEval, id int64, want VolumeResult) {
	t.Helper()
	for _, e := range evals {
		if e.Merchant != id {
			continue
		}
		g := e.VolumeResult
		if g.Large != want.Large || g.Fires != want.Fires || !near(g.DailyAvg, want.DailyAvg) ||
			!near(g.Expected, want.Expected) || g.Today != want.Today || !nearPtr(g.Drop, want.Drop) {
			t.Fatalf("%s: got %+v drop %v\nwant %+v drop %v", when, g, fmtPtr(g.Drop), want, fmtPtr(want.Drop))
		}
		return
	}
	t.Fatalf("%s: merchant %d not evaluated", when, id)
}

// TestVolumeImage: the loaded day comes back out of the state as it
// stands, late deltas included, and VolumeDay.Add applied to a copy gives
// the same day the live state reaches.
func TestVolumeImage(t *testing.T) {
	cal := seoul(t)
	at := func(s string) window.Minute { return minuteAt(t, s) }
	mar11 := time.Date(2024, 3, 11, 0, 0, 0, 0, time.UTC)
	flat := func(perMinute int64) *Curve {
		c := &Curve{Sum7: perMinute * MinutesPerDay}
		for i := range c.PerMinute7 {
			c.PerMinute7[i] = perMinute
		}
		for k := range c.PerDay {
			for q := range c.PerDay[k] {
				c.PerDay[k][q] = perMinute / 7 * 15
			}
		}
		return c
	}
	last := at("2024-03-11T00:00:00Z") // 09:00 KST on the 11th
	load := func() VolumeDay {
		return VolumeDay{Day: mar11, Curves: map[int64]*Curve{7: flat(7_000_000), 8: flat(14_000_000)}, Today: map[int64]int64{7: 500_000_000}}
	}
	s := NewState(Snapshot{LastClosed: last}, cal)
	if _, ok := s.Volume(); ok {
		t.Fatal("Volume() reported a day before one was loaded")
	}
	s.SetVolumeDay(load())
	got, ok := s.Volume()
	if !ok || !reflect.DeepEqual(got, load()) {
		t.Fatalf("Volume() right after SetVolumeDay = %v, %+v", ok, got.Today)
	}

	approved := func(m window.Minute, id, amount int64) window.Delta {
		return window.Delta{Key: window.Key{Merchant: id, Minute: m}, Agg: window.Agg{Approvals: 1, ApprovedAmount: amount}}
	}
	late := []struct {
		name   string
		m      string
		id     int64
		amount int64
	}{
		{"D−1 23:30 KST, minute-of-day 1410", "2024-03-10T14:30:00Z", 7, 70_000_000},
		{"D−7 00:00 KST, minute-of-day 0", "2024-03-03T15:00:00Z", 8, 1_000_000},
		{"D−8 23:59 KST: before the curves", "2024-03-03T14:59:00Z", 7, 9_000_000},
		{"today 08:59 KST, closed", "2024-03-10T23:59:00Z", 8, 3_000_000},
		{"today, a merchant without a curve", "2024-03-10T23:59:00Z", 9, 3_000_000},
		{"D−3, a merchant without a curve: the large set is fixed", "2024-03-08T03:00:00Z", 9, 90_000_000_000},
		{"D+1: after the day", "2024-03-11T15:00:00Z", 7, 4_000_000},
	}
	want := load()
	for _, d := range late {
		s.Add(approved(at(d.m), d.id, d.amount))
		want.Add(cal, at(d.m), d.id, d.amount)
	}
	// By hand: merchant 7 (flat 7e6: 15e6 a quarter each day, Sum7
	// 10.08e9) gains 70e6 at minute 1410 of D−1 (k = 6, quarter 94):
	// 77e6, 85e6, 10.15e9. Merchant 8 (flat 14e6: 30e6 a quarter, Sum7
	// 20.16e9) gains 1e6 at minute 0 of D−7 (k = 0, quarter 0) and 3e6
	// today.
	c7, c8 := want.Curves[7], want.Curves[8]
	if c7.PerMinute7[1410] != 77_000_000 || c7.PerDay[6][94] != 85_000_000 || c7.Sum7 != 10_150_000_000 ||
		c8.PerMinute7[0] != 15_000_000 || c8.PerDay[0][0] != 31_000_000 || c8.Sum7 != 20_161_000_000 ||
		want.Today[8] != 3_000_000 || want.Today[7] != 500_000_000 || len(want.Today) != 2 {
		t.Fatalf("after the late deltas: 7: %d %d %d; 8: %d %d %d; today %v",
			c7.PerMinute7[1410], c7.PerDay[6][94], c7.Sum7, c8.PerMinute7[0], c8.PerDay[0][0], c8.Sum7, want.Today)
	}
	if got, ok := s.Volume(); !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("the live state and Add disagree: today %v, want %v", got.Today, want.Today)
	}

	// A state built from a snapshot carrying the day holds it; one whose
	// day is not LastClosed+1's is left for the first close to load.
	if got, ok := NewState(Snapshot{LastClosed: last, Volume: &want}, cal).Volume(); !ok || !reflect.DeepEqual(got, want) {
		t.Fatal("NewState did not install the snapshot's volume day")
	}
	if _, ok := NewState(Snapshot{LastClosed: at("2024-03-11T15:00:00Z"), Volume: &want}, cal).Volume(); ok {
		t.Fatal("NewState installed a volume day that is not LastClosed+1's")
	}
}
