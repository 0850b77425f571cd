package tunnel

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeys pins the server's host key from a known_hosts file. The file is
// read again for every connection attempt, so a fixed known_hosts takes
// effect on the next attempt without a restart.
type hostKeys struct {
	file   string
	server string // host:port as dialled, the name looked up in the file
}

// load reads the file and returns a callback that refuses anything but a
// key listed for the server, with a typed *Error (KindHostKeyUnknown,
// KindHostKeyMismatch or KindHostKeyRevoked) whose message says what to
// do; and the host key algorithms to offer, those of the keys the file
// lists for the server, so that a server which also has keys of other
// types is not mistaken for a mismatch.
func (h hostKeys) load() (ssh.HostKeyCallback, []string, error) {
	cb, err := knownhosts.New(h.file)
	if err != nil {
		return nil, nil, &Error{Kind: KindConfig, Msg: "known_hosts_file " + h.file + " unusable", Err: err}
	}
	algos := h.algorithms(cb)
	check := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		if err == nil {
			return nil
		}
		return h.refusal(key, err)
	}
	return check, algos, nil
}

// refusal explains a knownhosts error: KeyError with Want set is a
// mismatch, with Want empty an unknown host.
func (h hostKeys) refusal(key ssh.PublicKey, err error) error {
	offered := ssh.FingerprintSHA256(key)
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		return &Error{Kind: KindHostKeyRevoked, Err: err,
			Msg: fmt.Sprintf("the server %s offered host key %s, which %s marks @revoked: refusing; the server must use another host key", h.server, offered, h.file)}
	case errors.As(err, &ke) && len(ke.Want) > 0:
		want := make([]string, 0, len(ke.Want))
		for _, k := range ke.Want {
			want = append(want, fmt.Sprintf("%s %s (%s:%d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Filename, k.Line))
		}
		return &Error{Kind: KindHostKeyMismatch, Err: err,
			Msg: fmt.Sprintf("HOST KEY MISMATCH for %s: it offered %s %s but %s pins %s; refusing (this can be an attack). "+
				"If the server's key really changed, check the new fingerprint on the server (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and replace the line in %s",
				h.server, key.Type(), offered, h.file, strings.Join(want, ", "), h.file)}
	case errors.As(err, &ke):
		return &Error{Kind: KindHostKeyUnknown, Err: err,
			Msg: fmt.Sprintf("host key of %s is not in %s (it offered %s %s); refusing. Check the fingerprint on the server "+
				"(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and, if it matches, add this line to %s: %s",
				h.server, h.file, key.Type(), offered, h.file, knownhosts.Line([]string{knownhosts.Normalize(h.server)}, key))}
	default:
		return &Error{Kind: KindHostKeyUnknown, Msg: "host key check failed for " + h.server, Err: err}
	}
}

// probeKey is a key no server has: checking it lists the keys the file
// pins for a host (in KeyError.Want).
var probeKey = func() ssh.PublicKey {
	k, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		panic(err)
	}
	return k
}()

// algorithms returns the host key algorithms for the key types the file
// pins for the server; nil (x/crypto's defaults) when it pins none.
func (h hostKeys) algorithms(cb ssh.HostKeyCallback) []string {
	remote := &net.TCPAddr{IP: net.IPv4zero}
	var ke *knownhosts.KeyError
	if err := cb(h.server, remote, probeKey); !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, s := range a {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
		default:
			add(t)
		}
	}
	return out
}
