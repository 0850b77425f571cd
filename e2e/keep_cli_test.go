package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/testenv"
	"github.com/keepgate/keepgate/manifest"
)

const mib = 1 << 20

// keepCLI runs the built keep binary with a private HOME, cache and
// config, pointed at a proxy.
type keepCLI struct {
	t     *testing.T
	bin   string
	env   []string
	cache string
}

func newKeepCLI(t *testing.T, proxyURL string, extraEnv ...string) *keepCLI {
	home := t.TempDir()
	k := &keepCLI{t: t, bin: testenv.Build(t, "keep"), cache: filepath.Join(home, "cache")}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KEEP_") || strings.HasPrefix(kv, "ARVADOS_") || strings.HasPrefix(kv, "XDG_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		k.env = append(k.env, kv)
	}
	k.env = append(k.env, "HOME="+home, "XDG_CACHE_HOME="+k.cache, "XDG_CONFIG_HOME="+filepath.Join(home, "config"),
		"KEEP_PROXY="+proxyURL, "KEEP_TOKEN="+testenv.TokenRW)
	k.env = append(k.env, extraEnv...)
	return k
}

func (k *keepCLI) cmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, k.bin, args...)
	c.Env = k.env
	return c
}

// run runs keep and returns stdout, stderr and the exit code.
func (k *keepCLI) run(args ...string) (string, string, int) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := k.cmd(ctx, args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		k.t.Fatalf("keep %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// mustRun runs keep and fails the test unless it exits 0.
func (k *keepCLI) mustRun(args ...string) string {
	k.t.Helper()
	out, errs, code := k.run(args...)
	if code != 0 {
		k.t.Fatalf("keep %s: exit %d\nstderr: %s\nstdout: %s", strings.Join(args, " "), code, errs, tail(out, 2000))
	}
	return out
}

// putLocator runs keep put --json and returns the manifest locator.
func (k *keepCLI) putLocator(args ...string) (string, map[string]any) {
	k.t.Helper()
	out := k.mustRun(append([]string{"put", "--json"}, args...)...)
	res := lastJSON(k.t, out, "result")
	loc, _ := res["locator"].(string)
	if !signedRe.MatchString(loc) {
		k.t.Fatalf("put printed locator %q\n%s", loc, tail(out, 2000))
	}
	return loc, res
}

func lastJSON(t *testing.T, out, event string) map[string]any {
	t.Helper()
	var found map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("--json printed a line that is not JSON: %q", sc.Text())
		}
		if v["event"] == event {
			found = v
		}
	}
	if found == nil {
		t.Fatalf("no %q line in:\n%s", event, tail(out, 2000))
	}
	return found
}

// writeRandom writes size pseudo-random bytes (AES-CTR keystream: fast
// even under the race detector) seeded by seed.
func writeRandom(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	blk, _ := aes.NewCipher(key[:])
	stream := cipher.NewCTR(blk, make([]byte, 16))
	buf := make([]byte, 4*mib)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		clear(buf[:n])
		stream.XORKeyStream(buf[:n], buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		left -= n
	}
}

// treeDigest maps every file (relative path) to its size and MD5, and
// every directory to "dir".
func treeDigest(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			out[rel] = "dir"
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := md5.New()
		n, err := io.Copy(h, f)
		if err != nil {
			return err
		}
		out[rel] = fmt.Sprintf("%d %x", n, h.Sum(nil))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	w, g := treeDigest(t, want), treeDigest(t, got)
	for p, d := range w {
		if g[p] != d {
			t.Errorf("%s: got %q, want %q", p, g[p], d)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: not in the source tree", p)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// proxyPuts lists the block hashes the proxy logged as stored (PUT → 200)
// in its log from byte offset from on.
func proxyPuts(t *testing.T, c *testenv.Cluster, from int) ([]string, int) {
	t.Helper()
	log := c.Proxy.Output()
	var hashes []string
	for _, line := range strings.Split(log[from:], "\n") {
		var v struct {
			Msg    string `json:"msg"`
			Method string `json:"method"`
			Path   string `json:"path"`
			Status int    `json:"status"`
		}
		if json.Unmarshal([]byte(line), &v) != nil || v.Msg != "request" || v.Method != "PUT" || v.Status != 200 {
			continue
		}
		p := strings.TrimPrefix(v.Path, "/")
		if len(p) != 32 {
			t.Fatalf("keep sent PUT %q: want /<hash> with no hints", v.Path)
		}
		hashes = append(hashes, p)
	}
	return hashes, len(log)
}

func storedCounter(t *testing.T, c *testenv.Cluster) int {
	t.Helper()
	resp, err := http.Get(c.ProxyURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^keepproxy_blocks_stored_total (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no keepproxy_blocks_stored_total in /metrics")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestKeepCLIPutGet puts a tree with empty files, blocks of exactly 64 MiB
// and 64 MiB + 1, a 150 MiB file, unicode, spaces and escapes in names,
// nested and empty directories, then gets it back and compares bytes.
func TestKeepCLIPutGet(t *testing.T) {
	if testing.Short() {
		t.Skip("moves about 350 MiB")
	}
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 3})
	k := newKeepCLI(t, c.ProxyURL)
	src := filepath.Join(t.TempDir(), "my tree")
	writeRandom(t, filepath.Join(src, "exactly 64MiB.bin"), 64*mib, 1)
	writeRandom(t, filepath.Join(src, "64MiB+1 ü.bin"), 64*mib+1, 2)
	writeRandom(t, filepath.Join(src, "big", "150MiB.dat"), 150*mib, 3)
	writeRandom(t, filepath.Join(src, "big", "copy of 64MiB.bin"), 64*mib, 1) // same block as the first
	writeRandom(t, filepath.Join(src, "ünïcødé ☃", "naïve file.txt"), 12345, 4)
	writeRandom(t, filepath.Join(src, "sub dir", "nested", "deeper", "small:colon\\back.txt"), 1000, 5)
	writeRandom(t, filepath.Join(src, "sub dir", "tab\tand\nnewline"), 77, 6)
	for _, p := range []string{"empty.txt", "sub dir/also empty", "ünïcødé ☃/∅"} {
		writeRandom(t, filepath.Join(src, p), 0, 0)
	}
	if err := os.MkdirAll(filepath.Join(src, "empty dir", "empty child"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, log0 := proxyPuts(t, c, 0)
	stored0 := storedCounter(t, c)

	start := time.Now()
	loc, res := k.putLocator("--replicas", "2", src)
	t.Logf("put took %v: %v", time.Since(start), res)

	puts, _ := proxyPuts(t, c, log0)
	seen := map[string]int{}
	for _, h := range puts {
		seen[h]++
		if seen[h] > 1 {
			t.Errorf("block %s was PUT %d times", h, seen[h])
		}
	}
	// 64 + (64+1) + 150 MiB in own blocks: 1 + 2 + 3 = 6 distinct big
	// blocks (the copy is deduplicated), the small files packed into one,
	// and the manifest.
	if len(puts) != 8 || storedCounter(t, c)-stored0 != 8 {
		t.Errorf("%d PUTs logged, counter +%d; want 8", len(puts), storedCounter(t, c)-stored0)
	}
	if res["blocks_deduplicated"].(float64) != 1 {
		t.Errorf("blocks_deduplicated = %v, want 1", res["blocks_deduplicated"])
	}

	// ls names every file with its size.
	ls := k.mustRun("ls", loc)
	for _, want := range []string{
		fmt.Sprintf("%15d  my tree/exactly 64MiB.bin\n", 64*mib),
		fmt.Sprintf("%15d  my tree/64MiB+1 ü.bin\n", 64*mib+1),
		fmt.Sprintf("%15d  my tree/big/150MiB.dat\n", 150*mib),
		fmt.Sprintf("%15d  my tree/empty.txt\n", 0),
		fmt.Sprintf("%15s  my tree/empty dir/empty child/\n", "-"),
		fmt.Sprintf("%15d  my tree/sub dir/nested/deeper/small:colon\\back.txt\n", 1000),
	} {
		if !strings.Contains(ls, want) {
			t.Errorf("ls lacks %q:\n%s", want, ls)
		}
	}
	// The manifest is Arvados text: escaped names, a stream per directory.
	mtext := k.mustRun("cat", loc)
	m, err := manifest.Parse(mtext)
	if err != nil {
		t.Fatalf("stored manifest: %v\n%s", err, mtext)
	}
	for _, want := range []string{"./my\\040tree/ünïcødé\\040☃ ", ":small\\072colon\\134back.txt", "./my\\040tree/empty\\040dir/empty\\040child " + blockstore.EmptyLocator + " 0:0:\\056\n"} {
		if !strings.Contains(mtext, want) {
			t.Errorf("manifest lacks %q:\n%s", want, mtext)
		}
	}
	for _, s := range m.Streams {
		for _, b := range s.Blocks {
			if b.Size > blockstore.MaxBlockSize {
				t.Errorf("block over 64 MiB: %s", b.String())
			}
		}
	}

	// get restores the tree byte for byte.
	dest := filepath.Join(t.TempDir(), "restored")
	start = time.Now()
	k.mustRun("get", "--quiet", loc, dest)
	t.Logf("get took %v", time.Since(start))
	compareTrees(t, filepath.Dir(src), dest)

	// cat writes one file.
	got := k.mustRun("cat", loc, "my tree/ünïcødé ☃/naïve file.txt")
	want, _ := os.ReadFile(filepath.Join(src, "ünïcødé ☃", "naïve file.txt"))
	if got != string(want) {
		t.Errorf("cat: %d bytes, want %d", len(got), len(want))
	}
	// get refuses to overwrite, unless told to.
	_, errs, code := k.run("get", loc, dest)
	if code != 2 || !strings.Contains(errs, "already exist") || !strings.Contains(errs, "--force") {
		t.Errorf("second get: exit %d, %q", code, errs)
	}
	k.mustRun("get", "--skip-existing", loc, dest)
	k.mustRun("get", "--force", "--quiet", loc, dest)
	compareTrees(t, filepath.Dir(src), dest)
	// A wrong token gets a one-line hint.
	bad := newKeepCLI(t, c.ProxyURL, "KEEP_TOKEN=not-a-token")
	_, errs, code = bad.run("get", loc, t.TempDir())
	if code != 1 || !strings.Contains(errs, "403: the proxy refused the token — check KEEP_TOKEN") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Errorf("wrong token: exit %d, %q", code, errs)
	}
}

// TestKeepCLIResume kills keep put after some blocks were stored and
// checks, from the proxy's log and metrics, that the rerun sends only
// what was missing.
func TestKeepCLIResume(t *testing.T) {
	if testing.Short() {
		t.Skip("moves about 300 MiB")
	}
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 3})
	k := newKeepCLI(t, c.ProxyURL)
	src := filepath.Join(t.TempDir(), "data")
	for i := range 3 {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("part%d.bin", i)), 100*mib, uint64(10+i)) // 2 blocks each
	}
	_, log0 := proxyPuts(t, c, 0)

	// First run: one block at a time; kill it once the resume cache
	// records at least two stored blocks.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := k.cmd(ctx, "put", "--threads", "1", "--replicas", "2", "--quiet", src)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var recorded map[string]bool
	deadline := time.Now().Add(90 * time.Second)
	for {
		recorded = cachedHashes(t, k.cache)
		if len(recorded) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resume cache never recorded 2 blocks; stderr: %s", errb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	recorded = cachedHashes(t, k.cache) // what the killed run left behind
	firstPuts, log1 := proxyPuts(t, c, log0)
	if len(recorded) >= 6 {
		t.Fatalf("the first run finished all %d blocks before it was killed", len(recorded))
	}
	for h := range recorded {
		if !contains(firstPuts, h) {
			t.Fatalf("cache records %s, which the proxy never stored", h)
		}
	}
	t.Logf("killed after %d PUTs, %d recorded in the resume cache", len(firstPuts), len(recorded))

	// Second run: the recorded blocks are not sent again.
	stored1 := storedCounter(t, c)
	loc, res := k.putLocator("--replicas", "2", src)
	secondPuts, _ := proxyPuts(t, c, log1)
	for _, h := range secondPuts {
		if recorded[h] {
			t.Errorf("block %s was stored by the first run and PUT again", h)
		}
	}
	// 6 data blocks + the manifest, minus what the cache had.
	if want := 6 - len(recorded) + 1; len(secondPuts) != want || storedCounter(t, c)-stored1 != want {
		t.Errorf("second run: %d PUTs logged, counter +%d; want %d", len(secondPuts), storedCounter(t, c)-stored1, want)
	}
	if got := int(res["pieces_from_cache"].(float64)); got != len(recorded) {
		t.Errorf("pieces_from_cache = %d, want %d", got, len(recorded))
	}
	dest := t.TempDir()
	k.mustRun("get", "--quiet", loc, dest)
	compareTrees(t, filepath.Dir(src), dest)
}

// cachedHashes reads the block hashes recorded in keep's resume cache.
func cachedHashes(t *testing.T, cacheRoot string) map[string]bool {
	out := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(cacheRoot, "keep", "put-*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var d struct {
			Files map[string]struct {
				Pieces map[string]struct {
					Locator string `json:"locator"`
				} `json:"pieces"`
			} `json:"files"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("resume cache %s is not valid JSON (a torn write?): %v", p, err)
		}
		for _, f := range d.Files {
			for _, pc := range f.Pieces {
				out[pc.Locator[:32]] = true
			}
		}
	}
	return out
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// TestKeepCLICorruptBlock damages a block on every replica: keep get must
// fail loudly and leave no file behind.
func TestKeepCLICorruptBlock(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2})
	k := newKeepCLI(t, c.ProxyURL)
	src := filepath.Join(t.TempDir(), "src")
	writeRandom(t, filepath.Join(src, "victim.bin"), 40*mib, 21) // a block of its own
	writeRandom(t, filepath.Join(src, "fine.txt"), 5000, 22)
	loc, _ := k.putLocator("--replicas", "2", src+"/")
	m, err := manifest.Parse(k.mustRun("cat", loc))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := m.Files()
	var victim string
	for _, f := range files {
		if f.Path == "victim.bin" {
			victim = f.Chunks[0].Locator.Hash.String()
		}
	}
	damaged := 0
	for _, s := range c.Stores {
		p := s.BlockPath(victim)
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		damaged++
	}
	if damaged != 2 {
		t.Fatalf("damaged %d replicas, want 2", damaged)
	}
	dest := t.TempDir()
	start := time.Now()
	_, errs, code := k.run("get", "--retries", "1", "--quiet", loc, dest)
	t.Logf("get failed after %v with exit %d: %s", time.Since(start), code, errs)
	if code == 0 {
		t.Fatal("get succeeded on a block damaged on every replica")
	}
	// The proxy's stores refuse to serve bytes that fail their hash, so the
	// client sees 502 after the proxy's failover; a proxy that passed bad
	// bytes on would be caught by the client's own MD5 check (exit 3).
	if !strings.Contains(errs, "victim.bin") || !(strings.Contains(errs, "502") && strings.Contains(errs, "damaged") || strings.Contains(errs, "MD5")) ||
		strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Errorf("error does not say which file and why: %q", errs)
	}
	if _, err := os.Stat(filepath.Join(dest, "victim.bin")); !os.IsNotExist(err) {
		t.Errorf("victim.bin exists after a failed get: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dest, ".keep-get-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
	// cat of the damaged file fails too, without writing the bad block.
	out, _, code := k.run("cat", "--retries", "0", loc, "victim.bin")
	if code == 0 || len(out) != 0 {
		t.Errorf("cat: exit %d with %d bytes on stdout", code, len(out))
	}
}

// TestKeepCLIThroughput measures keep put / keep get of 1 GiB through a
// 3-store cluster, next to a plain single-block PUT and GET. Run with
// KEEPGATE_CLI_BENCH=1 go test -run TestKeepCLIThroughput -v ./e2e
func TestKeepCLIThroughput(t *testing.T) {
	if os.Getenv("KEEPGATE_CLI_BENCH") != "1" {
		t.Skip("set KEEPGATE_CLI_BENCH=1 to measure")
	}
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 3})
	k := newKeepCLI(t, c.ProxyURL)
	src := filepath.Join(t.TempDir(), "gib")
	for i := range 4 {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("quarter%d.bin", i)), 256*mib, uint64(100+i))
	}
	const total = 1024 * mib
	rate := func(d time.Duration) float64 { return float64(total) / 1e6 / d.Seconds() }

	// Raw single 64 MiB blocks with net/http, for comparison: best of 3
	// (each a different block, so every PUT really writes).
	var rawPut, rawGet time.Duration
	for i := range 3 {
		block := make([]byte, 64*mib)
		var key [16]byte
		key[0] = byte(i)
		stream := cipher.NewCTR(must(aes.NewCipher(key[:])), make([]byte, 16))
		stream.XORKeyStream(block, block)
		start := time.Now()
		resp, locb := put(t, c, block, 2)
		if d := time.Since(start); rawPut == 0 || d < rawPut {
			rawPut = d
		}
		if resp.StatusCode != 200 {
			t.Fatalf("raw PUT: %d", resp.StatusCode)
		}
		start = time.Now()
		resp, body := request(t, "GET", c.ProxyURL+"/"+locb, testenv.TokenRW, nil, 0, nil)
		if d := time.Since(start); rawGet == 0 || d < rawGet {
			rawGet = d
		}
		if resp.StatusCode != 200 || len(body) != len(block) {
			t.Fatalf("raw GET: %d", resp.StatusCode)
		}
	}
	t.Logf("raw net/http, one 64 MiB block at a time, 2 replicas (best of 3): PUT %.0f MB/s, GET %.0f MB/s",
		64*mib/1e6/rawPut.Seconds(), 64*mib/1e6/rawGet.Seconds())

	for _, threads := range []string{"2", "4"} {
		os.RemoveAll(k.cache)
		start := time.Now()
		loc, _ := k.putLocator("--threads", threads, "--replicas", "2", "--no-cache", src)
		putD := time.Since(start)
		dest := t.TempDir()
		start = time.Now()
		k.mustRun("get", "--threads", threads, "--quiet", loc, dest)
		getD := time.Since(start)
		t.Logf("keep, 1 GiB in 4 files, 2 replicas, 3 stores, --threads %s: put %.1fs = %.0f MB/s, get %.1fs = %.0f MB/s",
			threads, putD.Seconds(), rate(putD), getD.Seconds(), rate(getD))
		if threads == "4" {
			compareTrees(t, filepath.Dir(src), dest)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
