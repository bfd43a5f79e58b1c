// Package pagerduty sends notifications to the PagerDuty Events API v2
// (POST https://events.pagerduty.com/v2/enqueue).
//
// firing, continued, escalated and repeat become "trigger", resolved becomes
// "resolve"; all share dedup_key "riskwatch-<rule>-<merchant>-<alertID>", so
// a repeat lands on the open PagerDuty alert instead of opening another, a
// resolve closes it, and a duplicate from at-least-once delivery is absorbed
// by PagerDuty's own deduplication. Notifications routed at P1 are the
// exception: their key has "-P1" appended, because an escalation's trigger
// deduplicated into an open warning would not page anyone; the resolve of
// an alert that was ever routed at P1 closes both keys (closing a key
// PagerDuty never saw is accepted and does nothing). The payload: summary (cut to
// 1024 characters), source "riskwatch", severity (P1 critical, P2 warning,
// P3 info; anything unknown becomes "error"), timestamp of the transition,
// component = merchant id, class = rule, group = priority, custom_details =
// the rule's values; the dashboard goes in links and client_url. 202 is
// success, 429 and 5xx are retried, 400 is a rejection.
//
// One event per request (MaxBatch 1): the Events API takes one event.
package pagerduty

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/riskwatch/riskwatch/internal/notify"
)

// DefaultURL is PagerDuty's Events API v2 endpoint (US service region; EU
// accounts use https://events.eu.pagerduty.com/v2/enqueue).
const DefaultURL = "https://events.pagerduty.com/v2/enqueue"

// Limits from the Events API v2 documentation.
const (
	maxSummaryRunes = 1024
	maxDedupKey     = 255
	maxEventBytes   = 512000
)

// Config configures a PagerDuty receiver.
type Config struct {
	URL        string        // default DefaultURL
	RoutingKey string        // the integration key of an Events API v2 integration; required
	Timeout    time.Duration // per request; default 10s
	HTTPClient *http.Client  // default: notify.NewHTTPClient()
}

// Notifier sends events to one PagerDuty service.
type Notifier struct {
	ep         *notify.Endpoint
	routingKey string
}

// New validates c and returns a Notifier.
func New(c Config) (*Notifier, error) {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if _, err := notify.ParseURL(c.URL); err != nil {
		return nil, fmt.Errorf("pagerduty: url: %w", err)
	}
	if strings.TrimSpace(c.RoutingKey) == "" {
		return nil, fmt.Errorf("pagerduty: routing_key: is required")
	}
	if strings.TrimSpace(c.RoutingKey) != c.RoutingKey {
		return nil, fmt.Errorf("pagerduty: routing_key: has leading or trailing white space")
	}
	ep, err := notify.NewEndpoint(c.URL, c.Timeout, nil, c.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("pagerduty: %w", err)
	}
	return &Notifier{ep: ep, routingKey: c.RoutingKey}, nil
}

// MaxBatch is 1: the Events API takes one event per request.
func (n *Notifier) MaxBatch() int { return 1 }

// Event is an Events API v2 alert event.
type Event struct {
	RoutingKey  string   `json:"routing_key"`
	EventAction string   `json:"event_action"` // trigger, acknowledge, resolve
	DedupKey    string   `json:"dedup_key"`
	Payload     *Payload `json:"payload,omitempty"`
	Client      string   `json:"client,omitempty"`
	ClientURL   string   `json:"client_url,omitempty"`
	Links       []Link   `json:"links,omitempty"`
}

// Payload describes the alert.
type Payload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"` // critical, error, warning, info
	Timestamp     string         `json:"timestamp,omitempty"`
	Component     string         `json:"component,omitempty"`
	Group         string         `json:"group,omitempty"`
	Class         string         `json:"class,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

// Link is a link shown on the alert.
type Link struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

// DedupKey is the key one alert's events share.
func DedupKey(n notify.Notification) string {
	k := fmt.Sprintf("riskwatch-%s-%d-%d", n.Rule, n.MerchantID, n.AlertID)
	if len(k) > maxDedupKey {
		k = k[:maxDedupKey]
	}
	return k
}

// NewEvent builds the event for n. It fails only for a Kind it does not know.
func NewEvent(routingKey string, n notify.Notification) (Event, error) {
	var action string
	var at time.Time
	switch n.Kind {
	case notify.KindFiring, notify.KindContinued:
		action, at = "trigger", n.StartsAt
	case notify.KindRepeat, notify.KindEscalated:
		action, at = "trigger", n.CreatedAt
	case notify.KindResolved:
		action, at = "resolve", n.EndsAt
	default:
		return Event{}, fmt.Errorf("unknown notification kind %q", n.Kind)
	}
	if at.IsZero() {
		at = n.CreatedAt
	}
	summary := n.Summary
	if summary == "" {
		summary = fmt.Sprintf("%s for merchant %d", n.Rule, n.MerchantID)
	}
	e := Event{
		RoutingKey:  routingKey,
		EventAction: action,
		DedupKey:    DedupKey(n),
		Client:      "riskwatch",
		Payload: &Payload{
			Summary:       notify.Truncate(summary, maxSummaryRunes),
			Source:        "riskwatch",
			Severity:      severity(n.Severity),
			Timestamp:     notify.FormatTime(at),
			Component:     strconv.FormatInt(n.MerchantID, 10),
			Group:         n.Priority,
			Class:         n.Rule,
			CustomDetails: notify.JSONValues(n.Values),
		},
	}
	if n.RoutedAt == "P1" && n.Kind != notify.KindResolved {
		e.DedupKey = pageKey(e.DedupKey)
	}
	if notify.IsAbsoluteURL(n.DashboardURL) {
		e.ClientURL = n.DashboardURL
		e.Links = []Link{{Href: n.DashboardURL, Text: "riskwatch dashboard"}}
	}
	return e, nil
}

// pageKey is the dedup key of an alert's notifications routed at P1.
func pageKey(k string) string {
	if len(k)+3 > maxDedupKey {
		k = k[:maxDedupKey-3]
	}
	return k + "-P1"
}

// severity maps riskwatch's severities onto PagerDuty's four. An unknown one
// becomes "error" rather than a rejected event: a page at the wrong urgency
// beats no page.
func severity(s string) string {
	switch s {
	case "critical", "error", "warning", "info":
		return s
	}
	return "error"
}

// Notify sends one event per notification, in order, stopping at the first
// failure.
func (n *Notifier) Notify(ctx context.Context, ns ...notify.Notification) (bool, error) {
	for _, x := range ns {
		e, err := NewEvent(n.routingKey, x)
		if err != nil {
			return false, fmt.Errorf("pagerduty: notification %d: %w", x.ID, err)
		}
		body, err := json.Marshal(e)
		if err != nil {
			return false, fmt.Errorf("pagerduty: encoding notification %d: %w", x.ID, err)
		}
		if len(body) > maxEventBytes {
			// PagerDuty refuses events over 512 KB; the details are what
			// can grow, and the page matters more than they do.
			e.Payload.CustomDetails = map[string]any{"note": "custom details dropped: event over 512 KB"}
			if body, err = json.Marshal(e); err != nil {
				return false, fmt.Errorf("pagerduty: encoding notification %d: %w", x.ID, err)
			}
		}
		retry, err := n.ep.Post(ctx, nil, body)
		if err != nil {
			return retry, fmt.Errorf("pagerduty: notification %d: %w", x.ID, err)
		}
		if x.Kind == notify.KindResolved && x.RoutedAt == "P1" {
			e.DedupKey = pageKey(e.DedupKey)
			if body, err = json.Marshal(e); err != nil {
				return false, fmt.Errorf("pagerduty: encoding notification %d: %w", x.ID, err)
			}
			if retry, err := n.ep.Post(ctx, nil, body); err != nil {
				return retry, fmt.Errorf("pagerduty: notification %d: %w", x.ID, err)
			}
		}
	}
	return false, nil
}
