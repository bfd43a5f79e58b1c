package binlog

import (
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// A read that drained the connection makes the next one wait gatherReads
// after it, so that what the server writes meanwhile comes in one read;
// a read that filled the buffer is followed at once.
func TestGatheringReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		server, client := net.Pipe()
		defer server.Close()
		c := &gatheringConn{Conn: client, wait: gatherReads}
		defer c.Close()
		go func() {
			server.Write([]byte("a"))       // a short read
			server.Write([]byte("bcdefgh")) // fills the next read's 4 bytes...
			server.Write([]byte("ijkl"))    // ...and this one's exactly
			time.Sleep(time.Second)         // then a quiet second
			server.Write([]byte("m"))
		}()
		buf := make([]byte, 4)
		read := func(want string, waited time.Duration) {
			t.Helper()
			start := time.Now()
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != want {
				t.Fatalf("read %q, %v; want %q", buf[:n], err, want)
			}
			if got := time.Since(start); got != waited {
				t.Errorf("read of %q waited %v, want %v", want, got, waited)
			}
		}
		read("a", 0)
		read("bcde", gatherReads) // after a short read: waits
		read("fgh", 0)            // after a full one: at once
		read("ijkl", gatherReads)
		read("m", time.Second) // a full read: no wait before, the server's second
	})
}
