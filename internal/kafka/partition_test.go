package kafka_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riskwatch/riskwatch/internal/kafka"
)

func TestPartitionForMatchesFranzGo(t *testing.T) {
	var keys [][]byte
	for id := range int64(5000) {
		keys = append(keys, kafka.MerchantKey(id+1))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		k := make([]byte, rng.IntN(41)) // every tail length, empty keys included
		for i := range k {
			k[i] = byte(rng.Uint32())
		}
		keys = append(keys, k)
	}
	p := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for _, n := range []int32{1, 2, 3, 6, 12, 16, 64, 100, 1000, math.MaxInt32} {
		for _, k := range keys {
			want := p.Partition(&kgo.Record{Key: k}, int(n))
			if got := kafka.PartitionFor(k, n); int(got) != want {
				t.Fatalf("PartitionFor(%q, %d) = %d, franz-go says %d", k, n, got, want)
			}
		}
	}
}

func TestPartitionForKafkaVectors(t *testing.T) {
	// Kafka's UtilsTest.testMurmur2 gives murmur2 as a signed int; the
	// partitioner masks the sign bit (toPositive). Among MaxInt32
	// partitions the partition is that positive hash itself.
	for _, tc := range []struct {
		key     string
		murmur2 int32
		want    int32
	}{
		{"21", -973932308, 1173551340},
		{"foobar", -790332482, 1357151166},
		{"a-little-bit-long-string", -985981536, 1161502112},
		{"a-little-bit-longer-string", -1486304829, 661178819},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971, 2088585677},
		{"abc", 479470107, 479470107},
	} {
		if tc.murmur2&math.MaxInt32 != tc.want {
			t.Fatalf("test vector %q: %d & MaxInt32 != %d", tc.key, tc.murmur2, tc.want)
		}
		if got := kafka.PartitionFor([]byte(tc.key), math.MaxInt32); got != tc.want {
			t.Errorf("PartitionFor(%q, MaxInt32) = %d, want %d", tc.key, got, tc.want)
		}
		// 1173551340 % 6 = 0 (6 × 195591890 = 1173551340), and so on.
		if got, want := kafka.PartitionFor([]byte(tc.key), 6), tc.want%6; got != want {
			t.Errorf("PartitionFor(%q, 6) = %d, want %d", tc.key, got, want)
		}
	}
}

func TestMerchantKey(t *testing.T) {
	for _, tc := range []struct {
		id   int64
		want string
	}{{1, "1"}, {42, "42"}, {1 << 40, "1099511627776"}, {math.MaxInt64, "9223372036854775807"}, {0, "0"}, {-7, "-7"}} {
		if got := string(kafka.MerchantKey(tc.id)); got != tc.want {
			t.Errorf("MerchantKey(%d) = %q, want %q", tc.id, got, tc.want)
		}
	}
}
