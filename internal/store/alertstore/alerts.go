// Package alertstore is the sink's part for alerts: every alert with its
// evaluations, operators' acknowledgements and silences, and the outbox of
// notifications written in the same transaction as the alert changes they
// announce, which the notification senders drain.
package alertstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/riskwatch/riskwatch/internal/alert"
	"github.com/riskwatch/riskwatch/internal/notify"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/window"
)

// AlertChange is one evaluation that touched an alert, as it is persisted.
type AlertChange struct {
	// Live is the lifecycle's alert; its ID is set when first stored so
	// later evaluations update the same row.
	Live *alert.Alert
	// Snap is the alert's state right after this evaluation.
	Snap   alert.Alert
	Minute window.Minute
	Fires  bool
	Values map[string]any
	New    bool
	// Notify is "", or the kind of notification to enqueue, and
	// NotifyPriority the priority it is routed at (0: every receiver).
	Notify         string
	NotifyPriority rules.Priority
	// PrevPriority is the priority before an escalation.
	PrevPriority rules.Priority
	// Severity, Summary and DashboardURL go into the notification.
	Severity, Summary, DashboardURL string
}

// Route sends notifications to a receiver, optionally only for some rules
// and for priorities at least as urgent as MinPriority (0: all).
type Route struct {
	Receiver    string
	Rules       []string
	MinPriority rules.Priority
}

// Takes reports whether the route's receiver gets a notification of rule
// routed at priority p (0: a notification that predates priorities).
func (r Route) Takes(rule string, p rules.Priority) bool {
	return (len(r.Rules) == 0 || slices.Contains(r.Rules, rule)) && (p == 0 || r.MinPriority == 0 || p <= r.MinPriority)
}

// Store reads and writes alerts.
type Store struct{ db *store.DB }

// New returns the alerts of the sink db.
func New(db *store.DB) *Store { return &Store{db: db} }

// OutboxChannel is NOTIFYed by every transaction that enqueues
// notifications, so the process sending them hears of alerts raised by
// another (a worker) at once instead of at its next poll.
const OutboxChannel = "riskwatch_outbox"

// Marker marks minutes evaluated, in the transaction that stores their
// alerts: a single node's checkpoint, or a worker's partitions.
type Marker interface {
	QueueClosed(qb *pgx.Batch, db *store.DB, last window.Minute)
}

// AlertBatch is what one evaluated close of minutes writes.
type AlertBatch struct {
	LastClosed window.Minute
	Changes    []AlertChange
	Routes     []Route
	// Closed marks LastClosed evaluated.
	Closed Marker
}

// ApplyAlerts stores alert changes, their evaluations and their outbox rows,
// and marks the minutes evaluated, in one transaction: after a crash either
// the minute's alerts and notifications exist, or the minute is evaluated
// again. It returns the number of notifications enqueued.
//
// The close of a minute waits for it, and so does the stream, so it is
// sent in rounds, one batch each (it took three round trips per change): a
// change of an alert that this batch stores new needs the new row's ID
// (RETURNING), known once the round that inserts it has run. A close takes
// two rounds and the commit; a catch-up's batch of many minutes one more
// for each time an alert resolves and fires again within it.
func (s *Store) ApplyAlerts(ctx context.Context, b *AlertBatch) (int, error) {
	var w *alertWriter
	err := s.db.BatchTx(ctx, func(qb *pgx.Batch) error {
		w = &alertWriter{db: s.db, b: b, created: map[alert.Key]int{}}
		return w.round(qb)
	}, func(tx pgx.Tx) error {
		for !w.done {
			var qb pgx.Batch
			if err := w.round(&qb); err != nil {
				return err
			}
			if err := tx.SendBatch(ctx, &qb).Close(); err != nil {
				return fmt.Errorf("storing alerts through %s: %w", b.LastClosed, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for i := range b.Changes {
		c := &b.Changes[i]
		if c.Live != nil && c.Live.ID == 0 {
			c.Live.ID = c.Snap.ID
		}
	}
	return w.enqueued, nil
}

// alertWriter queues an AlertBatch's statements round by round.
type alertWriter struct {
	db *store.DB
	b  *AlertBatch
	// next is the first change not queued yet.
	next int
	// created is, by alert key, the change that stores the key's newest
	// new row in this batch.
	created map[alert.Key]int
	// pending are changes stored new by the round just sent, whose
	// evaluations and notifications wait for their IDs.
	pending  []int
	enqueued int
	done     bool
}

// round queues the evaluations and notifications of the alerts the
// previous round stored new, then the changes in order up to the first one
// of an alert this round stores new; the last round also marks the minutes
// evaluated.
func (w *alertWriter) round(qb *pgx.Batch) error {
	for _, i := range w.pending {
		if err := w.queueOutcome(qb, i); err != nil {
			return err
		}
	}
	w.pending = w.pending[:0]
	for ; w.next < len(w.b.Changes); w.next++ {
		i := w.next
		c := &w.b.Changes[i]
		a := &c.Snap
		// A new alert is always a new row: in one batch an alert can
		// resolve and the same rule fire again for the merchant, and the
		// second must not take over the first's row. Later changes of an
		// alert stored earlier in this batch find its ID by key.
		if a.ID == 0 && !c.New {
			if k, ok := w.created[a.Key()]; ok {
				// Stored new by this round: its ID comes when it runs.
				if w.b.Changes[k].Snap.ID == 0 {
					return nil
				}
				a.ID = w.b.Changes[k].Snap.ID
			} else if c.Live != nil {
				a.ID = c.Live.ID
			}
		}
		if err := queueAlert(qb, w.db, c); err != nil {
			return err
		}
		if a.ID == 0 {
			w.created[a.Key()] = i
			w.pending = append(w.pending, i)
			continue
		}
		if err := w.queueOutcome(qb, i); err != nil {
			return err
		}
	}
	if len(w.pending) > 0 {
		return nil
	}
	if w.enqueued > 0 {
		qb.Queue("SELECT pg_notify($1, '')", OutboxChannel)
	}
	w.b.Closed.QueueClosed(qb, w.db, w.b.LastClosed)
	w.done = true
	return nil
}

// queueOutcome queues change i's evaluation and notification, its alert's
// ID known.
func (w *alertWriter) queueOutcome(qb *pgx.Batch, i int) error {
	c := &w.b.Changes[i]
	vals, err := json.Marshal(c.Values)
	if err != nil {
		return fmt.Errorf("encoding evaluation values: %w", err)
	}
	queueExec(qb, "storing evaluation", fmt.Sprintf(`INSERT INTO %s (alert_id, minute, fires, "values") VALUES ($1, $2, $3, $4)
		ON CONFLICT (alert_id, minute) DO UPDATE SET fires = EXCLUDED.fires, "values" = EXCLUDED."values"`, w.db.Table("alert_evaluations")),
		c.Snap.ID, c.Minute.Start(), c.Fires, vals)
	if c.Notify == "" {
		return nil
	}
	n, err := queueNotification(qb, w.db, c, w.b.Routes)
	w.enqueued += n
	return err
}

// queueExec queues a statement whose error, if it fails, says what failed.
func queueExec(qb *pgx.Batch, what, sql string, args ...any) {
	qb.Queue(sql, args...).Fn = func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
}

// queueAlert queues the statement that stores the change's alert: a new
// row when it has no ID yet (which it gets when the batch runs), else an
// update of its row.
func queueAlert(qb *pgx.Batch, db *store.DB, c *AlertChange) error {
	a := &c.Snap
	vals, err := json.Marshal(a.Values)
	if err != nil {
		return fmt.Errorf("encoding alert values: %w", err)
	}
	if a.ID == 0 {
		if !c.New {
			return fmt.Errorf("alert %s/%d changed before it was stored", a.Rule, a.Merchant)
		}
		qb.Queue(fmt.Sprintf(`INSERT INTO %s (rule, merchant_id, state, active_at, resolved_at, last_eval_at, last_sent_at, false_count, "values",
				priority, notified_priority, continues, continues_notified)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id`, db.Table("alerts")),
			a.Rule, a.Merchant, a.State.String(), a.ActiveAt, nullTime(a.ResolvedAt), a.LastEvalAt, nullTime(a.LastSentAt), a.FalseCount, vals,
			nullPriority(a.Priority), nullPriority(a.Notified), nullID(a.Continues), nullPriority(a.ContinuesNotified)).QueryRow(func(row pgx.Row) error {
			if err := row.Scan(&a.ID); err != nil {
				return fmt.Errorf("storing new alert %s/%d: %w", a.Rule, a.Merchant, err)
			}
			return nil
		})
		return nil
	}
	queueExec(qb, fmt.Sprintf("updating alert %d", a.ID), fmt.Sprintf(`UPDATE %s SET state = $2, resolved_at = $3, last_eval_at = $4, last_sent_at = $5, false_count = $6,
		"values" = $7, priority = $8, notified_priority = $9, updated_at = now() WHERE id = $1`, db.Table("alerts")),
		a.ID, a.State.String(), nullTime(a.ResolvedAt), a.LastEvalAt, nullTime(a.LastSentAt), a.FalseCount, vals,
		nullPriority(a.Priority), nullPriority(a.Notified))
	return nil
}

func nullPriority(p rules.Priority) *int16 {
	if p == 0 {
		return nil
	}
	v := int16(p)
	return &v
}

func nullID(id int64) *int64 {
	if id == 0 {
		return nil
	}
	return &id
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// IdempotencyKey names one notification of one alert: the same alert,
// kind and minute always give the same key, across retries and restarts.
func IdempotencyKey(alertID int64, kind string, m window.Minute) string {
	return fmt.Sprintf("riskwatch-%d-%s-%d", alertID, kind, m.Start().Unix())
}

// queueNotification queues the outbox row of the change's notification
// (its alert's ID known) and a delivery to each route's receiver that takes
// it; it returns how many deliveries.
func queueNotification(qb *pgx.Batch, db *store.DB, c *AlertChange, routes []Route) (int, error) {
	a := &c.Snap
	n := notify.Notification{
		IdempotencyKey: IdempotencyKey(a.ID, c.Notify, c.Minute),
		Kind:           c.Notify,
		AlertID:        a.ID,
		Rule:           a.Rule,
		MerchantID:     a.Merchant,
		Severity:       c.Severity,
		Priority:       a.Priority.String(),
		RoutedAt:       c.NotifyPriority.String(),
		Continues:      a.Continues,
		Summary:        c.Summary,
		StartsAt:       a.ActiveAt,
		Minute:         c.Minute.Start(),
		Values:         c.Values,
		DashboardURL:   c.DashboardURL,
	}
	if c.Notify == alert.NotifyResolved {
		n.EndsAt = a.ResolvedAt
	}
	if c.Notify == alert.NotifyEscalated {
		n.PreviousPriority, n.PreviousSeverity = c.PrevPriority.String(), alert.Severity(a.Rule, c.PrevPriority)
	}
	payload, err := json.Marshal(n)
	if err != nil {
		return 0, fmt.Errorf("encoding notification: %w", err)
	}
	receivers := []string{}
	for _, r := range routes {
		if r.Takes(a.Rule, c.NotifyPriority) {
			receivers = append(receivers, r.Receiver)
		}
	}
	queueExec(qb, "enqueueing notification", fmt.Sprintf(`WITH n AS (INSERT INTO %s (alert_id, kind, idempotency_key, payload) VALUES ($1, $2, $3, $4) RETURNING id)
		INSERT INTO %s (notification_id, receiver) SELECT n.id, r FROM n, unnest($5::text[]) AS r`, db.Table("notifications"), db.Table("deliveries")),
		a.ID, c.Notify, n.IdempotencyKey, payload, receivers)
	return len(receivers), nil
}

const alertColumns = `id, rule, merchant_id, state, active_at, resolved_at, last_eval_at, last_sent_at, false_count, "values", acked_by, acked_at, ack_comment,
	coalesce(priority, 0), coalesce(notified_priority, 0), coalesce(continues, 0), coalesce(continues_notified, 0), coalesce(ack_priority, 0)`

func scanAlert(row pgx.Row) (*alert.Alert, error) {
	a := &alert.Alert{}
	var state string
	var resolved, sent, ackedAt *time.Time
	var ackedBy, comment *string
	var vals []byte
	var prio, notified, contNotified, ackPrio int16
	if err := row.Scan(&a.ID, &a.Rule, &a.Merchant, &state, &a.ActiveAt, &resolved, &a.LastEvalAt, &sent, &a.FalseCount, &vals, &ackedBy, &ackedAt, &comment,
		&prio, &notified, &a.Continues, &contNotified, &ackPrio); err != nil {
		return nil, err
	}
	a.Priority, a.Notified, a.ContinuesNotified = rules.Priority(prio), rules.Priority(notified), rules.Priority(contNotified)
	var err error
	if a.State, err = alert.ParseState(state); err != nil {
		return nil, err
	}
	if resolved != nil {
		a.ResolvedAt = *resolved
	}
	if sent != nil {
		a.LastSentAt = *sent
	}
	if ackedBy != nil && ackedAt != nil {
		a.Ack = &alert.Ack{By: *ackedBy, At: *ackedAt, Priority: rules.Priority(ackPrio)}
		if comment != nil {
			a.Ack.Comment = *comment
		}
	}
	if err := json.Unmarshal(vals, &a.Values); err != nil {
		return nil, fmt.Errorf("decoding alert %d values: %w", a.ID, err)
	}
	return a, nil
}

// AlertFilter selects alerts for listing; zero fields select everything.
type AlertFilter struct {
	State    string // "firing", "resolved" or ""
	Rule     string
	Merchant int64
	Limit    int // default 100
	// Before pages: only alerts with a smaller id (0: no bound).
	Before int64
	// ActiveFrom/ActiveTo, when set, keep alerts whose active period
	// (active_at until resolved_at, or still open) overlaps [ActiveFrom, ActiveTo).
	ActiveFrom, ActiveTo time.Time
	// MinPriority keeps alerts at least this urgent (0: all, including
	// those from before priorities).
	MinPriority rules.Priority
	// Order: OrderNewest (default), OrderPriority (most urgent first, then
	// the most money at stake) or OrderMoney (the most money at stake
	// first).
	Order string
}

// Orders of AlertFilter.
const (
	OrderNewest   = "newest"
	OrderPriority = "priority"
	OrderMoney    = "money"
)

// Alerts lists alerts, newest first.
func (s *Store) Alerts(ctx context.Context, f AlertFilter) ([]*alert.Alert, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	// Money at stake is the exposure, or for an alert without one (from
	// before priorities) what its hour canceled.
	const money = `coalesce(("values"->>'exposure')::numeric, ("values"->>'canceled_amount_h')::numeric, 0)`
	order := "active_at DESC, id DESC"
	switch f.Order {
	case OrderPriority:
		order = "coalesce(priority, 4), " + money + " DESC, active_at DESC, id DESC"
	case OrderMoney:
		order = money + " DESC, active_at DESC, id DESC"
	}
	rows, err := s.db.Pool().Query(ctx, fmt.Sprintf(`SELECT %s FROM %s
		WHERE ($1 = '' OR state = $1) AND ($2 = '' OR rule = $2) AND ($3::bigint = 0 OR merchant_id = $3) AND ($5::bigint = 0 OR id < $5)
			AND ($6::timestamptz IS NULL OR coalesce(resolved_at, 'infinity') >= $6) AND ($7::timestamptz IS NULL OR active_at < $7)
			AND ($8::smallint = 0 OR priority <= $8)
		ORDER BY %s LIMIT $4`, alertColumns, s.db.Table("alerts"), order),
		f.State, f.Rule, f.Merchant, f.Limit, f.Before, nullTime(f.ActiveFrom), nullTime(f.ActiveTo), int16(f.MinPriority))
	if err != nil {
		return nil, fmt.Errorf("listing alerts: %w", err)
	}
	out, err := pgx.AppendRows([]*alert.Alert(nil), rows, func(r pgx.CollectableRow) (*alert.Alert, error) { return scanAlert(r) })
	if err != nil {
		return nil, fmt.Errorf("listing alerts: %w", err)
	}
	return out, nil
}

// OpenAlerts returns every firing alert of the rules, for the lifecycle
// after a restart; alerts about riskwatch itself (merchant 0) are not the
// lifecycle's.
func (s *Store) OpenAlerts(ctx context.Context) ([]*alert.Alert, error) {
	all, err := s.Alerts(ctx, AlertFilter{State: "firing", Limit: 1 << 30})
	return slices.DeleteFunc(all, func(a *alert.Alert) bool { return a.Merchant == 0 }), err
}

// RecentlyResolved returns the rules' alerts resolved since since after
// being notified, which a re-fire would continue (SPEC §7a).
func (s *Store) RecentlyResolved(ctx context.Context, since time.Time) ([]*alert.Alert, error) {
	rows, err := s.db.Pool().Query(ctx, fmt.Sprintf(`SELECT DISTINCT ON (rule, merchant_id) %s FROM %s
		WHERE state = 'resolved' AND resolved_at >= $1 AND last_sent_at IS NOT NULL AND merchant_id <> 0
		ORDER BY rule, merchant_id, resolved_at DESC, id DESC`, alertColumns, s.db.Table("alerts")), since)
	if err != nil {
		return nil, fmt.Errorf("reading recently resolved alerts: %w", err)
	}
	out, err := pgx.AppendRows([]*alert.Alert(nil), rows, func(r pgx.CollectableRow) (*alert.Alert, error) { return scanAlert(r) })
	if err != nil {
		return nil, fmt.Errorf("reading recently resolved alerts: %w", err)
	}
	return out, nil
}

// Acks returns the acknowledgements of open alerts by alert ID.
func (s *Store) Acks(ctx context.Context) (map[int64]alert.Ack, error) {
	rows, err := s.db.Pool().Query(ctx, fmt.Sprintf(`SELECT id, acked_by, acked_at, coalesce(ack_comment, ''), coalesce(ack_priority, 0) FROM %s
		WHERE state = 'firing' AND acked_at IS NOT NULL`, s.db.Table("alerts")))
	if err != nil {
		return nil, fmt.Errorf("reading acks: %w", err)
	}
	out := map[int64]alert.Ack{}
	var id int64
	var a alert.Ack
	var p int16
	if _, err := pgx.ForEachRow(rows, []any{&id, &a.By, &a.At, &a.Comment, &p}, func() error {
		a.Priority = rules.Priority(p)
		out[id] = a
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading acks: %w", err)
	}
	return out, nil
}

// ErrNotFound: no such alert or silence.
var ErrNotFound = errors.New("not found")

// ErrNotOpen: the alert is resolved, there is nothing to acknowledge.
var ErrNotOpen = errors.New("alert is not open")

// Ack acknowledges an open alert: it stays open but is not notified again.
// The ack names by.Name and is recorded in the audit.
func (s *Store) Ack(ctx context.Context, id int64, by Actor, comment string, at time.Time) (*alert.Alert, error) {
	var a *alert.Alert
	err := s.db.Tx(ctx, func(tx pgx.Tx) error {
		// The ack covers the priority the alert has now: an escalation past
		// it is notified again.
		row := tx.QueryRow(ctx, fmt.Sprintf(`UPDATE %s SET acked_by = $2, acked_at = $3, ack_comment = $4, ack_priority = priority, updated_at = now()
			WHERE id = $1 AND state = 'firing' RETURNING %s`, s.db.Table("alerts"), alertColumns), id, by.Name, at, comment)
		var err error
		a, err = scanAlert(row)
		if errors.Is(err, pgx.ErrNoRows) {
			var state string
			if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT state FROM %s WHERE id = $1`, s.db.Table("alerts")), id).Scan(&state); errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("alert %d: %w", id, ErrNotFound)
			}
			return fmt.Errorf("alert %d: %w", id, ErrNotOpen)
		}
		if err != nil {
			return fmt.Errorf("acknowledging alert %d: %w", id, err)
		}
		return s.record(ctx, tx, &AuditEntry{At: at, Actor: by, Action: ActionAck, AlertID: id, Merchant: a.Merchant, Rule: a.Rule, Comment: comment})
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Silence mutes notifications of a rule (or all rules when Rule is "") for
// a merchant until EndsAt.
type Silence struct {
	ID        int64
	Merchant  int64
	Rule      string
	StartsAt  time.Time
	EndsAt    time.Time
	Reason    string
	CreatedBy string
}

const silenceColumns = `id, merchant_id, coalesce(rule, ''), starts_at, ends_at, reason, created_by`

// Covers reports whether the silence mutes rule for merchant at t.
func (s Silence) Covers(rule string, merchant int64, t time.Time) bool {
	return s.Merchant == merchant && (s.Rule == "" || s.Rule == rule) && !t.Before(s.StartsAt) && t.Before(s.EndsAt)
}

// AddSilence stores a silence made by by (its CreatedBy is by.Name),
// records it in the audit, and returns it with its ID.
func (s *Store) AddSilence(ctx context.Context, sl Silence, by Actor) (Silence, error) {
	sl.CreatedBy = by.Name
	err := s.db.Tx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %s (merchant_id, rule, starts_at, ends_at, reason, created_by)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`, s.db.Table("silences")),
			sl.Merchant, nullString(sl.Rule), sl.StartsAt, sl.EndsAt, sl.Reason, sl.CreatedBy).Scan(&sl.ID)
		if err != nil {
			return fmt.Errorf("adding silence: %w", err)
		}
		return s.record(ctx, tx, &AuditEntry{At: sl.StartsAt, Actor: by, Action: ActionSilenceCreate, SilenceID: sl.ID, Merchant: sl.Merchant, Rule: sl.Rule, Comment: sl.Reason})
	})
	return sl, err
}

// Silences lists silences that have not ended by at.
func (s *Store) Silences(ctx context.Context, at time.Time) ([]Silence, error) {
	rows, err := s.db.Pool().Query(ctx, fmt.Sprintf(`SELECT %s FROM %s WHERE ends_at > $1 ORDER BY merchant_id, id`, silenceColumns, s.db.Table("silences")), at)
	if err != nil {
		return nil, fmt.Errorf("listing silences: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Silence])
}

// ExpireSilence ends a silence at at, by by (recorded in the audit), and
// returns it as it now is.
func (s *Store) ExpireSilence(ctx context.Context, id int64, at time.Time, by Actor) (Silence, error) {
	var sl Silence
	err := s.db.Tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, fmt.Sprintf(`UPDATE %s SET ends_at = greatest(starts_at + interval '1 microsecond', $2) WHERE id = $1 AND ends_at > $2
			RETURNING %s`, s.db.Table("silences"), silenceColumns), id, at)
		if err != nil {
			return fmt.Errorf("expiring silence %d: %w", id, err)
		}
		sl, err = pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[Silence])
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("silence %d: %w (or already ended)", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("expiring silence %d: %w", id, err)
		}
		return s.record(ctx, tx, &AuditEntry{At: at, Actor: by, Action: ActionSilenceExpire, SilenceID: id, Merchant: sl.Merchant, Rule: sl.Rule})
	})
	return sl, err
}

// SystemAlert is an alert about riskwatch itself (merchant 0), raised and
// resolved outside the rules' lifecycle.
type SystemAlert struct {
	Rule string
	// Instance names the process (a worker's member name), so one
	// process resolves only its own alert.
	Instance                        string
	At, Since                       time.Time
	Severity, Summary, DashboardURL string
	Values                          map[string]any
}

// openSystemAlert locks the instance's open alert of the rule, if any.
func (s *Store) openSystemAlert(ctx context.Context, tx pgx.Tx, a SystemAlert) (*alert.Alert, error) {
	row := tx.QueryRow(ctx, fmt.Sprintf(`SELECT %s FROM %s WHERE rule = $1 AND merchant_id = 0 AND state = 'firing'
		AND coalesce("values"->>'instance', '') = $2 FOR UPDATE`, alertColumns, s.db.Table("alerts")), a.Rule, a.Instance)
	open, err := scanAlert(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading open %s alert: %w", a.Rule, err)
	}
	return open, nil
}

// RaiseSystemAlert opens the alert and enqueues its firing notification,
// unless the instance has it open already (raised before a restart).
func (s *Store) RaiseSystemAlert(ctx context.Context, a SystemAlert, routes []Route) error {
	return s.db.Tx(ctx, func(tx pgx.Tx) error {
		open, err := s.openSystemAlert(ctx, tx, a)
		if err != nil || open != nil {
			return err
		}
		return s.storeSystem(ctx, tx, &AlertChange{
			Snap: alert.Alert{Rule: a.Rule, State: alert.Firing, ActiveAt: a.Since, LastEvalAt: a.At, LastSentAt: a.At, Values: a.Values},
			New:  true, Minute: window.MinuteOf(a.At), Values: a.Values, Notify: alert.NotifyFiring,
			Severity: a.Severity, Summary: a.Summary, DashboardURL: a.DashboardURL,
		}, routes)
	})
}

// ResolveSystemAlert resolves the instance's open alert of the rule, if
// there is one, and enqueues the resolve.
func (s *Store) ResolveSystemAlert(ctx context.Context, a SystemAlert, routes []Route) error {
	return s.db.Tx(ctx, func(tx pgx.Tx) error {
		open, err := s.openSystemAlert(ctx, tx, a)
		if err != nil || open == nil {
			return err
		}
		open.State, open.ResolvedAt, open.LastEvalAt = alert.Resolved, a.At, a.At
		return s.storeSystem(ctx, tx, &AlertChange{Snap: *open, Minute: window.MinuteOf(a.At), Values: open.Values, Notify: alert.NotifyResolved,
			Severity: a.Severity, Summary: a.Summary, DashboardURL: a.DashboardURL}, routes)
	})
}

// storeSystem stores a system alert's change and enqueues its notification.
func (s *Store) storeSystem(ctx context.Context, tx pgx.Tx, c *AlertChange, routes []Route) error {
	var qb pgx.Batch
	if err := queueAlert(&qb, s.db, c); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, &qb).Close(); err != nil {
		return err
	}
	qb = pgx.Batch{}
	n, err := queueNotification(&qb, s.db, c, routes)
	if err != nil {
		return err
	}
	if n > 0 {
		qb.Queue("SELECT pg_notify($1, '')", OutboxChannel)
	}
	if err := tx.SendBatch(ctx, &qb).Close(); err != nil {
		return fmt.Errorf("announcing notifications: %w", err)
	}
	return nil
}

// Alert returns one alert by id, or ErrNotFound.
func (s *Store) Alert(ctx context.Context, id int64) (*alert.Alert, error) {
	a, err := scanAlert(s.db.Pool().QueryRow(ctx, fmt.Sprintf(`SELECT %s FROM %s WHERE id = $1`, alertColumns, s.db.Table("alerts")), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("alert %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading alert %d: %w", id, err)
	}
	return a, nil
}
