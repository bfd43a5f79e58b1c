package rules

import (
	"math"

	"github.com/riskwatch/riskwatch/internal/window"
)

// closedMinute is what the state keeps of one closed minute of the recent
// hours: only what later closes take out of it. When it leaves H its
// approvals and cancels move into B (with the canceled amount, and the
// cancels squared for the batch evidence); when it leaves the recent hours
// its approvals leave the two hours before H. Nothing else reads it, so
// the approved amount is dropped and the approvals are packed.
//
// At a 5,000 TPS peak most of the 100,000 merchants sell in every minute,
// and the state keeps 180 such minutes: as a map per minute that was 6 MiB
// a minute (BenchmarkPeakMinutes), most of the engine's heap after a long
// peak. Packed it is 12 bytes a merchant.
type closedMinute struct {
	// ids[i] had approvals[i] approvals in the minute. Everything done
	// with approvals is a sum, so a merchant may appear more than once
	// and the order is the bucket's.
	ids       []int64
	approvals []int32
	// late holds approvals added after the minute closed, and sums that
	// do not fit int32.
	late []idCount
	// cancels, per merchant with any (few): the square of a merchant's
	// cancels in the minute is needed, so they are kept summed.
	cancels map[int64]cancelSum
}

type idCount struct{ id, n int64 }

type cancelSum struct{ n, amount int64 }

// packMinute packs an open minute's bucket as it closes.
func packMinute(b bucket) *closedMinute {
	c := &closedMinute{ids: make([]int64, 0, len(b)), approvals: make([]int32, 0, len(b))}
	for id, a := range b {
		if a.Approvals != 0 {
			c.pack(id, a.Approvals)
		}
		c.addCancels(id, a)
	}
	return c
}

// pack adds n approvals of merchant id to the packed ones, or to late
// when n does not fit int32.
func (c *closedMinute) pack(id, n int64) {
	if n < math.MinInt32 || n > math.MaxInt32 {
		c.late = append(c.late, idCount{id, n})
		return
	}
	c.ids = append(c.ids, id)
	c.approvals = append(c.approvals, int32(n))
}

// add adds a late delta of merchant id and returns the merchant's cancels
// in the minute before it.
func (c *closedMinute) add(id int64, a window.Agg) (before int64) {
	if a.Approvals != 0 {
		c.late = append(c.late, idCount{id, a.Approvals})
	}
	return c.addCancels(id, a)
}

func (c *closedMinute) addCancels(id int64, a window.Agg) (before int64) {
	x := c.cancels[id]
	if a.Cancels == 0 && a.CanceledAmount == 0 {
		return x.n
	}
	if c.cancels == nil {
		c.cancels = make(map[int64]cancelSum)
	}
	c.cancels[id] = cancelSum{n: satAdd(x.n, a.Cancels), amount: satAdd(x.amount, a.CanceledAmount)}
	return x.n
}

// compact moves the late approvals that fit int32 into the packed ones,
// sized to hold them: a state built from a snapshot adds every closed minute's
// rows as late ones.
func (c *closedMinute) compact() {
	n := len(c.ids) + len(c.late)
	late := c.late
	c.ids = append(make([]int64, 0, n), c.ids...)
	c.approvals = append(make([]int32, 0, n), c.approvals...)
	c.late = nil
	for _, l := range late {
		c.pack(l.id, l.n)
	}
}

// eachApprovals calls f for every merchant's approvals in the minute, a
// merchant possibly more than once.
func (c *closedMinute) eachApprovals(f func(id, n int64)) {
	for i, id := range c.ids {
		f(id, int64(c.approvals[i]))
	}
	for _, l := range c.late {
		f(l.id, l.n)
	}
}
