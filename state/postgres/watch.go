package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Listener timings: a quiet listener checks its connection every
// listenPing; a lost one is dialled again after a back-off from
// minRedial doubling to maxRedial.
const (
	// ListenerName is the listener connection's application_name (in
	// pg_stat_activity).
	ListenerName = "keepgate-listener"

	listenPing = 10 * time.Second
	minRedial  = 100 * time.Millisecond
	maxRedial  = 5 * time.Second
)

// WatchKeys implements state.KeyWatcher on one connection of its own
// (outside the pool) that LISTENs on keepgate_keys. After each LISTEN —
// the first and every one after a reconnect — it calls reset, since
// notifications sent while no one listened are lost. The loss and the
// recovery of the connection are logged once each.
func (d *DB) WatchKeys(ctx context.Context, changed func(id string), reset func()) error {
	delay := minRedial
	lost := false
	for {
		err := d.listen(ctx, changed, func() {
			if lost {
				d.log.Info("key change listener connected again; the key cache is dropped", "database", d.where)
				lost = false
			}
			reset()
			delay = minRedial
		})
		if ctx.Err() != nil {
			return nil
		}
		if !lost {
			d.log.Warn("key change listener lost; other proxies' key changes count from the cache TTL until it is back", "database", d.where, "error", d.scrub(err.Error()))
			lost = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, maxRedial)
	}
}

// listen runs one connection until it fails or ctx ends.
func (d *DB) listen(ctx context.Context, changed func(string), listening func()) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cc := d.cfg.ConnConfig.Copy()
	cc.RuntimeParams["application_name"] = ListenerName
	conn, err := pgx.ConnectConfig(dctx, cc)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		return err
	}
	listening()
	for {
		wctx, cancel := context.WithTimeout(ctx, listenPing)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			changed(n.Payload)
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Quiet: make sure the connection is still there.
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.Ping(pctx)
			cancel()
			if err == nil {
				continue
			}
		}
		return err
	}
}
