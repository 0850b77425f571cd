package config

import (
	"fmt"
	"path/filepath"
	"time"
)

// Audit configures keepproxy's transfer audit log: one event per transfer
// attempt, to any combination of sinks (README "Transfer audit log").
type Audit struct {
	// Sinks: where events go. Default: one stdout sink (for svlogd). An
	// empty list turns the audit log off.
	Sinks []AuditSink `mapstructure:"sinks"`
	// QueueSize: events each sink may have waiting (default 10000).
	QueueSize int `mapstructure:"queue_size"`
	// OnFull: "drop" (default: events that do not fit are dropped and
	// counted in keepgate_audit_dropped_total) or "reject" (while a sink
	// is stalled, new transfers get 503 + Retry-After).
	OnFull string `mapstructure:"on_full"`
	// WriteTimeout bounds one write to a sink (default 1s); the writer
	// then goes on with the rest of the event on the same connection.
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// StallAfter: a sink whose current event has waited this long counts
	// as stalled (on_full: reject then refuses transfers; default 250ms).
	StallAfter time.Duration `mapstructure:"stall_after"`
}

// AuditSink is one destination of audit events.
type AuditSink struct {
	// Type: "stdout" (JSON lines), "file" (JSON lines, reopened on
	// SIGHUP) or "syslog" (RFC 5424).
	Type string `mapstructure:"type"`
	// Path of a file sink (absolute).
	Path string `mapstructure:"path"`
	// Address of a syslog sink: unix:///dev/log (datagram socket) or
	// tcp://host:port (RFC 6587 octet counting).
	Address string `mapstructure:"address"`
	// Facility of a syslog sink (default local2) and its APP-NAME
	// (default keepproxy).
	Facility string `mapstructure:"facility"`
	AppName  string `mapstructure:"app_name"`
}

// DefaultAudit is one stdout sink, dropping what does not fit.
func DefaultAudit() Audit {
	return Audit{Sinks: []AuditSink{{Type: "stdout"}}, QueueSize: 10000, OnFull: "drop", WriteTimeout: time.Second, StallAfter: 250 * time.Millisecond}
}

func (a *Audit) validate(bad func(string, ...any)) {
	if a.QueueSize < 1 {
		bad("audit.queue_size %d: must be at least 1", a.QueueSize)
	}
	if a.OnFull != "drop" && a.OnFull != "reject" {
		bad("audit.on_full %q: use drop (events that do not fit are dropped and counted) or reject (transfers get 503 while a sink is stalled)", a.OnFull)
	}
	if a.WriteTimeout <= 0 {
		bad("audit.write_timeout: must be positive")
	}
	if a.StallAfter <= 0 {
		bad("audit.stall_after: must be positive")
	}
	for i := range a.Sinks {
		s := &a.Sinks[i]
		where := fmt.Sprintf("audit.sinks[%d]", i)
		switch s.Type {
		case "stdout":
		case "file":
			if !filepath.IsAbs(s.Path) {
				bad("%s.path %q: a file sink needs an absolute path (e.g. /var/log/keepproxy/audit.json)", where, s.Path)
			}
		case "syslog":
			if s.Address == "" {
				bad("%s.address: a syslog sink needs unix:///dev/log or tcp://host:port", where)
			}
			if s.Facility == "" {
				s.Facility = "local2"
			}
			if s.AppName == "" {
				s.AppName = "keepproxy"
			}
		default:
			bad("%s.type %q: use stdout, file or syslog", where, s.Type)
		}
	}
}
