package store

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/pgtest"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

// TestPositionsUpgradeInPlace: a sink made by the migrations before source
// positions were the source's own text (LSNs as bigint) keeps its
// positions through the upgrade: checkpoint and dead letters as
// PostgreSQL's text form of the LSN, Kafka partitions' source positions as
// their ordered bytes.
func TestPositionsUpgradeInPlace(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, cluster.NewDB(t), "rw_sink", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	migrateOnly(t, db, "001_init.sql", "002_alerts.sql", "003_dashboard.sql", "004_kafka.sql")
	const lsn = int64(0x16_B374D848) // 16/B374D848
	seed := fmt.Sprintf(`
		INSERT INTO %[1]s.checkpoint (slot, lsn, last_closed, progress, snapshot_lsn, bootstrapped_at, business_timezone)
			VALUES ('riskwatch', %[2]d, now(), now(), 4096, now(), 'Asia/Seoul');
		INSERT INTO %[1]s.dead_letters (origin, source_table, kind, reason, detail, lsn, row)
			VALUES ('stream', 'public.payments', 'approval', 'null_time', 'x', %[2]d, '{}'), ('snapshot', 'public.payments', 'approval', 'null_time', 'y', NULL, '{}');
		INSERT INTO %[1]s.kafka_partitions (topic, partition, next_offset, pos_commit, pos_lsn, watermark, last_closed, snapshot_lsn)
			VALUES ('t', 0, 10, %[2]d, %[2]d + 56, now(), now(), 4096), ('t', 1, 0, 0, 0, now(), now(), 0)`, db.schema, lsn)
	if _, err := db.pool.Exec(ctx, seed); err != nil {
		t.Fatal(err)
	}
	applied, err := db.Migrate(ctx)
	if err != nil || len(applied) == 0 || applied[0] != "005_positions.sql" {
		t.Fatalf("upgrade applied %v, %v", applied, err)
	}
	var pos, snap string
	var epoch int64
	if err := db.pool.QueryRow(ctx, fmt.Sprintf(`SELECT position, snapshot_position, epoch FROM %s.checkpoint`, db.schema)).Scan(&pos, &snap, &epoch); err != nil {
		t.Fatal(err)
	}
	if pos != "16/B374D848" || snap != "0/1000" || epoch != 0 {
		t.Errorf("checkpoint after the upgrade: %q %q epoch %d", pos, snap, epoch)
	}
	var dl []*string
	rows, err := db.pool.Query(ctx, fmt.Sprintf(`SELECT position FROM %s.dead_letters ORDER BY id`, db.schema))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p *string
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		dl = append(dl, p)
	}
	if len(dl) != 2 || dl[0] == nil || *dl[0] != "16/B374D848" || dl[1] != nil {
		t.Errorf("dead letters' positions after the upgrade: %v", dl)
	}
	var k0, k1 []byte
	var s0, s1 string
	if err := db.pool.QueryRow(ctx, fmt.Sprintf(`SELECT (SELECT source_pos FROM %[1]s.kafka_partitions WHERE partition = 0), (SELECT source_pos FROM %[1]s.kafka_partitions WHERE partition = 1),
		(SELECT snapshot_position FROM %[1]s.kafka_partitions WHERE partition = 0), (SELECT snapshot_position FROM %[1]s.kafka_partitions WHERE partition = 1)`, db.schema)).Scan(&k0, &k1, &s0, &s1); err != nil {
		t.Fatal(err)
	}
	want := []byte{0, 0, 0, 0x16, 0xB3, 0x74, 0xD8, 0x48, 0, 0, 0, 0x16, 0xB3, 0x74, 0xD8, 0x80}
	if string(k0) != string(want) || len(k1) != 0 || s0 != "0/1000" || s1 != "" {
		t.Errorf("partitions after the upgrade: %x %x %q %q", k0, k1, s0, s1)
	}
}

// TestPriorityUpgradeKeepsOpenAlerts: alerts opened before priorities
// existed survive the upgrade with no priority (the engine gives each one
// at its first evaluation, silently) and an ack that covers any priority.
func TestPriorityUpgradeKeepsOpenAlerts(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, cluster.NewDB(t), "rw_sink", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	migrateOnly(t, db, "001_init.sql", "002_alerts.sql", "003_dashboard.sql", "004_kafka.sql", "005_positions.sql")
	if _, err := db.pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.alerts (rule, merchant_id, state, active_at, last_eval_at, last_sent_at, false_count, "values", acked_by, acked_at)
		VALUES ('cancel_rate_spike', 42, 'firing', now(), now(), now(), 0, '{"c_h": 9}', 'kim', now())`, db.schema)); err != nil {
		t.Fatal(err)
	}
	applied, err := db.Migrate(ctx)
	if err != nil || len(applied) == 0 || applied[0] != "006_priority.sql" {
		t.Fatalf("upgrade applied %v, %v", applied, err)
	}
	var prio, ackPrio, notified *int16
	if err := db.pool.QueryRow(ctx, fmt.Sprintf(`SELECT priority, ack_priority, notified_priority FROM %s.alerts WHERE merchant_id = 42 AND state = 'firing'`, db.schema)).
		Scan(&prio, &ackPrio, &notified); err != nil {
		t.Fatal(err)
	}
	if prio != nil || ackPrio != nil || notified != nil {
		t.Errorf("after the upgrade: priority %v ack %v notified %v, want all NULL", prio, ackPrio, notified)
	}
	// The new columns hold priorities only.
	if _, err := db.pool.Exec(ctx, fmt.Sprintf(`UPDATE %s.alerts SET priority = 4`, db.schema)); err == nil {
		t.Error("priority 4 accepted")
	}
}

// migrateOnly applies the named migrations to a new schema, as a sink made
// by an older riskwatch would have them.
func migrateOnly(t *testing.T, db *DB, names ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := db.pool.Exec(ctx, fmt.Sprintf(`CREATE SCHEMA %[1]s; CREATE TABLE %[1]s.schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`, db.schema)); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		body, err := migrations.ReadFile("migrations/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.pool.Exec(ctx, fmt.Sprintf("SET search_path = %s, public; %s; INSERT INTO %s.schema_migrations (name) VALUES ('%s'); RESET search_path",
			db.schema, body, db.schema, name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// TestAggregatesAnalyzedLess: the aggregate tables, rewritten by every
// flush, are re-analyzed after twice their rows changed rather than a
// tenth (autovacuum's default), and their vacuum keeps the defaults.
func TestAggregatesAnalyzedLess(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, cluster.NewDB(t), "rw_sink", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := db.pool.Query(ctx, `SELECT c.relname, coalesce(array_to_string(c.reloptions, ','), '') FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY c.relname`, db.schemaName)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var name, opts string
		if err := rows.Scan(&name, &opts); err != nil {
			t.Fatal(err)
		}
		got[name] = opts
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"minute_agg", "hour_agg", "day_agg"} {
		if got[table] != "autovacuum_analyze_scale_factor=2" {
			t.Errorf("%s: reloptions %q, want autovacuum_analyze_scale_factor=2 alone", table, got[table])
		}
	}
	if got["alerts"] != "" || got["checkpoint"] != "" {
		t.Errorf("other tables changed: alerts %q, checkpoint %q", got["alerts"], got["checkpoint"])
	}
}
