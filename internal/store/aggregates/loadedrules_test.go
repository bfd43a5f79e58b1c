package aggregates

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/event"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/window"
)

// TestLoadedRulesEqualReadingTheWeek: the rules state the loader sums as a
// first snapshot's rows pass is the state reading the loaded tables back
// gives, field for field — in a zone with whole hours and one with half
// hours, with a week-long exposure window, a short one and none, for
// minutes given as numbers and as text (alternate days), with minutes on
// every edge of the windows and open minutes after the last closed one.
// When rows are added after the load, the loader has no state to give.
func TestLoadedRulesEqualReadingTheWeek(t *testing.T) {
	t.Parallel()
	x := minute(t, "2026-11-20T07:37:00Z")
	eachZoneAndWindow(t, func(t *testing.T, loc *time.Location, expo int) {
		s := openStore(t, loc)
		rng := rand.New(rand.NewPCG(uint64(expo), 7))
		sums := map[window.Key]window.Agg{}
		point := func(merchant int64, m window.Minute) {
			a := window.Agg{Approvals: rng.Int64N(4), Cancels: rng.Int64N(3)}
			if a.Approvals == 0 && a.Cancels == 0 {
				a.Cancels = 1
			}
			a.ApprovedAmount, a.CanceledAmount = a.Approvals*(1000+rng.Int64N(9000)), a.Cancels*700
			k := window.Key{Merchant: merchant, Minute: m}
			cur := sums[k]
			cur.Add(a)
			sums[k] = cur
		}
		lo := x - rules.BaselineMinutes - rules.HourMinutes - 300
		for range 6000 {
			point(1+rng.Int64N(40), lo+window.Minute(rng.Int64N(int64(x+5-lo))))
		}
		for _, off := range []window.Minute{-10200, -10141, -10140, -10139, -10138, -10080, -4000, -180, -179, -151, -150, -149, -61, -60, -59, -1, 0, 1, 4} {
			for m := int64(1); m <= 4; m++ {
				point(m*7, x+off)
			}
		}
		got, ok := bootstrapLoaded(t, s, x, expo, sums, nil)
		if !ok {
			t.Fatal("the loader summed no rules state")
		}
		want, err := s.RulesSnapshot(context.Background(), x, true, expo)
		if err != nil {
			t.Fatal(err)
		}
		if len(want.Baseline) < 30 || len(want.Recent) < 20 || len(want.HourOfDay) < 200 || (expo > 0) != (len(want.Exposure) > 0) {
			t.Fatalf("too little state to compare: %d baseline, %d recent, %d hour of day, %d exposure",
				len(want.Baseline), len(want.Recent), len(want.HourOfDay), len(want.Exposure))
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("summed while loading:\n%s\nread back:\n%s", describe(got), describe(want))
		}

		// A left-out row added after the load: no state from the loader.
		s2 := openStore(t, loc)
		extra := event.Event{Merchant: 5, Kind: event.Approval, Amount: 10, TimeUS: (x - 3).Start().UnixMicro()}
		if _, ok := bootstrapLoaded(t, s2, x, expo, sums, &extra); ok {
			t.Error("the loader gave a rules state that misses the rows added after the load")
		}
	})
}

// eachZoneAndWindow runs f in parallel subtests: in a zone with whole
// hours and one with half hours, each with a week-long exposure window, a
// short one and none.
func eachZoneAndWindow(t *testing.T, f func(t *testing.T, loc *time.Location, expo int)) {
	for _, zone := range []string{"Asia/Seoul", "Asia/Kolkata"} {
		for _, expo := range []int{rules.BaselineMinutes, 150, 0} {
			t.Run(zone+"/"+time.Duration(expo*int(time.Minute)).String(), func(t *testing.T) {
				t.Parallel()
				loc, err := time.LoadLocation(zone)
				if err != nil {
					t.Fatal(err)
				}
				f(t, loc, expo)
			})
		}
	}
}

// bootstrapLoaded loads sums as a first snapshot with last closed minute
// x, a business day per call (odd days as numbers, even days as text),
// adds extra as a left-out row when given, and returns what the loader
// summed for the rules.
func bootstrapLoaded(t *testing.T, s *Store, x window.Minute, expo int, sums map[window.Key]window.Agg, extra *event.Event) (rules.Snapshot, bool) {
	t.Helper()
	byDay := map[time.Time][]window.Key{}
	for k := range sums {
		d := s.cal.Day(k.Minute)
		byDay[d] = append(byDay[d], k)
	}
	days := slices.SortedFunc(maps.Keys(byDay), time.Time.Compare)
	var loader *Loader
	cp := Checkpoint{Slot: "loaded", Position: "0/1", LastClosed: x, Progress: x.End()}
	err := s.Bootstrap(context.Background(), cp, func(ctx context.Context, l *Loader) error {
		loader = l
		l.SumRules(expo)
		for i, d := range days {
			keys := byDay[d]
			slices.SortFunc(keys, func(a, b window.Key) int {
				if a.Minute != b.Minute {
					return int(a.Minute - b.Minute)
				}
				return int(a.Merchant - b.Merchant)
			})
			if _, err := l.CopyMinutes(ctx, func(w *MinuteWriter) error {
				for _, k := range keys {
					a := sums[k]
					if i%2 == 1 {
						if err := w.Sums(k.Merchant, k.Minute, a); err != nil {
							return err
						}
						continue
					}
					if _, err := fmt.Fprintf(w, "%d\t%s\t%d\t%d\t%d\t%d\n", k.Merchant, k.Minute.Start().Format("2006-01-02 15:04:05+00"),
						a.Approvals, a.ApprovedAmount, a.Cancels, a.CanceledAmount); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		if extra != nil {
			if _, err := l.Leftovers(ctx, &event.Output{Events: []event.Event{*extra}}); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return loader.LoadedRules()
}

func describe(s rules.Snapshot) string {
	return fmt.Sprintf("last %s expo %d: %d recent %v…\n%d baseline %v…\n%d hour of day %v…\n%d today %v…\n%d exposure %v…",
		s.LastClosed, s.ExposureMinutes, len(s.Recent), head(s.Recent), len(s.Baseline), head(s.Baseline),
		len(s.HourOfDay), head(s.HourOfDay), len(s.Today), head(s.Today), len(s.Exposure), head(s.Exposure))
}

func head[T any](s []T) []T { return s[:min(len(s), 3)] }
