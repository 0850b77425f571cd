//go:build !(linux || darwin || freebsd)

package dirvolume

import "errors"

// freeBytes is not implemented on this platform; New then requires
// Config.Reserve to be negative.
func (v *Volume) freeBytes() (int64, error) {
	return 0, errors.New("free space cannot be measured on this platform")
}
