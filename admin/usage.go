package admin

import (
	"encoding/csv"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keepgate/keepgate/state"
)

// UsageRow is one row of GET /usage (README "Usage reports"), as the API
// sends it and the keepgate CLI reads it.
type UsageRow struct {
	Storage             string `json:"storage"`
	AccessKey           string `json:"access_key"`
	Hour                string `json:"hour"`
	BytesIn             int64  `json:"bytes_in"`
	BytesOut            int64  `json:"bytes_out"`
	BlocksIn            int64  `json:"blocks_in"`
	BlocksOut           int64  `json:"blocks_out"`
	ReplicaBytesWritten int64  `json:"replica_bytes_written"`
	Requests            int64  `json:"requests"`
	Errors4xx           int64  `json:"errors_4xx"`
	Errors5xx           int64  `json:"errors_5xx"`
}

var usageColumns = []string{"storage", "access_key", "hour", "bytes_in", "bytes_out", "blocks_in", "blocks_out",
	"replica_bytes_written", "requests", "errors_4xx", "errors_5xx"}

// Longest ranges one query may cover.
const (
	maxHourlyRange = 93 * 24 * time.Hour
	maxDailyRange  = 3700 * 24 * time.Hour
)

// parseWhen reads an RFC 3339 time or a UTC date (2026-12-01).
func parseWhen(name, v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, errorf(http.StatusBadRequest, "%s %q: want RFC 3339 (2026-12-01T10:00:00Z) or a UTC date (2026-12-01)", name, v)
}

// usageFilter reads the query of GET /usage.
func (a *API) usageFilter(r *http.Request) (state.UsageFilter, error) {
	q := r.URL.Query()
	for k := range q {
		if !slices.Contains([]string{"storage", "access_key", "from", "to", "granularity"}, k) {
			return state.UsageFilter{}, errorf(http.StatusBadRequest, "unknown query parameter %q; use storage, access_key, from, to, granularity", k)
		}
	}
	f := state.UsageFilter{Storage: q.Get("storage"), AccessKey: q.Get("access_key")}
	switch g := q.Get("granularity"); g {
	case "", "hour":
	case "day":
		f.Daily = true
	default:
		return f, errorf(http.StatusBadRequest, "granularity %q: want hour or day", g)
	}
	now := a.opt.Now().UTC()
	f.To, f.From = now, now.Add(-24*time.Hour)
	var err error
	if v := q.Get("to"); v != "" {
		if f.To, err = parseWhen("to", v); err != nil {
			return f, err
		}
	}
	if v := q.Get("from"); v != "" {
		if f.From, err = parseWhen("from", v); err != nil {
			return f, err
		}
	} else if q.Get("to") != "" {
		f.From = f.To.Add(-24 * time.Hour)
	}
	unit, limit := time.Hour, maxHourlyRange
	if f.Daily {
		unit, limit = 24*time.Hour, maxDailyRange
	}
	f.From = f.From.Truncate(unit) // the hour (day) from falls in counts whole
	switch {
	case !f.From.Before(f.To):
		return f, errorf(http.StatusBadRequest, "from %s is not before to %s", f.From.Format(time.RFC3339), f.To.Format(time.RFC3339))
	case f.To.Sub(f.From) > limit:
		return f, errorf(http.StatusBadRequest, "from %s to %s is over %d days; ask for granularity=day or a shorter range", f.From.Format(time.RFC3339), f.To.Format(time.RFC3339), int(limit/(24*time.Hour)))
	}
	if f.Storage != "" && !slices.Contains(a.opt.Storage, f.Storage) {
		return f, errorf(http.StatusBadRequest, "storage %q is not configured; configured storages: %s", f.Storage, strings.Join(a.opt.Storage, ", "))
	}
	if f.AccessKey != "" {
		_, err := a.opt.Store.GetKey(r.Context(), f.AccessKey)
		if errors.Is(err, state.ErrNotFound) {
			// Token-file and API principals are counted under their
			// names: known when they have usage at all.
			all, qerr := a.opt.Store.QueryUsage(r.Context(), state.UsageFilter{AccessKey: f.AccessKey, From: time.Unix(0, 0), To: now.Add(time.Hour), Daily: true})
			if qerr != nil {
				return f, qerr
			}
			if len(all) == 0 {
				return f, errorf(http.StatusBadRequest, "access_key %q: no such access key, and no principal of that name has usage", f.AccessKey)
			}
		} else if err != nil {
			return f, err
		}
	}
	return f, nil
}

// usage answers GET /usage: the rows of the range, JSON (a bare array) or
// CSV with Accept: text/csv.
func (a *API) usage(w http.ResponseWriter, r *http.Request) {
	f, err := a.usageFilter(r)
	if err != nil {
		a.fail(w, "usage query", err)
		return
	}
	rows, err := a.opt.Store.QueryUsage(r.Context(), f)
	if err != nil {
		a.fail(w, "usage query", err)
		return
	}
	out := make([]UsageRow, 0, len(rows))
	for _, u := range rows {
		out = append(out, UsageRow{Storage: u.Storage, AccessKey: u.AccessKey, Hour: u.Hour.UTC().Format(time.RFC3339), BytesIn: u.BytesIn,
			BytesOut: u.BytesOut, BlocksIn: u.BlocksIn, BlocksOut: u.BlocksOut, ReplicaBytesWritten: u.ReplicaBytesWritten,
			Requests: u.Requests, Errors4xx: u.Errors4xx, Errors5xx: u.Errors5xx})
	}
	if !strings.Contains(r.Header.Get("Accept"), "text/csv") {
		writeJSON(w, http.StatusOK, out)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	cw := csv.NewWriter(w)
	cw.Write(usageColumns)
	n := strconv.FormatInt
	for _, u := range out {
		cw.Write([]string{u.Storage, u.AccessKey, u.Hour, n(u.BytesIn, 10), n(u.BytesOut, 10), n(u.BlocksIn, 10), n(u.BlocksOut, 10),
			n(u.ReplicaBytesWritten, 10), n(u.Requests, 10), n(u.Errors4xx, 10), n(u.Errors5xx, 10)})
	}
	cw.Flush()
}
