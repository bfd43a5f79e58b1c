package sim

import (
	"math"
	"math/rand/v2"
)

// Salts separate the independent random streams derived from the seed, so
// that e.g. a scenario's extra payments never shift the draws of normal
// traffic.
const (
	saltMinute  = 0x6d696e757465 // per-minute main stream
	saltCancel  = 0x63616e63656c // per-payment cancel decision and shape
	saltDrop    = 0x64726f70     // per-payment scenario thinning
	saltFlood   = 0x666c6f6f64   // per-payment bust-out flood
	saltExtra   = 0x6578747261   // per-minute scenario extra payments
	saltFiller  = 0x66696c6c     // live filler traffic
	golden      = 0x9e3779b97f4a7c15
	splitmixM1  = 0xbf58476d1ce4e5b9
	splitmixM2  = 0x94d049bb133111eb
	twoTo53     = 1 << 53
	twoTo53Inv  = 1.0 / twoTo53
	twoPi       = 2 * math.Pi
	maxKnuthLam = 30
)

// splitmix is the SplitMix64 finaliser: a cheap, well-mixed bijection of
// 64-bit values, good enough to turn (seed, id) into independent streams.
func splitmix(z uint64) uint64 {
	z = (z ^ z>>30) * splitmixM1
	z = (z ^ z>>27) * splitmixM2
	return z ^ z>>31
}

// mix combines a seed, a salt and a key into a stream seed.
func mix(seed, salt, key uint64) uint64 {
	return splitmix(seed ^ splitmix(salt+golden) ^ splitmix(key*golden+salt))
}

// prng is SplitMix64: stateless to create (no allocation), used per payment
// where a full PCG would be overkill and the draw count varies.
type prng struct{ s uint64 }

func newPRNG(seed, salt, key uint64) prng { return prng{s: mix(seed, salt, key)} }

func (p *prng) next() uint64 {
	p.s += golden
	return splitmix(p.s)
}

// float is uniform in [0, 1).
func (p *prng) float() float64 { return float64(p.next()>>11) * twoTo53Inv }

// norm is standard normal (Box–Muller; one value per call keeps the stream
// position independent of earlier calls).
func (p *prng) norm() float64 {
	u1 := 1 - p.float() // (0, 1]
	u2 := p.float()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(twoPi*u2)
}

// minuteRand is the per-minute main stream: a PCG seeded from (seed, minute)
// and reused across minutes by one goroutine to avoid allocations.
type minuteRand struct {
	pcg rand.PCG
	r   *rand.Rand
}

func newMinuteRand() *minuteRand {
	mr := &minuteRand{}
	mr.r = rand.New(&mr.pcg)
	return mr
}

func (mr *minuteRand) seed(seed, salt, key uint64) *rand.Rand {
	mr.pcg.Seed(mix(seed, salt, key), mix(seed, salt^golden, key))
	return mr.r
}

// poisson draws from Poisson(lambda): Knuth's product method for small
// means, the normal approximation (continuity-corrected) above, where its
// error is far below what anything here can see.
func poisson(r *rand.Rand, lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	if lambda < maxKnuthLam {
		l := math.Exp(-lambda)
		k, p := 0, 1.0
		for {
			p *= r.Float64()
			if p <= l {
				return k
			}
			k++
		}
	}
	n := math.Floor(lambda + math.Sqrt(lambda)*r.NormFloat64() + 0.5)
	if n < 0 {
		return 0
	}
	return int(n)
}

// round100 rounds a KRW amount to 100 KRW, at least 100 and at most
// maxAmount (a card payment limit; keeps the log-normal tail sane).
func round100(x float64) int64 {
	if !(x < maxAmount) { // also catches NaN and +Inf
		return maxAmount
	}
	v := int64(math.Round(x/100)) * 100
	return max(v, 100)
}

const maxAmount = 50_000_000
