package main

import (
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"

	"github.com/keepgate/keepgate/admin"
)

const usageHelp = `keepgate usage [--storage NAME] [--key ID] [--from DATE] [--to DATE] [--granularity hour|day] [--csv]
DATE: 2026-12-01 (UTC) or RFC 3339; the default range is the last 24 hours.
`

// usage prints GET /usage: a table, the API's JSON (--json) or its CSV
// (--csv).
func (c *client) usage(args []string) error {
	fs := newFlags("usage")
	storage := fs.String("storage", "", "")
	key := fs.String("key", "", "")
	from := fs.String("from", "", "")
	to := fs.String("to", "", "")
	gran := fs.String("granularity", "hour", "")
	asCSV := fs.Bool("csv", false, "")
	if err := fs.Parse(args); err != nil {
		return usagef("usage: %v\n%s", err, usageHelp)
	}
	if fs.NArg() > 0 {
		return usagef("usage: unexpected %q\n%s", fs.Arg(0), usageHelp)
	}
	if *gran != "hour" && *gran != "day" {
		return usagef("usage: --granularity %q: want hour or day", *gran)
	}
	q := url.Values{"granularity": {*gran}}
	for k, v := range map[string]string{"storage": *storage, "access_key": *key, "from": *from, "to": *to} {
		if v != "" {
			q.Set(k, v)
		}
	}
	path := "/usage?" + q.Encode()
	if *asCSV {
		raw, err := c.callAccept("GET", path, "text/csv", http.StatusOK)
		return c.printRaw(raw, err)
	}
	var rows []admin.UsageRow
	raw, err := c.call("GET", path, nil, http.StatusOK, &rows)
	if err != nil || c.json {
		return c.printRaw(raw, err)
	}
	col := "HOUR"
	if *gran == "day" {
		col = "DAY"
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tSTORAGE\tKEY\tBYTES IN\tBYTES OUT\tBLOCKS IN\tBLOCKS OUT\tREPLICA BYTES\tREQUESTS\t4XX\t5XX\t\n", col)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", r.Hour, r.Storage, r.AccessKey, r.BytesIn, r.BytesOut,
			r.BlocksIn, r.BlocksOut, r.ReplicaBytesWritten, r.Requests, r.Errors4xx, r.Errors5xx)
	}
	return tw.Flush()
}

// callAccept sends a GET asking for the media type accept and returns the
// body as it is.
func (c *client) callAccept(method, path, accept string, want int) ([]byte, error) {
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		return nil, usagef("admin URL %q: %v", c.base, err)
	}
	req.Header.Set("Accept", accept)
	return c.do(req, want, nil)
}
