package blockstore

import (
	"crypto/md5"
	"encoding/hex"
	"sort"
)

// uuidSuffix is what rendezvous hashing mixes with the block hash: the last
// 15 characters of a 27-character UUID, otherwise the whole string.
func uuidSuffix(uuid string) string {
	if len(uuid) == 27 {
		return uuid[12:]
	}
	return uuid
}

func weight(h Hash, uuid string) string {
	sum := md5.Sum([]byte(h.String() + uuidSuffix(uuid)))
	return hex.EncodeToString(sum[:])
}

// ServiceOrder returns the indexes of uuids in client probe order
// (KEEP-PROTOCOL §8.1): md5hex(hash+suffix) compared as strings, largest first.
func ServiceOrder(h Hash, uuids []string) []int {
	w := make([]string, len(uuids))
	idx := make([]int, len(uuids))
	for i, u := range uuids {
		w[i] = weight(h, u)
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return w[idx[a]] > w[idx[b]] })
	return idx
}

// MountOrder returns the indexes of mounts in keepstore volume order
// (KEEP-PROTOCOL §8.3): priority highest first, then md5hex(hash+suffix)
// ascending.
func MountOrder(h Hash, uuids []string, priority []int) []int {
	w := make([]string, len(uuids))
	idx := make([]int, len(uuids))
	for i, u := range uuids {
		w[i] = weight(h, u)
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		pa, pb := 0, 0
		if priority != nil {
			pa, pb = priority[idx[a]], priority[idx[b]]
		}
		if pa != pb {
			return pa > pb
		}
		return w[idx[a]] < w[idx[b]]
	})
	return idx
}
