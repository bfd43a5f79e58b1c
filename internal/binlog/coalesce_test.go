package binlog

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// TestCoalescingConnWaitsAfterADrainedRead: a read that found less than
// coalesceBytes waiting makes the next read wait coalesceWait first; a read
// that filled its buffer or found a large burst does not.
func TestCoalescingConnWaitsAfterADrainedRead(t *testing.T) {
	server, client := net.Pipe()
	defer server.Close()
	var waits []time.Duration
	c := &coalescingConn{Conn: client, sleep: func(d time.Duration) { waits = append(waits, d) }}
	go func() {
		// net.Pipe hands each write to one read: a small event, a burst
		// of coalesceBytes, another small one, and one that fills the
		// reader's 100-byte buffer.
		for _, n := range []int{50, coalesceBytes, 40, 300} {
			if _, err := server.Write(bytes.Repeat([]byte{'x'}, n)); err != nil {
				return
			}
		}
		server.Close()
	}()
	reads := []struct {
		buf      int
		n        int
		waitsNow int // waits recorded once this read returned
	}{
		{1 << 20, 50, 0},            // the first read never waits
		{1 << 20, coalesceBytes, 1}, // after a drained read: one wait
		{1 << 20, 40, 1},            // after a large burst: none
		{100, 100, 2},               // after a drained read: a wait; fills the buffer
		{1 << 20, 200, 2},           // after a full buffer: none
	}
	for i, r := range reads {
		n, err := c.Read(make([]byte, r.buf))
		if err != nil || n != r.n || len(waits) != r.waitsNow {
			t.Fatalf("read %d: %d bytes (%v), %d waits; want %d bytes, %d waits", i, n, err, len(waits), r.n, r.waitsNow)
		}
	}
	if _, err := c.Read(make([]byte, 10)); err != io.EOF || len(waits) != 3 {
		t.Fatalf("after the writer closed: %v, %d waits", err, len(waits))
	}
	for _, w := range waits {
		if w != coalesceWait {
			t.Fatalf("waited %s, want %s", w, coalesceWait)
		}
	}
}
