package engine

import (
	"context"
	"time"

	"github.com/riskwatch/riskwatch/internal/config"
	"github.com/riskwatch/riskwatch/internal/source"
)

// Supervise runs session until ctx is done, and again after each failure
// with a backoff from source.reconnect_min doubling up to reconnect_max
// (back to the minimum after a session that ran a minute): recovery is
// crash-only, one path for every failure. onFail hears each failure. Only
// a permanent error (source.IsPermanent) ends it.
func Supervise(ctx context.Context, cfg *config.Config, now func() time.Time, session func(context.Context) error, onFail func(err error, backoff time.Duration)) error {
	backoff := cfg.Source.ReconnectMin.D()
	for {
		started := now()
		err := session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if source.IsPermanent(err) {
			return err
		}
		if now().Sub(started) > time.Minute {
			backoff = cfg.Source.ReconnectMin.D()
		}
		onFail(err, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, cfg.Source.ReconnectMax.D())
	}
}
