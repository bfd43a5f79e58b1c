package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// refuse is a fence whose held transactions see the writer superseded
// when its epoch differs from the one stored in the test's table.
type refuse struct{ epoch int64 }

func (f refuse) check(row pgx.Row) error {
	var current int64
	if err := row.Scan(&current); err != nil {
		return err
	}
	if current != f.epoch {
		return ErrFenced
	}
	return nil
}

func (f refuse) Hold(ctx context.Context, tx pgx.Tx) error {
	return f.check(tx.QueryRow(ctx, `SELECT epoch FROM bt_epoch FOR KEY SHARE`))
}

func (f refuse) Queue(qb *pgx.Batch) error {
	qb.Queue(`SELECT epoch FROM bt_epoch FOR KEY SHARE`).QueryRow(f.check)
	return nil
}

// TestBatchTx: a batch transaction commits everything or nothing: a
// failing statement after good ones, a failing then, and a fence that
// refuses all leave no row; then runs in the same transaction; the pool
// gets its connection back each time.
func TestBatchTx(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, cluster.NewDB(t), "rw_sink", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.pool.Exec(ctx, `CREATE TABLE bt (x int PRIMARY KEY); CREATE TABLE bt_epoch (epoch bigint); INSERT INTO bt_epoch VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	rows := func() (n int) {
		t.Helper()
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM bt`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	insert := func(xs ...int) func(qb *pgx.Batch) error {
		return func(qb *pgx.Batch) error {
			for _, x := range xs {
				qb.Queue(`INSERT INTO bt VALUES ($1)`, x)
			}
			return nil
		}
	}
	boom := errors.New("then failed")
	for _, tc := range []struct {
		name  string
		db    *DB
		fill  func(qb *pgx.Batch) error
		then  func(tx pgx.Tx) error
		want  int // rows after
		isErr func(error) bool
	}{
		{"committed", db, insert(1, 2), nil, 2, nil},
		{"a duplicate key after a good row", db, insert(3, 1), nil, 2, func(err error) bool { return err != nil }},
		{"then in the same transaction", db, insert(4), func(tx pgx.Tx) error {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM bt WHERE x = 4`).Scan(&n); err != nil || n != 1 {
				return errors.New("then does not see the batch's row")
			}
			_, err := tx.Exec(ctx, `INSERT INTO bt VALUES (5)`)
			return err
		}, 4, nil},
		{"then fails", db, insert(6), func(pgx.Tx) error { return boom }, 4, func(err error) bool { return errors.Is(err, boom) }},
		{"fill fails", db, func(qb *pgx.Batch) error { return boom }, nil, 4, func(err error) bool { return errors.Is(err, boom) }},
		{"fence holds", db.Fenced(refuse{1}), insert(7), nil, 5, nil},
		{"fence refuses", db.Fenced(refuse{2}), insert(8), nil, 5, func(err error) bool { return errors.Is(err, ErrFenced) }},
	} {
		err := tc.db.BatchTx(ctx, tc.fill, tc.then)
		if tc.isErr == nil && err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.isErr != nil && !tc.isErr(err) {
			t.Fatalf("%s: error %v", tc.name, err)
		}
		if got := rows(); got != tc.want {
			t.Fatalf("%s: %d rows, want %d", tc.name, got, tc.want)
		}
		if n := db.pool.Stat().AcquiredConns(); n != 0 {
			t.Fatalf("%s: %d connections still acquired", tc.name, n)
		}
	}
}
