//go:build linux || darwin || freebsd

package dirvolume

import (
	"math"

	"golang.org/x/sys/unix"
)

// freeBytes is the space available to unprivileged users on the volume's
// filesystem (statfs f_bavail × f_bsize).
func (v *Volume) freeBytes() (int64, error) {
	rc, err := v.rootDir.SyscallConn()
	if err != nil {
		return 0, err
	}
	var st unix.Statfs_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstatfs(int(fd), &st) }); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	free := uint64(st.Bavail) * uint64(st.Bsize)
	if st.Bsize != 0 && free/uint64(st.Bsize) != uint64(st.Bavail) || free > math.MaxInt64 {
		return math.MaxInt64, nil
	}
	return int64(free), nil
}
