package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/internal/sqlrow"
)

// AddUsage implements state.UsageStore: one immediate transaction checks
// and records the flush's sequence and upserts the rows.
func (d *DB) AddUsage(ctx context.Context, f state.Flush, rows []state.UsageRow) error {
	for _, r := range rows {
		if r.Hour.IsZero() {
			return fmt.Errorf("state file %s: add usage: a row without its hour", d.path)
		}
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return d.wrap("add usage", err)
	}
	defer tx.Rollback()
	var last int64
	err = tx.QueryRowContext(ctx, `SELECT seq FROM usage_flushes WHERE proxy = ? AND instance = ?`, f.Proxy, f.Instance).Scan(&last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return d.wrap("add usage", err)
	}
	if err == nil && last >= f.Seq {
		return nil // applied already
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO usage_flushes (proxy, instance, seq) VALUES (?, ?, ?)
		ON CONFLICT (proxy, instance) DO UPDATE SET seq = excluded.seq`, f.Proxy, f.Instance, f.Seq); err != nil {
		return d.wrap("add usage", err)
	}
	for _, r := range rows {
		_, err := tx.ExecContext(ctx, `INSERT INTO usage_hours (access_key, storage, hour, proxy, bytes_in, bytes_out, blocks_in, blocks_out,
			replica_bytes_written, requests, errors_4xx, errors_5xx) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
			ON CONFLICT (access_key, storage, hour, proxy) DO UPDATE SET
			bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out,
			blocks_in = blocks_in + excluded.blocks_in, blocks_out = blocks_out + excluded.blocks_out,
			replica_bytes_written = replica_bytes_written + excluded.replica_bytes_written,
			requests = requests + excluded.requests, errors_4xx = errors_4xx + excluded.errors_4xx,
			errors_5xx = errors_5xx + excluded.errors_5xx`,
			r.AccessKey, r.Storage, r.Hour.UTC().Truncate(time.Hour).Unix(), f.Proxy, r.BytesIn, r.BytesOut, r.BlocksIn, r.BlocksOut,
			r.ReplicaBytesWritten, r.Requests, r.Errors4xx, r.Errors5xx)
		if err != nil {
			return d.wrap("add usage", err)
		}
	}
	return d.wrap("add usage", tx.Commit())
}

// QueryUsage implements state.UsageStore.
func (d *DB) QueryUsage(ctx context.Context, f state.UsageFilter) ([]state.UsageRow, error) {
	bucket := int64(3600)
	if f.Daily {
		bucket = 86400
	}
	rows, err := d.db.QueryContext(ctx, `SELECT hour - hour % ?, storage, access_key, sum(bytes_in), sum(bytes_out), sum(blocks_in),
		sum(blocks_out), sum(replica_bytes_written), sum(requests), sum(errors_4xx), sum(errors_5xx)
		FROM usage_hours WHERE hour >= ? AND hour < ? AND (? = '' OR storage = ?) AND (? = '' OR access_key = ?)
		GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, bucket, f.From.Unix(), f.To.Unix(), f.Storage, f.Storage, f.AccessKey, f.AccessKey)
	if err != nil {
		return nil, d.wrap("query usage", err)
	}
	defer rows.Close()
	out, err := sqlrow.Collect(rows, func(r sqlrow.Row) (state.UsageRow, error) { return sqlrow.ScanUsage(r.Scan) })
	return out, d.wrap("query usage", err)
}

// Heartbeat implements state.UsageStore.
func (d *DB) Heartbeat(ctx context.Context, proxy string, within time.Duration) (int, error) {
	now := time.Now()
	if _, err := d.db.ExecContext(ctx, `INSERT INTO proxy_heartbeats (proxy, beat_at) VALUES (?, ?)
		ON CONFLICT (proxy) DO UPDATE SET beat_at = excluded.beat_at`, proxy, now.UnixNano()); err != nil {
		return 0, d.wrap("heartbeat", err)
	}
	var n int
	err := d.db.QueryRowContext(ctx, `SELECT count(*) FROM proxy_heartbeats WHERE beat_at >= ?`, now.Add(-within).UnixNano()).Scan(&n)
	return n, d.wrap("heartbeat", err)
}
