package merchantnames

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/riskwatch/riskwatch/internal/binlog"
	"github.com/riskwatch/riskwatch/internal/store/dashboard"
)

// Reader reads the merchants table of a source database.
type Reader interface {
	// read calls fn with the id and name (NULL as "") of every row of
	// o.Table, or with newer of those whose id is above above. The
	// comparison is on the column itself, not a cast of it, so that the
	// primary key's index serves it.
	read(ctx context.Context, o Options, newer bool, above int64, fn func(dashboard.Merchant)) error
	// Close releases the Reader's connections.
	Close()
}

// Open returns the Reader of the source dsn names (postgres:// or
// mysql://). Its connections are marked ApplicationName.
func Open(ctx context.Context, dsn string) (Reader, error) {
	if strings.HasPrefix(dsn, "mysql://") {
		return openMySQL(dsn)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing source dsn: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = ApplicationName
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to source: %w", err)
	}
	return Postgres(pool), nil
}

// Postgres reads through pool; Close closes it.
func Postgres(pool *pgxpool.Pool) Reader { return pgReader{pool} }

type pgReader struct{ pool *pgxpool.Pool }

func (r pgReader) Close() { r.pool.Close() }

func (r pgReader) read(ctx context.Context, o Options, newer bool, above int64, fn func(dashboard.Merchant)) error {
	q := fmt.Sprintf("SELECT %s::bigint, coalesce(%s::text, '') FROM %s",
		pgx.Identifier{o.ID}.Sanitize(), pgx.Identifier{o.Name}.Sanitize(), pgx.Identifier{o.Schema, o.Table}.Sanitize())
	var args []any
	if newer {
		q += fmt.Sprintf(" WHERE %s > $1", pgx.Identifier{o.ID}.Sanitize())
		args = append(args, above)
	}
	rows, err := r.pool.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	var m dashboard.Merchant
	_, err = pgx.ForEachRow(rows, []any{&m.ID, &m.Name}, func() error {
		fn(m)
		return nil
	})
	return err
}

// myReader reads a MySQL or MariaDB source on one session, opened at the
// first read and again after a failure.
type myReader struct {
	addr, user, password, database string
	conn                           *client.Conn
}

func openMySQL(dsn string) (*myReader, error) {
	user, password, host, port, database, err := binlog.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return &myReader{addr: net.JoinHostPort(host, strconv.Itoa(int(port))), user: user, password: password, database: database}, nil
}

func (r *myReader) Close() {
	if r.conn != nil {
		if r.conn.Quit() != nil {
			r.conn.Close()
		}
		r.conn = nil
	}
}

func (r *myReader) read(ctx context.Context, o Options, newer bool, above int64, fn func(dashboard.Merchant)) error {
	if r.conn == nil {
		c, err := client.ConnectWithContext(ctx, r.addr, r.user, r.password, r.database, 10*time.Second, func(c *client.Conn) error {
			// Shown in performance_schema.session_connect_attrs.
			c.SetAttributes(map[string]string{"program_name": ApplicationName})
			return nil
		})
		if err != nil {
			return fmt.Errorf("connecting to source %s: %w", r.addr, err)
		}
		r.conn = c
	}
	database := o.Schema
	if database == "public" {
		// MySQL has databases, not schemas: an unqualified table (and the
		// default public.) is in the DSN's database, as for the mapping.
		database = r.database
	}
	id := quote(o.ID)
	q := fmt.Sprintf("SELECT CAST(%s AS SIGNED), COALESCE(CAST(%s AS CHAR), '') FROM %s.%s", id, quote(o.Name), quote(database), quote(o.Table))
	if newer {
		q += fmt.Sprintf(" WHERE %s > %d", id, above)
	}
	// go-mysql's I/O takes no context: when ctx ends the socket's deadline
	// is moved into the past, which fails the read; the session is then
	// dropped, as after any failure, and the next read opens another.
	stop := context.AfterFunc(ctx, func() { r.conn.SetDeadline(time.Unix(1, 0)) })
	var res mysql.Result
	err := r.conn.ExecuteSelectStreaming(q, &res, func(row []mysql.FieldValue) error {
		fn(dashboard.Merchant{ID: row[0].AsInt64(), Name: string(row[1].AsString())})
		return nil
	}, nil)
	fired := !stop()
	if fired && err != nil {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	if err != nil || fired {
		r.conn.Close()
		r.conn = nil
	}
	return err
}

func quote(ident string) string { return "`" + strings.ReplaceAll(ident, "`", "``") + "`" }
