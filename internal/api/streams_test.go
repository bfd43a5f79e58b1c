package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/config"
)

// TestEventStreamCap: with http.max_streams 2 a third stream is refused with
// 503 and Retry-After, and one that closes makes room for another.
func TestEventStreamCap(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(c *config.Config) { c.HTTP.MaxStreams = 2 })
	open := func() (cancel context.CancelFunc, code int, h http.Header, body string) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", w.base+"/api/events", nil)
		req.SetBasicAuth(reader.user, reader.pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			return nil, resp.StatusCode, resp.Header, string(b)
		}
		// The first status event says the stream is being served.
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "retry:") {
			t.Fatalf("stream starts with %q, %v", line, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return cancel, resp.StatusCode, resp.Header, ""
	}
	first, code, _, body := open()
	if code != http.StatusOK {
		t.Fatalf("first stream: %d %s", code, body)
	}
	second, code, _, body := open()
	if code != http.StatusOK {
		t.Fatalf("second stream: %d %s", code, body)
	}
	defer second()
	_, code, h, body := open()
	var e struct{ Error string }
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "http.max_streams is 2") {
		t.Fatalf("third stream: %d Retry-After %q %s; want 503 naming http.max_streams", code, h.Get("Retry-After"), body)
	}
	first()
	// The slot frees when the server notices the client left.
	deadline := time.Now().Add(10 * time.Second)
	for {
		cancel, code, _, body := open()
		if code == http.StatusOK {
			cancel()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stream after one closed: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
