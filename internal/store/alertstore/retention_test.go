package alertstore

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/store/aggregates"
)

// sinkRows lists one table's ids (a key expression) in order.
func sinkRows(t *testing.T, s *Store, table, key string) []string {
	t.Helper()
	rows, err := s.db.Pool().Query(context.Background(), fmt.Sprintf(`SELECT (%s)::text FROM %s ORDER BY 1`, key, s.db.Table(table)))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	return out
}

func sqlExec(t *testing.T, s *Store, sql string, args ...any) {
	t.Helper()
	if _, err := s.db.Pool().Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestPruneAlerts: resolved alerts before the cutoff go with their
// evaluations, notifications and deliveries; one resolved exactly at the
// cutoff, one after it, open alerts (acknowledged or not, however old) and
// a resolved one still owed a delivery stay, with everything attached.
func TestPruneAlerts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	cut := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	long := cut.Add(-30 * 24 * time.Hour)
	alerts := []struct {
		id       int64
		state    string
		resolved *time.Time
		acked    bool
		delivery string // status of its notification's delivery
	}{
		{1, "resolved", ptr(cut.Add(-time.Hour)), false, "delivered"}, // goes
		{2, "resolved", ptr(cut.Add(time.Hour)), false, "delivered"},  // resolved after the cutoff
		{3, "resolved", ptr(cut.Add(-10 * 24 * time.Hour)), false, "pending"},
		{4, "firing", nil, false, "delivered"},
		{5, "firing", nil, true, "delivered"},
		{6, "resolved", ptr(cut), false, "rejected"},                        // exactly at the cutoff
		{7, "resolved", ptr(cut.Add(-time.Microsecond)), false, "rejected"}, // goes
	}
	for _, a := range alerts {
		sqlExec(t, s, fmt.Sprintf(`INSERT INTO %s (id, rule, merchant_id, state, active_at, resolved_at, last_eval_at, "values", acked_by, acked_at)
			VALUES ($1, 'cancel_rate_spike', $1, $2, $3, $4, $3, '{}', CASE WHEN $5 THEN 'kim' END, CASE WHEN $5 THEN $3::timestamptz END)`, s.db.Table("alerts")),
			a.id, a.state, long, a.resolved, a.acked)
		sqlExec(t, s, fmt.Sprintf(`INSERT INTO %s (alert_id, minute, fires, "values") VALUES ($1, $2, true, '{}')`, s.db.Table("alert_evaluations")), a.id, long)
		sqlExec(t, s, fmt.Sprintf(`INSERT INTO %s (id, alert_id, kind, idempotency_key, payload, created_at) VALUES ($1::bigint, $1, 'firing', 'k' || $1::bigint, '{}', $2)`,
			s.db.Table("notifications")), a.id, long)
		sqlExec(t, s, fmt.Sprintf(`INSERT INTO %s (notification_id, receiver, status) VALUES ($1, 'hook', $2), ($1, 'log', 'delivered')`,
			s.db.Table("deliveries")), a.id, a.delivery)
	}
	n, err := s.PruneAlerts(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("pruned %d alerts, want 2 (1 and 7)", n)
	}
	kept := []string{"2", "3", "4", "5", "6"}
	for table, key := range map[string]string{"alerts": "id", "alert_evaluations": "alert_id", "notifications": "alert_id"} {
		if got := sinkRows(t, s, table, key); !slices.Equal(got, kept) {
			t.Errorf("%s left: %v, want %v", table, got, kept)
		}
	}
	if got, want := sinkRows(t, s, "deliveries", "notification_id || '/' || receiver"), []string{"2/hook", "2/log", "3/hook", "3/log", "4/hook", "4/log", "5/hook", "5/log", "6/hook", "6/log"}; !slices.Equal(got, want) {
		t.Errorf("deliveries left: %v, want %v", got, want)
	}
	// Once the owed delivery is made, the next run takes that alert too.
	sqlExec(t, s, fmt.Sprintf(`UPDATE %s SET status = 'delivered' WHERE notification_id = 3`, s.db.Table("deliveries")))
	if n, err := s.PruneAlerts(ctx, cut); err != nil || n != 1 {
		t.Fatalf("after delivery: pruned %d, %v; want 1", n, err)
	}
	if got := sinkRows(t, s, "alerts", "id"); !slices.Equal(got, []string{"2", "4", "5", "6"}) {
		t.Errorf("alerts left: %v", got)
	}
}

func ptr[T any](v T) *T { return &v }

// TestPruneEvaluationsDeliveriesDeadLettersAudit: each table loses exactly
// its rows before the cutoff, never a pending delivery.
func TestPruneEvaluationsDeliveriesDeadLettersAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	cut := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	sqlExec(t, s, fmt.Sprintf(`INSERT INTO %s (id, rule, merchant_id, state, active_at, last_eval_at, "values")
		VALUES (1, 'volume_drop', 9, 'firing', $1, $1, '{}')`, s.db.Table("alerts")), cut.Add(-40*24*time.Hour))

	// Evaluations of the open alert a minute before, at and after the cutoff.
	for _, m := range []time.Time{cut.Add(-time.Minute), cut, cut.Add(time.Minute)} {
		sqlExec(t, s, fmt.Sprintf(`INSERT INTO %s (alert_id, minute, fires, "values") VALUES (1, $1, true, '{}')`, s.db.Table("alert_evaluations")), m)
	}
	if n, err := s.PruneEvaluations(ctx, cut); err != nil || n != 1 {
		t.Fatalf("PruneEvaluations = %d, %v; want 1", n, err)
	}
	if got := sinkRows(t, s, "alert_evaluations", "to_char(minute AT TIME ZONE 'UTC', 'HH24:MI')"); !slices.Equal(got, []string{"00:00", "00:01"}) {
		t.Errorf("evaluations left: %v", got)
	}

	// Notifications of the open alert and their deliveries.
	notes := []struct {
		id         int64
		created    time.Time
		deliveries []string // receiver:status
	}{
		{1, cut.Add(-time.Hour), []string{"a:delivered"}},              // goes, with its delivery
		{2, cut.Add(-time.Hour), []string{"a:delivered", "b:pending"}}, // b still owed: only a's goes
		{3, cut.Add(-time.Second), []string{"a:rejected"}},             // goes
		{4, cut, []string{"a:delivered"}},                              // at the cutoff: stays
		{5, cut.Add(-time.Hour), nil},                                  // routed nowhere: goes
		{6, cut.Add(-90 * 24 * time.Hour), []string{"a:pending"}},      // pending for months: stays
	}
	for _, n := range notes {
		sqlExec(t, s, fmt.Sprintf(`INSERT INTO %s (id, alert_id, kind, idempotency_key, payload, created_at) VALUES ($1, 1, 'firing', 'k' || $1::bigint, '{}', $2)`,
			s.db.Table("notifications")), n.id, n.created)
		for _, d := range n.deliveries {
			var receiver, status string
			fmt.Sscanf(d, "%1s:%s", &receiver, &status)
			sqlExec(t, s, fmt.Sprintf(`INSERT INTO %s (notification_id, receiver, status) VALUES ($1, $2, $3)`, s.db.Table("deliveries")), n.id, receiver, status)
		}
	}
	deliveries, notifications, err := s.PruneDeliveries(ctx, cut)
	if err != nil || deliveries != 3 || notifications != 3 {
		t.Fatalf("PruneDeliveries = %d deliveries, %d notifications, %v; want 3 and 3", deliveries, notifications, err)
	}
	if got := sinkRows(t, s, "notifications", "id"); !slices.Equal(got, []string{"2", "4", "6"}) {
		t.Errorf("notifications left: %v", got)
	}
	if got := sinkRows(t, s, "deliveries", "notification_id || '/' || receiver || '/' || status"); !slices.Equal(got, []string{"2/b/pending", "4/a/delivered", "6/a/pending"}) {
		t.Errorf("deliveries left: %v", got)
	}
	// The pending ones are still what the outbox hands the sender.
	if due, _, err := s.Outbox().Due(ctx, "a", time.Now().Add(time.Hour), 10); err != nil || len(due) != 1 || due[0].ID != 6 {
		t.Errorf("due for a: %v, %v; want notification 6", due, err)
	}

	// Dead letters recorded a second before, at and after the cutoff.
	for i, at := range []time.Time{cut.Add(-time.Second), cut, cut.Add(time.Second)} {
		sqlExec(t, s, fmt.Sprintf(`INSERT INTO %s (recorded_at, origin, source_table, kind, reason, detail, row) VALUES ($1, 'stream', 'public.payments', 'approval', 'null_amount', $2, '{}')`,
			s.db.Table("dead_letters")), at, fmt.Sprint(i))
	}
	if n, err := aggregates.New(s.db).PruneDeadLetters(ctx, cut); err != nil || n != 1 {
		t.Fatalf("PruneDeadLetters = %d, %v; want 1", n, err)
	}
	if got := sinkRows(t, s, "dead_letters", "detail"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("dead letters left: %v", got)
	}

	// Operator actions: by the time they were recorded.
	sqlExec(t, s, fmt.Sprintf(`INSERT INTO %s (id, at, actor, via, action, silence_id) VALUES
		(1, $1, 'kim', 'cli', 'silence_create', 1), (2, $2, 'lee', 'cli', 'silence_create', 1), (3, $3, 'park', 'cli', 'silence_expire', 1)`,
		s.db.Table("operator_actions")), cut.Add(-24*time.Hour), cut, cut.Add(time.Hour))
	if n, err := s.PruneAudit(ctx, cut); err != nil || n != 1 {
		t.Fatalf("PruneAudit = %d, %v; want 1", n, err)
	}
	if got := sinkRows(t, s, "operator_actions", "id"); !slices.Equal(got, []string{"2", "3"}) {
		t.Errorf("operator actions left: %v", got)
	}
}
