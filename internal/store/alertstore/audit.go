package alertstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Actor is the person behind an operator action, and where the action
// came from.
type Actor struct {
	// Name is recorded as the ack's and the silence's author.
	Name string
	// Via says how Name is known: ViaProxy, ViaBasic, ViaTyped or ViaCLI.
	Via   string
	Email string
	// Peer is an API request's TCP peer address; ForwardedFor the
	// X-Forwarded-For header a trusted proxy passed. Empty from the CLI.
	Peer, ForwardedFor string
}

// How an actor's name is known.
const (
	// ViaProxy: an SSO proxy from a trusted address said who it is.
	ViaProxy = "proxy"
	// ViaBasic: the HTTP Basic username whose password matched.
	ViaBasic = "basic"
	// ViaTyped: the name the request carried, unverified (a token or no
	// credentials at all).
	ViaTyped = "typed"
	// ViaCLI: the CLI's --by, from someone who holds the sink's DSN.
	ViaCLI = "cli"
)

// Operator actions in the audit.
const (
	ActionAck           = "ack"
	ActionComment       = "comment"
	ActionSilenceCreate = "silence_create"
	ActionSilenceExpire = "silence_expire"
)

// AuditEntry is one operator action.
type AuditEntry struct {
	ID     int64
	At     time.Time
	Actor  Actor
	Action string
	// AlertID and SilenceID are what the action was on (0: none);
	// Merchant and Rule are theirs ("" rule: a silence of every rule).
	AlertID, SilenceID, Merchant int64
	Rule                         string
	// Comment is the ack's comment, the comment itself, or the silence's
	// reason.
	Comment string
}

// record writes an audit entry in the action's own transaction: the
// action and its record exist together or not at all.
func (s *Store) record(ctx context.Context, tx pgx.Tx, e *AuditEntry) error {
	err := tx.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %s (at, actor, via, email, action, alert_id, silence_id, merchant_id, rule, comment, peer, forwarded_for)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id`, s.db.Table("operator_actions")),
		e.At, e.Actor.Name, e.Actor.Via, nullString(e.Actor.Email), e.Action, nullID(e.AlertID), nullID(e.SilenceID), nullID(e.Merchant),
		nullString(e.Rule), e.Comment, nullString(e.Actor.Peer), nullString(e.Actor.ForwardedFor)).Scan(&e.ID)
	if err != nil {
		return fmt.Errorf("recording %s by %s: %w", e.Action, e.Actor.Name, err)
	}
	return nil
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

const auditColumns = `id, at, actor, via, coalesce(email, ''), action, coalesce(alert_id, 0), coalesce(silence_id, 0), coalesce(merchant_id, 0),
	coalesce(rule, ''), comment, coalesce(peer, ''), coalesce(forwarded_for, '')`

func scanAudit(row pgx.CollectableRow) (AuditEntry, error) {
	var e AuditEntry
	err := row.Scan(&e.ID, &e.At, &e.Actor.Name, &e.Actor.Via, &e.Actor.Email, &e.Action, &e.AlertID, &e.SilenceID, &e.Merchant,
		&e.Rule, &e.Comment, &e.Actor.Peer, &e.Actor.ForwardedFor)
	return e, err
}

// Comment records a comment on an alert, open or resolved.
func (s *Store) Comment(ctx context.Context, alertID int64, by Actor, text string, at time.Time) (AuditEntry, error) {
	e := AuditEntry{At: at, Actor: by, Action: ActionComment, AlertID: alertID, Comment: text}
	err := s.db.Tx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT merchant_id, rule FROM %s WHERE id = $1`, s.db.Table("alerts")), alertID).Scan(&e.Merchant, &e.Rule)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("alert %d: %w", alertID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("reading alert %d: %w", alertID, err)
		}
		return s.record(ctx, tx, &e)
	})
	return e, err
}

// AlertAudit lists, oldest first, what operators did about an alert: its
// acknowledgements and comments, and the silences of its merchant and rule
// whose time overlaps the alert's (whether made for it or not: they are
// why it was not notified).
func (s *Store) AlertAudit(ctx context.Context, alertID int64) ([]AuditEntry, error) {
	if _, err := s.Alert(ctx, alertID); err != nil {
		return nil, err
	}
	rows, err := s.db.Pool().Query(ctx, fmt.Sprintf(`SELECT %[1]s FROM %[2]s
		WHERE alert_id = $1 OR silence_id IN (
			SELECT s.id FROM %[3]s s JOIN %[4]s a ON a.merchant_id = s.merchant_id AND (s.rule IS NULL OR s.rule = a.rule)
			WHERE a.id = $1 AND s.starts_at < coalesce(a.resolved_at, 'infinity') AND s.ends_at > a.active_at)
		ORDER BY at, id`, auditColumns, s.db.Table("operator_actions"), s.db.Table("silences"), s.db.Table("alerts")), alertID)
	if err != nil {
		return nil, fmt.Errorf("reading the audit of alert %d: %w", alertID, err)
	}
	out, err := pgx.CollectRows(rows, scanAudit)
	if err != nil {
		return nil, fmt.Errorf("reading the audit of alert %d: %w", alertID, err)
	}
	return out, nil
}

// AuditFilter selects audit entries, newest first.
type AuditFilter struct {
	// Since keeps entries at or after it (zero: all).
	Since time.Time
	// Before pages: only entries with a smaller id (0: no bound).
	Before int64
	Limit  int // default 100
}

// Audit lists operator actions, newest first.
func (s *Store) Audit(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := s.db.Pool().Query(ctx, fmt.Sprintf(`SELECT %s FROM %s
		WHERE ($1::timestamptz IS NULL OR at >= $1) AND ($2::bigint = 0 OR id < $2)
		ORDER BY id DESC LIMIT $3`, auditColumns, s.db.Table("operator_actions")), nullTime(f.Since), f.Before, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("listing operator actions: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanAudit)
	if err != nil {
		return nil, fmt.Errorf("listing operator actions: %w", err)
	}
	return out, nil
}
