package tunnel

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/crypto/ssh"

	"github.com/keepgate/keepgate/internal/config"
)

// LoadIdentity reads the private key keeptunnel authenticates with. Like
// OpenSSH it refuses a key file that its group or other users may read or
// write (chmod 600 it), and a passphrase-protected key (a service cannot
// type the passphrase; the file mode is the protection).
func LoadIdentity(path string) (ssh.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{Kind: KindConfig, Msg: "identity_file", Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, &Error{Kind: KindConfig, Msg: "identity_file", Err: err}
	}
	if err := config.CheckSecretMode(path, fi); err != nil {
		return nil, &Error{Kind: KindConfig, Msg: "identity_file", Err: err}
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, errorf(KindConfig, "identity_file %s: mode %04o lets its group read or write the private key; run chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, &Error{Kind: KindConfig, Msg: "identity_file " + path, Err: err}
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, errorf(KindConfig, "identity_file %s is passphrase-protected; keeptunnel runs unattended: use a key without a passphrase (ssh-keygen -t ed25519 -N '' -f %s), protected by its file mode", path, path)
		}
		return nil, &Error{Kind: KindConfig, Msg: fmt.Sprintf("identity_file %s: not an OpenSSH private key", path), Err: err}
	}
	return signer, nil
}
