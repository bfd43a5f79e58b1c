// Package lease makes one of several `riskwatch run` processes on one sink
// the active one and the others standbys. Leadership is a row in the sink:
// a lease taken for a while and renewed, expiring by the sink's clock, with
// an epoch that moves on at every takeover. The active process's writes
// pass Hold in their own transactions, which refuses them once the epoch
// has moved on. A session-level advisory lock would not do: a process cut
// off by the network keeps it for as long as the server takes to notice the
// dead connection (TCP keepalive: two hours by default).
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/sync/errgroup"

	"github.com/riskwatch/riskwatch/internal/store"
)

// Roles a process can have.
const (
	RoleActive  = "active"
	RoleStandby = "standby"
)

// Options configure a Lease.
type Options struct {
	DB *store.DB
	// Name is the lease's: one per source (its slot), so that engines of
	// different sources on one sink do not wait for each other.
	Name string
	// Holder names this process to the others (logs, status).
	Holder string
	// TTL is how long a renewal holds the lease, by the sink's clock.
	TTL time.Duration
	// Renew is how often the active process renews; a standby asks four
	// times as often whether it may take over.
	Renew    time.Duration
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Info is the lease as this process last saw it.
type Info struct {
	// Role is this process's: RoleActive or RoleStandby.
	Role string
	// Holder and Epoch are the lease's holder and epoch, ExpiresAt when it
	// expires unless renewed (zero before the first read).
	Holder    string
	Epoch     int64
	ExpiresAt time.Time
}

// Lease is one process's side of the lease.
type Lease struct {
	o   Options
	log *slog.Logger
	// epoch is the current term's, 0 while standby: Hold compares it with
	// the sink's. Terms of one process never overlap (Run waits for one
	// to end before it tries to take the next), so a write carrying the
	// epoch of the moment it runs is a write of that term.
	epoch  atomic.Int64
	active prometheus.Gauge

	mu   sync.Mutex
	seen Info
	// until is when this term stops by the local clock unless renewed
	// (the monotonic reading of a time.Now, so a paused process finds it
	// passed when it resumes).
	until time.Time
	// stop ends the current term (Hold found the epoch moved on).
	stop context.CancelCauseFunc

	// conn is the lease session, used by Run's goroutine only.
	conn *pgx.Conn
}

// errLost ends a term whose lease is gone: superseded, or not renewed in
// time.
var errLost = errors.New("lease lost")

// New returns a lease; nothing happens until Run.
func New(o Options) *Lease {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	l := &Lease{o: o, log: o.Logger.With("lease", o.Name)}
	l.active = promauto.With(o.Registry).NewGauge(prometheus.GaugeOpts{
		Name: "riskwatch_lease_active",
		Help: "1 while this process holds the lease and runs the pipeline, 0 while it is a standby.",
	})
	l.seen.Role = RoleStandby
	return l
}

// DefaultHolder names a process by host and pid.
func DefaultHolder() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return host + ":" + strconv.Itoa(os.Getpid())
}

// Info returns the lease as last seen.
func (l *Lease) Info() Info {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen
}

// Role is this process's role.
func (l *Lease) Role() string { return l.Info().Role }

// Current reports whether this process is the active one and its lease,
// by the local clock, still has a renew interval to run. Notifications
// leave the sink's fence behind (a receiver knows no epoch), so a send
// asks this just before it goes: a process paused past its lease, which
// may have read notifications to send before the pause, finds it false as
// soon as it resumes, before its term is even cancelled.
func (l *Lease) Current() bool {
	if l.epoch.Load() == 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Now().Before(l.until)
}

func (l *Lease) setUntil(t time.Time) {
	l.mu.Lock()
	l.until = t
	l.mu.Unlock()
}

// Run waits as a standby, running standby (when not nil) meanwhile, until
// it takes the lease; then runs active while it holds it. When the lease
// cannot be renewed before it would expire, or Hold finds a successor's
// epoch, active's context is cancelled and, once active has returned, the
// process is a standby again. When ctx ends the lease is released, so a
// standby takes over at once. An error of active (or standby) ends Run.
func (l *Lease) Run(ctx context.Context, active, standby func(ctx context.Context) error) error {
	defer l.closeSession()
	for {
		epoch, renewed, err := l.await(ctx, standby)
		if err != nil || ctx.Err() != nil {
			return err
		}
		err = l.term(ctx, epoch, renewed, active)
		if ctx.Err() != nil || err != nil {
			l.release(ctx, epoch)
			return err
		}
	}
}

// await tries to take the lease every quarter Renew until it has it. It returns
// the epoch taken and the local time just before the statement that took
// it was sent (the lease expires no earlier than TTL after that).
func (l *Lease) await(ctx context.Context, standby func(ctx context.Context) error) (int64, time.Time, error) {
	g, gctx := errgroup.WithContext(ctx)
	sctx, stopStandby := context.WithCancel(gctx)
	defer stopStandby()
	if standby != nil {
		g.Go(func() error { return standby(sctx) })
	}
	var epoch int64
	var sent time.Time
	g.Go(func() error {
		defer stopStandby()
		// Asking is one short transaction; asking often means a process
		// restarted after a crash (whose old session the server has just
		// ended) or a standby whose active one died starts at once.
		t := time.NewTicker(max(l.o.Renew/4, 10*time.Millisecond))
		defer t.Stop()
		var last Info
		for {
			sent = time.Now()
			actx, cancel := context.WithTimeout(gctx, l.o.Renew)
			got, err := l.tryAcquire(actx)
			cancel()
			switch {
			case gctx.Err() != nil:
				return nil
			case err != nil:
				l.log.Warn("could not try to take the lease; trying again", "err", err)
			case got > 0:
				epoch = got
				return nil
			default:
				if seen := l.Info(); seen.Holder != last.Holder || seen.Epoch != last.Epoch {
					l.log.Info("standby: another process is active", "holder", seen.Holder, "epoch", seen.Epoch, "expires_at", seen.ExpiresAt)
					last = seen
				}
			}
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
			}
		}
	})
	err := g.Wait()
	if err != nil || epoch == 0 {
		return 0, time.Time{}, err
	}
	return epoch, sent, nil
}

// term runs active while the lease is renewed.
func (l *Lease) term(ctx context.Context, epoch int64, renewed time.Time, active func(ctx context.Context) error) error {
	tctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	l.mu.Lock()
	l.stop = stop
	l.seen.Role = RoleActive
	l.until = renewed.Add(l.o.TTL - l.o.Renew)
	l.mu.Unlock()
	l.epoch.Store(epoch)
	l.active.Set(1)
	l.log.Info("active: took the lease", "holder", l.o.Holder, "epoch", epoch)
	defer func() {
		// From here on every write of this process is refused until it
		// takes the lease again.
		l.epoch.Store(0)
		l.active.Set(0)
		l.mu.Lock()
		l.stop = nil
		l.seen.Role = RoleStandby
		l.mu.Unlock()
	}()

	g, gctx := errgroup.WithContext(tctx)
	g.Go(func() error { return active(gctx) })
	g.Go(func() error { return l.keep(gctx, epoch, renewed) })
	err := g.Wait()
	if cause := context.Cause(tctx); errors.Is(cause, errLost) {
		err = cause
	}
	if errors.Is(err, errLost) {
		l.log.Warn("standby: stopped writing and sending", "reason", err, "epoch", epoch)
		return nil
	}
	return err
}

// keep renews the lease every Renew. Without a renewal for TTL − Renew it
// gives the lease up (errLost), which leaves one Renew for the pipeline and
// the senders to stop before the lease can expire: the lease expires at the
// earliest TTL after the last renewal was sent, by any clock that runs at
// the rate of this one.
func (l *Lease) keep(ctx context.Context, epoch int64, renewed time.Time) error {
	tick := time.NewTicker(l.o.Renew)
	defer tick.Stop()
	giveUp := time.NewTimer(time.Until(renewed.Add(l.o.TTL - l.o.Renew)))
	defer giveUp.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-giveUp.C:
			return fmt.Errorf("%w: not renewed since %s (lease %s)", errLost, renewed.Format(time.RFC3339Nano), l.o.TTL)
		case <-tick.C:
		}
		sent := time.Now()
		rctx, cancel := context.WithTimeout(ctx, min(l.o.Renew, time.Until(renewed.Add(l.o.TTL-l.o.Renew))))
		ok, err := l.renew(rctx, epoch)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			l.log.Warn("could not renew the lease; trying again", "err", err, "gives_up_at", renewed.Add(l.o.TTL-l.o.Renew).Format(time.RFC3339Nano))
		case !ok:
			seen := l.Info()
			return fmt.Errorf("%w: epoch %d superseded by %s's epoch %d", errLost, epoch, seen.Holder, seen.Epoch)
		default:
			renewed = sent
			l.setUntil(renewed.Add(l.o.TTL - l.o.Renew))
			giveUp.Reset(time.Until(renewed.Add(l.o.TTL - l.o.Renew)))
		}
	}
}

// Hold is the store.Fence of the active process's writes: in the write's
// own transaction it reads the lease's epoch FOR KEY SHARE and refuses the
// write unless it is this term's. The lock is what makes a stale write
// impossible rather than unlikely, however long the writer was paused: a
// takeover locks the row FOR UPDATE before it moves the epoch, which
// conflicts with KEY SHARE, so either this transaction commits before the
// takeover can read the row (and the successor sees its writes), or it
// reads the successor's epoch and aborts. Renewals take only a NO KEY
// UPDATE lock, which KEY SHARE does not block, so the holder's own writes
// and renewals never wait for each other. The transaction also ends its
// session when idle for a lease: a writer cut off mid-transaction cannot
// hold up a takeover for longer.
func (l *Lease) Hold(ctx context.Context, tx pgx.Tx) error {
	epoch, err := l.held()
	if err != nil {
		return err
	}
	sql, args := l.holdSQL()
	return l.check(epoch, tx.QueryRow(ctx, sql, args...))
}

// Queue is Hold for a batch (store.DB.BatchTx): the row is read and
// locked in the batch, and its check's error fails the batch before it
// commits.
func (l *Lease) Queue(qb *pgx.Batch) error {
	epoch, err := l.held()
	if err != nil {
		return err
	}
	sql, args := l.holdSQL()
	qb.Queue(sql, args...).QueryRow(func(row pgx.Row) error { return l.check(epoch, row) })
	return nil
}

// held is the epoch this process writes in, or ErrFenced for a standby.
func (l *Lease) held() (int64, error) {
	epoch := l.epoch.Load()
	if epoch == 0 {
		return 0, fmt.Errorf("lease %s: this process is a standby: %w", l.o.Name, store.ErrFenced)
	}
	return epoch, nil
}

// holdSQL reads the lease's epoch FOR KEY SHARE and bounds the writing
// transaction's idle time (see Hold).
func (l *Lease) holdSQL() (string, []any) {
	return fmt.Sprintf(`SELECT epoch, set_config('idle_in_transaction_session_timeout', $2, true) FROM %s WHERE name = $1 FOR KEY SHARE`,
		l.o.DB.Table("lease")), []any{l.o.Name, strconv.FormatInt(l.o.TTL.Milliseconds(), 10)}
}

// check refuses the write unless row (holdSQL's) holds epoch; a refusal
// also stops this term.
func (l *Lease) check(epoch int64, row pgx.Row) error {
	var current int64
	err := row.Scan(&current, nil)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("checking lease %s: %w", l.o.Name, err)
	}
	if current != epoch {
		err := fmt.Errorf("lease %s: epoch %d was superseded by epoch %d: %w", l.o.Name, epoch, current, store.ErrFenced)
		l.mu.Lock()
		if l.stop != nil && l.epoch.Load() == epoch {
			l.stop(fmt.Errorf("%w: %w", errLost, err))
		}
		l.mu.Unlock()
		return err
	}
	return nil
}

// session is the lease's own connection: its backend, named in the lease
// row, tells a standby whether the holder is still there.
func (l *Lease) session(ctx context.Context) (*pgx.Conn, error) {
	if l.conn != nil && !l.conn.IsClosed() {
		return l.conn, nil
	}
	cfg := l.o.DB.Pool().Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "riskwatch-lease"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to the sink for the lease: %w", err)
	}
	l.conn = conn
	return conn, nil
}

func (l *Lease) closeSession() {
	if l.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = l.conn.Close(ctx)
		l.conn = nil
	}
}

// failed drops the session after an error: a statement cut short by its
// timeout leaves the connection unusable, and a fresh one is cheap.
func (l *Lease) failed(err error) error {
	if err != nil {
		l.closeSession()
	}
	return err
}

// thisSession is this backend's pid and start time, as pg_stat_activity
// shows them.
const thisSession = `pg_backend_pid(), (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())`

// tryAcquire takes the lease when it is free: absent, expired by the
// sink's clock, or held by a session that no longer exists (its process
// died). It returns the new epoch, or 0 when another process holds it.
func (l *Lease) tryAcquire(ctx context.Context) (int64, error) {
	conn, err := l.session(ctx)
	if err != nil {
		return 0, err
	}
	table := l.o.DB.Table("lease")
	var epoch int64
	var seen Info
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		epoch, seen = 0, Info{}
		// A holder's write in progress holds KEY SHARE until it commits;
		// waiting for it is right (it is serialised before the takeover),
		// but not for ever.
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", max(1, l.o.Renew.Milliseconds()/2))); err != nil {
			return err
		}
		var free bool
		err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT holder, epoch, expires_at,
				expires_at <= now() OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.holder_pid AND a.backend_start = l.holder_session_start)
			FROM %s l WHERE name = $1 FOR UPDATE`, table), l.o.Name).Scan(&seen.Holder, &seen.Epoch, &seen.ExpiresAt, &free)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			err := tx.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %s (name, holder, epoch, acquired_at, renewed_at, expires_at, holder_pid, holder_session_start)
				VALUES ($1, $2, 1, now(), now(), now() + $3 * interval '1 millisecond', %s) ON CONFLICT (name) DO NOTHING RETURNING epoch, expires_at`, table, thisSession),
				l.o.Name, l.o.Holder, l.o.TTL.Milliseconds()).Scan(&epoch, &seen.ExpiresAt)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // another process inserted it first
			}
			return err
		case err != nil:
			return err
		case !free:
			return nil
		}
		return tx.QueryRow(ctx, fmt.Sprintf(`UPDATE %s SET holder = $2, epoch = epoch + 1, acquired_at = now(), renewed_at = now(),
				expires_at = now() + $3 * interval '1 millisecond', (holder_pid, holder_session_start) = (SELECT %s)
			WHERE name = $1 RETURNING epoch, expires_at`, table, thisSession), l.o.Name, l.o.Holder, l.o.TTL.Milliseconds()).Scan(&epoch, &seen.ExpiresAt)
	})
	if err != nil {
		return 0, l.failed(fmt.Errorf("taking lease %s: %w", l.o.Name, err))
	}
	if epoch > 0 {
		seen.Holder, seen.Epoch = l.o.Holder, epoch
	}
	l.mu.Lock()
	seen.Role = l.seen.Role
	l.seen = seen
	l.mu.Unlock()
	return epoch, nil
}

// renew extends the lease of epoch; false when another process took it.
func (l *Lease) renew(ctx context.Context, epoch int64) (bool, error) {
	conn, err := l.session(ctx)
	if err != nil {
		return false, err
	}
	var expires time.Time
	err = conn.QueryRow(ctx, fmt.Sprintf(`UPDATE %s SET renewed_at = now(), expires_at = now() + $3 * interval '1 millisecond',
			(holder_pid, holder_session_start) = (SELECT %s)
		WHERE name = $1 AND epoch = $2 RETURNING expires_at`, l.o.DB.Table("lease"), thisSession), l.o.Name, epoch, l.o.TTL.Milliseconds()).Scan(&expires)
	if errors.Is(err, pgx.ErrNoRows) {
		l.refresh(ctx, conn)
		return false, nil
	}
	if err != nil {
		return false, l.failed(fmt.Errorf("renewing lease %s: %w", l.o.Name, err))
	}
	l.mu.Lock()
	l.seen.Holder, l.seen.Epoch, l.seen.ExpiresAt = l.o.Holder, epoch, expires
	l.mu.Unlock()
	return true, nil
}

// refresh reads who holds the lease now, for the log and the status.
func (l *Lease) refresh(ctx context.Context, conn *pgx.Conn) {
	var seen Info
	err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT holder, epoch, expires_at FROM %s WHERE name = $1`, l.o.DB.Table("lease")), l.o.Name).
		Scan(&seen.Holder, &seen.Epoch, &seen.ExpiresAt)
	if err != nil {
		return
	}
	l.mu.Lock()
	l.seen.Holder, l.seen.Epoch, l.seen.ExpiresAt = seen.Holder, seen.Epoch, seen.ExpiresAt
	l.mu.Unlock()
}

// release ends the lease of epoch now, on a clean stop, so that a standby
// need not wait for it to expire.
func (l *Lease) release(ctx context.Context, epoch int64) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.o.Renew)
	defer cancel()
	conn, err := l.session(rctx)
	if err == nil {
		_, err = conn.Exec(rctx, fmt.Sprintf(`UPDATE %s SET expires_at = now() WHERE name = $1 AND epoch = $2`, l.o.DB.Table("lease")), l.o.Name, epoch)
	}
	if err != nil {
		l.log.Warn("could not release the lease; a standby takes over when it expires", "err", err)
		return
	}
	l.log.Info("released the lease", "epoch", epoch)
}
