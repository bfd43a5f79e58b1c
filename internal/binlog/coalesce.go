package binlog

import (
	"context"
	"net"
	"time"
)

// At 5,000 payments a second the server sends some 25,000 binlog events a
// second, each written to the socket as it is committed. Read as they come,
// every event costs a read system call and a wake-up of each goroutine it
// passes through (go-mysql's reader, the stream, the engine): about a
// third of the engine's CPU at that rate went to those. Waiting a moment
// after a read that found little lets the events of a couple of
// milliseconds arrive in one read and move down the pipeline together.
const (
	// coalesceBytes: a read that returns less found the socket drained.
	coalesceBytes = 16 << 10
	// coalesceWait is how long the next read waits after one that found
	// the socket drained: far below the flush interval (100 ms), so it
	// adds at most that to commit → aggregate, and nothing to a catch-up,
	// whose reads fill go-mysql's buffer.
	coalesceWait = 2 * time.Millisecond
)

// coalescingConn is a replication connection read in fewer, larger reads.
type coalescingConn struct {
	net.Conn
	sleep   func(time.Duration)
	drained bool
}

func (c *coalescingConn) Read(p []byte) (int, error) {
	if c.drained {
		c.sleep(coalesceWait)
	}
	n, err := c.Conn.Read(p)
	c.drained = n < coalesceBytes && n < len(p)
	return n, err
}

// dialReplication is dialBounded for the binlog dump connection, whose
// reads are coalesced.
func dialReplication(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := dialBounded(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &coalescingConn{Conn: c, sleep: time.Sleep}, nil
}
