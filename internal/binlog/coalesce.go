package binlog

import (
	"context"
	"net"
	"time"
)

// gatherReads is how long the replication connection waits after a read
// that drained the socket before it reads again.
//
// A server under load writes each transaction's events to the dump
// connection as it commits: at 5,000 TPS that is thousands of small
// writes a second, and reading each as it comes costs a wakeup of the
// network poller, a system call and a handoff between goroutines apiece
// (measured: two fifths of the engine's CPU at that rate). Waiting a few
// milliseconds lets them gather in the socket's buffer, so one read takes
// dozens of transactions: at most a few hundred reads a second, each
// commit delayed by at most gatherReads, against the flush interval's
// 100 ms that every event waits anyway. A read that fills the buffer (a
// backlog) is followed at once.
const gatherReads = 5 * time.Millisecond

// gatheringConn is a connection whose reads wait gatherReads after a
// read that returned less than asked for.
type gatheringConn struct {
	net.Conn
	wait time.Duration
	// next is the earliest the next read starts (zero: at once).
	next time.Time
}

func (c *gatheringConn) Read(p []byte) (int, error) {
	if !c.next.IsZero() {
		if d := time.Until(c.next); d > 0 {
			time.Sleep(d)
		}
	}
	n, err := c.Conn.Read(p)
	if n < len(p) {
		c.next = time.Now().Add(c.wait)
	} else {
		c.next = time.Time{}
	}
	return n, err
}

// dialGathering is dialBounded for the replication connection, whose
// reads gather.
func dialGathering(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := dialBounded(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &gatheringConn{Conn: c, wait: gatherReads}, nil
}
