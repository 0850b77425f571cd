package config

import (
	"fmt"
	"os"
)

// CheckSecretMode refuses a secret file (a token, a key, a token list) that
// is not a regular file or that users other than its owner and group may
// read or write; the message names the file and the chmod to run.
func CheckSecretMode(path string, fi os.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("secret file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o007 != 0 {
		return fmt.Errorf("secret file %s: mode %04o lets other users read or write it; run chmod 600 %s", path, perm, path)
	}
	return nil
}
