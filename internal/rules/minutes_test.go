package rules

import (
	"math"
	"testing"

	"github.com/riskwatch/riskwatch/internal/window"
)

// TestClosedMinutePacking: whatever the bucket holds, the packed minute
// gives each merchant the same approvals (summed over its entries) and the
// same cancels, and late deltas add to them.
func TestClosedMinutePacking(t *testing.T) {
	cases := []struct {
		name   string
		bucket bucket
		late   []window.Delta
	}{
		{"empty", bucket{}, nil},
		{"approvals only", bucket{1: {Approvals: 3, ApprovedAmount: 30}}, nil},
		{"cancels only", bucket{2: {Cancels: 2, CanceledAmount: 500}}, nil},
		{"canceled amount without cancels", bucket{2: {CanceledAmount: 7}}, nil},
		{"int32 edges", bucket{
			1: {Approvals: math.MaxInt32}, 2: {Approvals: math.MaxInt32 + 1},
			3: {Approvals: math.MinInt32}, 4: {Approvals: math.MinInt32 - 1}, 5: {Approvals: math.MaxInt64, Cancels: math.MaxInt64},
		}, nil},
		{"late into packed and new merchants", bucket{1: {Approvals: 5, Cancels: 1, CanceledAmount: 10}, 2: {Approvals: 1}},
			[]window.Delta{
				{Key: window.Key{Merchant: 1}, Agg: window.Agg{Approvals: 2, Cancels: 2, CanceledAmount: 20}},
				{Key: window.Key{Merchant: 3}, Agg: window.Agg{Cancels: 1, CanceledAmount: 5}},
				{Key: window.Key{Merchant: 3}, Agg: window.Agg{Approvals: math.MaxInt32 + 5}},
				{Key: window.Key{Merchant: 1}, Agg: window.Agg{Cancels: 1}},
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := map[int64]window.Agg{}
			for id, a := range tc.bucket {
				want[id] = a
			}
			c := packMinute(tc.bucket)
			for i, d := range tc.late {
				if i == len(tc.late)/2 {
					c.compact() // as a state built from a snapshot does
				}
				w := want[d.Merchant]
				if before := c.add(d.Merchant, d.Agg); before != w.Cancels {
					t.Errorf("late delta of %d: cancels before %d, want %d", d.Merchant, before, w.Cancels)
				}
				w.Approvals += d.Approvals
				w.Cancels += d.Cancels
				w.CanceledAmount += d.CanceledAmount
				want[d.Merchant] = w
			}
			got := map[int64]window.Agg{}
			c.eachApprovals(func(id, n int64) {
				g := got[id]
				g.Approvals += n
				got[id] = g
			})
			for id, x := range c.cancels {
				g := got[id]
				g.Cancels, g.CanceledAmount = x.n, x.amount
				got[id] = g
			}
			for id, w := range want {
				w.ApprovedAmount = 0 // not kept: nothing reads it after the close
				if got[id] != w {
					t.Errorf("merchant %d: %+v, want %+v", id, got[id], w)
				}
				delete(got, id)
			}
			for id, g := range got {
				if !g.IsZero() {
					t.Errorf("merchant %d not in the bucket: %+v", id, g)
				}
			}
		})
	}
}
