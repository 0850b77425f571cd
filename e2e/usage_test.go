package e2e

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keepgate/keepgate/internal/testenv"
)

// usageProxies are keepproxies on one set of four keepstores in two
// storages (stores 0-1 tenant-a, 2-3 tenant-b), sharing one state
// database, each with its admin API.
type usageProxies struct {
	*testenv.Cluster
	urls, admins []string
	procs        []*testenv.Proc
	cfgs         []string
}

// startUsageProxies starts n keepproxies whose state section is
// stateYAML (flow-style members without braces).
func startUsageProxies(t testing.TB, n int, stateYAML string) *usageProxies {
	dir := t.TempDir()
	pepper := testenv.WriteSecret(t, dir, "pepper", "e2e-pepper-0123456789abcdef")
	adminTok := testenv.WriteSecret(t, dir, "admin.token", tenancyAdminToken)
	u := &usageProxies{admins: []string{testenv.FreeAddr(t)}}
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 4, ProxyExtraFunc: func(s []*testenv.Store) string {
		return fmt.Sprintf(`storages:
  tenant-a: {stores: [%s, %s], max_replicas: 2}
  tenant-b: {stores: [%s, %s], classes: [default]}
default_storage: tenant-a
proxy_id: proxy-0
state: {pepper_file: %s, %s}
admin: {listen: %s, token_file: %s}
audit: {sinks: []}
`, s[0].URL, s[1].URL, s[2].URL, s[3].URL, pepper, stateYAML, u.admins[0], adminTok)
	}})
	u.Cluster = c
	u.urls, u.procs, u.cfgs = []string{c.ProxyURL}, []*testenv.Proc{c.Proxy}, []string{c.ProxyCfg}
	base, err := os.ReadFile(c.ProxyCfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		addr, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
		cfg := strings.Replace(string(base), "listen: "+c.ProxyAddr, "listen: "+addr, 1)
		cfg = strings.Replace(cfg, "listen: "+u.admins[0], "listen: "+admin, 1)
		cfg = strings.Replace(cfg, "proxy_id: proxy-0", fmt.Sprintf("proxy_id: proxy-%d", i), 1)
		path := testenv.WriteFile(t, dir, fmt.Sprintf("keepproxy-%d.yml", i), cfg)
		p := testenv.Start(t, testenv.Build(t, "keepproxy"), []string{"-config", path})
		testenv.WaitHTTP(t, "http://"+addr+"/_health/ping", 0, p)
		u.urls, u.admins, u.procs, u.cfgs = append(u.urls, "http://"+addr), append(u.admins, admin), append(u.procs, p), append(u.cfgs, path)
	}
	for i := range u.admins {
		u.admins[i] = "http://" + u.admins[i]
	}
	return u
}

// restart stops proxy i with SIGTERM (its last counts are flushed) and
// starts it again.
func (u *usageProxies) restart(t testing.TB, i int) {
	u.procs[i].Signal(syscall.SIGTERM)
	if _, ok := u.procs[i].Wait(30 * time.Second); !ok {
		t.Fatalf("proxy %d did not stop on SIGTERM", i)
	}
	u.procs[i] = testenv.Start(t, testenv.Build(t, "keepproxy"), []string{"-config", u.cfgs[i]})
	testenv.WaitHTTP(t, u.urls[i]+"/_health/ping", 0, u.procs[i])
}

type usageRowJSON struct {
	Storage, Hour string
	AccessKey     string `json:"access_key"`
	BytesIn       int64  `json:"bytes_in"`
	BytesOut      int64  `json:"bytes_out"`
	BlocksIn      int64  `json:"blocks_in"`
	BlocksOut     int64  `json:"blocks_out"`
	ReplicaBytes  int64  `json:"replica_bytes_written"`
	Requests      int64  `json:"requests"`
	Errors4xx     int64  `json:"errors_4xx"`
	Errors5xx     int64  `json:"errors_5xx"`
}

// adminCall sends an admin API request; status and body.
func adminCall(t testing.TB, method, url, body string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, r)
	req.SetBasicAuth("admin", tenancyAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// usageSum sums the /usage rows of key over the last day.
func usageSum(t testing.TB, admin, key string) usageRowJSON {
	t.Helper()
	code, body := adminCall(t, "GET", admin+"/usage?access_key="+key, "")
	var rows []usageRowJSON
	if code == 400 && strings.Contains(body, "no principal of that name has usage") {
		return usageRowJSON{}
	}
	if err := json.Unmarshal([]byte(body), &rows); code != 200 || err != nil {
		t.Fatalf("/usage: %d %s", code, body)
	}
	var s usageRowJSON
	for _, r := range rows {
		s.BytesIn += r.BytesIn
		s.BytesOut += r.BytesOut
		s.BlocksIn += r.BlocksIn
		s.BlocksOut += r.BlocksOut
		s.ReplicaBytes += r.ReplicaBytes
		s.Requests += r.Requests
		s.Errors4xx += r.Errors4xx
		s.Errors5xx += r.Errors5xx
	}
	return s
}

// clientCounts is what a client moved, by its own count.
type clientCounts struct {
	mu                        sync.Mutex
	in, out, puts, gets, reqs int64
	e4xx                      int64
	locs                      []string
}

// mix runs n random PUTs (1 B - 64 KiB) and GETs of earlier blocks on 4
// workers through base with token, counting what moved.
func (c *clientCounts) mix(t testing.TB, client *http.Client, base, token string, n int, seed uint64) {
	t.Helper()
	var wg sync.WaitGroup
	work := make(chan int, n)
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for range work {
				c.mu.Lock()
				var loc string
				if len(c.locs) > 0 && rng.IntN(2) == 0 {
					loc = c.locs[rng.IntN(len(c.locs))]
				}
				c.mu.Unlock()
				if loc != "" {
					req, _ := http.NewRequest("GET", base+"/"+loc, nil)
					req.Header.Set("Authorization", "Bearer "+token)
					resp, err := client.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					got, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Errorf("GET %s: %d", loc, resp.StatusCode)
					}
					c.mu.Lock()
					c.out, c.gets, c.reqs = c.out+got, c.gets+1, c.reqs+1
					c.mu.Unlock()
					continue
				}
				data := make([]byte, 1+rng.IntN(64<<10))
				for i := range data {
					data[i] = byte(rng.Uint32())
				}
				sum := md5.Sum(data)
				req, _ := http.NewRequest("PUT", base+"/"+hex.EncodeToString(sum[:]), bytes.NewReader(data))
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("PUT: %d %s", resp.StatusCode, body)
				}
				c.mu.Lock()
				c.in, c.puts, c.reqs = c.in+int64(len(data)), c.puts+1, c.reqs+1
				c.locs = append(c.locs, strings.TrimSpace(string(body)))
				c.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// A GET of a block that is not there: a 4xx error with nothing moved.
func (c *clientCounts) miss(t testing.TB, client *http.Client, base, token string) {
	req, _ := http.NewRequest("GET", base+"/0123456789abcdef0123456789abcdef+5", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode > 499 {
		t.Fatalf("GET of a missing block: %d, want a 4xx", resp.StatusCode)
	}
	c.mu.Lock()
	c.reqs, c.e4xx = c.reqs+1, c.e4xx+1
	c.mu.Unlock()
}

func (c *clientCounts) matches(u usageRowJSON) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return u.BytesIn == c.in && u.BytesOut == c.out && u.BlocksIn == c.puts && u.BlocksOut == c.gets && u.Requests == c.reqs && u.Errors4xx == c.e4xx
}

func (c *clientCounts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("in %d out %d puts %d gets %d requests %d 4xx %d", c.in, c.out, c.puts, c.gets, c.reqs, c.e4xx)
}

// One keepproxy on SQLite: usage per key and per token-file principal
// equals the clients' own counts exactly after a graceful restart (the
// shutdown flush), replica bytes follow the replicas stored; a key's
// max_concurrent_requests answers 429 + Retry-After at once; a cap
// lowered or lifted while a key's GET runs applies to that GET.
func TestUsageExactAndLimits(t *testing.T) {
	dir := t.TempDir()
	u := startUsageProxies(t, 1, "path: "+dir+"/keepgate.db, usage_flush_interval: 10s")
	code, body := adminCall(t, "POST", u.admins[0]+"/access_keys", `{"id":"meter-a","secret":"`+strings.Repeat("m", 40)+`","storage":{"name":"tenant-a"}}`)
	if code != 201 {
		t.Fatal(code, body)
	}
	key := "v2/meter-a/" + strings.Repeat("m", 40)
	var byKey, byToken clientCounts
	byKey.mix(t, http.DefaultClient, u.urls[0], key, 200, 1)
	byToken.mix(t, http.DefaultClient, u.urls[0], testenv.TokenRW, 50, 2)
	byKey.miss(t, http.DefaultClient, u.urls[0], key)
	// Prometheus: per-storage series, never a key.
	resp, err := http.Get(u.urls[0] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), `keepgate_usage_bytes_in_total{storage="tenant-a"}`) || strings.Contains(string(m), "meter-a") {
		t.Fatalf("metrics: want per-storage usage series and no key id:\n%s", grepLines(string(m), "keepgate_usage", "meter-a"))
	}

	u.restart(t, 0) // SIGTERM: the last flush, well within the 10 s interval
	got := usageSum(t, u.admins[0], "meter-a")
	if !byKey.matches(got) || got.ReplicaBytes != 2*got.BytesIn {
		t.Fatalf("usage of meter-a %+v\nclient counted %v (replica bytes: 2 replicas of each block)", got, &byKey)
	}
	if tok := usageSum(t, u.admins[0], "rw"); !byToken.matches(tok) {
		t.Fatalf("usage of the token-file principal rw %+v\nclient counted %v", tok, &byToken)
	}
	// Limits: one request in flight at most, and 1 MB/s out.
	code, body = adminCall(t, "POST", u.admins[0]+"/access_keys", `{"id":"slow-a","secret":"`+strings.Repeat("s", 40)+`","storage":{"name":"tenant-a"},"configuration":{"transfer":{"target_rate_cap_kbps":8000,"max_concurrent_requests":1}}}`)
	if code != 201 {
		t.Fatal(code, body)
	}
	slow := "v2/slow-a/" + strings.Repeat("s", 40)
	data := make([]byte, 32<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	loc, err := fairPut(u.urls[0], slow, data)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", u.urls[0]+"/"+loc, nil)
	req.Header.Set("Authorization", "Bearer "+slow)
	first, err := http.DefaultClient.Do(req)
	if err != nil || first.StatusCode != 200 {
		t.Fatalf("first GET: %v", err)
	}
	// At 1 MB/s this GET runs for half a minute: the next one is refused at once.
	req2, _ := http.NewRequest("HEAD", u.urls[0]+"/"+loc, nil)
	req2.Header.Set("Authorization", "Bearer "+slow)
	second, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	second.Body.Close()
	if second.StatusCode != 429 || second.Header.Get("Retry-After") == "" {
		t.Fatalf("a second request beyond max_concurrent_requests 1: %d Retry-After %q", second.StatusCode, second.Header.Get("Retry-After"))
	}
	// Lift the cap while the GET runs: it finishes (at full speed).
	if code, body := adminCall(t, "PATCH", u.admins[0]+"/access_keys/slow-a", `{"configuration":{"transfer":{"target_rate_cap_kbps":0}}}`); code != 200 {
		t.Fatal(code, body)
	}
	n, err := io.Copy(io.Discard, first.Body)
	first.Body.Close()
	if err != nil || n != int64(len(data)) {
		t.Fatalf("the capped GET after its cap was lifted: %d bytes, %v", n, err)
	}
	// Refused values at the API.
	for _, v := range []string{"-1", "1000000000000"} {
		if code, _ := adminCall(t, "PATCH", u.admins[0]+"/access_keys/slow-a", `{"configuration":{"transfer":{"target_rate_cap_kbps":`+v+`}}}`); code != 400 {
			t.Errorf("cap %s: %d, want 400", v, code)
		}
	}
}

// pgProxies: n keepproxies on one PostgreSQL database (a fresh one on
// the run's server), with the DSN in a file.
func pgProxies(t testing.TB, n int, extra string) (*usageProxies, *testenv.Postgres, string) {
	srv := testenv.StartPostgres(t)
	dsn := testenv.NewDatabase(t)
	dsnFile := testenv.WriteSecret(t, t.TempDir(), "pg.dsn", dsn+"\n")
	db := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	return startUsageProxies(t, n, "driver: postgres, dsn_file: "+dsnFile+", "+extra), srv, db
}

// untilStatus polls url with token until it answers want (or gives up
// after limit); it returns whether it did.
func untilAnswer(url, token string, want int, limit time.Duration) bool {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		req, _ := http.NewRequest("HEAD", url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func createKeyAt(t testing.TB, admin, id string) string {
	t.Helper()
	secret := strings.Repeat("k", 32) + id
	if code, body := adminCall(t, "POST", admin+"/access_keys", `{"id":"`+id+`","secret":"`+secret+`","storage":{"name":"tenant-a"}}`); code != 201 {
		t.Fatalf("create %s: %d %s", id, code, body)
	}
	return "v2/" + id + "/" + secret
}

// Two keepproxies on one PostgreSQL behind nginx round-robin: 1,000
// random PUTs and GETs are counted exactly (ratio 1.000); a revocation
// through one proxy is pushed to the other (the cache TTL is a minute,
// so only the push can do it), also after its listener connection was
// killed; with the database unreachable cached keys keep working, unknown
// ones get 503 + Retry-After, and once it is back the counts are exact
// again, with one log line per outage; after kill -9 of a proxy nothing is
// counted twice and at most its last interval is missing.
func TestSeveralProxiesOnePostgres(t *testing.T) {
	u, srv, db := pgProxies(t, 2, "usage_flush_interval: 300ms, key_cache_ttl: 60s, heartbeat_interval: 500ms")
	front, _ := testenv.NginxFront(t, strings.TrimPrefix(u.urls[0], "http://"), strings.TrimPrefix(u.urls[1], "http://"))
	key := createKeyAt(t, u.admins[0], "shared-a")
	var counts clientCounts
	counts.mix(t, testenv.InsecureClient, front, key, 1000, 3)
	counts.miss(t, testenv.InsecureClient, front, key)
	exact := func(admin string) bool {
		end := time.Now().Add(30 * time.Second)
		for time.Now().Before(end) {
			if counts.matches(usageSum(t, admin, "shared-a")) {
				return true
			}
			time.Sleep(100 * time.Millisecond)
		}
		return false
	}
	if !exact(u.admins[1]) {
		t.Fatalf("usage through two proxies %+v\nclient counted %v", usageSum(t, u.admins[1], "shared-a"), &counts)
	}
	code, body := adminCall(t, "GET", u.admins[0]+"/usage?access_key=shared-a&granularity=day", "")
	if code != 200 || !strings.Contains(body, `"storage": "tenant-a"`) {
		t.Fatalf("daily usage: %d %s", code, body)
	}
	// The empty block needs a valid key and no store (nor a signature).
	probe := func(i int) string { return u.urls[i] + "/d41d8cd98f00b204e9800998ecf8427e+0" }

	t.Log("revocation")
	// Revocation through proxy 0, refused by proxy 1 (which cached the key).
	rk := createKeyAt(t, u.admins[0], "revoke-me")
	if !untilAnswer(probe(1), rk, 200, 5*time.Second) {
		t.Fatal("proxy 1 does not accept a key created through proxy 0")
	}
	if code, _ := adminCall(t, "DELETE", u.admins[0]+"/access_keys/revoke-me", ""); code != 204 {
		t.Fatal(code)
	}
	if !untilAnswer(probe(1), rk, 403, 10*time.Second) {
		t.Fatal("proxy 1 still accepts a key revoked through proxy 0 (the push did not arrive)")
	}
	// The listener's connection killed: it reconnects and drops the cache.
	rk2 := createKeyAt(t, u.admins[0], "revoke-me-2")
	if !untilAnswer(probe(1), rk2, 200, 5*time.Second) {
		t.Fatal("proxy 1 does not accept revoke-me-2")
	}
	srv.Exec(t, "postgres", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'keepgate-listener'`, db)
	for end := time.Now().Add(20 * time.Second); !strings.Contains(u.procs[1].Output(), "key change listener connected again"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("proxy 1 did not log its listener's reconnection:\n%s", grepLines(u.procs[1].Output(), "listener"))
		}
	}
	if code, _ := adminCall(t, "DELETE", u.admins[0]+"/access_keys/revoke-me-2", ""); code != 204 {
		t.Fatal(code)
	}
	if !untilAnswer(probe(1), rk2, 403, 10*time.Second) {
		t.Fatal("after its listener reconnected, proxy 1 still accepts a revoked key")
	}

	// The database unreachable: no new connection, the open ones killed.
	counts.mix(t, http.DefaultClient, u.urls[1], key, 4, 6) // cached again after the purge
	t.Log("outage")
	srv.Exec(t, "postgres", "ALTER DATABASE "+db+" ALLOW_CONNECTIONS false")
	srv.Exec(t, "postgres", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, db)
	counts.mix(t, http.DefaultClient, u.urls[1], key, 100, 4) // a cached key keeps working
	req, _ := http.NewRequest("HEAD", probe(1), nil)
	req.Header.Set("Authorization", "Bearer v2/never-seen-key/"+strings.Repeat("x", 40))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("an unknown key with the database unreachable: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	time.Sleep(time.Second) // several failed flushes
	srv.Exec(t, "postgres", "ALTER DATABASE "+db+" ALLOW_CONNECTIONS true")
	if !exact(u.admins[0]) {
		t.Fatalf("after the outage: usage %+v\nclient counted %v", usageSum(t, u.admins[0], "shared-a"), &counts)
	}
	for i, p := range u.procs {
		if n := strings.Count(p.Output(), "usage flush failed"); n > 1 {
			t.Errorf("proxy %d logged the outage %d times, want once", i, n)
		}
	}
	if !strings.Contains(u.procs[1].Output(), "usage flush written again after an outage") {
		t.Error("proxy 1 did not log the end of the outage")
	}

	t.Log("kill -9")
	// kill -9 of proxy 1 right after more transfers through it.
	before := usageSum(t, u.admins[0], "shared-a")
	counts.mix(t, http.DefaultClient, u.urls[1], key, 100, 5)
	u.procs[1].Kill()
	time.Sleep(time.Second) // proxy 0 flushes; proxy 1 never will
	after := usageSum(t, u.admins[0], "shared-a")
	counts.mu.Lock()
	defer counts.mu.Unlock()
	if after.BytesIn < before.BytesIn || after.BytesIn > counts.in || after.BytesOut > counts.out || after.Requests > counts.reqs {
		t.Fatalf("after kill -9: usage %+v, before the last transfers %+v, client counted in %d out %d requests %d", after, before, counts.in, counts.out, counts.reqs)
	}
}

// grepLines returns the lines of s that contain one of words.
func grepLines(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// PostgreSQL unreachable at start: keepproxy exits with an error naming
// the DSN's host, never its password.
func TestPostgresUnreachableAtStart(t *testing.T) {
	dir := t.TempDir()
	closed := testenv.FreeAddr(t) // nothing listens there
	dsn := testenv.WriteSecret(t, dir, "pg.dsn", "postgres://keepgate:Sup3r-s3cret-pw@"+closed+"/keepgate?sslmode=disable&connect_timeout=2\n")
	cfg := testenv.WriteFile(t, dir, "keepproxy.yml", fmt.Sprintf(`listen: %s
stores: [{url: "http://127.0.0.1:1"}]
store_write_token_file: %s
blob_signing_key_file: %s
state: {driver: postgres, dsn_file: %s, pepper_file: %s}
`, testenv.FreeAddr(t), testenv.WriteSecret(t, dir, "w", testenv.WriteToken), testenv.WriteSecret(t, dir, "k", testenv.SigningKey),
		dsn, testenv.WriteSecret(t, dir, "pepper", "e2e-pepper-0123456789abcdef")))
	p := testenv.Start(t, testenv.Build(t, "keepproxy"), []string{"-config", cfg})
	err, done := p.Wait(30 * time.Second)
	out := p.Output()
	if !done || err == nil || !strings.Contains(out, "PostgreSQL at "+closed+"/keepgate is unreachable") || strings.Contains(out, "Sup3r") {
		t.Fatalf("keepproxy with PostgreSQL unreachable: exited %v (%v):\n%s", done, err, out)
	}
}
