package keepclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
)

// attemptError carries one attempt's outcome to the retry loop.
type attemptError struct {
	err   error
	retry bool
	after time.Duration // Retry-After, if the proxy sent one
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

func permanent(err error) error { return &attemptError{err: err} }
func transient(err error) error { return &attemptError{err: err, retry: true} }

// hintBackOff is exponential back-off that waits at least as long as the
// proxy's last Retry-After (within the ceiling).
type hintBackOff struct {
	exp  *backoff.ExponentialBackOff
	hint *time.Duration
	max  time.Duration
}

func (b *hintBackOff) Reset() { b.exp.Reset() }
func (b *hintBackOff) NextBackOff() time.Duration {
	d := b.exp.NextBackOff()
	if *b.hint > d {
		d = min(*b.hint, b.max)
	}
	return d
}

// retry runs attempt until it succeeds, fails permanently, or the retries
// are spent. Each attempt gets its own timeout. The error returned is the
// last attempt's, one line, noting how many attempts were made.
func retry[T any](ctx context.Context, op opCtx, attempt func(context.Context) (T, error)) (T, error) {
	c := op.c
	var hint time.Duration
	bo := &hintBackOff{
		exp: &backoff.ExponentialBackOff{
			InitialInterval:     c.opt.RetryDelay,
			RandomizationFactor: 0.5,
			Multiplier:          2,
			MaxInterval:         c.opt.MaxRetryDelay,
		},
		hint: &hint,
		max:  c.opt.MaxRetryDelay,
	}
	attempts := 0
	res, err := backoff.Retry(ctx, func() (T, error) {
		attempts++
		actx, cancel := context.WithTimeout(ctx, c.opt.AttemptTimeout)
		defer cancel()
		v, err := attempt(actx)
		if err == nil {
			return v, nil
		}
		if cerr := context.Cause(ctx); cerr != nil {
			return v, backoff.Permanent(cerr)
		}
		var ae *attemptError
		if !errors.As(err, &ae) {
			return v, backoff.Permanent(err)
		}
		if !ae.retry {
			return v, backoff.Permanent(ae.err)
		}
		hint = ae.after
		return v, ae.err
	},
		backoff.WithBackOff(bo),
		backoff.WithMaxTries(uint(c.retries+1)),
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, d time.Duration) {
			if c.opt.OnRetry != nil {
				c.opt.OnRetry(op.name, err, d)
			}
		}))
	if err != nil && attempts > 1 && ctx.Err() == nil {
		var be *blockstore.Error
		if errors.As(err, &be) {
			return res, &blockstore.Error{Kind: be.Kind, Msg: fmt.Sprintf("%s (gave up after %d attempts)", blockstore.Message(err), attempts), Err: be.Err}
		}
	}
	return res, err
}

// statusContext is what statusError needs to word its message.
type statusContext struct {
	size     int64               // PUT body size
	replicas int                 // PUT desired replicas
	loc      *blockstore.Locator // GET/HEAD locator
}

// statusError turns a non-2xx answer into a one-line error saying what to
// do, classified with blockstore.KindForStatus.
func statusError(method string, resp *http.Response, sc statusContext) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	said := firstLine(string(raw))
	code := resp.StatusCode
	kind := blockstore.KindForStatus(code)
	put := method == http.MethodPut
	block := ""
	if sc.loc != nil {
		block = sc.loc.Hash.String()
		if sc.loc.HasSize() {
			block += "+" + strconv.FormatInt(sc.loc.Size, 10)
		}
	}
	var text string
	switch {
	case code == http.StatusUnauthorized && sc.loc != nil && signatureExpired(*sc.loc):
		kind = blockstore.KindExpiredSignature
		text = expiredText(*sc.loc)
	case code == http.StatusUnauthorized:
		text = "the proxy wants a token — set KEEP_TOKEN"
	case code == http.StatusForbidden && put:
		text = "the proxy refused the token — check KEEP_TOKEN (it must be allowed to write)"
	case code == http.StatusForbidden:
		text = "the proxy refused the token — check KEEP_TOKEN"
	case code == http.StatusNotFound:
		text = fmt.Sprintf("block %s not found on any store", block)
	case code == http.StatusRequestEntityTooLarge:
		text = fmt.Sprintf("block of %d bytes refused as too large — blocks may be at most 64 MiB, and a web server in front of the proxy must allow that much (nginx: client_max_body_size 64m)", sc.size)
	case code == http.StatusUnprocessableEntity && sc.loc != nil && signatureExpired(*sc.loc):
		kind = blockstore.KindExpiredSignature
		text = expiredText(*sc.loc)
	case code == http.StatusUnprocessableEntity:
		text = fmt.Sprintf("the stores refused locator %s: its signature is invalid, expired or made for another token — get a fresh locator with this token", block)
	case code == http.StatusServiceUnavailable && put && resp.Header.Get(keepwire.ReplicasStored) != "":
		text = fmt.Sprintf("only %s of %d replicas could be stored — ask for fewer (--replicas) or check the stores", resp.Header.Get(keepwire.ReplicasStored), sc.replicas)
	case code == http.StatusInsufficientStorage:
		text = "the stores are full or read-only — free space or add writable volumes"
	case (code == http.StatusBadGateway || code == http.StatusGatewayTimeout) && put:
		text = "the proxy could not write the block to its stores"
	case code == http.StatusBadGateway || code == http.StatusGatewayTimeout:
		text = "the proxy could not read the block from any store — stores may be down, or every copy damaged"
	case code == http.StatusLengthRequired || code == http.StatusBadRequest:
		text = "the proxy rejected the request"
	default:
		text = http.StatusText(code)
		if text == "" {
			text = "unexpected status"
		}
	}
	msg := fmt.Sprintf("%d: %s", code, text)
	if said != "" && code != http.StatusNotFound {
		msg += fmt.Sprintf(" (proxy said: %s)", said)
	}
	ae := &attemptError{err: &blockstore.Error{Kind: kind, Msg: msg}, retry: keepwire.RetryableStatus(code)}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n > 0 {
			ae.after = time.Duration(n) * time.Second
		}
	}
	return ae
}

func expiredText(loc blockstore.Locator) string {
	exp, _ := signatureExpiry(loc)
	return fmt.Sprintf("expired signature (the locator's signature expired %s) — get a fresh locator", exp.UTC().Format("2006-01-02 15:04 UTC"))
}

// SignatureExpiry reads the expiry time of an +A signature hint.
func SignatureExpiry(loc blockstore.Locator) (time.Time, bool) { return signatureExpiry(loc) }

func signatureExpiry(loc blockstore.Locator) (time.Time, bool) {
	a, ok := loc.Hint('A')
	if !ok {
		return time.Time{}, false
	}
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(a[at+1:], 16, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

func signatureExpired(loc blockstore.Locator) bool {
	t, ok := signatureExpiry(loc)
	return ok && time.Now().After(t)
}

// networkError classifies a transport failure: an untrusted certificate is
// final, anything else (refused, reset, timeout) is worth retrying.
func (c *Client) networkError(err error) error {
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	var (
		unknownCA *x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalid) || errors.As(err, &verify) {
		return permanent(&blockstore.Error{Kind: blockstore.KindUnavailable,
			Msg: fmt.Sprintf("the TLS certificate of %s is not trusted (%v) — fix the certificate or its CA; --insecure is only for self-signed development certificates", c.base, inner)})
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return transient(&blockstore.Error{Kind: blockstore.KindTimeout, Msg: fmt.Sprintf("no answer from the proxy at %s within %s", c.base, c.opt.AttemptTimeout)})
	}
	return transient(&blockstore.Error{Kind: blockstore.KindUnavailable, Msg: fmt.Sprintf("proxy unreachable at %s: %v", c.base, inner)})
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return trunc(s)
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
