// Package httptemplate is the "template" receiver: an HTTP request whose
// URL, header values and body are Go text/template templates rendered from
// each notification (Data), so that a chat tool (MS Teams, KakaoWork,
// Telegram, …) or an SMS gateway needs configuration, not code.
//
// It goes through the same outbox, retries, backoff and idempotency key as
// every receiver: one notification per request (MaxBatch 1), the
// Idempotency-Key header always set, 2xx success, 408/429/5xx/timeouts
// retried, other statuses rejected.
//
// Templates are parsed and then executed against sample notifications
// (firing, resolved, escalated, a test; a merchant name with quotes, a
// line break and Korean) when the configuration is loaded, so a mistake
// stops the start instead of the first page: a field or function that does
// not exist, a URL that does not render to an absolute http(s) URL, a
// header value with a line break, a JSON body (the default content type)
// that is not valid JSON because a value was not escaped with json.
//
// A notification whose rendering still fails at send time is rejected, not
// retried: rendering is a pure function of the notification and the
// templates, so the next attempt would fail the same way, and since
// delivery is in order per receiver, retrying it would hold back every
// later notification to that receiver for good. The rejection is recorded
// in the outbox with the reason (and counted in
// riskwatch_notifications_rejected_total).
package httptemplate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/riskwatch/riskwatch/internal/notify"
)

// Methods a template receiver may use.
var Methods = []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodGet}

// DefaultContentType is sent with a body when the headers name none.
const DefaultContentType = "application/json"

// reserved headers are riskwatch's own: the request's framing and the
// idempotency key. Content-Type is not among them: a form-encoded SMS
// gateway needs to set it.
var reserved = []string{"Content-Length", "Host", "Idempotency-Key", "Transfer-Encoding", "Connection"}

// Spec is a template receiver's request as configured.
type Spec struct {
	Method  string            // POST (default), PUT, PATCH or GET
	URL     string            // template; must render to an absolute http(s) URL
	Headers map[string]string // fixed names, template values
	Body    string            // template; empty sends no body
}

// FieldError is one problem with one configured field: "method", "url",
// "headers[Name]" or "body".
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Templates is a parsed and checked Spec.
type Templates struct {
	method  string
	url     *template.Template
	headers map[string]*template.Template // by canonical name
	body    *template.Template            // nil: no body
	ctype   string                        // sent with a body
	json    bool                          // ctype is JSON: bodies must parse
}

// Request is one rendered request.
type Request struct {
	Method string
	URL    string
	Header http.Header
	Body   []byte
}

// Parse parses s and checks it by rendering sample notifications, with
// loc as the business time zone (nil: UTC). The error joins a *FieldError
// per problem.
func Parse(s Spec, loc *time.Location) (*Templates, error) {
	if loc == nil {
		loc = time.UTC
	}
	fm := funcs(loc)
	var errs []error
	bad := func(field string, err error) { errs = append(errs, &FieldError{Field: field, Err: err}) }
	parse := func(field, text string) *template.Template {
		t, err := template.New(field).Funcs(fm).Parse(text)
		if err != nil {
			bad(field, err)
			return nil
		}
		return t
	}

	t := &Templates{method: strings.ToUpper(s.Method), headers: map[string]*template.Template{}}
	if t.method == "" {
		t.method = http.MethodPost
	}
	if !slices.Contains(Methods, t.method) {
		bad("method", fmt.Errorf("must be one of %s, got %q", strings.Join(Methods, "|"), s.Method))
	}
	if strings.TrimSpace(s.URL) == "" {
		bad("url", errors.New("required (a template rendering to an absolute http(s) URL)"))
	} else {
		t.url = parse("url", s.URL)
	}
	names := make([]string, 0, len(s.Headers))
	for name := range s.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		field := fmt.Sprintf("headers[%s]", name)
		canon := http.CanonicalHeaderKey(name)
		switch {
		case !notify.IsHeaderName(name):
			bad(field, errors.New("not a valid header name"))
			continue
		case slices.Contains(reserved, canon):
			bad(field, errors.New("set by riskwatch itself, cannot be configured"))
			continue
		case t.headers[canon] != nil:
			bad(field, fmt.Errorf("given twice (header names are case-insensitive)"))
			continue
		}
		if canon == "Content-Type" {
			// The type decides how the body is checked, so it is fixed text.
			if strings.Contains(s.Headers[name], "{{") {
				bad(field, errors.New("must be fixed text, not a template"))
				continue
			}
			t.ctype = s.Headers[name]
		}
		if ht := parse(field, s.Headers[name]); ht != nil {
			t.headers[canon] = ht
		}
	}
	if s.Body != "" {
		if t.method == http.MethodGet {
			bad("body", errors.New("a GET request carries no body; put the fields in the url (with urlquery)"))
		}
		t.body = parse("body", s.Body)
		if t.ctype == "" {
			t.ctype = DefaultContentType
		}
		mt, _, err := mime.ParseMediaType(t.ctype)
		if err != nil {
			bad("headers[Content-Type]", fmt.Errorf("not a media type: %w", err))
		}
		t.json = mt == "application/json" || strings.HasSuffix(mt, "+json")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Execution errors (a field that does not exist, a function given the
	// wrong type) only show when a template runs: run them on every sample
	// now rather than on the first real alert.
	for _, smp := range Samples() {
		if _, err := t.Render(DataOf(smp)); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				bad(fe.Field, fmt.Errorf("with a sample %s %s notification: %w", smp.Kind, smp.Rule, fe.Err))
			} else {
				bad("body", err)
			}
			break
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// Render renders the request for d. The error is a *FieldError naming the
// template that failed or the check its output did not pass.
func (t *Templates) Render(d Data) (*Request, error) {
	exec := func(field string, tp *template.Template) (string, error) {
		var b bytes.Buffer
		if err := tp.Execute(&b, d); err != nil {
			return "", &FieldError{Field: field, Err: err}
		}
		return b.String(), nil
	}
	u, err := exec("url", t.url)
	if err != nil {
		return nil, err
	}
	u = strings.TrimSpace(u)
	if _, err := notify.ParseURL(u); err != nil {
		// The rendered URL is not repeated: it may hold a token.
		return nil, &FieldError{Field: "url", Err: fmt.Errorf("rendered URL %w", err)}
	}
	req := &Request{Method: t.method, URL: u, Header: http.Header{}}
	for name, ht := range t.headers {
		v, err := exec("headers["+name+"]", ht)
		if err != nil {
			return nil, err
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, &FieldError{Field: "headers[" + name + "]", Err: errors.New("rendered value contains a line break or NUL")}
		}
		req.Header.Set(name, v)
	}
	if t.body != nil {
		b, err := exec("body", t.body)
		if err != nil {
			return nil, err
		}
		if t.json && !json.Valid([]byte(b)) {
			var syntax any
			jerr := json.Unmarshal([]byte(b), &syntax)
			return nil, &FieldError{Field: "body", Err: fmt.Errorf("rendered body is not valid JSON (%v); write text values with json, e.g. {{json .Summary}}", jerr)}
		}
		req.Body = []byte(b)
		req.Header.Set("Content-Type", t.ctype)
	}
	return req, nil
}

// Config configures a template receiver.
type Config struct {
	Spec
	Location   *time.Location // the business time zone, for local; default UTC
	Timeout    time.Duration  // per request; default notify.DefaultTimeout
	HTTPClient *http.Client   // default: notify.NewHTTPClient()
}

// Notifier sends rendered requests.
type Notifier struct {
	t       *Templates
	timeout time.Duration
	client  *http.Client
}

// New parses and checks c and returns a Notifier.
func New(c Config) (*Notifier, error) {
	t, err := Parse(c.Spec, c.Location)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	if c.Timeout < 0 {
		return nil, fmt.Errorf("template: timeout: must not be negative (got %s)", c.Timeout)
	}
	if c.Timeout == 0 {
		c.Timeout = notify.DefaultTimeout
	}
	if c.HTTPClient == nil {
		c.HTTPClient = notify.NewHTTPClient()
	}
	return &Notifier{t: t, timeout: c.Timeout, client: c.HTTPClient}, nil
}

// MaxBatch is 1: a chat message or an SMS is one alert, and the
// Idempotency-Key header then names exactly what the request carries.
func (n *Notifier) MaxBatch() int { return 1 }

// Notify sends one request per notification, in order, and stops at the
// first failure. A notification that cannot be rendered is a rejection
// (retry false) that says so.
func (n *Notifier) Notify(ctx context.Context, ns ...notify.Notification) (bool, error) {
	for _, x := range ns {
		req, err := n.t.Render(DataOf(x))
		if err != nil {
			return false, fmt.Errorf("template: notification %d: %w (a rendering error is permanent: not retried)", x.ID, err)
		}
		if x.IdempotencyKey != "" {
			req.Header.Set("Idempotency-Key", x.IdempotencyKey)
		}
		sctx, cancel := notify.WithTimeout(ctx, n.timeout)
		retry, err := notify.Do(sctx, n.client, req.Method, req.URL, req.Header, req.Body)
		cancel()
		if err != nil {
			return retry, fmt.Errorf("template: notification %d: %w", x.ID, err)
		}
	}
	return false, nil
}
