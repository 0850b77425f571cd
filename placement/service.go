// Package placement decides where blocks live: the keepstores (Service),
// the named pools principals are bound to (Storage, or an Upstream
// gateway), the Router that orders a block's stores (RendezvousRouter,
// StorageRouter), the forwarding Rules matched by the name a client
// connected to, and the registry of stores an Arvados API server keeps
// (Discovery), which feeds the router. It moves no bytes: package gateway
// does, in the order a Router gives.
package placement

import (
	"crypto/md5"
	"encoding/hex"
)

// Service is one keepstore the gateway talks to.
type Service struct {
	UUID string // rendezvous identity; the last 15 characters are hashed
	// URL is the base URL, e.g. http://10.0.0.5:25107, or
	// http+unix:///run/keepgate/tunnels/lab1/store.sock for a store
	// reached through a unix socket (a keeptunnel forward).
	URL      string
	ReadOnly bool // never written to
}

// SyntheticUUID gives a store configured only by URL the UUID Arvados'
// keepproxy would give it: <cluster>-bi6l4-<first 15 hex of md5(url)>.
func SyntheticUUID(cluster, url string) string {
	sum := md5.Sum([]byte(url))
	return cluster + "-bi6l4-" + hex.EncodeToString(sum[:])[:15]
}
