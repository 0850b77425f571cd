package arvapi

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/keepgate/keepgate/state"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// record is a collection as the clients read it: every key Python needs
// (uuid, manifest_text, portable_data_hash, name, trash_at), Go-safe types
// (timestamps RFC 3339 or null, numbers as numbers, properties an object).
type record struct {
	Kind                    string          `json:"kind"`
	Etag                    string          `json:"etag"`
	UUID                    string          `json:"uuid"`
	OwnerUUID               string          `json:"owner_uuid"`
	Name                    *string         `json:"name"`
	Description             *string         `json:"description"`
	ManifestText            string          `json:"manifest_text"`
	PortableDataHash        string          `json:"portable_data_hash"`
	ReplicationDesired      *int            `json:"replication_desired"`
	ReplicationConfirmed    *int            `json:"replication_confirmed"`
	StorageClassesDesired   []string        `json:"storage_classes_desired"`
	StorageClassesConfirmed []string        `json:"storage_classes_confirmed"`
	Properties              json.RawMessage `json:"properties"`
	FileCount               int64           `json:"file_count"`
	FileSizeTotal           int64           `json:"file_size_total"`
	TrashAt                 *string         `json:"trash_at"`
	DeleteAt                *string         `json:"delete_at"`
	IsTrashed               bool            `json:"is_trashed"`
	CreatedAt               *string         `json:"created_at"`
	ModifiedAt              *string         `json:"modified_at"`
	ModifiedByUserUUID      string          `json:"modified_by_user_uuid"`
	Version                 int64           `json:"version"`
	CurrentVersionUUID      string          `json:"current_version_uuid"`
	PreserveVersion         bool            `json:"preserve_version"`
}

func timeOrNull(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := formatTime(t)
	return &s
}

// recordOf renders a stored collection with its manifest signed for c:
// expiring at now + TTL, or at trash_at if that is earlier.
func (s *Server) recordOf(c *Caller, col state.Collection, now time.Time) record {
	name, desc := col.Name, col.Description
	r := record{Kind: "arvados#collection", UUID: col.UUID, OwnerUUID: col.OwnerUUID, Name: &name,
		ManifestText: s.signText(c, col.ManifestText, col.TrashAt), PortableDataHash: col.PortableDataHash,
		StorageClassesDesired: col.StorageClassesDesired, StorageClassesConfirmed: []string{}, Properties: col.Properties,
		FileCount: col.FileCount, FileSizeTotal: col.FileSizeTotal, TrashAt: timeOrNull(col.TrashAt), DeleteAt: timeOrNull(col.DeleteAt),
		IsTrashed: col.Trashed(now), CreatedAt: timeOrNull(col.CreatedAt), ModifiedAt: timeOrNull(col.ModifiedAt),
		ModifiedByUserUUID: col.ModifiedByUserUUID, Version: col.Version, CurrentVersionUUID: col.UUID}
	r.Etag = strconv.FormatInt(col.Version, 36) + "-" + col.PortableDataHash[:8]
	if desc != "" {
		r.Description = &desc
	}
	if col.ReplicationDesired > 0 {
		n := col.ReplicationDesired
		r.ReplicationDesired = &n
	}
	if r.StorageClassesDesired == nil {
		r.StorageClassesDesired = []string{}
	}
	if len(r.Properties) == 0 {
		r.Properties = json.RawMessage("{}")
	}
	return r
}

// selected keeps only the members sel names (Arvados' select); nil sel
// keeps all. Names keepgate does not keep (newer SDKs select more than it
// stores) are left out rather than refused.
func selected(r record, sel []string) any {
	if sel == nil {
		return r
	}
	b, _ := json.Marshal(r)
	var all map[string]json.RawMessage
	json.Unmarshal(b, &all)
	out := map[string]json.RawMessage{"kind": all["kind"]}
	for _, k := range sel {
		if v, ok := all[k]; ok {
			out[k] = v
		}
	}
	return out
}
