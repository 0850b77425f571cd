package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// client talks to the admin API.
type client struct {
	base, token string
	json        bool
	out         io.Writer
	http        *http.Client
}

func run(args []string, out io.Writer) error {
	g := flag.NewFlagSet("keepgate", flag.ContinueOnError)
	g.SetOutput(io.Discard)
	defURL := os.Getenv("KEEPGATE_ADMIN_URL")
	if defURL == "" {
		defURL = "http://127.0.0.1:25110"
	}
	adminURL := g.String("admin-url", defURL, "")
	tokenFile := g.String("admin-token-file", os.Getenv("KEEPGATE_ADMIN_TOKEN_FILE"), "")
	asJSON := g.Bool("json", false, "")
	if err := g.Parse(args); err != nil {
		return usagef("%v", err)
	}
	rest := g.Args()
	if len(rest) >= 1 && rest[0] == "usage" {
		rest = append([]string{"usage", "usage"}, rest[1:]...) // verb "usage" of its own
	}
	if len(rest) < 2 || (rest[0] != "keys" && rest[0] != "usage") {
		return usagef("want: keys create|list|show|update|revoke|rotate, or usage")
	}
	token := os.Getenv("KEEPGATE_ADMIN_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("admin token file: %v", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" && rest[1] != "help" {
		return usagef("no admin token: pass --admin-token-file FILE or set KEEPGATE_ADMIN_TOKEN_FILE or KEEPGATE_ADMIN_TOKEN")
	}
	c := &client{base: strings.TrimRight(*adminURL, "/"), token: token, json: *asJSON, out: out, http: &http.Client{Timeout: 30 * time.Second}}
	verb, vargs := rest[1], rest[2:]
	switch verb {
	case "usage":
		return c.usage(vargs)
	case "create":
		return c.create(vargs)
	case "list":
		return c.list(vargs)
	case "show", "revoke", "rotate", "update":
		if len(vargs) < 1 || strings.HasPrefix(vargs[0], "-") {
			return usagef("keys %s needs the key's id first", verb)
		}
		id, more := vargs[0], vargs[1:]
		switch verb {
		case "show":
			return c.show(id, more)
		case "revoke":
			return c.revoke(id, more)
		case "rotate":
			return c.rotate(id, more)
		default:
			return c.update(id, more)
		}
	case "help":
		fmt.Fprint(out, keysHelp)
		return nil
	}
	return usagef("unknown verb %q: want create, list, show, update, revoke or rotate", verb)
}

const keysHelp = `keepgate keys create --storage NAME [--id ID] [--secret-file FILE] [--scopes read,write] [--expires RFC3339]
                     [--description TEXT] [--rate-cap RATE] [--rate-in-cap RATE] [--max-concurrent N] [--no-audit]
keepgate keys list [--storage NAME] [--include-revoked]
keepgate keys show ID
keepgate keys update ID [--scopes ...] [--expires RFC3339 | --no-expiry] [--description TEXT] [--disable | --enable]
                        [--rate-cap RATE] [--rate-in-cap RATE] [--max-concurrent N] [--audit | --no-audit]
keepgate keys revoke ID
keepgate keys rotate ID [--overlap 24h]
RATE: a number with a unit, 1k = 1,000: 400Mbit, 1.5Gbit, 800kbit; 0 for no cap.
`

// parseRate reads "400Mbit" as kbps (1 kbps = 1,000 bit/s).
func parseRate(s string) (int64, error) {
	units := []struct {
		suffix string
		kbps   float64
	}{{"gbit", 1e6}, {"mbit", 1e3}, {"kbit", 1}, {"bit", 1e-3}}
	l := strings.ToLower(strings.TrimSpace(s))
	if l == "0" {
		return 0, nil
	}
	for _, u := range units {
		if num, ok := strings.CutSuffix(l, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || v < 0 {
				break
			}
			return int64(v * u.kbps), nil
		}
	}
	return 0, usagef("rate %q: want a number with a unit, e.g. 400Mbit, 1.5Gbit, 800kbit (or 0)", s)
}

// limits are the flags create and update share.
type limits struct {
	rateCap, rateInCap string
	maxConc            int
	audit, noAudit     bool
}

func (l *limits) register(fs *flag.FlagSet) {
	fs.StringVar(&l.rateCap, "rate-cap", "", "")
	fs.StringVar(&l.rateInCap, "rate-in-cap", "", "")
	fs.IntVar(&l.maxConc, "max-concurrent", -1, "")
	fs.BoolVar(&l.audit, "audit", false, "")
	fs.BoolVar(&l.noAudit, "no-audit", false, "")
}

func (l *limits) configuration() (map[string]any, error) {
	transfer, server := map[string]any{}, map[string]any{}
	for _, r := range []struct {
		v, key string
	}{{l.rateCap, "target_rate_cap_kbps"}, {l.rateInCap, "target_rate_in_cap_kbps"}} {
		if r.v != "" {
			k, err := parseRate(r.v)
			if err != nil {
				return nil, err
			}
			transfer[r.key] = k
		}
	}
	if l.maxConc >= 0 {
		transfer["max_concurrent_requests"] = l.maxConc
	}
	if l.audit && l.noAudit {
		return nil, usagef("--audit and --no-audit together")
	}
	if l.audit || l.noAudit {
		server["activity_event_logging"] = l.audit
	}
	conf := map[string]any{}
	if len(transfer) > 0 {
		conf["transfer"] = transfer
	}
	if len(server) > 0 {
		conf["server"] = server
	}
	return conf, nil
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usagef("keys %s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("keys %s: unexpected %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

func scopesOf(s string) []string {
	out := []string{}
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func (c *client) create(args []string) error {
	fs := newFlags("create")
	storage := fs.String("storage", "", "")
	id := fs.String("id", "", "")
	secretFile := fs.String("secret-file", "", "")
	scopes := fs.String("scopes", "", "")
	expires := fs.String("expires", "", "")
	desc := fs.String("description", "", "")
	var lim limits
	lim.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *storage == "" {
		return usagef("keys create: --storage NAME is required (the storage the key may use)")
	}
	body := map[string]any{"storage": map[string]string{"name": *storage}}
	if *id != "" {
		body["id"] = *id
	}
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("secret file: %v", err)
		}
		body["secret"] = strings.TrimSpace(string(b))
	}
	if *scopes != "" {
		body["scopes"] = scopesOf(*scopes)
	}
	if *expires != "" {
		body["expires_at"] = *expires
	}
	if *desc != "" {
		body["description"] = *desc
	}
	conf, err := lim.configuration()
	if err != nil {
		return err
	}
	if len(conf) > 0 {
		body["configuration"] = conf
	}
	var k keyView
	raw, err := c.call("POST", "/access_keys", body, http.StatusCreated, &k)
	if err != nil || c.json {
		return c.printRaw(raw, err)
	}
	fmt.Fprintf(c.out, "created access key %s for storage %s (scopes %s)\n", k.ID, k.Storage.Name, strings.Join(k.Scopes, ","))
	fmt.Fprintf(c.out, "id:     %s\nsecret: %s\ntoken:  v2/%s/%s\n", k.ID, k.Secret, k.ID, k.Secret)
	fmt.Fprintln(c.out, "The secret is shown this once; keep it now (curl -u ID:SECRET, or the token as ARVADOS_API_TOKEN).")
	return nil
}

func (c *client) list(args []string) error {
	fs := newFlags("list")
	storage := fs.String("storage", "", "")
	revoked := fs.Bool("include-revoked", false, "")
	if err := parse(fs, args); err != nil {
		return err
	}
	q := url.Values{}
	if *storage != "" {
		q.Set("storage", *storage)
	}
	if *revoked {
		q.Set("include_revoked", "true")
	}
	path := "/access_keys"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var keys []keyView
	raw, err := c.call("GET", path, nil, http.StatusOK, &keys)
	if err != nil || c.json {
		return c.printRaw(raw, err)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTORAGE\tSCOPES\tSTATE\tEXPIRES\tLAST USED\tDESCRIPTION")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Storage.Name, strings.Join(k.Scopes, ","), k.state(), orDash(k.ExpiresAt), orDash(k.LastUsedAt), k.Description)
	}
	return tw.Flush()
}

func (c *client) show(id string, args []string) error {
	if err := parse(newFlags("show"), args); err != nil {
		return err
	}
	var k keyView
	raw, err := c.call("GET", "/access_keys/"+url.PathEscape(id), nil, http.StatusOK, &k)
	if err != nil || c.json {
		return c.printRaw(raw, err)
	}
	k.print(c.out)
	return nil
}

func (c *client) update(id string, args []string) error {
	fs := newFlags("update")
	scopes := fs.String("scopes", "", "")
	expires := fs.String("expires", "", "")
	noExpiry := fs.Bool("no-expiry", false, "")
	desc := fs.String("description", "\x00", "")
	disable := fs.Bool("disable", false, "")
	enable := fs.Bool("enable", false, "")
	var lim limits
	lim.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	body := map[string]any{}
	if *scopes != "" {
		body["scopes"] = scopesOf(*scopes)
	}
	switch {
	case *expires != "" && *noExpiry:
		return usagef("keys update: --expires and --no-expiry together")
	case *expires != "":
		body["expires_at"] = *expires
	case *noExpiry:
		body["expires_at"] = ""
	}
	if *desc != "\x00" {
		body["description"] = *desc
	}
	if *disable && *enable {
		return usagef("keys update: --disable and --enable together")
	}
	if *disable || *enable {
		body["disabled"] = *disable
	}
	conf, err := lim.configuration()
	if err != nil {
		return err
	}
	if len(conf) > 0 {
		body["configuration"] = conf
	}
	if len(body) == 0 {
		return usagef("keys update: nothing to change")
	}
	var k keyView
	raw, err := c.call("PATCH", "/access_keys/"+url.PathEscape(id), body, http.StatusOK, &k)
	if err != nil || c.json {
		return c.printRaw(raw, err)
	}
	k.print(c.out)
	return nil
}

func (c *client) revoke(id string, args []string) error {
	if err := parse(newFlags("revoke"), args); err != nil {
		return err
	}
	if _, err := c.call("DELETE", "/access_keys/"+url.PathEscape(id), nil, http.StatusNoContent, nil); err != nil {
		return err
	}
	if !c.json {
		fmt.Fprintf(c.out, "revoked access key %s: it is refused from the next request on\n", id)
	}
	return nil
}

func (c *client) rotate(id string, args []string) error {
	fs := newFlags("rotate")
	overlap := fs.Duration("overlap", 0, "")
	if err := parse(fs, args); err != nil {
		return err
	}
	var a struct {
		ID, Secret              string
		PreviousSecretExpiresAt *string `json:"previous_secret_expires_at"`
	}
	raw, err := c.call("POST", "/access_keys/"+url.PathEscape(id)+"/secret", map[string]string{"overlap": overlap.String()}, http.StatusOK, &a)
	if err != nil || c.json {
		return c.printRaw(raw, err)
	}
	fmt.Fprintf(c.out, "new secret for %s: %s\ntoken: v2/%s/%s\n", a.ID, a.Secret, a.ID, a.Secret)
	if a.PreviousSecretExpiresAt != nil {
		fmt.Fprintf(c.out, "the previous secret works until %s\n", *a.PreviousSecretExpiresAt)
	} else {
		fmt.Fprintln(c.out, "the previous secret no longer works")
	}
	return nil
}

// call sends body (JSON) and decodes the answer into v; an answer with
// another status is an error carrying the API's message.
func (c *client) call(method, path string, body any, want int, v any) ([]byte, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		return nil, usagef("admin URL %q: %v", c.base, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.do(req, want, v)
}

// do sends req with the admin token and decodes the answer into v (when
// not nil); an answer with another status is an error carrying the API's
// message.
func (c *client) do(req *http.Request, want int, v any) ([]byte, error) {
	method, path := req.Method, strings.TrimPrefix(req.URL.String(), c.base)
	req.SetBasicAuth("admin", c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach the admin API at %s: %v (is keepproxy running with admin.token_file set, and is --admin-url right?)", c.base, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != want {
		var e struct{ Error string }
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, e.Error)
	}
	if v != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, v); err != nil {
			return raw, fmt.Errorf("the admin API answered something that is not its JSON: %v", err)
		}
	}
	return raw, nil
}

func (c *client) printRaw(raw []byte, err error) error {
	if err != nil {
		return err
	}
	_, err = c.out.Write(raw)
	return err
}

// keyView is an access key as the API shows it.
type keyView struct {
	ID            string
	Secret        string
	Storage       struct{ Name string }
	Scopes        []string
	Description   string
	CreatedAt     string  `json:"created_at"`
	ExpiresAt     *string `json:"expires_at"`
	RevokedAt     *string `json:"revoked_at"`
	Disabled      bool
	LastUsedAt    *string `json:"last_used_at"`
	Configuration struct {
		Transfer struct {
			RateCap   int64 `json:"target_rate_cap_kbps"`
			RateInCap int64 `json:"target_rate_in_cap_kbps"`
			MaxConc   int   `json:"max_concurrent_requests"`
		}
		Server struct {
			Audit bool `json:"activity_event_logging"`
		}
	}
}

func orDash(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

func (k keyView) state() string {
	switch {
	case k.RevokedAt != nil:
		return "revoked"
	case k.Disabled:
		return "disabled"
	}
	return "active"
}

func kbps(v int64) string {
	if v == 0 {
		return "none"
	}
	return fmt.Sprintf("%dkbit/s", v)
}

func (k keyView) print(w io.Writer) {
	t := k.Configuration.Transfer
	fmt.Fprintf(w, "id:              %s\nstorage:         %s\nscopes:          %s\nstate:           %s\ndescription:     %s\ncreated:         %s\nexpires:         %s\nrevoked:         %s\nlast used:       %s\nrate cap (out):  %s\nrate cap (in):   %s\nmax concurrent:  %d\naudit events:    %v\n",
		k.ID, k.Storage.Name, strings.Join(k.Scopes, ","), k.state(), k.Description, k.CreatedAt, orDash(k.ExpiresAt), orDash(k.RevokedAt),
		orDash(k.LastUsedAt), kbps(t.RateCap), kbps(t.RateInCap), t.MaxConc, k.Configuration.Server.Audit)
}
