package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/riskwatch/riskwatch/internal/binlog"
)

// myDatetime is how a DATETIME(6) literal is written.
const myDatetime = "2006-01-02 15:04:05.000000"

// onDupSkip makes an INSERT skip rows whose id exists, like PostgreSQL's
// ON CONFLICT DO NOTHING. INSERT IGNORE would also turn every other error
// (a NULL, a value out of range) into a warning.
const onDupSkip = " ON DUPLICATE KEY UPDATE id = id"

// merchantsPerInsert bounds a prepared INSERT of merchants to 3,000
// placeholders (the protocol allows 65,535).
const merchantsPerInsert = 1000

// myDB writes a MySQL or MariaDB source through go-mysql's client, times as
// DATETIME(6) wall clocks in loc.
//
// The history goes in as one multi-row INSERT per generated batch (8,192
// rows, about 650 KB of SQL: below every server's default
// max_allowed_packet). LOAD DATA LOCAL INFILE, which go-mysql's client
// can relay, was no faster on MariaDB 10.11 (the server's index and
// binlog writes are the cost, not parsing), and servers disable it by
// default (local_infile), so plain INSERTs it is. Each connection is a
// session of its own, opened by acquire and closed by release: a chunk of
// history or a live worker holds one for minutes, so a pool would save
// nothing.
type myDB struct {
	addr, user, password, database string
	conns                          int
	loc                            *time.Location
}

func openMySQL(ctx context.Context, dsn string, o OpenOptions) (DB, error) {
	user, password, host, port, database, err := binlog.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing dsn: %w", err)
	}
	d := &myDB{addr: net.JoinHostPort(host, strconv.Itoa(int(port))), user: user, password: password, database: database,
		conns: max(o.Conns, 1), loc: o.TimeZone}
	c, err := d.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.release()
	// The protocol runs one statement at a time.
	for stmt := range strings.SplitSeq(MySQLSchema, ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := c.exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("creating the source schema: %w", err)
		}
	}
	if d.loc == nil {
		d.loc = time.UTC
		r, err := c.exec(ctx, "SELECT time_zone FROM sim_meta WHERE id = 1")
		if err != nil {
			return nil, fmt.Errorf("reading sim_meta: %w", err)
		}
		if r.RowNumber() > 0 {
			name, _ := r.GetString(0, 0)
			if d.loc, err = time.LoadLocation(name); err != nil {
				return nil, fmt.Errorf("sim_meta.time_zone: %w", err)
			}
		}
	}
	return d, nil
}

func (d *myDB) Close()        {}
func (d *myDB) maxConns() int { return d.conns }

// myConn is one session.
type myConn struct {
	*client.Conn
	loc    *time.Location
	buf    []byte
	broken bool // not to be used again: its socket's deadline has passed
}

func (d *myDB) connect(ctx context.Context) (*myConn, error) {
	c, err := client.ConnectWithContext(ctx, d.addr, d.user, d.password, d.database, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", d.addr, err)
	}
	return &myConn{Conn: c, loc: d.loc}, nil
}

func (d *myDB) acquire(ctx context.Context) (dbConn, error) { return d.connect(ctx) }

// release ends the session politely (the server logs an aborted
// connection otherwise), or just closes a broken one.
func (c *myConn) release() {
	if c.broken || c.Quit() != nil {
		c.Close()
	}
}

// exec runs one statement, bound by ctx. go-mysql's I/O takes no context,
// so when ctx ends the socket's deadline is moved into the past, which
// fails whatever waits on it; the session is then broken.
func (c *myConn) exec(ctx context.Context, q string, args ...any) (*mysql.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	r, err := c.Execute(q, args...)
	if !stop() {
		c.broken = true
		if err != nil {
			err = fmt.Errorf("%w: %w", ctx.Err(), err)
		}
	}
	var me *mysql.MyError
	if err != nil && !errors.As(err, &me) {
		c.broken = true // an I/O error leaves the protocol out of step
	}
	return r, err
}

// execIn runs the statements fn sends in one transaction.
func (c *myConn) execIn(ctx context.Context, fn func() error) error {
	if _, err := c.exec(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("beginning a transaction: %w", err)
	}
	if err := fn(); err != nil {
		if !c.broken {
			if _, rerr := c.exec(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
				err = errors.Join(err, fmt.Errorf("rolling back: %w", rerr))
			}
		}
		return err
	}
	if _, err := c.exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// insertRows runs INSERT head VALUES (row 0), …, (row n−1) tail and
// returns the rows it wrote.
func (c *myConn) insertRows(ctx context.Context, head string, n int, row func(b []byte, i int) []byte, tail string) (int64, error) {
	b := append(c.buf[:0], head...)
	b = append(b, " VALUES "...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '(')
		b = row(b, i)
		b = append(b, ')')
	}
	b = append(b, tail...)
	c.buf = b
	r, err := c.exec(ctx, string(b))
	if err != nil {
		return 0, err
	}
	return int64(r.AffectedRows), nil
}

const (
	myPaymentsHead = "INSERT INTO payments (id, merchant_id, amount, status, approved_at)"
	myCancelsHead  = "INSERT INTO payment_cancels (id, payment_id, merchant_id, cancel_amount, canceled_at)"
)

// appendRow appends the integers, then lit when not empty, then t as a
// DATETIME literal in loc, comma-separated.
func (c *myConn) appendRow(b []byte, t time.Time, lit string, ints ...int64) []byte {
	for _, v := range ints {
		b = strconv.AppendInt(b, v, 10)
		b = append(b, ',')
	}
	if lit != "" {
		b = append(b, lit...)
		b = append(b, ',')
	}
	b = append(b, '\'')
	b = t.In(c.loc).AppendFormat(b, myDatetime)
	return append(b, '\'')
}

func (c *myConn) insertPayments(ctx context.Context, ps []Payment, tail string) (int64, error) {
	return c.insertRows(ctx, myPaymentsHead, len(ps), func(b []byte, i int) []byte {
		p := &ps[i]
		return c.appendRow(b, p.ApprovedAt, "'approved'", p.ID, p.MerchantID, p.Amount)
	}, tail)
}

func (c *myConn) insertCancels(ctx context.Context, cs []Cancel, tail string) (int64, error) {
	return c.insertRows(ctx, myCancelsHead, len(cs), func(b []byte, i int) []byte {
		x := &cs[i]
		return c.appendRow(b, x.CanceledAt, "", x.ID, x.PaymentID, x.MerchantID, x.Amount)
	}, tail)
}

func (c *myConn) copyPayments(ctx context.Context, next func() []Payment) (int64, error) {
	var n int64
	for b := next(); len(b) > 0; b = next() {
		k, err := c.insertPayments(ctx, b, "")
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (c *myConn) copyCancels(ctx context.Context, cs []Cancel) (int64, error) {
	var n int64
	for len(cs) > 0 {
		b := cs[:min(len(cs), copyBatch)]
		cs = cs[len(b):]
		k, err := c.insertCancels(ctx, b, "")
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// insert sends a single row as one statement (autocommit, as a gateway
// commits a payment) and a batch as one INSERT per table in a transaction.
func (c *myConn) insert(ctx context.Context, ps []Payment, cs []Cancel) (np, nc int64, err error) {
	if len(ps)+len(cs) == 1 {
		if len(ps) == 1 {
			if np, err = c.insertPayments(ctx, ps, onDupSkip); err != nil {
				return 0, 0, fmt.Errorf("live: inserting payment %d: %w", ps[0].ID, err)
			}
			return np, 0, nil
		}
		if nc, err = c.insertCancels(ctx, cs, onDupSkip); err != nil {
			return 0, 0, fmt.Errorf("live: inserting cancel %d: %w", cs[0].ID, err)
		}
		return 0, nc, nil
	}
	err = c.execIn(ctx, func() error {
		if len(ps) > 0 {
			if np, err = c.insertPayments(ctx, ps, onDupSkip); err != nil {
				return fmt.Errorf("inserting %d payments: %w", len(ps), err)
			}
		}
		if len(cs) > 0 {
			if nc, err = c.insertCancels(ctx, cs, onDupSkip); err != nil {
				return fmt.Errorf("inserting %d cancels: %w", len(cs), err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("live: committing a batch: %w", err)
	}
	return np, nc, nil
}

// loadMerchants inserts the rows with placeholders (names are text, and a
// server may run with NO_BACKSLASH_ESCAPES, so they are never spliced
// into SQL), skipping ids that exist.
func (d *myDB) loadMerchants(ctx context.Context, ms []merchantRow) error {
	c, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer c.release()
	return c.execIn(ctx, func() error {
		var q []byte
		args := make([]any, 0, 3*merchantsPerInsert)
		for len(ms) > 0 {
			b := ms[:min(len(ms), merchantsPerInsert)]
			ms = ms[len(b):]
			q = append(q[:0], "INSERT INTO merchants (id, name, created_at) VALUES "...)
			args = args[:0]
			for i := range b {
				if i > 0 {
					q = append(q, ',')
				}
				q = append(q, "(?, ?, ?)"...)
				args = append(args, b[i].ID, b[i].Name, b[i].CreatedAt.In(d.loc).Format(myDatetime))
			}
			q = append(q, onDupSkip...)
			if _, err := c.exec(ctx, string(q), args...); err != nil {
				return fmt.Errorf("inserting merchants: %w", err)
			}
		}
		return nil
	})
}

// withConn runs fn on a session of its own.
func (d *myDB) withConn(ctx context.Context, fn func(c *myConn) error) error {
	c, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer c.release()
	return fn(c)
}

// ReadMeta reads the times in the zone sim_meta records.
func (d *myDB) ReadMeta(ctx context.Context) (*Meta, error) {
	var m *Meta
	err := d.withConn(ctx, func(c *myConn) error {
		r, err := c.exec(ctx, `SELECT seed, merchants, payments_day, incidents, large_amount, profile, time_zone,
			anchor, history_from, written_until, scored_day FROM sim_meta WHERE id = 1`)
		if err != nil || r.RowNumber() == 0 {
			return err
		}
		m = &Meta{}
		ints := make([]int64, 5)
		for i := range ints {
			if ints[i], err = r.GetInt(0, i); err != nil {
				return err
			}
		}
		m.Seed, m.Merchants, m.PaymentsDay, m.Incidents, m.LargeAmount = uint64(ints[0]), int(ints[1]), int(ints[2]), ints[3] != 0, ints[4]
		if m.Profile, err = r.GetString(0, 5); err != nil {
			return err
		}
		if m.TimeZone, err = r.GetString(0, 6); err != nil {
			return err
		}
		loc, err := time.LoadLocation(m.TimeZone)
		if err != nil {
			return fmt.Errorf("time_zone: %w", err)
		}
		for i, dst := range []*time.Time{&m.Anchor, &m.HistoryFrom, &m.WrittenUntil, &m.ScoredDay} {
			if null, _ := r.IsNull(0, 7+i); null {
				continue
			}
			s, err := r.GetString(0, 7+i)
			if err != nil {
				return err
			}
			// The layout's fraction is optional when parsing.
			if *dst, err = time.ParseInLocation(time.DateTime, s, loc); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading sim_meta: %w", err)
	}
	return m, nil
}

// WriteMeta records the times, and the zone they and every row are in.
func (d *myDB) WriteMeta(ctx context.Context, m *Meta) error {
	var scored any // NULL
	if !m.ScoredDay.IsZero() {
		scored = d.datetime(m.ScoredDay)
	}
	err := d.withConn(ctx, func(c *myConn) error {
		_, err := c.exec(ctx, `INSERT INTO sim_meta (id, seed, merchants, payments_day, anchor, history_from, incidents, large_amount,
			written_until, profile, scored_day, time_zone) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			int64(m.Seed), m.Merchants, m.PaymentsDay, d.datetime(m.Anchor), d.datetime(m.HistoryFrom), m.Incidents,
			m.LargeAmount, d.datetime(m.WrittenUntil), m.Profile, scored, d.loc.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("recording sim_meta: %w", err)
	}
	return nil
}

func (d *myDB) MarkWritten(ctx context.Context, t time.Time) error {
	err := d.withConn(ctx, func(c *myConn) error {
		_, err := c.exec(ctx, `UPDATE sim_meta SET written_until = GREATEST(written_until, CAST(? AS DATETIME(6))) WHERE id = 1`, d.datetime(t))
		return err
	})
	if err != nil {
		return fmt.Errorf("recording progress in sim_meta: %w", err)
	}
	return nil
}

func (d *myDB) Empty(ctx context.Context) error {
	err := d.withConn(ctx, func(c *myConn) error {
		for _, q := range []string{"TRUNCATE TABLE payments", "TRUNCATE TABLE payment_cancels", "TRUNCATE TABLE merchants", "DELETE FROM sim_meta"} {
			if _, err := c.exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("emptying the source tables: %w", err)
	}
	return nil
}

func (d *myDB) datetime(t time.Time) string { return t.In(d.loc).Format(myDatetime) }
