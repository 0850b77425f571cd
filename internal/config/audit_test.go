package config

import (
	"strings"
	"testing"
	"time"
)

func TestAuditConfig(t *testing.T) {
	t.Setenv("ARVADOS_API_HOST", "")
	base := "token_file: /x\nstores: [{url: http://a:1}]\n"
	c, err := LoadKeepproxy(writeConf(t, base))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Audit.Sinks) != 1 || c.Audit.Sinks[0].Type != "stdout" || c.Audit.QueueSize != 10000 || c.Audit.OnFull != "drop" || c.Audit.WriteTimeout != time.Second || c.Audit.StallAfter != 250*time.Millisecond {
		t.Fatalf("defaults: %+v", c.Audit)
	}
	c, err = LoadKeepproxy(writeConf(t, base+"audit:\n  on_full: reject\n  sinks:\n    - type: syslog\n      address: tcp://127.0.0.1:514\n    - type: file\n      path: /var/log/a.json\n"))
	if err != nil || c.Audit.OnFull != "reject" || len(c.Audit.Sinks) != 2 || c.Audit.Sinks[0].Facility != "local2" || c.Audit.Sinks[0].AppName != "keepproxy" || c.Audit.QueueSize != 10000 {
		t.Fatalf("set: %v %+v", err, c.Audit)
	}
	c, err = LoadKeepproxy(writeConf(t, base+"audit:\n  sinks: []\n"))
	if err != nil || len(c.Audit.Sinks) != 0 {
		t.Fatalf("sinks: [] should turn the log off: %v %+v", err, c.Audit)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"audit:\n  on_full: block\n", `audit.on_full "block"`},
		{"audit:\n  queue_size: 0\n", "audit.queue_size 0"},
		{"audit:\n  sinks: [{type: file}]\n", "audit.sinks[0].path \"\": a file sink needs an absolute path"},
		{"audit:\n  sinks: [{type: syslog}]\n", "audit.sinks[0].address: a syslog sink needs"},
		{"audit:\n  sinks: [{type: kafka}]\n", `audit.sinks[0].type "kafka"`},
		{"audit:\n  write_timeout: 0s\n", "audit.write_timeout"},
		{"audit:\n  stall_after: -1s\n", "audit.stall_after"},
	} {
		if _, err := LoadKeepproxy(writeConf(t, base+tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
