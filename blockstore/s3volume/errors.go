package s3volume

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/minio/minio-go/v7"

	"github.com/keepgate/keepgate/blockstore"
)

// classify is the one place where S3 and network errors get a kind, and
// where it is decided whether a request failing with err may succeed when
// sent again (retry). Errors that are already *blockstore.Error (from the
// verifying reader) keep their kind and are not retried.
func classify(err error) (kind blockstore.Kind, retry bool) {
	var be *blockstore.Error
	switch {
	case err == nil:
		return blockstore.KindInternal, false
	case errors.As(err, &be):
		return blockstore.KindOf(err), false
	case errors.Is(err, context.Canceled):
		return blockstore.KindCanceled, false
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return classifyResponse(er.Code, er.StatusCode)
	}
	// Transport failures: the request may not have reached the server, or
	// its answer was lost. All requests the volume retries are idempotent.
	var (
		ue   x509.UnknownAuthorityError
		he   x509.HostnameError
		ce   *tls.CertificateVerificationError
		rhe  tls.RecordHeaderError
		ne   net.Error
		dnse *net.DNSError
	)
	switch {
	case errors.As(err, &ue), errors.As(err, &he), errors.As(err, &ce), errors.As(err, &rhe):
		return blockstore.KindUnavailable, false // TLS misconfiguration: retrying will not help
	case errors.Is(err, context.DeadlineExceeded):
		return blockstore.KindUnavailable, true // an HTTP client timeout, not the caller's deadline (see call)
	case errors.As(err, &dnse):
		return blockstore.KindUnavailable, !dnse.IsNotFound
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.ETIMEDOUT),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return blockstore.KindUnavailable, true
	case errors.As(err, &ne):
		return blockstore.KindUnavailable, true // timeouts and other dial/read/write failures
	}
	return blockstore.KindInternal, false
}

// classifyResponse classifies an error answer from the S3 server by its
// code, else by its HTTP status.
func classifyResponse(code string, status int) (blockstore.Kind, bool) {
	switch code {
	case "NoSuchKey", "NoSuchVersion", "NoSuchUpload":
		return blockstore.KindNotFound, false
	case "NoSuchBucket":
		// The volume's bucket is gone: not a missing block but a broken
		// volume (see hint).
		return blockstore.KindUnavailable, false
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
		"InvalidToken", "AccountProblem", "InvalidSecurity", "NotSignedUp",
		"AuthorizationHeaderMalformed", "InvalidRegion", "PermanentRedirect":
		return blockstore.KindForbidden, false
	case "ExpiredToken", "ExpiredTokenException":
		return blockstore.KindForbidden, true // temporary credentials are refreshed on the next request
	case "BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch":
		return blockstore.KindHashMismatch, false
	case "IncompleteBody":
		return blockstore.KindLengthMismatch, false
	case "InvalidRange":
		return blockstore.KindBadRange, false
	case "RequestTimeTooSkewed":
		return blockstore.KindUnavailable, false // this machine's clock is off: retrying will not help
	case "EntityTooLarge":
		return blockstore.KindTooLarge, false
	case "XMinioStorageFull", "StorageFull", "QuotaExceeded", "XMinioAdminBucketQuotaExceeded":
		return blockstore.KindFull, false
	case "SlowDown", "SlowDownRead", "SlowDownWrite", "ServiceUnavailable", "InternalError",
		"RequestTimeout", "Throttling", "ThrottlingException",
		"RequestLimitExceeded", "RequestThrottled", "TooManyRequests", "OperationAborted",
		"XMinioServerNotInitialized", "XMinioReadQuorum", "XMinioWriteQuorum":
		return blockstore.KindUnavailable, true
	}
	switch {
	case status == http.StatusNotFound:
		return blockstore.KindNotFound, false
	case status == http.StatusForbidden || status == http.StatusUnauthorized:
		return blockstore.KindForbidden, false
	case status == http.StatusRequestedRangeNotSatisfiable:
		return blockstore.KindBadRange, false
	case status == http.StatusInsufficientStorage:
		return blockstore.KindFull, false
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500:
		return blockstore.KindUnavailable, true
	}
	return blockstore.KindInternal, false
}

// hint is the one-line message for an S3 failure of the given kind: what
// happened and what to check. It names the endpoint and bucket, never the
// credentials.
func (v *Volume) hint(kind blockstore.Kind, err error) string {
	var er minio.ErrorResponse
	code := ""
	if errors.As(err, &er) {
		code = er.Code
	}
	switch {
	case code == "NoSuchBucket":
		return fmt.Sprintf("S3 volume %s: bucket %q does not exist: create it or fix the volume's Bucket", v.id, v.bucket)
	case code == "RequestTimeTooSkewed":
		return fmt.Sprintf("S3 volume %s: the server says this machine's clock is off: synchronize it (NTP)", v.id)
	case code == "AuthorizationHeaderMalformed" || code == "InvalidRegion" || code == "PermanentRedirect":
		return fmt.Sprintf("S3 volume %s: the server expects another region or endpoint for bucket %q (%s): fix the volume's Region or Endpoint", v.id, v.bucket, code)
	}
	switch kind {
	case blockstore.KindNotFound, blockstore.KindCanceled, blockstore.KindTimeout:
		return "" // the kind's own text says it all
	case blockstore.KindForbidden:
		return fmt.Sprintf("S3 volume %s: access denied (%s): check the volume's AccessKey/SecretKey and the bucket policy", v.id, codeOr(code, err))
	case blockstore.KindHashMismatch:
		return "content hash did not match the locator: the S3 server rejected the body (Content-MD5 mismatch)"
	case blockstore.KindFull:
		return fmt.Sprintf("S3 volume %s is full (%s): free some space, raise the quota or add a volume", v.id, codeOr(code, err))
	case blockstore.KindUnavailable:
		return fmt.Sprintf("S3 volume %s is unavailable (%s): check that the server is running and reachable", v.id, codeOr(code, err))
	}
	return fmt.Sprintf("S3 volume %s: request failed (%s)", v.id, codeOr(code, err))
}

func codeOr(code string, err error) string {
	if code != "" {
		return code
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &ne):
		return "network error"
	}
	return "unexpected error"
}
