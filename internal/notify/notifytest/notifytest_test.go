package notifytest_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/notify"
	"github.com/riskwatch/riskwatch/internal/notify/notifytest"
)

// postNotifier is the smallest correct integration: one notify.Post per call.
type postNotifier struct {
	url     string
	timeout time.Duration
}

func (p postNotifier) Notify(ctx context.Context, ns ...notify.Notification) (bool, error) {
	if len(ns) == 0 {
		return false, nil
	}
	ctx, cancel := notify.WithTimeout(ctx, p.timeout)
	defer cancel()
	return notify.Post(ctx, notify.NewHTTPClient(), p.url, nil, []byte(`{}`))
}

// TestHarnessWithPost runs the harness against notify.Post, which every
// integration uses, so the harness and the shared classification are both
// exercised here once.
func TestHarnessWithPost(t *testing.T) {
	notifytest.RetryCodes(t, func(t *testing.T, url string, timeout time.Duration) notify.Notifier {
		return postNotifier{url: url, timeout: timeout}
	})
}

func TestServerScript(t *testing.T) {
	srv := notifytest.NewServer(t, 503, 429, 200)
	srv.SetRetryAfter("7")
	var got []int
	for range 4 {
		resp, err := http.Post(srv.URL+"/x", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got = append(got, resp.StatusCode)
		if resp.StatusCode != 200 && resp.Header.Get("Retry-After") != "7" {
			t.Errorf("status %d without Retry-After", resp.StatusCode)
		}
	}
	if want := []int{503, 429, 200, 200}; len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("answers %v, want %v (the last repeats)", got, want)
	}
	if reqs := srv.Requests(); len(reqs) != 4 || reqs[0].Method != "POST" || reqs[0].Path != "/x" {
		t.Errorf("requests %+v, want 4 POST /x", reqs)
	}
}

func TestRetryAfterReachesTheError(t *testing.T) {
	srv := notifytest.NewServer(t, 429)
	srv.SetRetryAfter("30")
	retry, err := postNotifier{url: srv.URL}.Notify(context.Background(), notifytest.Sample(notify.KindFiring))
	if !retry || notify.RetryAfter(err) != 30*time.Second {
		t.Errorf("Notify = (%v, %v); RetryAfter %s, want retry with 30s", retry, err, notify.RetryAfter(err))
	}
}

func TestRedirectIsNotSuccess(t *testing.T) {
	srv := notifytest.NewServer(t, http.StatusFound)
	retry, err := postNotifier{url: srv.URL}.Notify(context.Background(), notifytest.Sample(notify.KindFiring))
	if err == nil || retry {
		t.Errorf("Notify on a 302 = (%v, %v), want a rejection (a followed redirect would turn the POST into a GET)", retry, err)
	}
}
