package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/audit"
	"github.com/keepgate/keepgate/internal/config"
)

// openAudit builds the audit log of the configuration (nil when it has no
// sinks). Sinks that cannot be reached yet are retried in the background.
func openAudit(c config.Audit, log *slog.Logger, reg prometheus.Registerer) (*audit.Log, error) {
	if len(c.Sinks) == 0 {
		return nil, nil
	}
	var sinks []audit.Sink
	for i, s := range c.Sinks {
		switch s.Type {
		case "stdout":
			sinks = append(sinks, &audit.StreamSink{Label: "stdout", W: os.Stdout})
		case "file":
			sinks = append(sinks, &audit.FileSink{Path: s.Path})
		case "syslog":
			ss, err := audit.NewSyslogSink(s.Address, s.Facility, s.AppName)
			if err != nil {
				return nil, fmt.Errorf("audit.sinks[%d]: %w", i, err)
			}
			sinks = append(sinks, ss)
		}
	}
	return audit.New(audit.Options{Sinks: sinks, QueueSize: c.QueueSize, OnFull: audit.OnFull(c.OnFull),
		WriteTimeout: c.WriteTimeout, StallAfter: c.StallAfter, Logger: log, Registry: reg}), nil
}
