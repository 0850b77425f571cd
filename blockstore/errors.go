package blockstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies an error. Every kind maps to exactly one HTTP status in
// the table below, used by servers (to answer) and clients (to classify a
// reply) alike.
type Kind int

// Error kinds. The zero value is KindInternal.
const (
	KindInternal         Kind = iota // 500: a bug or an unclassified backend failure
	KindInvalidLocator               // 400: the locator does not parse
	KindBadRequest                   // 400: anything else malformed in the request
	KindInvalidSignature             // 400: signature missing, malformed or wrong
	KindHashMismatch                 // 400: body does not hash to the locator
	KindLengthMismatch               // 400: body shorter or longer than declared
	KindNoToken                      // 401: a token is required and none was given
	KindExpiredSignature             // 401: the signature's expiry has passed
	KindForbidden                    // 403: the token may not do this
	KindNotFound                     // 404: no such block
	KindMethodNotAllowed             // 405: e.g. GET without a size hint
	KindTimeout                      // 408: the client stopped sending
	KindLengthRequired               // 411: PUT without a usable Content-Length
	KindTooLarge                     // 413: body over MaxBlockSize
	KindBadRange                     // 416: a Range outside the block
	KindUnprocessable                // 422: an upstream refused the request for a non-temporary reason
	KindCanceled                     // 499: the client went away
	KindCollision                    // 500: different bytes already stored under this hash
	KindLoop                         // 500: the request already passed through this proxy
	KindCorrupt                      // 502: stored data does not hash to its name
	KindBadGateway                   // 502: an upstream failed in a temporary way
	KindUnavailable                  // 503: backend unavailable, or too few replicas written
	KindOverloaded                   // 503 + Retry-After: a budget or limiter is spent
	KindFull                         // 507: no space left
	KindReadOnly                     // 507: the volume or node does not accept writes
	KindTooManyRequests              // 429 + Retry-After: a principal's concurrency cap is reached
	KindMisdirected                  // 421: no forwarding rule serves the host the client connected to
)

type kindInfo struct {
	status int
	text   string // default message sent to clients
}

// kindTable is THE mapping between kinds and HTTP statuses.
var kindTable = map[Kind]kindInfo{
	KindInternal:         {http.StatusInternalServerError, "internal error"},
	KindInvalidLocator:   {http.StatusBadRequest, "invalid locator"},
	KindBadRequest:       {http.StatusBadRequest, "bad request"},
	KindInvalidSignature: {http.StatusBadRequest, "invalid signature"},
	KindHashMismatch:     {http.StatusBadRequest, "content hash did not match the locator"},
	KindLengthMismatch:   {http.StatusBadRequest, "content length did not match the declared size"},
	KindNoToken:          {http.StatusUnauthorized, "no token provided in Authorization header"},
	KindExpiredSignature: {http.StatusUnauthorized, "expired signature"},
	KindForbidden:        {http.StatusForbidden, "Forbidden"},
	KindNotFound:         {http.StatusNotFound, "block not found"},
	KindMethodNotAllowed: {http.StatusMethodNotAllowed, "method not allowed"},
	KindTimeout:          {http.StatusRequestTimeout, "request body timed out"},
	KindLengthRequired:   {http.StatusLengthRequired, "Length Required"},
	KindTooLarge:         {http.StatusRequestEntityTooLarge, "request entity too large: blocks are at most 67108864 bytes"},
	KindBadRange:         {http.StatusRequestedRangeNotSatisfiable, "requested range not satisfiable"},
	KindUnprocessable:    {http.StatusUnprocessableEntity, "upstream refused the request"},
	KindCanceled:         {499, ""},
	KindCollision:        {http.StatusInternalServerError, "hash collision"},
	KindLoop:             {http.StatusInternalServerError, "loop detected"},
	KindCorrupt:          {http.StatusBadGateway, "checksum mismatch in stored data"},
	KindBadGateway:       {http.StatusBadGateway, "upstream failure"},
	KindUnavailable:      {http.StatusServiceUnavailable, "volume unavailable"},
	KindOverloaded:       {http.StatusServiceUnavailable, "server busy, retry later"},
	KindFull:             {http.StatusInsufficientStorage, "insufficient storage"},
	KindReadOnly:         {http.StatusInsufficientStorage, "insufficient storage: no writable volume"},
	KindTooManyRequests:  {http.StatusTooManyRequests, "too many requests in flight for this access key, retry later"},
	KindMisdirected:      {http.StatusMisdirectedRequest, "misdirected request: this server has no rule for that host name"},
}

// Status is the HTTP status for k.
func (k Kind) Status() int {
	if i, ok := kindTable[k]; ok {
		return i.status
	}
	return http.StatusInternalServerError
}

// RetryAfter reports whether answers of kind k carry Retry-After (the
// refusal is temporary and the client should come back shortly).
func (k Kind) RetryAfter() bool { return k == KindOverloaded || k == KindTooManyRequests }

// Text is the default client-facing message for k.
func (k Kind) Text() string { return kindTable[k].text }

func (k Kind) String() string {
	names := [...]string{"internal", "invalid-locator", "bad-request", "invalid-signature",
		"hash-mismatch", "length-mismatch", "no-token", "expired-signature", "forbidden",
		"not-found", "method-not-allowed", "timeout", "length-required", "too-large", "bad-range",
		"unprocessable", "canceled", "collision", "loop", "corrupt", "bad-gateway",
		"unavailable", "overloaded", "full", "read-only", "too-many-requests", "misdirected"}
	if int(k) >= 0 && int(k) < len(names) {
		return names[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// KindForStatus classifies an HTTP status received from a Keep server.
func KindForStatus(status int) Kind {
	switch status {
	case http.StatusBadRequest:
		return KindBadRequest
	case http.StatusUnauthorized:
		return KindNoToken
	case http.StatusForbidden:
		return KindForbidden
	case http.StatusNotFound, http.StatusGone:
		return KindNotFound
	case http.StatusMethodNotAllowed:
		return KindMethodNotAllowed
	case http.StatusRequestTimeout:
		return KindTimeout
	case http.StatusLengthRequired:
		return KindLengthRequired
	case http.StatusRequestEntityTooLarge:
		return KindTooLarge
	case http.StatusRequestedRangeNotSatisfiable:
		return KindBadRange
	case http.StatusUnprocessableEntity:
		return KindUnprocessable
	case 499:
		return KindCanceled
	case http.StatusTooManyRequests:
		return KindOverloaded
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return KindBadGateway
	case http.StatusServiceUnavailable:
		return KindUnavailable
	case http.StatusInsufficientStorage:
		return KindFull
	}
	if status >= 500 {
		return KindInternal
	}
	return KindBadRequest
}

// Error is the error type used throughout keepgate.
type Error struct {
	Op   string // what was being done, e.g. "dirvolume.Put"
	Kind Kind
	Msg  string // client-facing message; Kind.Text() when empty
	Err  error  // underlying cause, never sent to clients unless Msg is empty and Kind is internal
}

func (e *Error) Error() string {
	msg := e.Msg
	if msg == "" {
		msg = e.Kind.Text()
	}
	s := msg
	if e.Op != "" {
		s = e.Op + ": " + s
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Message is the one-line text for a client: Msg, else the kind's text.
func (e *Error) Message() string {
	if e.Msg != "" {
		return e.Msg
	}
	return e.Kind.Text()
}

// E builds an *Error. Arguments may be, in any order: a string (Op, the first
// one, then Msg), a Kind, and an error (the cause).
func E(args ...any) error {
	e := &Error{}
	ops := 0
	for _, a := range args {
		switch v := a.(type) {
		case Kind:
			e.Kind = v
		case string:
			if ops == 0 {
				e.Op = v
			} else {
				e.Msg = v
			}
			ops++
		case error:
			e.Err = v
			if e.Kind == KindInternal {
				e.Kind = KindOf(v)
			}
		}
	}
	return e
}

// Errorf builds an *Error of kind k with a formatted client-facing message.
func Errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// KindOf finds the kind of err: the outermost *Error with a non-internal
// kind, context errors as Canceled/Timeout, else Internal.
func KindOf(err error) Kind {
	if err == nil {
		return KindInternal
	}
	for e := err; e != nil; {
		var be *Error
		if !errors.As(e, &be) {
			break
		}
		if be.Kind != KindInternal {
			return be.Kind
		}
		e = be.Err
	}
	if errors.Is(err, context.Canceled) {
		return KindCanceled
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return KindTimeout
	}
	return KindInternal
}

// Is reports whether err is of kind k.
func Is(err error, k Kind) bool { return err != nil && KindOf(err) == k }

// Message returns the client-facing text for err: the message of the
// outermost *Error of err's kind, else the kind's default text.
func Message(err error) string {
	k := KindOf(err)
	for e := err; e != nil; {
		var be *Error
		if !errors.As(e, &be) {
			break
		}
		if be.Kind == k && be.Msg != "" {
			return be.Msg
		}
		e = be.Err
	}
	return k.Text()
}

// StatusOf is the HTTP status for err.
func StatusOf(err error) int { return KindOf(err).Status() }
