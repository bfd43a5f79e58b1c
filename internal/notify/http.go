package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// UserAgent is sent with every request so receivers can tell riskwatch apart.
const UserAgent = "riskwatch"

// DefaultTimeout bounds one send when a configuration leaves it unset.
const DefaultTimeout = 10 * time.Second

// HTTPError is a receiver's answer outside 2xx.
type HTTPError struct {
	StatusCode int
	// Body is the start of the response body: receivers put the reason for
	// a rejection there, and operators need it.
	Body string
	// RetryAfter is the delay the receiver asked for in a Retry-After header
	// (429, 503); 0 when it named none.
	RetryAfter time.Duration
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("unexpected status %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// RetryableStatus reports whether an HTTP status may turn into success when
// the same request is sent again later: server errors, 408 Request Timeout
// and 429 Too Many Requests. Every other non-2xx status is a rejection of the
// request itself, which sending it again cannot fix.
func RetryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// RetryAfter returns the delay a receiver asked for, when err carries one.
func RetryAfter(err error) time.Duration {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.RetryAfter
	}
	return 0
}

// NewHTTPClient returns the client integrations use unless given one. It does
// not follow redirects: Go turns a redirected POST into a GET, and a 200 from
// whatever page that GET lands on would pass for a delivery. A 3xx is better
// reported as the misconfiguration it is.
func NewHTTPClient() *http.Client {
	return &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// maxErrorBody bounds how much of a failed response ends up in the error (and
// from there in logs and the outbox's reason column).
const maxErrorBody = 512

// Post sends body as JSON to target and classifies the outcome the way the
// Notifier contract wants: any 2xx is success; transport errors (refused,
// reset, timeout) and RetryableStatus answers are worth retrying; anything
// else is a rejection. Errors name the target by scheme and host only,
// because the path or query of a Slack webhook URL is its secret.
func Post(ctx context.Context, client *http.Client, target string, header http.Header, body []byte) (retry bool, err error) {
	// A copy, so the caller's configured headers are never shared with a
	// request in flight.
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Type", "application/json")
	return Do(ctx, client, http.MethodPost, target, h, body)
}

// Do is Post for any method and content: header is sent as given (with
// User-Agent added when absent), body as is (none when empty). The outcome
// is classified the same way.
func Do(ctx context.Context, client *http.Client, method, target string, header http.Header, body []byte) (retry bool, err error) {
	verb := "posting to"
	if method != http.MethodPost {
		verb = "sending " + method + " to"
	}
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return false, fmt.Errorf("building request to %s: %w", RedactURL(target), redactErr(err))
	}
	req.Header = header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", UserAgent)
	}
	resp, err := client.Do(req)
	if err != nil {
		return true, fmt.Errorf("%s %s: %w", verb, RedactURL(target), redactErr(err))
	}
	defer func() {
		// Drain a little so the connection can be reused; a receiver that
		// streams forever is cut off by the close.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	he := &HTTPError{StatusCode: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	he.Body = cleanBody(b)
	return RetryableStatus(resp.StatusCode), fmt.Errorf("%s %s: %w", verb, RedactURL(target), he)
}

// StatusRecorder is an http.RoundTripper that remembers the status of the
// last response it carried, so that a one-off send (riskwatch notify test)
// can say what the receiver answered even when the integration only reports
// success.
type StatusRecorder struct {
	Next http.RoundTripper // default http.DefaultTransport

	mu     sync.Mutex
	status int
}

// RoundTrip sends req through Next and records the response's status.
func (r *StatusRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	next := r.Next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(req)
	if err == nil {
		r.mu.Lock()
		r.status = resp.StatusCode
		r.mu.Unlock()
	}
	return resp, err
}

// Status is the last recorded status; 0 when no response came back.
func (r *StatusRecorder) Status() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// NewRecordingClient is NewHTTPClient with a StatusRecorder as transport.
func NewRecordingClient() (*http.Client, *StatusRecorder) {
	rec := &StatusRecorder{}
	c := NewHTTPClient()
	c.Transport = rec
	return c, rec
}

// redactErr strips the URL out of net/http's *url.Error (it would repeat the
// secret the caller just redacted) and keeps the cause.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// RedactURL returns scheme://host of raw, the part of a receiver URL that is
// safe to log.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "<invalid URL>"
	}
	return u.Scheme + "://" + u.Host
}

func cleanBody(b []byte) string {
	s := strings.ToValidUTF8(string(b), string(utf8.RuneError))
	return strings.Join(strings.Fields(s), " ")
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP-date
// (RFC 9110 §10.2.3). Anything else counts as absent.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		// Cap before converting so a silly value cannot overflow.
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// ParseURL checks that raw is an absolute http or https URL. The error does
// not repeat raw: it may hold a token.
func ParseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("must be an absolute http or https URL (scheme %q)", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("must be an absolute http or https URL (no host)")
	}
	return u, nil
}

// IsAbsoluteURL reports whether s is an absolute http(s) URL, the kind a
// receiver can render as a link.
func IsAbsoluteURL(s string) bool {
	_, err := ParseURL(s)
	return err == nil
}

// reservedHeaders are set by the integrations themselves; letting the
// configuration override them would break the request or its idempotency.
var reservedHeaders = []string{"Content-Type", "Content-Length", "Host", "Idempotency-Key", "Transfer-Encoding", "Connection"}

// ParseHeaders validates configured extra headers (e.g. Authorization). The
// error names the offending header as headers[Name] and never its value.
func ParseHeaders(h map[string]string) (http.Header, error) {
	out := make(http.Header, len(h))
	for name, value := range h {
		if !isToken(name) {
			return nil, fmt.Errorf("headers[%q]: not a valid header name", name)
		}
		canon := http.CanonicalHeaderKey(name)
		for _, r := range reservedHeaders {
			if canon == r {
				return nil, fmt.Errorf("headers[%q]: set by riskwatch itself, cannot be configured", name)
			}
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return nil, fmt.Errorf("headers[%q]: value contains a line break or NUL", name)
		}
		out.Set(canon, value)
	}
	return out, nil
}

// IsHeaderName reports whether s may name an HTTP header.
func IsHeaderName(s string) bool { return isToken(s) }

// isToken reports whether s is an RFC 9110 token, the grammar of header names.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Endpoint is where an HTTP integration posts: a validated URL, the extra
// headers configured for it, the per-request timeout and the client.
type Endpoint struct {
	URL     string
	Header  http.Header
	Timeout time.Duration
	Client  *http.Client
}

// NewEndpoint validates the settings every HTTP integration shares, in the
// order url, timeout, headers; an integration prefixes the error with its
// name. A zero timeout means DefaultTimeout, a nil client NewHTTPClient().
func NewEndpoint(rawURL string, timeout time.Duration, headers map[string]string, client *http.Client) (*Endpoint, error) {
	if _, err := ParseURL(rawURL); err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	switch {
	case timeout < 0:
		return nil, fmt.Errorf("timeout: must not be negative (got %s)", timeout)
	case timeout == 0:
		timeout = DefaultTimeout
	}
	header, err := ParseHeaders(headers)
	if err != nil {
		return nil, err
	}
	if client == nil {
		client = NewHTTPClient()
	}
	return &Endpoint{URL: rawURL, Header: header, Timeout: timeout, Client: client}, nil
}

// Post is Post to the endpoint within its timeout, with header, or the
// endpoint's configured headers when header is nil.
func (e *Endpoint) Post(ctx context.Context, header http.Header, body []byte) (retry bool, err error) {
	if header == nil {
		header = e.Header
	}
	ctx, cancel := WithTimeout(ctx, e.Timeout)
	defer cancel()
	return Post(ctx, e.Client, e.URL, header, body)
}

// WithTimeout bounds ctx by d when d > 0. Integrations apply their own
// configured timeout on top of the Sender's, so they are safe to call
// directly too.
func WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
