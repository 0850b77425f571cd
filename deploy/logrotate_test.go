package deploy

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/internal/testenv"
)

// The shipped logrotate snippet rotates a real keepproxy's audit file:
// logrotate (forced) moves it, its postrotate HUPs the proxy (here with
// kill instead of sv), and the next transfer lands in a new file.
func TestLogrotateAuditFile(t *testing.T) {
	logrotate := testenv.LookPath(t, "logrotate")
	dir := t.TempDir()
	file := filepath.Join(dir, "audit.json")
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 1, ProxyExtra: "audit:\n  sinks:\n    - type: file\n      path: " + file + "\n"})
	get := func() {
		req, _ := http.NewRequest("HEAD", c.ProxyURL+"/d41d8cd98f00b204e9800998ecf8427e+0", nil)
		req.Header.Set("Authorization", "Bearer "+testenv.TokenRW)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	lines := func(p string) int {
		b, _ := os.ReadFile(p)
		return strings.Count(string(b), "\n")
	}
	waitLines := func(p string, n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for lines(p) != n {
			if time.Now().After(deadline) {
				t.Fatalf("%s has %d events, want %d", p, lines(p), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	get()
	get()
	waitLines(file, 2)

	shipped, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "deploy", "logrotate", "keepproxy"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(shipped), "/var/log/keepproxy/audit.json", file, 1)
	conf = strings.Replace(conf, "sv hup keepproxy", fmt.Sprintf("kill -HUP %d", c.Proxy.Cmd.Process.Pid), 1)
	if conf == string(shipped) || !strings.Contains(conf, "kill -HUP") {
		t.Fatal("the shipped snippet no longer names /var/log/keepproxy/audit.json and sv hup keepproxy")
	}
	confPath := testenv.WriteFile(t, dir, "logrotate.conf", conf)
	out, err := exec.Command(logrotate, "-f", "-s", filepath.Join(dir, "state"), confPath).CombinedOutput()
	if err != nil {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	get()
	waitLines(file, 1)
	waitLines(file+".1", 2) // delaycompress: the first rotation stays plain
}
