//go:build unix

package httpserver

import "syscall"

// fdLimit is the soft RLIMIT_NOFILE (Go raises it to the hard limit at
// start), or 0 if unknown.
func fdLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur == 0 {
		return 0
	}
	return int(min(r.Cur, 1<<30))
}
