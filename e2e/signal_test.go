package e2e

import "syscall"

var sighup = syscall.SIGHUP
