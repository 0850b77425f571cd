package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/internal/sqlrow"
)

// AddUsage implements state.UsageStore: in one transaction the flush's
// row is locked and checked, the sequence recorded and the rows upserted
// (one batch, one round trip).
func (d *DB) AddUsage(ctx context.Context, f state.Flush, rows []state.UsageRow) error {
	for _, r := range rows {
		if r.Hour.IsZero() {
			return fmt.Errorf("%s: add usage: a row without its hour", d.where)
		}
	}
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		var last int64
		err := tx.QueryRow(ctx, `SELECT seq FROM usage_flushes WHERE proxy = $1 AND instance = $2 FOR UPDATE`, f.Proxy, f.Instance).Scan(&last)
		switch {
		case err == nil && last >= f.Seq:
			return nil // applied already
		case err != nil && !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO usage_flushes (proxy, instance, seq) VALUES ($1, $2, $3)
			ON CONFLICT (proxy, instance) DO UPDATE SET seq = excluded.seq`, f.Proxy, f.Instance, f.Seq)
		for _, r := range rows {
			b.Queue(`INSERT INTO usage_hours AS u (access_key, storage, hour, proxy, bytes_in, bytes_out, blocks_in, blocks_out,
				replica_bytes_written, requests, errors_4xx, errors_5xx) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
				ON CONFLICT (access_key, storage, hour, proxy) DO UPDATE SET
				bytes_in = u.bytes_in + excluded.bytes_in, bytes_out = u.bytes_out + excluded.bytes_out,
				blocks_in = u.blocks_in + excluded.blocks_in, blocks_out = u.blocks_out + excluded.blocks_out,
				replica_bytes_written = u.replica_bytes_written + excluded.replica_bytes_written,
				requests = u.requests + excluded.requests, errors_4xx = u.errors_4xx + excluded.errors_4xx,
				errors_5xx = u.errors_5xx + excluded.errors_5xx`,
				r.AccessKey, r.Storage, r.Hour.UTC().Truncate(time.Hour).Unix(), f.Proxy, r.BytesIn, r.BytesOut, r.BlocksIn, r.BlocksOut,
				r.ReplicaBytesWritten, r.Requests, r.Errors4xx, r.Errors5xx)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	return d.wrap("add usage", err)
}

// QueryUsage implements state.UsageStore.
func (d *DB) QueryUsage(ctx context.Context, f state.UsageFilter) ([]state.UsageRow, error) {
	bucket := int64(3600)
	if f.Daily {
		bucket = 86400
	}
	rows, err := d.pool.Query(ctx, `SELECT hour - hour % $1 AS at, storage, access_key, sum(bytes_in)::bigint, sum(bytes_out)::bigint,
		sum(blocks_in)::bigint, sum(blocks_out)::bigint, sum(replica_bytes_written)::bigint, sum(requests)::bigint,
		sum(errors_4xx)::bigint, sum(errors_5xx)::bigint
		FROM usage_hours WHERE hour >= $2 AND hour < $3 AND ($4 = '' OR storage = $4) AND ($5 = '' OR access_key = $5)
		GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, bucket, f.From.Unix(), f.To.Unix(), f.Storage, f.AccessKey)
	if err != nil {
		return nil, d.wrap("query usage", err)
	}
	defer rows.Close()
	out, err := sqlrow.Collect(rows, func(r sqlrow.Row) (state.UsageRow, error) { return sqlrow.ScanUsage(r.Scan) })
	return out, d.wrap("query usage", err)
}

// Heartbeat implements state.UsageStore, in the database's clock (the
// proxies' clocks need not agree).
func (d *DB) Heartbeat(ctx context.Context, proxy string, within time.Duration) (int, error) {
	var n int
	err := d.pool.QueryRow(ctx, `WITH beat AS (
			INSERT INTO proxy_heartbeats (proxy, beat_at) VALUES ($1, now())
			ON CONFLICT (proxy) DO UPDATE SET beat_at = now() RETURNING proxy)
		SELECT count(*) FROM (SELECT proxy FROM proxy_heartbeats WHERE proxy <> $1 AND beat_at >= now() - make_interval(secs => $2)
			UNION ALL SELECT proxy FROM beat) live`, proxy, within.Seconds()).Scan(&n)
	return n, d.wrap("heartbeat", err)
}
