// Package audit is keepproxy's transfer audit log: one event per transfer
// attempt (metering.Transfer), written to any combination of sinks —
// syslog (RFC 5424, over a unix datagram socket such as /dev/log or TCP
// with RFC 6587 octet counting), a JSON-lines file reopened on SIGHUP, and
// stdout — through a bounded queue per sink, so that a stalled log server
// never stalls an upload (see Log).
//
// The same field names are used in every format: the JSON members of a
// JSON line are the structured-data parameter names of a syslog record.
package audit

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/leodido/go-syslog/v4/rfc5424"

	"github.com/keepgate/keepgate/metering"
)

// TimeFormat is the events' time: RFC 3339 in UTC with microseconds (the
// most RFC 5424 allows).
const TimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// Event is the wire form of a transfer, with the documented field names.
type Event struct {
	Time             string         `json:"time"`
	RequestID        string         `json:"request_id"`
	ProxyID          string         `json:"proxy_id"`
	Host             string         `json:"host"`
	Rule             string         `json:"rule"`
	Client           string         `json:"client"`
	PrincipalKind    string         `json:"principal_kind"`
	PrincipalID      string         `json:"principal_id"`
	Storage          string         `json:"storage"`
	Op               string         `json:"op"`
	Block            string         `json:"block"`
	ClassesAsked     []string       `json:"classes_asked"`
	ClassesConfirmed map[string]int `json:"classes_confirmed"`
	ReplicasWanted   int            `json:"replicas_wanted"`
	ReplicasStored   int            `json:"replicas_stored"`
	BytesIn          int64          `json:"bytes_in"`
	BytesOut         int64          `json:"bytes_out"`
	Status           int            `json:"status"`
	ErrorKind        string         `json:"error_kind"`
	TTFBSeconds      float64        `json:"ttfb_seconds"`
	DurationSeconds  float64        `json:"duration_seconds"`
	Stores           []string       `json:"stores"`
	UserAgent        string         `json:"user_agent"`
}

// NewEvent converts t. Strings that are not valid UTF-8 have the invalid
// bytes replaced by U+FFFD, so every sink can carry them.
func NewEvent(t *metering.Transfer) Event {
	v := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
	e := Event{
		Time: t.Time.UTC().Format(TimeFormat), RequestID: v(t.RequestID), ProxyID: v(t.ProxyID),
		Host: v(t.Host), Rule: v(t.Rule), Client: v(t.Client), PrincipalKind: v(t.PrincipalKind),
		PrincipalID: v(t.PrincipalID), Storage: v(t.Storage), Op: t.Op, Block: v(t.Block),
		ClassesAsked: []string{}, ClassesConfirmed: map[string]int{},
		ReplicasWanted: t.ReplicasWanted, ReplicasStored: t.ReplicasStored,
		BytesIn: t.BytesIn, BytesOut: t.BytesOut, Status: t.Status, ErrorKind: t.ErrorKind,
		TTFBSeconds: t.TTFB.Seconds(), DurationSeconds: t.Duration.Seconds(),
		Stores: t.Stores(), UserAgent: v(t.UserAgent),
	}
	for _, c := range t.ClassesAsked {
		e.ClassesAsked = append(e.ClassesAsked, v(c))
	}
	for c, n := range t.ClassesConfirmed {
		e.ClassesConfirmed[v(c)] = n
	}
	if e.Stores == nil {
		e.Stores = []string{}
	}
	return e
}

// JSONLine is e as one line of JSON ending in "\n" (newlines inside
// values are escaped by encoding/json).
func (e Event) JSONLine() []byte {
	b, err := json.Marshal(e)
	if err != nil { // cannot happen: every field is a plain value
		b = []byte(`{"error":"unencodable audit event"}`)
	}
	return append(b, '\n')
}

// params returns the structured-data parameters of e, in field order.
func (e Event) params() [][2]string {
	itoa := strconv.Itoa
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', 6, 64) }
	classes := make([]string, 0, len(e.ClassesConfirmed))
	for c, n := range e.ClassesConfirmed {
		classes = append(classes, c+"="+itoa(n))
	}
	sort.Strings(classes)
	return [][2]string{
		{"time", e.Time}, {"request_id", e.RequestID}, {"proxy_id", e.ProxyID}, {"host", e.Host},
		{"rule", e.Rule}, {"client", e.Client}, {"principal_kind", e.PrincipalKind},
		{"principal_id", e.PrincipalID}, {"storage", e.Storage}, {"op", e.Op}, {"block", e.Block},
		{"classes_asked", strings.Join(e.ClassesAsked, ",")}, {"classes_confirmed", strings.Join(classes, ",")},
		{"replicas_wanted", itoa(e.ReplicasWanted)}, {"replicas_stored", itoa(e.ReplicasStored)},
		{"bytes_in", strconv.FormatInt(e.BytesIn, 10)}, {"bytes_out", strconv.FormatInt(e.BytesOut, 10)},
		{"status", itoa(e.Status)}, {"error_kind", e.ErrorKind},
		{"ttfb_seconds", f(e.TTFBSeconds)}, {"duration_seconds", f(e.DurationSeconds)},
		{"stores", strings.Join(e.Stores, ",")}, {"user_agent", e.UserAgent},
	}
}

// SDID is the structured-data element of every audit record (32473 is the
// enterprise number RFC 5612 reserves for documentation examples).
const SDID = "transfer@32473"

// Syslog is e as an RFC 5424 message, built with go-syslog's builder (without transport framing): facility
// and severity (informational for a success, warning for a 4xx, error for
// a 5xx), the event time, hostname, app name and process id in the header,
// the operation as MSGID, every field as a parameter of the SDID element,
// and a short human-readable MSG.
func (e Event) Syslog(facility int, hostname, app string, pid int) ([]byte, error) {
	severity := 6
	switch {
	case e.Status >= 500:
		severity = 3
	case e.Status >= 400:
		severity = 4
	}
	m := &rfc5424.SyslogMessage{}
	m.SetPriority(uint8(facility*8 + severity))
	m.SetVersion(1)
	m.SetTimestamp(e.Time)
	m.SetHostname(headerField(hostname, 255))
	m.SetAppname(headerField(app, 48))
	m.SetProcID(strconv.Itoa(pid))
	m.SetMsgID(headerField(strings.ToUpper(e.Op), 32))
	for _, p := range e.params() {
		// The builder takes values in their escaped wire form.
		m.SetParameter(SDID, p[0], sdEscape(p[1]))
	}
	m.SetMessage(strings.ToUpper(e.Op) + " " + e.Block + " " + strconv.Itoa(e.Status))
	s, err := m.String()
	if err != nil {
		return nil, fmt.Errorf("audit: building the syslog record: %w", err)
	}
	return []byte(s), nil
}

// headerField keeps the PRINTUSASCII characters of s (no spaces), at most
// max of them; "-" (the nil value) when none is left.
func headerField(s string, max int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < max; i++ {
		if c := s[i]; c > 32 && c < 127 {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// sdEscape escapes a PARAM-VALUE per RFC 5424 §6.3.3: '"', '\' and ']'
// get a backslash; every other UTF-8 character, newlines included, may
// appear as it is.
func sdEscape(s string) string {
	if !strings.ContainsAny(s, "\"\\]") {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r == '"' || r == '\\' || r == ']' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
