package kafka

import (
	"encoding/binary"
	"strconv"
)

// PartitionFor returns the partition of a keyed record among partitions
// (> 0), exactly as Kafka's Java default partitioner and franz-go's
// StickyKeyPartitioner place it: toPositive(murmur2(key)) % partitions.
// Workers use it to know which merchants their partitions hold.
func PartitionFor(key []byte, partitions int32) int32 {
	return int32(murmur2(key)&0x7fffffff) % partitions
}

// MerchantKey is the record key of a merchant's changes: its id in decimal.
func MerchantKey(id int64) []byte { return strconv.AppendInt(nil, id, 10) }

// murmur2 is Kafka's Utils.murmur2 (seed 0x9747b28c), which reads the key
// little-endian, four bytes at a time.
func murmur2(b []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	h := uint32(seed) ^ uint32(len(b))
	for ; len(b) >= 4; b = b[4:] {
		k := binary.LittleEndian.Uint32(b)
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
