package s3volume

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/blockstore"
)

// Defaults for the zero values of Config.
const (
	DefaultRegion      = "us-east-1"
	DefaultConcurrency = 16
	DefaultRaceWindow  = 24 * time.Hour
	DefaultRetries     = 4
)

const (
	recentDir = "recent/" // mtime markers, below the prefix
	trashDir  = "trash/"  // trashed copies, below the prefix
	sumsDir   = "sums/"   // chunk checksums, below the prefix (after "f": never paged through by Index)

	// listPageSize is the number of keys asked for per listing request
	// (the S3 maximum, and Arvados' IndexPageSize default).
	listPageSize = 1000
	// backoffBase is the first retry delay; each retry doubles it, up to
	// backoffCap, with jitter.
	backoffBase = 100 * time.Millisecond
	backoffCap  = 5 * time.Second
	// maxClockSkew is how far in the past a server-side copy's
	// LastModified may be before Trash refuses to trust it (see trash.go).
	maxClockSkew = 10 * time.Minute
	// unknownSizePart is the part size of the multipart upload used when a
	// Put's size is not known: the S3 minimum, and the only buffer a Put
	// ever holds.
	unknownSizePart = 5 << 20
	// emptyTrashWorkers bounds the concurrent per-item work of EmptyTrash
	// (Arvados' BlobDeleteConcurrency default).
	emptyTrashWorkers = 4
)

// Config configures an S3 volume. Only Endpoint and Bucket are required.
type Config struct {
	// Endpoint is the server's host[:port], without a scheme, e.g.
	// "127.0.0.1:9000" or "s3.amazonaws.com".
	Endpoint string
	// Region is the bucket's region, used for signing; "us-east-1" when
	// empty. It is never looked up from the server.
	Region string
	// Bucket must exist; New checks it.
	Bucket string
	// Prefix is an optional key prefix under which the volume keeps all its
	// objects (blocks, recent/ markers and trash/ copies), so that one
	// bucket can hold several volumes or other data. A leading slash is
	// removed and a trailing slash added: "keep" becomes "keep/".
	Prefix string
	// AccessKey and SecretKey are the credentials, read by the caller from
	// files or the environment; they are never logged. Both empty means an
	// IAM role (EC2 instance profile, ECS task role or web identity) when
	// one is available, else anonymous requests.
	AccessKey string
	SecretKey string
	// UseTLS selects https.
	UseTLS bool
	// PathStyle selects path-style requests (http://endpoint/bucket/key),
	// which MinIO, Ceph RGW and most self-hosted servers want. When false,
	// requests are virtual-host style (http://bucket.endpoint/key), which
	// AWS prefers; the bucket name must then be a valid DNS label and
	// resolve.
	PathStyle bool
	// Concurrency is the maximum number of S3 requests in flight for this
	// volume (16 when 0). A Get holds its slot until its reader is closed.
	Concurrency int
	// Policy says how old a block must be before Trash acts and how long
	// trash is kept.
	Policy blockstore.TrashPolicy
	// RaceWindow (24h when 0): Trash refuses to overwrite a trash copy that
	// EmptyTrash may delete within this window (see the package doc).
	RaceWindow time.Duration
	// Logger receives warnings and notable events; nil discards them.
	Logger *slog.Logger
	// Registerer receives the volume's metrics; nil keeps them unexported.
	Registerer prometheus.Registerer
	// Transport replaces minio-go's default HTTP transport (tests).
	Transport http.RoundTripper
	// Retries is how often a request failing in a temporary way (throttled,
	// 5xx, timeout, connection refused) is retried, with exponential
	// back-off and jitter from about 100ms: 4 when 0, none when negative.
	Retries int
}

// Volume is a blockstore.Volume in an S3 bucket. It is safe for concurrent
// use. Create it with New.
type Volume struct {
	core     *minio.Core
	bucket   string
	prefix   string
	endpoint string
	id       string
	policy   blockstore.TrashPolicy
	race     time.Duration
	retries  int
	backoff  time.Duration // first retry delay; tests shorten it
	pageSize int           // keys per listing request; tests shorten it
	// signPayload makes uploads use minio-go's default payload signing
	// (per-chunk SigV4 over plain HTTP) instead of UNSIGNED-PAYLOAD; only
	// benchmarks set it.
	signPayload bool
	sem         chan struct{}
	log         *slog.Logger
	metrics     volumeMetrics
	now         func() time.Time

	// locks serialize, within this process, the operations on one hash
	// that must not interleave: Put and Touch (shared) against Trash,
	// Untrash and EmptyTrash's handling of that hash (exclusive). Striped
	// by the first byte of the hash.
	locks [256]sync.RWMutex
}

var _ blockstore.Volume = (*Volume)(nil)

// New checks cfg, connects to the server and checks that the bucket exists
// (with the volume's retries). Errors say which setting to fix.
func New(ctx context.Context, cfg Config) (*Volume, error) {
	const op = "s3volume.New"
	bad := func(format string, args ...any) error {
		return blockstore.E(op, blockstore.KindBadRequest, fmt.Sprintf(format, args...))
	}
	switch {
	case cfg.Endpoint == "":
		return nil, bad("S3 volume: Endpoint is empty: set it to the server's host[:port], e.g. s3.amazonaws.com")
	case strings.Contains(cfg.Endpoint, "://") || strings.Contains(cfg.Endpoint, "/"):
		return nil, bad("S3 volume: Endpoint %q must be host[:port] without scheme or path: use UseTLS to choose https", cfg.Endpoint)
	case cfg.Bucket == "":
		return nil, bad("S3 volume on %s: Bucket is empty: set it to an existing bucket", cfg.Endpoint)
	case (cfg.AccessKey == "") != (cfg.SecretKey == ""):
		return nil, bad("S3 volume on %s: set both AccessKey and SecretKey, or neither to use an IAM role", cfg.Endpoint)
	case cfg.Concurrency < 0:
		return nil, bad("S3 volume on %s: Concurrency %d is negative", cfg.Endpoint, cfg.Concurrency)
	case cfg.RaceWindow < 0:
		return nil, bad("S3 volume on %s: RaceWindow %v is negative", cfg.Endpoint, cfg.RaceWindow)
	case cfg.Policy.MinAge < 0 || cfg.Policy.Lifetime < 0:
		return nil, bad("S3 volume on %s: trash MinAge and Lifetime must not be negative", cfg.Endpoint)
	}
	region := cfg.Region
	if region == "" {
		region = DefaultRegion
	}
	prefix := strings.TrimLeft(cfg.Prefix, "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	var creds *credentials.Credentials
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{&credentials.IAM{}})
	}
	lookup := minio.BucketLookupDNS
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	core, err := minio.NewCore(cfg.Endpoint, &minio.Options{
		Creds:        creds,
		Secure:       cfg.UseTLS,
		Transport:    cfg.Transport,
		Region:       region,
		BucketLookup: lookup,
		MaxRetries:   1, // the volume retries, with its own budget and metrics
	})
	if err != nil {
		return nil, bad("S3 volume: cannot set up a client for endpoint %q: %v", cfg.Endpoint, err)
	}

	id := "s3://" + cfg.Endpoint + "/" + cfg.Bucket
	if prefix != "" {
		id += "/" + prefix
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, blockstore.E(op, fmt.Sprintf("S3 volume %s: cannot register metrics", id), err)
	}
	v := &Volume{
		core:     core,
		bucket:   cfg.Bucket,
		prefix:   prefix,
		endpoint: cfg.Endpoint,
		id:       id,
		policy:   cfg.Policy,
		race:     cfg.RaceWindow,
		retries:  cfg.Retries,
		backoff:  backoffBase,
		pageSize: listPageSize,
		log:      logger.With("volume", id),
		metrics:  m.forVolume(id),
		now:      time.Now,
	}
	if v.race == 0 {
		v.race = DefaultRaceWindow
	}
	switch {
	case v.retries == 0:
		v.retries = DefaultRetries
	case v.retries < 0:
		v.retries = 0
	}
	n := cfg.Concurrency
	if n == 0 {
		n = DefaultConcurrency
	}
	v.sem = make(chan struct{}, n)

	var exists bool
	err = v.call(ctx, opHeadBucket, nil, func(ctx context.Context) (err error) {
		exists, err = v.core.BucketExists(ctx, v.bucket)
		return err
	})
	if err != nil {
		return nil, v.fail(op, err)
	}
	if !exists {
		return nil, blockstore.E(op, blockstore.KindUnavailable, fmt.Sprintf(
			"S3 volume %s: bucket %q does not exist: create it (e.g. `mc mb`, `aws s3 mb`) or fix the volume's Bucket", id, v.bucket))
	}
	return v, nil
}

// DeviceID implements blockstore.Volume: "s3://" + Endpoint + "/" + Bucket,
// followed by "/" + Prefix (normalized, so ending in "/") when set.
func (v *Volume) DeviceID() string { return v.id }

// dataKey, markerKey and trashKey are the three objects a block may have.
func (v *Volume) dataKey(h blockstore.Hash) string   { return v.prefix + h.String() }
func (v *Volume) markerKey(h blockstore.Hash) string { return v.prefix + recentDir + h.String() }
func (v *Volume) trashKey(h blockstore.Hash) string  { return v.prefix + trashDir + h.String() }
func (v *Volume) sumsKey(h blockstore.Hash) string   { return v.prefix + sumsDir + h.String() }

// lock returns the lock stripe of h.
func (v *Volume) lock(h blockstore.Hash) *sync.RWMutex { return &v.locks[h[0]] }

// md5Base64 is h as a Content-MD5 header value: h is the block's MD5.
func md5Base64(h blockstore.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }

// emptyMD5 is the Content-MD5 of a zero-length marker.
var emptyMD5 = func() string { s := md5.Sum(nil); return base64.StdEncoding.EncodeToString(s[:]) }()

// mtimeOf reduces an S3 timestamp to what the volume reports: whole
// seconds, UTC. Listings give milliseconds and HEAD whole seconds; Stat and
// Index must agree exactly because the trash list quotes Index's mtime and
// the node compares it with Stat's.
func mtimeOf(t time.Time) time.Time { return t.Truncate(time.Second).UTC() }

func notFound(op string) error { return blockstore.E(op, blockstore.KindNotFound) }
