// Package webhook sends notifications as generic JSON to any HTTP endpoint.
//
// Each request is a POST of
//
//	{"version": "1", "notifications": [{...}]}
//
// where every item carries every Notification field in snake_case (times as
// RFC 3339 strings in UTC, ends_at null unless the alert resolved), with the
// headers Content-Type: application/json, User-Agent: riskwatch,
// Idempotency-Key and any configured ones (e.g. Authorization).
//
// One notification per request (MaxBatch 1): then the Idempotency-Key header
// names exactly what the request carries, and a receiver can dedup with
// nothing more than a key-value store and its web framework's middleware.
// The item repeats the key as "idempotency_key" for receivers that read the
// body. The array stays so the format can batch later without a new version.
package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/riskwatch/riskwatch/internal/notify"
)

// Version is the payload's format version.
const Version = "1"

// Config configures a webhook receiver.
type Config struct {
	URL        string            // http(s); required
	Timeout    time.Duration     // per request; default 10s
	Headers    map[string]string // extra request headers, e.g. Authorization
	HTTPClient *http.Client      // default: notify.NewHTTPClient()
}

// Notifier posts notifications to a webhook.
type Notifier struct{ ep *notify.Endpoint }

// New validates c and returns a Notifier.
func New(c Config) (*Notifier, error) {
	ep, err := notify.NewEndpoint(c.URL, c.Timeout, c.Headers, c.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	return &Notifier{ep: ep}, nil
}

// MaxBatch is 1: one notification per request, so Idempotency-Key is exact.
func (n *Notifier) MaxBatch() int { return 1 }

// Message is the request body.
type Message struct {
	Version       string `json:"version"`
	Notifications []Item `json:"notifications"`
}

// Item is one notification on the wire.
type Item struct {
	ID             int64  `json:"id"`
	IdempotencyKey string `json:"idempotency_key"`
	Kind           string `json:"kind"`
	AlertID        int64  `json:"alert_id"`
	Rule           string `json:"rule"`
	MerchantID     int64  `json:"merchant_id"`
	MerchantName   string `json:"merchant_name"`
	Severity       string `json:"severity"`
	// Priority (P1…P3, "" for an alert from before priorities), the
	// priority the notification was routed at, the one an escalation
	// left, and the earlier alert a "continued" one continues.
	Priority         string         `json:"priority"`
	RoutedAt         string         `json:"routed_at"`
	PreviousPriority *string        `json:"previous_priority"` // null unless escalated
	PreviousSeverity *string        `json:"previous_severity"` // null unless escalated
	Continues        *int64         `json:"continues"`         // null unless continued
	Summary          string         `json:"summary"`
	StartsAt         string         `json:"starts_at"`
	EndsAt           *string        `json:"ends_at"` // null unless resolved
	Minute           string         `json:"minute"`
	Values           map[string]any `json:"values"`
	DashboardURL     string         `json:"dashboard_url"`
	CreatedAt        string         `json:"created_at"`
}

// NewMessage builds the body for ns.
func NewMessage(ns ...notify.Notification) Message {
	m := Message{Version: Version, Notifications: make([]Item, 0, len(ns))}
	for _, n := range ns {
		it := Item{
			ID:             n.ID,
			IdempotencyKey: n.IdempotencyKey,
			Kind:           n.Kind,
			AlertID:        n.AlertID,
			Rule:           n.Rule,
			MerchantID:     n.MerchantID,
			MerchantName:   n.MerchantName,
			Severity:       n.Severity,
			Priority:       n.Priority,
			RoutedAt:       n.RoutedAt,
			Summary:        n.Summary,
			StartsAt:       notify.FormatTime(n.StartsAt),
			Minute:         notify.FormatTime(n.Minute),
			Values:         notify.JSONValues(n.Values),
			DashboardURL:   n.DashboardURL,
			CreatedAt:      notify.FormatTime(n.CreatedAt),
		}
		if n.PreviousPriority != "" {
			it.PreviousPriority, it.PreviousSeverity = &n.PreviousPriority, &n.PreviousSeverity
		}
		if n.Continues != 0 {
			it.Continues = &n.Continues
		}
		if !n.EndsAt.IsZero() {
			s := notify.FormatTime(n.EndsAt)
			it.EndsAt = &s
		}
		m.Notifications = append(m.Notifications, it)
	}
	return m
}

// Notify posts ns in one request. The Idempotency-Key header is set when ns
// holds exactly one notification, which is what the Sender sends (MaxBatch).
func (n *Notifier) Notify(ctx context.Context, ns ...notify.Notification) (bool, error) {
	if len(ns) == 0 {
		return false, nil
	}
	body, err := json.Marshal(NewMessage(ns...))
	if err != nil {
		return false, fmt.Errorf("webhook: encoding %d notifications (first id %d): %w", len(ns), ns[0].ID, err)
	}
	header := n.ep.Header.Clone()
	if len(ns) == 1 && ns[0].IdempotencyKey != "" {
		header.Set("Idempotency-Key", ns[0].IdempotencyKey)
	}
	retry, err := n.ep.Post(ctx, header, body)
	if err != nil {
		return retry, fmt.Errorf("webhook: notification %d: %w", ns[0].ID, err)
	}
	return false, nil
}
