package aggregates

import (
	"math"
	"testing"
)

// TestSlots: every key keeps the number it was first given, through the
// table's growth, whatever the key (zero, negative, the extremes, keys
// whose hashes collide in a small table).
func TestSlots(t *testing.T) {
	t.Parallel()
	s := newSlots(1)
	var keys []int64
	for i := int64(0); i < 3000; i++ {
		keys = append(keys, i, -i-1, i<<40, i*1024)
	}
	keys = append(keys, math.MaxInt64, math.MinInt64)
	want := map[int64]int32{}
	for _, k := range keys {
		next := int32(len(want))
		v, added := s.get(k, next)
		if w, seen := want[k]; seen {
			if added || v != w {
				t.Fatalf("key %d again: %d added=%v, want %d", k, v, added, w)
			}
			continue
		}
		if !added || v != next {
			t.Fatalf("new key %d: %d added=%v, want %d", k, v, added, next)
		}
		want[k] = next
	}
	if s.n != len(want) || 2*s.n > len(s.keys) {
		t.Fatalf("%d keys in a table of %d, want %d at most half full", s.n, len(s.keys), len(want))
	}
	for k, w := range want {
		if v := s.lookup(k); v != w {
			t.Fatalf("lookup %d = %d, want %d", k, v, w)
		}
	}
	n := s.n
	if v := s.lookup(4242 << 20); v != -1 || s.n != n {
		t.Fatalf("lookup of a key never added = %d (%d keys after), want -1 and %d keys", v, s.n, n)
	}
}
