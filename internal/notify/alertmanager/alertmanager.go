// Package alertmanager posts notifications to a Prometheus Alertmanager
// through its API v2 (POST {url}/api/v2/alerts, a JSON array of
// postableAlert; api/v2/openapi.yaml in prometheus/alertmanager).
//
// Alertmanager identifies an alert by its label set, so the labels are the
// alert's identity and nothing else: alertname and rule (both the rule),
// merchant_id, priority (P1…P3, for Alertmanager's own routes) and the
// severity that follows it. An escalation changes the priority, so it is
// posted as two alerts: the old label set resolved, the new one firing.
// Everything that changes between posts goes into
// annotations: summary, description, dashboard, merchant_name and each of the
// rule's values (as strings; annotations are a map of strings). generatorURL
// is the dashboard link. Posting the same labels again updates the alert in
// place, which makes a duplicate from at-least-once delivery harmless.
//
// startsAt is when the alert started firing. endsAt is sent only for a
// resolved alert; a firing or repeat post leaves it out, so Alertmanager sets
// endsAt = now + resolve_timeout and would resolve the alert on its own if it
// were not posted again in time. Prometheus instead sends a short validity
// (endsAt = now + 4 x resend delay) and re-posts every minute; riskwatch
// posts only on transitions and repeats, so a validity it made up would
// either expire between posts or outlive a missed resolve. Only riskwatch
// knows when the alert ends, and it says so with an explicit resolved post.
// The consequence to configure for: Alertmanager's resolve_timeout (global,
// default 5m) should be at least riskwatch's repeat_interval (default 4h), or
// Alertmanager shows the alert resolved between repeats while riskwatch still
// has it open.
//
// Batches of up to 64 alerts per request. Alertmanager answers 200 on
// success, 400 when any alert in the batch is invalid (it stores the valid
// ones) and 500 when storing fails.
package alertmanager

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/riskwatch/riskwatch/internal/notify"
)

// Config configures an Alertmanager receiver.
type Config struct {
	URL        string            // base URL, e.g. http://alertmanager:9093 (a path prefix is kept); required
	Timeout    time.Duration     // per request; default 10s
	Headers    map[string]string // extra request headers, e.g. Authorization for a proxy in front
	HTTPClient *http.Client      // default: notify.NewHTTPClient()
}

// Notifier posts alerts to one Alertmanager.
type Notifier struct{ ep *notify.Endpoint }

// New validates c and returns a Notifier.
func New(c Config) (*Notifier, error) {
	base, err := notify.ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("alertmanager: url: %w", err)
	}
	if base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("alertmanager: url: must be a base URL without query or fragment")
	}
	ep, err := notify.NewEndpoint(base.JoinPath("api", "v2", "alerts").String(), c.Timeout, c.Headers, c.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("alertmanager: %w", err)
	}
	return &Notifier{ep: ep}, nil
}

// MaxBatch is how many alerts go in one request.
func (n *Notifier) MaxBatch() int { return 64 }

// Alert is one element of postableAlerts.
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     string            `json:"startsAt,omitempty"`
	EndsAt       string            `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// reservedAnnotations are the annotations riskwatch writes itself; a value
// of the same name is prefixed with "value_" rather than overwrite them.
var reservedAnnotations = []string{"summary", "description", "dashboard", "merchant_name"}

// NewAlert converts one notification.
func NewAlert(n notify.Notification) Alert {
	a := Alert{
		Labels: map[string]string{
			"alertname":   n.Rule,
			"rule":        n.Rule,
			"merchant_id": strconv.FormatInt(n.MerchantID, 10),
		},
		Annotations: map[string]string{
			"summary":     n.Summary,
			"description": description(n),
		},
		StartsAt: notify.FormatTime(n.StartsAt),
	}
	if n.Severity != "" {
		a.Labels["severity"] = n.Severity
	}
	// The priority it was routed at: a re-fire soon after a page is told
	// as P2, and Alertmanager's routes must see it so.
	if p := cmp.Or(n.RoutedAt, n.Priority); p != "" {
		a.Labels["priority"] = p
	}
	if n.DashboardURL != "" {
		a.Annotations["dashboard"] = n.DashboardURL
	}
	if n.MerchantName != "" {
		a.Annotations["merchant_name"] = n.MerchantName
	}
	// Sorted, so that two values whose names sanitize alike ("a-b", "a_b")
	// get the same annotation names on every post.
	for _, k := range slices.Sorted(maps.Keys(n.Values)) {
		name := labelName(k)
		if slices.Contains(reservedAnnotations, name) {
			name = "value_" + name
		}
		for i := 2; ; i++ {
			if _, taken := a.Annotations[name]; !taken {
				break
			}
			name = fmt.Sprintf("%s_%d", labelName(k), i)
		}
		a.Annotations[name] = notify.FormatValue(n.Values[k])
	}
	if n.Kind == notify.KindResolved {
		a.EndsAt = notify.FormatTime(resolvedAt(n))
	}
	// The schema's generatorURL is format: uri; a relative or malformed
	// link would get the alert refused, so it stays in the dashboard
	// annotation only.
	if notify.IsAbsoluteURL(n.DashboardURL) {
		a.GeneratorURL = n.DashboardURL
	}
	return a
}

// resolvedAt is the endsAt of a resolved alert. Alertmanager refuses
// endsAt before startsAt, and a resolved post without endsAt would re-fire
// the alert, so a missing or inconsistent time is repaired, not sent.
func resolvedAt(n notify.Notification) time.Time {
	end := n.EndsAt
	if end.IsZero() {
		end = n.CreatedAt
	}
	if end.IsZero() {
		end = time.Now()
	}
	if !n.StartsAt.IsZero() && end.Before(n.StartsAt) {
		end = n.StartsAt
	}
	return end
}

func description(n notify.Notification) string {
	var b strings.Builder
	b.WriteString(n.Rule)
	b.WriteString(" for merchant ")
	if n.MerchantName != "" {
		fmt.Fprintf(&b, "%s (id %d)", n.MerchantName, n.MerchantID)
	} else {
		fmt.Fprintf(&b, "%d", n.MerchantID)
	}
	switch n.Kind {
	case notify.KindResolved:
		b.WriteString(", resolved")
	case notify.KindRepeat:
		b.WriteString(", still firing")
	case notify.KindEscalated:
		fmt.Fprintf(&b, ", escalated from %s to %s", n.PreviousPriority, n.Priority)
	case notify.KindContinued:
		fmt.Fprintf(&b, ", firing again (continues alert %d)", n.Continues)
	}
	if !n.Minute.IsZero() {
		fmt.Fprintf(&b, " at minute %s", notify.FormatTime(n.Minute))
	}
	for i, k := range slices.Sorted(maps.Keys(n.Values)) {
		if i == 0 {
			b.WriteString(":")
		}
		fmt.Fprintf(&b, " %s=%s", k, notify.FormatValue(n.Values[k]))
	}
	return b.String()
}

// labelName makes k a valid label name in Prometheus' classic syntax
// [a-zA-Z_][a-zA-Z0-9_]*, which every Alertmanager version accepts for
// annotation names; older ones refuse anything else.
func labelName(k string) string {
	if k == "" {
		return "_"
	}
	b := []byte(k)
	for i, c := range b {
		ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			b[i] = '_'
		}
	}
	return string(b)
}

// Notify posts ns as one postableAlerts array.
func (n *Notifier) Notify(ctx context.Context, ns ...notify.Notification) (bool, error) {
	if len(ns) == 0 {
		return false, nil
	}
	alerts := make([]Alert, 0, len(ns))
	for _, x := range ns {
		if x.Kind == notify.KindEscalated && x.PreviousPriority != "" && x.PreviousPriority != cmp.Or(x.RoutedAt, x.Priority) {
			// The old label set ends where the new one starts.
			old := x
			old.Kind, old.Priority, old.RoutedAt, old.Severity = notify.KindResolved, x.PreviousPriority, x.PreviousPriority, x.PreviousSeverity
			old.EndsAt = x.Minute.Add(time.Minute) // the end of the minute that escalated it
			alerts = append(alerts, NewAlert(old))
		}
		alerts = append(alerts, NewAlert(x))
	}
	body, err := json.Marshal(alerts)
	if err != nil {
		return false, fmt.Errorf("alertmanager: encoding %d alerts (first notification %d): %w", len(ns), ns[0].ID, err)
	}
	retry, err := n.ep.Post(ctx, nil, body)
	if err != nil {
		return retry, fmt.Errorf("alertmanager: %d alerts (first notification %d): %w", len(ns), ns[0].ID, err)
	}
	return false, nil
}
