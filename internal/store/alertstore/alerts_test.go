package alertstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/riskwatch/riskwatch/internal/alert"
	"github.com/riskwatch/riskwatch/internal/notify"
	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/rules"
	"github.com/riskwatch/riskwatch/internal/store"
	"github.com/riskwatch/riskwatch/internal/store/aggregates"
	"github.com/riskwatch/riskwatch/internal/window"
)

// ---------------------------------------------------------------------------
// Building alert changes the way the lifecycle does: Live is the
// lifecycle's own alert, Snap a copy of it right after the evaluation (so it
// carries Live's ID once the sink has assigned one).

// fire is the first true evaluation of a new alert, notified as firing.
func fire(rule string, merchant int64, m window.Minute, vals map[string]any) (*alert.Alert, AlertChange) {
	live := &alert.Alert{Rule: rule, Merchant: merchant, State: alert.Firing, ActiveAt: m.Start(), LastEvalAt: m.Start(),
		LastSentAt: m.End(), Values: maps.Clone(vals)}
	return live, AlertChange{Live: live, Snap: *live, Minute: m, Fires: true, Values: vals, New: true, Notify: alert.NotifyFiring,
		Severity: "critical", Summary: fmt.Sprintf("%s for merchant %d", rule, merchant), DashboardURL: fmt.Sprintf("http://rw.test/merchants/%d", merchant)}
}

// still is a later true evaluation of live, not notified.
func still(live *alert.Alert, m window.Minute, vals map[string]any) AlertChange {
	live.FalseCount, live.Values, live.LastEvalAt = 0, maps.Clone(vals), m.Start()
	return AlertChange{Live: live, Snap: *live, Minute: m, Fires: true, Values: vals}
}

// falseEval is a false evaluation of live; the resolveAfter-th in a row
// resolves it and is notified.
func falseEval(live *alert.Alert, m window.Minute, vals map[string]any, resolveAfter int) AlertChange {
	live.FalseCount++
	live.LastEvalAt = m.Start()
	ch := AlertChange{Live: live, Minute: m, Values: vals}
	if live.FalseCount >= resolveAfter {
		live.State, live.ResolvedAt = alert.Resolved, m.Start()
		ch.Notify = alert.NotifyResolved
		ch.Severity, ch.Summary = "critical", fmt.Sprintf("resolved: %s for merchant %d", live.Rule, live.Merchant)
		ch.DashboardURL = fmt.Sprintf("http://rw.test/merchants/%d", live.Merchant)
	}
	ch.Snap = *live
	return ch
}

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

func seoul(t *testing.T) *time.Location {
	loc, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func openStore(t testing.TB, loc *time.Location) *Store {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, cluster.NewDB(t), "rw_sink", loc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return New(db)
}

func minute(t testing.TB, s string) window.Minute {
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return window.MinuteOf(tm)
}

// bootstrapEmpty makes the checkpoint s1, closed through 14:00Z, and
// returns the position of its claimed writer, which marks minutes closed.
func bootstrapEmpty(t testing.TB, s *Store) aggregates.CheckpointPosition {
	t.Helper()
	ctx := context.Background()
	agg := aggregates.New(s.db)
	err := agg.Bootstrap(ctx, aggregates.Checkpoint{Slot: "s1", Position: "0/1", LastClosed: minute(t, "2026-11-25T14:00:00Z"), Progress: time.Date(2026, 11, 25, 14, 1, 1, 0, time.UTC)},
		func(ctx context.Context, l *aggregates.Loader) error { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := agg.Claim(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	return cp.At(cp.Position, cp.LastClosed, cp.Progress)
}

func mustApplyAlerts(t *testing.T, s *Store, b *AlertBatch) int {
	t.Helper()
	n, err := s.ApplyAlerts(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

type alertRow struct {
	id                     int64
	rule                   string
	merchant               int64
	state                  string
	activeAt, lastEvalAt   time.Time
	resolvedAt, lastSentAt *time.Time
	falseCount             int
	values                 map[string]any
}

func alertRows(t *testing.T, s *Store) []alertRow {
	t.Helper()
	rows, err := s.db.Pool().Query(context.Background(), `SELECT id, rule, merchant_id, state, active_at, last_eval_at, resolved_at, last_sent_at, false_count, "values"
		FROM rw_sink.alerts ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []alertRow
	for rows.Next() {
		var r alertRow
		var vals []byte
		if err := rows.Scan(&r.id, &r.rule, &r.merchant, &r.state, &r.activeAt, &r.lastEvalAt, &r.resolvedAt, &r.lastSentAt, &r.falseCount, &vals); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(vals, &r.values); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type evalRow struct {
	alertID int64
	minute  string
	fires   bool
	values  string
}

func evalRows(t *testing.T, s *Store) []evalRow {
	t.Helper()
	rows, err := s.db.Pool().Query(context.Background(), `SELECT alert_id, minute, fires, "values"::text FROM rw_sink.alert_evaluations ORDER BY alert_id, minute`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []evalRow
	for rows.Next() {
		var r evalRow
		var m time.Time
		if err := rows.Scan(&r.alertID, &m, &r.fires, &r.values); err != nil {
			t.Fatal(err)
		}
		r.minute = window.MinuteOf(m).String()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type notificationRow struct {
	id      int64
	alertID int64
	kind    string
	key     string
	payload notify.Notification
}

func notificationRows(t *testing.T, s *Store) []notificationRow {
	t.Helper()
	rows, err := s.db.Pool().Query(context.Background(), `SELECT id, alert_id, kind, idempotency_key, payload FROM rw_sink.notifications ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []notificationRow
	for rows.Next() {
		var r notificationRow
		var payload []byte
		if err := rows.Scan(&r.id, &r.alertID, &r.kind, &r.key, &payload); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(payload, &r.payload); err != nil {
			t.Fatalf("notification %d payload %s: %v", r.id, payload, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type deliveryRow struct {
	notificationID int64
	receiver       string
	status         string
	attempts       int
	lastError      *string
	deliveredAt    *time.Time
}

func deliveryRows(t *testing.T, s *Store) []deliveryRow {
	t.Helper()
	rows, err := s.db.Pool().Query(context.Background(), `SELECT notification_id, receiver, status, attempts, last_error, delivered_at
		FROM rw_sink.deliveries ORDER BY notification_id, receiver`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []deliveryRow
	for rows.Next() {
		var r deliveryRow
		if err := rows.Scan(&r.notificationID, &r.receiver, &r.status, &r.attempts, &r.lastError, &r.deliveredAt); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func tableCounts(t *testing.T, s *Store) [4]int {
	t.Helper()
	var c [4]int
	err := s.db.Pool().QueryRow(context.Background(), `SELECT (SELECT count(*) FROM rw_sink.alerts), (SELECT count(*) FROM rw_sink.alert_evaluations),
		(SELECT count(*) FROM rw_sink.notifications), (SELECT count(*) FROM rw_sink.deliveries)`).Scan(&c[0], &c[1], &c[2], &c[3])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func lastClosed(t *testing.T, s *Store) window.Minute {
	t.Helper()
	cp, err := aggregates.New(s.db).Checkpoint(context.Background(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	return cp.LastClosed
}

// jsonValues is what a values map reads back as from JSON.
func jsonValues(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func timeEq(a *time.Time, b time.Time) bool {
	if a == nil {
		return b.IsZero()
	}
	return a.Equal(b)
}

// TestApplyAlertsLifecycle follows two alerts through three batches: ids,
// updates of the same row, evaluations, the outbox with its routing, the
// checkpoint, and the batches that must be refused whole.
func TestApplyAlertsLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	closed := bootstrapEmpty(t, s) // last_closed 2026-11-25T14:00Z
	m0 := minute(t, "2026-11-25T14:01:00Z")
	const spike, drop = "cancel_rate_spike", "volume_drop"
	routes := []Route{
		{Receiver: "ops"}, // no rules: everything
		{Receiver: "sales", Rules: []string{drop}},
		{Receiver: "risk", Rules: []string{"something_else", spike}},
	}
	v1 := map[string]any{"a_h": int64(30), "c_h": int64(12), "rate_h": 0.4, "baseline_source": "merchant", "ratio": 40.0}
	v2 := map[string]any{"a_h": int64(31), "c_h": int64(13), "rate_h": 13.0 / 31, "baseline_source": "merchant", "ratio": nil}
	vv := map[string]any{"today": int64(5), "expected": 1500.5, "drop": nil}
	vFalse := map[string]any{"a_h": int64(0), "c_h": int64(0), "rate_h": nil}

	// Batch 1: the spike fires at m0 and still holds at m0+1 (same batch);
	// the drop fires at m0+1.
	liveC, c1 := fire(spike, 100, m0, v1)
	c2 := still(liveC, m0+1, v2)
	liveV, d1 := fire(drop, 100, m0+1, vv)
	n := mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0 + 1, Changes: []AlertChange{c1, c2, d1}, Routes: routes})
	// spike → ops, risk; drop → ops, sales.
	if n != 4 {
		t.Fatalf("batch 1 enqueued %d deliveries, want 4", n)
	}
	if liveC.ID == 0 || liveV.ID == 0 || liveC.ID == liveV.ID {
		t.Fatalf("live ids after batch 1: spike %d, drop %d", liveC.ID, liveV.ID)
	}
	if got := lastClosed(t, s); got != m0+1 {
		t.Fatalf("last_closed = %s, want %s", got, m0+1)
	}
	al := alertRows(t, s)
	if len(al) != 2 {
		t.Fatalf("alerts after batch 1 = %+v, want 2 rows", al)
	}
	byID := map[int64]alertRow{al[0].id: al[0], al[1].id: al[1]}
	rc, rv := byID[liveC.ID], byID[liveV.ID]
	if rc.rule != spike || rc.merchant != 100 || rc.state != "firing" || !rc.activeAt.Equal(m0.Start()) || !rc.lastEvalAt.Equal((m0 + 1).Start()) ||
		rc.resolvedAt != nil || !timeEq(rc.lastSentAt, m0.End()) || rc.falseCount != 0 || !reflect.DeepEqual(rc.values, jsonValues(t, v2)) {
		t.Fatalf("spike row after batch 1 = %+v", rc)
	}
	if rv.rule != drop || rv.merchant != 100 || rv.state != "firing" || !rv.activeAt.Equal((m0 + 1).Start()) || !reflect.DeepEqual(rv.values, jsonValues(t, vv)) {
		t.Fatalf("drop row after batch 1 = %+v", rv)
	}
	ev := evalRows(t, s)
	wantEv := []evalRow{
		{liveC.ID, m0.String(), true, ""}, {liveC.ID, (m0 + 1).String(), true, ""},
		{liveV.ID, (m0 + 1).String(), true, ""},
	}
	if liveV.ID < liveC.ID {
		t.Fatalf("the drop alert was stored before the spike: %d < %d", liveV.ID, liveC.ID)
	}
	if len(ev) != len(wantEv) {
		t.Fatalf("evaluations = %+v, want %+v", ev, wantEv)
	}
	for i := range ev {
		if ev[i].alertID != wantEv[i].alertID || ev[i].minute != wantEv[i].minute || ev[i].fires != wantEv[i].fires {
			t.Fatalf("evaluations = %+v, want %+v", ev, wantEv)
		}
	}
	var evVals map[string]any
	if err := json.Unmarshal([]byte(ev[1].values), &evVals); err != nil || !reflect.DeepEqual(evVals, jsonValues(t, v2)) {
		t.Fatalf("evaluation values at m0+1 = %s (%v), want %v", ev[1].values, err, v2)
	}

	ns := notificationRows(t, s)
	if len(ns) != 2 {
		t.Fatalf("notifications after batch 1 = %+v, want 2", ns)
	}
	wantN := []notify.Notification{
		{IdempotencyKey: IdempotencyKey(liveC.ID, "firing", m0), Kind: "firing", AlertID: liveC.ID, Rule: spike, MerchantID: 100,
			Severity: "critical", Summary: "cancel_rate_spike for merchant 100", StartsAt: m0.Start(), Minute: m0.Start(),
			Values: jsonValues(t, v1), DashboardURL: "http://rw.test/merchants/100"},
		{IdempotencyKey: IdempotencyKey(liveV.ID, "firing", m0+1), Kind: "firing", AlertID: liveV.ID, Rule: drop, MerchantID: 100,
			Severity: "critical", Summary: "volume_drop for merchant 100", StartsAt: (m0 + 1).Start(), Minute: (m0 + 1).Start(),
			Values: jsonValues(t, vv), DashboardURL: "http://rw.test/merchants/100"},
	}
	for i, r := range ns {
		checkNotification(t, r, wantN[i])
	}
	// The key names the alert, the kind and the minute.
	if want := fmt.Sprintf("riskwatch-%d-firing-%d", liveC.ID, m0.Start().Unix()); ns[0].key != want {
		t.Fatalf("idempotency key = %q, want %q", ns[0].key, want)
	}
	wantD := []deliveryRow{
		{ns[0].id, "ops", "pending", 0, nil, nil}, {ns[0].id, "risk", "pending", 0, nil, nil},
		{ns[1].id, "ops", "pending", 0, nil, nil}, {ns[1].id, "sales", "pending", 0, nil, nil},
	}
	if got := deliveryRows(t, s); !reflect.DeepEqual(got, wantD) {
		t.Fatalf("deliveries after batch 1 = %+v, want %+v", got, wantD)
	}

	// Batch 2: the spike is false for five minutes and resolves at m0+6;
	// the drop still holds. One of the spike's changes carries no ID in
	// Snap: the Live alert's ID still finds the row.
	var b2 []AlertChange
	for m := m0 + 2; m <= m0+6; m++ {
		ch := falseEval(liveC, m, vFalse, 5)
		if m == m0+2 {
			ch.Snap.ID = 0
		}
		b2 = append(b2, ch)
	}
	b2 = append(b2, still(liveV, m0+2, vv))
	n = mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0 + 6, Changes: b2, Routes: routes})
	if n != 2 {
		t.Fatalf("batch 2 enqueued %d deliveries, want 2 (ops and risk for the resolve)", n)
	}
	if got := lastClosed(t, s); got != m0+6 {
		t.Fatalf("last_closed = %s, want %s", got, m0+6)
	}
	al = alertRows(t, s)
	if len(al) != 2 {
		t.Fatalf("alerts after batch 2 = %+v, want still 2 rows", al)
	}
	rc = al[0]
	if rc.id != liveC.ID || rc.state != "resolved" || !timeEq(rc.resolvedAt, (m0+6).Start()) || rc.falseCount != 5 ||
		!rc.lastEvalAt.Equal((m0 + 6).Start()) || !rc.activeAt.Equal(m0.Start()) || !reflect.DeepEqual(rc.values, jsonValues(t, v2)) {
		t.Fatalf("spike row after batch 2 = %+v", rc)
	}
	if !al[1].lastEvalAt.Equal((m0 + 2).Start()) {
		t.Fatalf("drop row after batch 2 = %+v", al[1])
	}
	ev = evalRows(t, s)
	var spikeEv []string
	for _, e := range ev {
		if e.alertID == liveC.ID {
			spikeEv = append(spikeEv, fmt.Sprintf("%s %v", e.minute, e.fires))
		}
	}
	wantSpike := []string{m0.String() + " true", (m0 + 1).String() + " true"}
	for m := m0 + 2; m <= m0+6; m++ {
		wantSpike = append(wantSpike, m.String()+" false")
	}
	if !slices.Equal(spikeEv, wantSpike) || len(ev) != 7+2 {
		t.Fatalf("evaluations after batch 2: spike %v (want %v), %d in all (want 9)", spikeEv, wantSpike, len(ev))
	}
	ns = notificationRows(t, s)
	if len(ns) != 3 {
		t.Fatalf("notifications after batch 2 = %+v, want 3", ns)
	}
	checkNotification(t, ns[2], notify.Notification{IdempotencyKey: IdempotencyKey(liveC.ID, "resolved", m0+6), Kind: "resolved", AlertID: liveC.ID,
		Rule: spike, MerchantID: 100, Severity: "critical", Summary: "resolved: cancel_rate_spike for merchant 100",
		StartsAt: m0.Start(), EndsAt: (m0 + 6).Start(), Minute: (m0 + 6).Start(), Values: jsonValues(t, vFalse), DashboardURL: "http://rw.test/merchants/100"})
	if got := deliveryRows(t, s); len(got) != 6 || got[4].notificationID != ns[2].id || got[4].receiver != "ops" || got[5].receiver != "risk" {
		t.Fatalf("deliveries after batch 2 = %+v", got)
	}

	// Batch 3 is behind the checkpoint: refused whole.
	before := tableCounts(t, s)
	live200, f200 := fire(spike, 200, m0+3, v1)
	_, err := s.ApplyAlerts(ctx, &AlertBatch{Closed: closed, LastClosed: m0 + 3, Changes: []AlertChange{f200, still(liveV, m0+3, vv)}, Routes: routes})
	if err == nil {
		t.Fatal("a batch older than the checkpoint was accepted")
	}
	if after := tableCounts(t, s); after != before {
		t.Fatalf("refused batch left rows: before %v, after %v", before, after)
	}
	if live200.ID != 0 {
		t.Fatalf("refused batch gave the live alert id %d", live200.ID)
	}
	if got := lastClosed(t, s); got != m0+6 {
		t.Fatalf("last_closed after refused batch = %s", got)
	}
	if al = alertRows(t, s); !al[1].lastEvalAt.Equal((m0 + 2).Start()) {
		t.Fatalf("refused batch updated the drop alert: %+v", al[1])
	}
	// An unknown slot is refused too.
	if _, err := s.ApplyAlerts(ctx, &AlertBatch{Closed: aggregates.Checkpoint{Slot: "nope"}.At("", 0, time.Time{}), LastClosed: m0 + 7}); err == nil {
		t.Fatal("a batch for an unknown slot was accepted")
	}

	// Batch 4: a second firing alert for (volume_drop, 100) while the
	// first is open violates the partial unique index; with it, a valid
	// new alert for merchant 300 is not stored either.
	_, dup := fire(drop, 100, m0+7, vv)
	live300, f300 := fire(spike, 300, m0+7, v1)
	_, err = s.ApplyAlerts(ctx, &AlertBatch{Closed: closed, LastClosed: m0 + 7, Changes: []AlertChange{f300, dup}, Routes: routes})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" || pgErr.ConstraintName != "alerts_one_open" {
		t.Fatalf("second open alert for one rule and merchant: err = %v, want a unique violation of alerts_one_open", err)
	}
	if after := tableCounts(t, s); after != before || live300.ID != 0 || lastClosed(t, s) != m0+6 {
		t.Fatalf("refused batch 4 left rows %v (before %v), id %d, last_closed %s", after, before, live300.ID, lastClosed(t, s))
	}

	// Batch 5: after it resolved, the spike may fire again for merchant
	// 100 as a new alert (a new row); a batch with the same LastClosed as
	// the checkpoint is fine. No routes: the notification is stored, no
	// delivery.
	liveC2, again := fire(spike, 100, m0+6, v1)
	if n := mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0 + 6, Changes: []AlertChange{again}}); n != 0 {
		t.Fatalf("without routes %d deliveries were enqueued", n)
	}
	if liveC2.ID == 0 || liveC2.ID == liveC.ID || liveC2.ID == liveV.ID {
		t.Fatalf("re-fired alert id %d (old %d, drop %d)", liveC2.ID, liveC.ID, liveV.ID)
	}
	al = alertRows(t, s)
	if len(al) != 3 || al[0].state != "resolved" || al[2].id != liveC2.ID || al[2].state != "firing" || !al[2].activeAt.Equal((m0 + 6).Start()) {
		t.Fatalf("alerts after re-fire = %+v", al)
	}
	if c := tableCounts(t, s); c != [4]int{3, 10, 4, 6} {
		t.Fatalf("rows after batch 5 (alerts, evaluations, notifications, deliveries) = %v, want [3 10 4 6]", c)
	}
}

func checkNotification(t *testing.T, r notificationRow, want notify.Notification) {
	t.Helper()
	got := r.payload
	if r.alertID != want.AlertID || r.kind != want.Kind || r.key != want.IdempotencyKey {
		t.Fatalf("notification row %d: alert %d kind %s key %s; want alert %d kind %s key %s", r.id, r.alertID, r.kind, r.key,
			want.AlertID, want.Kind, want.IdempotencyKey)
	}
	if got.IdempotencyKey != want.IdempotencyKey || got.Kind != want.Kind || got.AlertID != want.AlertID || got.Rule != want.Rule ||
		got.MerchantID != want.MerchantID || got.Severity != want.Severity || got.Summary != want.Summary || got.DashboardURL != want.DashboardURL ||
		!got.StartsAt.Equal(want.StartsAt) || !got.EndsAt.Equal(want.EndsAt) || !got.Minute.Equal(want.Minute) || !reflect.DeepEqual(got.Values, want.Values) {
		t.Fatalf("notification payload:\n got %+v\nwant %+v", got, want)
	}
}

// refire stores an alert that fires at m0, is false for five minutes
// (resolved at m0+5) and fires again at m0+6, as a new alert. With
// oneBatch every minute is in one batch (the engine catching up after a
// restart closes many minutes at once); else the first firing is stored
// before. Either way the new alert needs a row of its own and the resolved
// one must stay resolved.
func refire(t *testing.T, oneBatch bool) {
	s := openStore(t, time.UTC)
	closed := bootstrapEmpty(t, s)
	m0 := minute(t, "2026-11-25T14:01:00Z")
	v := map[string]any{"c_h": int64(9)}
	old, f := fire("cancel_rate_spike", 100, m0, v)
	chs := []AlertChange{f}
	if !oneBatch {
		mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0, Changes: chs})
		chs = nil
	}
	for m := m0 + 1; m <= m0+5; m++ {
		chs = append(chs, falseEval(old, m, nil, 5))
	}
	fresh, f2 := fire("cancel_rate_spike", 100, m0+6, v)
	chs = append(chs, f2)
	if n := mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0 + 6, Changes: chs, Routes: []Route{{Receiver: "ops"}}}); n < 2 {
		t.Fatalf("enqueued %d deliveries, want at least the resolve and the new firing", n)
	}
	al := alertRows(t, s)
	if len(al) != 2 {
		t.Fatalf("alerts = %+v, want 2 rows (the resolved one and the new one)", al)
	}
	if al[0].id != old.ID || al[0].state != "resolved" || !timeEq(al[0].resolvedAt, (m0+5).Start()) || !al[0].activeAt.Equal(m0.Start()) {
		t.Fatalf("first alert = %+v (live id %d), want resolved at %s", al[0], old.ID, m0+5)
	}
	if fresh.ID == old.ID || al[1].id != fresh.ID || al[1].state != "firing" || !al[1].activeAt.Equal((m0 + 6).Start()) {
		t.Fatalf("second alert = %+v (live id %d), want firing since %s", al[1], fresh.ID, m0+6)
	}
	ns := notificationRows(t, s)
	if len(ns) != 3 || ns[2].alertID != fresh.ID || ns[2].key != IdempotencyKey(fresh.ID, "firing", m0+6) {
		t.Fatalf("notifications = %+v, want the new alert's firing last", ns)
	}
}

func TestApplyAlertsRefireInLaterBatch(t *testing.T) {
	t.Parallel()
	refire(t, false)
}

func TestApplyAlertsRefireInOneBatch(t *testing.T) {
	t.Parallel()
	refire(t, true)
}

// TestOutbox drives the deliveries table through notify.Queue.
func TestOutbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	closed := bootstrapEmpty(t, s)
	m0 := minute(t, "2026-11-25T14:01:00Z")
	var chs []AlertChange
	for merchant := int64(1); merchant <= 3; merchant++ {
		_, ch := fire("cancel_rate_spike", merchant, m0, map[string]any{"c_h": merchant})
		chs = append(chs, ch)
	}
	if n := mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0, Changes: chs, Routes: []Route{{Receiver: "a"}, {Receiver: "b"}}}); n != 6 {
		t.Fatalf("enqueued %d, want 6", n)
	}
	ns := notificationRows(t, s)
	if len(ns) != 3 {
		t.Fatalf("notifications = %+v", ns)
	}
	n1, n2, n3 := ns[0].id, ns[1].id, ns[2].id
	if !(n1 < n2 && n2 < n3) || ns[0].payload.MerchantID != 1 || ns[2].payload.MerchantID != 3 {
		t.Fatalf("notifications not in change order: %+v", ns)
	}
	q := s.Outbox()
	now := time.Now()

	type item struct {
		id       int64
		attempts int
	}
	due := func(receiver string, at time.Time, limit int) ([]item, time.Duration) {
		t.Helper()
		got, wait, err := q.Due(ctx, receiver, at, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []item
		for _, n := range got {
			if n.CreatedAt.IsZero() || n.CreatedAt.Sub(now).Abs() > time.Minute {
				t.Fatalf("notification %d CreatedAt = %s, now is %s", n.ID, n.CreatedAt, now)
			}
			if n.Rule != "cancel_rate_spike" || n.MerchantID != map[int64]int64{n1: 1, n2: 2, n3: 3}[n.ID] || n.Kind != "firing" {
				t.Fatalf("notification %d decoded as %+v", n.ID, n)
			}
			out = append(out, item{n.ID, n.Attempts})
		}
		return out, wait
	}
	expect := func(what string, got []item, wait time.Duration, want []item, wantWait time.Duration) {
		t.Helper()
		if !slices.Equal(got, want) || (wait-wantWait).Abs() > time.Millisecond {
			t.Fatalf("%s: Due = %v wait %s; want %v wait %s", what, got, wait, want, wantWait)
		}
	}
	all := []item{{n1, 0}, {n2, 0}, {n3, 0}}
	got, wait := due("a", now, 10)
	expect("new", got, wait, all, 0)
	got, wait = due("a", now, 2)
	expect("limit 2", got, wait, all[:2], 0)
	got, wait = due("nobody", now, 10)
	expect("unknown receiver", got, wait, nil, 0)

	// The head fails: nothing behind it is due before it.
	if err := q.Retry(ctx, "a", []int64{n1}, 3, now.Add(10*time.Second), "503 from receiver"); err != nil {
		t.Fatal(err)
	}
	got, wait = due("a", now, 10)
	expect("head waiting", got, wait, nil, 10*time.Second)
	got, wait = due("a", now.Add(11*time.Second), 10)
	expect("head due again", got, wait, []item{{n1, 3}, {n2, 0}, {n3, 0}}, 0)
	got, wait = due("b", now, 10)
	expect("other receiver", got, wait, all, 0)

	// The second fails until now+20s: the head is returned, then it stops.
	if err := q.Retry(ctx, "a", []int64{n2}, 1, now.Add(20*time.Second), "timeout"); err != nil {
		t.Fatal(err)
	}
	got, wait = due("a", now.Add(11*time.Second), 10)
	expect("second waiting", got, wait, []item{{n1, 3}}, 9*time.Second)

	deliveredAt := time.Date(2026, 11, 25, 14, 3, 4, 5000, time.UTC)
	if err := q.Delivered(ctx, "a", []int64{n1}, deliveredAt); err != nil {
		t.Fatal(err)
	}
	got, wait = due("a", now.Add(11*time.Second), 10)
	expect("after delivered", got, wait, nil, 9*time.Second)
	got, wait = due("a", now.Add(21*time.Second), 10)
	expect("second due", got, wait, []item{{n2, 1}, {n3, 0}}, 0)

	if err := q.Rejected(ctx, "a", []int64{n2}, "400 bad request"); err != nil {
		t.Fatal(err)
	}
	got, wait = due("a", now.Add(21*time.Second), 10)
	expect("after rejected", got, wait, []item{{n3, 0}}, 0)
	// Marking a delivered one again changes nothing.
	if err := q.Delivered(ctx, "a", []int64{n1, n3}, deliveredAt.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	got, wait = due("a", now.Add(time.Hour), 10)
	expect("all done", got, wait, nil, 0)
	got, wait = due("b", now, 10)
	expect("b untouched", got, wait, all, 0)

	ds := deliveryRows(t, s)
	find := func(id int64, receiver string) deliveryRow {
		for _, d := range ds {
			if d.notificationID == id && d.receiver == receiver {
				return d
			}
		}
		t.Fatalf("no delivery of %d to %s", id, receiver)
		return deliveryRow{}
	}
	if d := find(n1, "a"); d.status != "delivered" || d.attempts != 4 || d.lastError != nil || !timeEq(d.deliveredAt, deliveredAt) {
		t.Fatalf("n1 to a = %+v, want delivered at %s after 4 attempts, no error", d, deliveredAt)
	}
	if d := find(n2, "a"); d.status != "rejected" || d.attempts != 2 || d.lastError == nil || *d.lastError != "400 bad request" || d.deliveredAt != nil {
		t.Fatalf("n2 to a = %+v, want rejected after 2 attempts with its error", d)
	}
	if d := find(n3, "a"); d.status != "delivered" || d.attempts != 1 || !timeEq(d.deliveredAt, deliveredAt.Add(time.Second)) {
		t.Fatalf("n3 to a = %+v", d)
	}
	for _, id := range []int64{n1, n2, n3} {
		if d := find(id, "b"); d.status != "pending" || d.attempts != 0 {
			t.Fatalf("%d to b = %+v, want pending", id, d)
		}
	}
}

// TestAckAndAlertListing: acknowledgements of open alerts, and the alert
// listing's filters and order.
func TestAckAndAlertListing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	closed := bootstrapEmpty(t, s)
	m0 := minute(t, "2026-11-25T14:01:00Z")
	const spike, drop = "cancel_rate_spike", "volume_drop"
	v := map[string]any{"x": 1.5}
	// a1 spike/1 firing since m0; a2 drop/1 m0+10 resolved at m0+20;
	// a3 spike/2 firing since m0+5; a4 spike/3 m0+10 resolved;
	// a5 drop/2 firing since m0+30.
	type spec struct {
		rule     string
		merchant int64
		at       window.Minute
		resolve  bool
	}
	specs := []spec{{spike, 1, m0, false}, {drop, 1, m0 + 10, true}, {spike, 2, m0 + 5, false}, {spike, 3, m0 + 10, true}, {drop, 2, m0 + 30, false}}
	ids := make([]int64, len(specs))
	lives := make([]*alert.Alert, len(specs))
	for i, sp := range specs {
		live, ch := fire(sp.rule, sp.merchant, sp.at, v)
		chs := []AlertChange{ch}
		if sp.resolve {
			for m := sp.at + 16; m <= sp.at+20; m++ {
				chs = append(chs, falseEval(live, m, nil, 5))
			}
		}
		mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0 + 40, Changes: chs})
		ids[i], lives[i] = live.ID, live
	}
	a1, a2, a3, a4, a5 := ids[0], ids[1], ids[2], ids[3], ids[4]

	tests := []struct {
		name string
		f    AlertFilter
		want []int64
	}{
		{"all", AlertFilter{}, []int64{a5, a4, a2, a3, a1}},
		{"firing", AlertFilter{State: "firing"}, []int64{a5, a3, a1}},
		{"resolved", AlertFilter{State: "resolved"}, []int64{a4, a2}},
		{"rule", AlertFilter{Rule: spike}, []int64{a4, a3, a1}},
		{"merchant", AlertFilter{Merchant: 1}, []int64{a2, a1}},
		{"rule and merchant", AlertFilter{Rule: drop, Merchant: 2}, []int64{a5}},
		{"state rule merchant", AlertFilter{State: "resolved", Rule: spike, Merchant: 3}, []int64{a4}},
		{"limit", AlertFilter{Limit: 2}, []int64{a5, a4}},
		{"firing limit", AlertFilter{State: "firing", Limit: 1}, []int64{a5}},
		{"nothing", AlertFilter{Merchant: 9}, nil},
	}
	for _, tc := range tests {
		list, err := s.Alerts(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, a := range list {
			got = append(got, a.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: Alerts(%+v) = %v, want %v", tc.name, tc.f, got, tc.want)
		}
	}
	// A listed alert carries what was stored.
	list, err := s.Alerts(ctx, AlertFilter{State: "resolved", Merchant: 1})
	if err != nil || len(list) != 1 {
		t.Fatalf("resolved alerts of merchant 1: %v %v", list, err)
	}
	if a := list[0]; a.Rule != drop || a.State != alert.Resolved || !a.ActiveAt.Equal((m0 + 10).Start()) || !a.ResolvedAt.Equal((m0 + 30).Start()) ||
		!a.LastEvalAt.Equal((m0 + 30).Start()) || !a.LastSentAt.Equal((m0 + 10).End()) || a.FalseCount != 5 || a.Ack != nil || !reflect.DeepEqual(a.Values, v) {
		t.Fatalf("resolved alert = %+v", a)
	}

	// Ack an open alert.
	at := time.Date(2026, 11, 25, 14, 50, 1, 123_000_000, time.UTC)
	a, err := s.Ack(ctx, a1, cli("lee"), "calling the merchant", at)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != a1 || a.State != alert.Firing || a.Ack == nil || a.Ack.By != "lee" || !a.Ack.At.Equal(at) || a.Ack.Comment != "calling the merchant" {
		t.Fatalf("Ack returned %+v (ack %+v)", a, a.Ack)
	}
	if _, err := s.Ack(ctx, a3, cli("kim"), "", at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	acks, err := s.Acks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantAcks := map[int64]alert.Ack{a1: {By: "lee", At: at, Comment: "calling the merchant"}, a3: {By: "kim", At: at.Add(time.Minute)}}
	if len(acks) != len(wantAcks) {
		t.Fatalf("Acks = %+v, want %+v", acks, wantAcks)
	}
	for id, w := range wantAcks {
		g, ok := acks[id]
		if !ok || g.By != w.By || !g.At.Equal(w.At) || g.Comment != w.Comment {
			t.Fatalf("Acks[%d] = %+v, want %+v", id, g, w)
		}
	}
	// Resolved and unknown alerts.
	if _, err := s.Ack(ctx, a2, cli("lee"), "", at); !errors.Is(err, ErrNotOpen) {
		t.Fatalf("ack of a resolved alert: err = %v, want ErrNotOpen", err)
	}
	if _, err := s.Ack(ctx, a5+1000, cli("lee"), "", at); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ack of an unknown alert: err = %v, want ErrNotFound", err)
	}
	// OpenAlerts: only the firing ones, with their acks.
	open, err := s.OpenAlerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range open {
		ack := "-"
		if o.Ack != nil {
			ack = o.Ack.By + "@" + o.Ack.At.UTC().Format(time.RFC3339Nano) + ":" + o.Ack.Comment
		}
		got = append(got, fmt.Sprintf("%d %s/%d %s %s", o.ID, o.Rule, o.Merchant, o.State, ack))
	}
	want := []string{
		fmt.Sprintf("%d volume_drop/2 firing -", a5),
		fmt.Sprintf("%d cancel_rate_spike/2 firing kim@2026-11-25T14:51:01.123Z:", a3),
		fmt.Sprintf("%d cancel_rate_spike/1 firing lee@2026-11-25T14:50:01.123Z:calling the merchant", a1),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("OpenAlerts =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Once an acknowledged alert resolves, its ack is no longer listed.
	var chs []AlertChange
	for m := m0 + 41; m <= m0+45; m++ {
		chs = append(chs, falseEval(lives[0], m, nil, 5))
	}
	mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0 + 45, Changes: chs})
	acks, err = s.Acks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := acks[a1]; ok || len(acks) != 1 {
		t.Fatalf("Acks after a1 resolved = %+v, want only %d", acks, a3)
	}
}

func TestSilenceCovers(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Hour)
	one := Silence{Merchant: 7, Rule: "volume_drop", StartsAt: t0, EndsAt: t1}
	all := Silence{Merchant: 7, StartsAt: t0, EndsAt: t1}
	tests := []struct {
		name     string
		s        Silence
		rule     string
		merchant int64
		at       time.Time
		want     bool
	}{
		{"rule and merchant inside", one, "volume_drop", 7, t0.Add(time.Minute), true},
		{"other rule", one, "cancel_rate_spike", 7, t0.Add(time.Minute), false},
		{"other merchant", one, "volume_drop", 8, t0.Add(time.Minute), false},
		{"starts_at inclusive", one, "volume_drop", 7, t0, true},
		{"just before start", one, "volume_drop", 7, t0.Add(-time.Nanosecond), false},
		{"just before end", one, "volume_drop", 7, t1.Add(-time.Nanosecond), true},
		{"ends_at exclusive", one, "volume_drop", 7, t1, false},
		{"all rules: spike", all, "cancel_rate_spike", 7, t0.Add(time.Minute), true},
		{"all rules: drop", all, "volume_drop", 7, t0.Add(time.Minute), true},
		{"all rules: other merchant", all, "volume_drop", 70, t0.Add(time.Minute), false},
		{"all rules: after end", all, "volume_drop", 7, t1.Add(time.Second), false},
	}
	for _, tc := range tests {
		if got := tc.s.Covers(tc.rule, tc.merchant, tc.at); got != tc.want {
			t.Errorf("%s: Covers(%s, %d, %s) = %v, want %v", tc.name, tc.rule, tc.merchant, tc.at, got, tc.want)
		}
	}
}

func TestSilences(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	add := func(sl Silence) Silence {
		t.Helper()
		got, err := s.AddSilence(ctx, sl, cli(sl.CreatedBy))
		if err != nil {
			t.Fatal(err)
		}
		if got.ID == 0 {
			t.Fatalf("AddSilence(%+v) gave no id", sl)
		}
		return got
	}
	s1 := add(Silence{Merchant: 8, Rule: "cancel_rate_spike", StartsAt: t0.Add(time.Hour), EndsAt: t0.Add(2 * time.Hour), Reason: "review", CreatedBy: "kim"})
	s2 := add(Silence{Merchant: 7, Rule: "volume_drop", StartsAt: t0, EndsAt: t0.Add(time.Hour), Reason: "promo", CreatedBy: "lee"})
	s3 := add(Silence{Merchant: 7, StartsAt: t0, EndsAt: t0.Add(10 * time.Minute), Reason: "maintenance", CreatedBy: "park"})
	if _, err := s.AddSilence(ctx, Silence{Merchant: 1, StartsAt: t0, EndsAt: t0, Reason: "x"}, cli("y")); err == nil {
		t.Fatal("a silence ending when it starts was accepted")
	}
	list := func(at time.Time) []Silence {
		t.Helper()
		got, err := s.Silences(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	ids := func(l []Silence) []int64 {
		var out []int64
		for _, sl := range l {
			out = append(out, sl.ID)
		}
		return out
	}
	// Ordered by merchant, then id.
	got := list(t0)
	if !slices.Equal(ids(got), []int64{s2.ID, s3.ID, s1.ID}) {
		t.Fatalf("Silences(t0) = %+v", got)
	}
	for i, want := range []Silence{s2, s3, s1} {
		g := got[i]
		if g.Merchant != want.Merchant || g.Rule != want.Rule || !g.StartsAt.Equal(want.StartsAt) || !g.EndsAt.Equal(want.EndsAt) ||
			g.Reason != want.Reason || g.CreatedBy != want.CreatedBy {
			t.Fatalf("silence %d read back as %+v, stored %+v", want.ID, g, want)
		}
	}
	for _, tc := range []struct {
		at   time.Time
		want []int64
	}{
		{t0.Add(10*time.Minute - time.Microsecond), []int64{s2.ID, s3.ID, s1.ID}},
		{t0.Add(10 * time.Minute), []int64{s2.ID, s1.ID}}, // s3 has ended
		{t0.Add(time.Hour), []int64{s1.ID}},
		{t0.Add(2 * time.Hour), nil},
	} {
		if got := ids(list(tc.at)); !slices.Equal(got, tc.want) {
			t.Errorf("Silences(%s) = %v, want %v", tc.at, got, tc.want)
		}
	}

	// Expire s2 at t0+5m: it ends then.
	if _, err := s.ExpireSilence(ctx, s2.ID, t0.Add(5*time.Minute), cli("kim")); err != nil {
		t.Fatal(err)
	}
	if got := ids(list(t0.Add(5 * time.Minute))); !slices.Equal(got, []int64{s3.ID, s1.ID}) {
		t.Fatalf("after expiring %d: %v", s2.ID, got)
	}
	if got := list(t0); len(got) != 3 || got[0].ID != s2.ID || !got[0].EndsAt.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("expired silence should end at t0+5m: %+v", got)
	}
	if _, err := s.ExpireSilence(ctx, s2.ID, t0.Add(6*time.Minute), cli("kim")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expiring an ended silence: err = %v, want ErrNotFound", err)
	}
	if _, err := s.ExpireSilence(ctx, s3.ID, t0.Add(10*time.Minute), cli("kim")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expiring a silence at its end: err = %v, want ErrNotFound", err)
	}
	if _, err := s.ExpireSilence(ctx, s1.ID+1000, t0, cli("kim")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expiring an unknown silence: err = %v, want ErrNotFound", err)
	}
}

// TestPriorityListingRoutingAndRecent: alerts list by priority then money
// or by money, filter by priority, route to receivers by min_priority, an
// escalation notification says what it left, an ack covers the priority
// the alert had, and a restart finds the notified alerts a re-fire would
// continue.
func TestPriorityListingRoutingAndRecent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	closed := bootstrapEmpty(t, s)
	m0 := minute(t, "2026-11-25T14:01:00Z")
	const spike, drop = "cancel_rate_spike", "volume_drop"
	routes := []Route{{Receiver: "all"}, {Receiver: "pager", MinPriority: rules.P1}, {Receiver: "team", MinPriority: rules.P2}}
	type spec struct {
		rule     string
		merchant int64
		prio     rules.Priority
		money    map[string]any
	}
	// b4 is from before priorities: no priority, no exposure, only what
	// its hour canceled.
	specs := []spec{
		{spike, 11, rules.P2, map[string]any{"exposure": int64(5_000_000)}},
		{spike, 12, rules.P1, map[string]any{"exposure": int64(1_000_000)}},
		{drop, 13, rules.P1, map[string]any{"exposure": int64(9_000_000)}},
		{spike, 14, 0, map[string]any{"canceled_amount_h": int64(7_000_000)}},
		{spike, 15, rules.P3, map[string]any{"exposure": int64(20_000_000)}},
	}
	lives := make([]*alert.Alert, len(specs))
	var ids []int64
	for i, sp := range specs {
		live, ch := fire(sp.rule, sp.merchant, m0+window.Minute(i), sp.money)
		live.Priority, live.Notified = sp.prio, sp.prio
		ch.Snap, ch.NotifyPriority = *live, sp.prio
		mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0 + 10, Changes: []AlertChange{ch}, Routes: routes})
		lives[i] = live
		ids = append(ids, live.ID)
	}
	b1, b2, b3, b4, b5 := ids[0], ids[1], ids[2], ids[3], ids[4]
	for _, tc := range []struct {
		name string
		f    AlertFilter
		want []int64
	}{
		{"newest", AlertFilter{}, []int64{b5, b4, b3, b2, b1}},
		{"priority, then money", AlertFilter{Order: OrderPriority}, []int64{b3, b2, b1, b5, b4}},
		{"money", AlertFilter{Order: OrderMoney}, []int64{b5, b3, b4, b1, b2}},
		{"P2 and above", AlertFilter{MinPriority: rules.P2}, []int64{b3, b2, b1}},
		{"P1, by money", AlertFilter{MinPriority: rules.P1, Order: OrderMoney}, []int64{b3, b2}},
	} {
		list, err := s.Alerts(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, a := range list {
			got = append(got, a.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// Deliveries: P1 to all three receivers, P2 to all and team, P3 to
	// all only; a notification from before priorities to every receiver.
	want := map[int64][]string{b1: {"all", "team"}, b2: {"all", "pager", "team"}, b3: {"all", "pager", "team"}, b4: {"all", "pager", "team"}, b5: {"all"}}
	byAlert := map[int64][]string{}
	notes := notificationRows(t, s)
	for _, d := range deliveryRows(t, s) {
		for _, n := range notes {
			if n.id == d.notificationID {
				byAlert[n.alertID] = append(byAlert[n.alertID], d.receiver)
			}
		}
	}
	for id, w := range want {
		if !slices.Equal(byAlert[id], w) {
			t.Errorf("alert %d delivered to %v, want %v", id, byAlert[id], w)
		}
	}
	if p := notes[1].payload; p.Priority != "P1" || p.RoutedAt != "P1" {
		t.Errorf("notification of b2: priority %v routed %v", p.Priority, p.RoutedAt)
	}

	// Ack b1 at P2, then it escalates to P1: the ack keeps the priority
	// it covered, the escalation is notified with what it left.
	acked, err := s.Ack(ctx, b1, cli("kim"), "calling", m0.End())
	if err != nil || acked.Ack.Priority != rules.P2 {
		t.Fatalf("ack: %+v %v", acked, err)
	}
	live := lives[0]
	live.Ack = acked.Ack
	ch := still(live, m0+11, map[string]any{"exposure": int64(6_000_000)})
	live.Priority, live.Notified = rules.P1, rules.P1
	ch.Snap, ch.Notify, ch.NotifyPriority, ch.PrevPriority, ch.Severity = *live, alert.NotifyEscalated, rules.P1, rules.P2, "critical"
	mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0 + 11, Changes: []AlertChange{ch}, Routes: routes})
	notes = notificationRows(t, s)
	esc := notes[len(notes)-1]
	if p := esc.payload; esc.kind != alert.NotifyEscalated || p.PreviousPriority != "P2" || p.PreviousSeverity != "warning" || p.Priority != "P1" || p.RoutedAt != "P1" {
		t.Errorf("escalation notification: %s %v", esc.kind, esc.payload)
	}
	acks, err := s.Acks(ctx)
	if err != nil || acks[b1].Priority != rules.P2 {
		t.Errorf("acks after the escalation: %+v %v", acks, err)
	}
	got, err := s.Alerts(ctx, AlertFilter{Merchant: 11})
	if err != nil || len(got) != 1 || got[0].Priority != rules.P1 || got[0].Notified != rules.P1 || got[0].Ack.Priority != rules.P2 {
		t.Fatalf("b1 after escalating: %+v %v", got, err)
	}

	// b2 resolves (notified), b5 resolves too; a restart asks for those
	// resolved since m0+20: b2's key only if it resolved then.
	for _, i := range []int{1, 4} {
		var chs []AlertChange
		for m := m0 + 16; m <= m0+20; m++ {
			chs = append(chs, falseEval(lives[i], m+window.Minute(i), nil, 5))
		}
		chs[len(chs)-1].NotifyPriority = lives[i].Notified
		mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0 + 30, Changes: chs, Routes: routes})
	}
	// b2 resolved at m0+21, b5 at m0+24.
	for _, tc := range []struct {
		since window.Minute
		want  []int64
	}{{m0 + 21, []int64{b2, b5}}, {m0 + 22, []int64{b5}}, {m0 + 25, nil}} {
		rec, err := s.RecentlyResolved(ctx, tc.since.Start())
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, a := range rec {
			got = append(got, a.ID)
			if a.ID == b2 && a.Notified != rules.P1 {
				t.Errorf("b2 restored notified at %v, want P1", a.Notified)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("resolved since %s: %v, want %v", tc.since, got, tc.want)
		}
	}
}

// TestContinuationStored: a re-fire that continues an earlier alert is
// stored with it, and comes back after a restart.
func TestContinuationStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, seoul(t))
	closed := bootstrapEmpty(t, s)
	m0 := minute(t, "2026-11-25T14:01:00Z")
	first, ch := fire("cancel_rate_spike", 7, m0, nil)
	first.Priority, first.Notified = rules.P1, rules.P1
	ch.Snap, ch.NotifyPriority = *first, rules.P1
	mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0, Changes: []AlertChange{ch}})
	var resolve []AlertChange
	for m := m0 + 1; m <= m0+5; m++ {
		resolve = append(resolve, falseEval(first, m, nil, 5))
	}
	mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0 + 5, Changes: resolve})
	again, ch := fire("cancel_rate_spike", 7, m0+10, nil)
	again.Priority, again.Notified, again.Continues, again.ContinuesNotified = rules.P1, rules.P2, first.ID, rules.P1
	ch.Snap, ch.Notify, ch.NotifyPriority = *again, alert.NotifyContinued, rules.P2
	mustApplyAlerts(t, s, &AlertBatch{Closed: closed, LastClosed: m0 + 10, Changes: []AlertChange{ch}})
	got, err := s.Alerts(ctx, AlertFilter{Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if a := got[0]; a.Continues != first.ID || a.ContinuesNotified != rules.P1 || a.Notified != rules.P2 || a.Priority != rules.P1 {
		t.Errorf("continuation stored as %+v", a)
	}
	notes := notificationRows(t, s)
	if n := notes[len(notes)-1]; n.kind != alert.NotifyContinued || n.payload.Continues != first.ID || n.payload.RoutedAt != "P2" {
		t.Errorf("continuation notification %s %v", n.kind, n.payload)
	}
}
