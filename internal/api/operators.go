package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/riskwatch/riskwatch/internal/alert"
	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store/alertstore"
)

// decodeBody reads a state change's JSON body into dst; unknown fields
// are refused, an empty body leaves dst as it is. shape shows the body
// expected.
func decodeBody(r *http.Request, dst any, shape string) error {
	dec := json.NewDecoder(r.Body) // bounded by guardChanges
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil && !errors.Is(err, io.EOF) {
		return badf("body: want JSON %s: %v", shape, err)
	}
	return nil
}

// auditJSON is one operator action.
type auditJSON struct {
	ID           int64     `json:"id"`
	At           time.Time `json:"at"`
	Action       string    `json:"action"`
	By           string    `json:"by"`
	Via          string    `json:"via"`
	Email        *string   `json:"email"`
	AlertID      *int64    `json:"alert_id"`
	SilenceID    *int64    `json:"silence_id"`
	MerchantID   *int64    `json:"merchant_id"`
	Rule         *string   `json:"rule"`
	Comment      string    `json:"comment"`
	Peer         *string   `json:"peer"`
	ForwardedFor *string   `json:"forwarded_for"`
}

func orNull[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

func toAuditJSON(e alertstore.AuditEntry) auditJSON {
	return auditJSON{ID: e.ID, At: e.At.UTC(), Action: e.Action, By: e.Actor.Name, Via: e.Actor.Via, Email: orNull(e.Actor.Email),
		AlertID: orNull(e.AlertID), SilenceID: orNull(e.SilenceID), MerchantID: orNull(e.Merchant), Rule: orNull(e.Rule),
		Comment: e.Comment, Peer: orNull(e.Actor.Peer), ForwardedFor: orNull(e.Actor.ForwardedFor)}
}

func auditList(list []alertstore.AuditEntry) []auditJSON {
	out := make([]auditJSON, len(list))
	for i, e := range list {
		out[i] = toAuditJSON(e)
	}
	return out
}

func (s *Server) handleAlert(r *http.Request) (any, error) {
	id, err := parseID(r.PathValue("id"), "alert id")
	if err != nil {
		return nil, err
	}
	a, err := s.alerts.Alert(r.Context(), id)
	if err != nil {
		return nil, err
	}
	return s.alertsJSON(r, []*alert.Alert{a})[0], nil
}

// alertAction reads an operator action on an alert: the alert's id from
// the path, the body {"by": "...", "comment": "..."}, and who acts
// (what completes "who … is required").
func alertAction(r *http.Request, what string) (int64, alertstore.Actor, string, error) {
	id, err := parseID(r.PathValue("id"), "alert id")
	if err != nil {
		return 0, alertstore.Actor{}, "", err
	}
	var body struct {
		By      string `json:"by"`
		Comment string `json:"comment"`
	}
	if err := decodeBody(r, &body, `{"by": "...", "comment": "..."}`); err != nil {
		return 0, alertstore.Actor{}, "", err
	}
	if len(body.Comment) > 4000 {
		return 0, alertstore.Actor{}, "", badf("comment: at most 4000 characters")
	}
	who, err := actor(r, body.By, what)
	return id, who, body.Comment, err
}

func (s *Server) handleComment(r *http.Request) (any, error) {
	id, who, comment, err := alertAction(r, "comments")
	if err != nil {
		return nil, err
	}
	if comment = strings.TrimSpace(comment); comment == "" {
		return nil, badf("comment: required")
	}
	e, err := s.alerts.Comment(r.Context(), id, who, comment, s.now())
	if err != nil {
		return nil, err
	}
	s.log.Info("alert commented", "id", id, "by", who.Name, "via", who.Via)
	return toAuditJSON(e), nil
}

func (s *Server) handleAlertAudit(r *http.Request) (any, error) {
	id, err := parseID(r.PathValue("id"), "alert id")
	if err != nil {
		return nil, err
	}
	list, err := s.alerts.AlertAudit(r.Context(), id)
	if err != nil {
		return nil, err
	}
	return map[string]any{"alert_id": id, "entries": auditList(list)}, nil
}

func (s *Server) handleAudit(r *http.Request) (any, error) {
	q := r.URL.Query()
	var f alertstore.AuditFilter
	var err error
	if f.Limit, err = parseLimit(q, 100, 500); err != nil {
		return nil, err
	}
	if f.Since, _, err = s.parseTime(q, "since"); err != nil {
		return nil, err
	}
	if v := q.Get("before"); v != "" {
		if f.Before, err = parseID(v, "before"); err != nil {
			return nil, err
		}
	}
	list, err := s.alerts.Audit(r.Context(), f)
	if err != nil {
		return nil, err
	}
	return map[string]any{"entries": auditList(list)}, nil
}

// silenceJSON is a silence; rule null silences every rule.
type silenceJSON struct {
	ID         int64     `json:"id"`
	MerchantID int64     `json:"merchant_id"`
	Rule       *string   `json:"rule"`
	StartsAt   time.Time `json:"starts_at"`
	EndsAt     time.Time `json:"ends_at"`
	Reason     string    `json:"reason"`
	CreatedBy  string    `json:"created_by"`
}

func toSilenceJSON(sl alertstore.Silence) silenceJSON {
	return silenceJSON{ID: sl.ID, MerchantID: sl.Merchant, Rule: orNull(sl.Rule), StartsAt: sl.StartsAt.UTC(), EndsAt: sl.EndsAt.UTC(),
		Reason: sl.Reason, CreatedBy: sl.CreatedBy}
}

// handleSilences lists the silences that have not ended, optionally of one
// merchant.
func (s *Server) handleSilences(r *http.Request) (any, error) {
	var merchant int64
	if v := r.URL.Query().Get("merchant"); v != "" {
		var err error
		if merchant, err = parseID(v, "merchant"); err != nil {
			return nil, err
		}
	}
	list, err := s.alerts.Silences(r.Context(), s.now())
	if err != nil {
		return nil, err
	}
	out := []silenceJSON{}
	for _, sl := range list {
		if merchant == 0 || sl.Merchant == merchant {
			out = append(out, toSilenceJSON(sl))
		}
	}
	return map[string]any{"silences": out}, nil
}

// maxSilence bounds a silence's length given as a duration, far beyond
// any sensible one and far from where a time overflows.
const maxSilence = 10 * 365 * 24 * time.Hour

func (s *Server) handleAddSilence(r *http.Request) (any, error) {
	var body struct {
		MerchantID int64  `json:"merchant_id"`
		Rule       string `json:"rule"`
		EndsAt     string `json:"ends_at"`
		For        string `json:"for"`
		Reason     string `json:"reason"`
		By         string `json:"by"`
	}
	if err := decodeBody(r, &body, `{"merchant_id": 7, "rule": "", "for": "2h" or "ends_at": "...", "reason": "...", "by": "..."}`); err != nil {
		return nil, err
	}
	now := s.now()
	if body.MerchantID < 1 {
		return nil, badf("merchant_id: want a positive integer id, got %d", body.MerchantID)
	}
	if body.Rule != "" && body.Rule != rules.CancelRateSpike && body.Rule != rules.VolumeDrop {
		return nil, badf("rule: want %s, %s or empty (every rule), got %q", rules.CancelRateSpike, rules.VolumeDrop, body.Rule)
	}
	var ends time.Time
	switch {
	case (body.EndsAt == "") == (body.For == ""):
		return nil, badf("ends_at or for: give exactly one")
	case body.For != "":
		d, err := config.ParseDuration(body.For)
		if err != nil || d.D() <= 0 || d.D() > maxSilence {
			return nil, badf("for: want a duration such as 90m, 2h or 1d, up to %s, got %q", config.Duration(maxSilence), body.For)
		}
		ends = now.Add(d.D())
	default:
		t, _, err := s.parseTime(url.Values{"ends_at": {body.EndsAt}}, "ends_at")
		if err != nil {
			return nil, err
		}
		if !t.After(now) {
			return nil, badf("ends_at: %s is not in the future", body.EndsAt)
		}
		ends = t
	}
	body.Reason = strings.TrimSpace(body.Reason)
	if body.Reason == "" || len(body.Reason) > 1000 {
		return nil, badf("reason: required (a known promotion, a merchant under review), at most 1000 characters")
	}
	who, err := actor(r, body.By, "silences")
	if err != nil {
		return nil, err
	}
	sl, err := s.alerts.AddSilence(r.Context(), alertstore.Silence{Merchant: body.MerchantID, Rule: body.Rule, StartsAt: now, EndsAt: ends, Reason: body.Reason}, who)
	if err != nil {
		return nil, err
	}
	s.log.Info("silence added", "id", sl.ID, "merchant", sl.Merchant, "rule", sl.Rule, "until", sl.EndsAt, "by", who.Name, "via", who.Via)
	return toSilenceJSON(sl), nil
}

func (s *Server) handleExpireSilence(r *http.Request) (any, error) {
	id, err := parseID(r.PathValue("id"), "silence id")
	if err != nil {
		return nil, err
	}
	var body struct {
		By string `json:"by"`
	}
	if err := decodeBody(r, &body, `{"by": "..."}`); err != nil {
		return nil, err
	}
	who, err := actor(r, body.By, "expires the silence")
	if err != nil {
		return nil, err
	}
	sl, err := s.alerts.ExpireSilence(r.Context(), id, s.now(), who)
	if err != nil {
		return nil, err
	}
	s.log.Info("silence expired", "id", sl.ID, "merchant", sl.Merchant, "by", who.Name, "via", who.Via)
	return toSilenceJSON(sl), nil
}
