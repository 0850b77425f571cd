package keepwire

import (
	"testing"

	"github.com/keepgate/keepgate/blockstore"
)

func TestParseRange(t *testing.T) {
	ok := []struct {
		in       string
		from, to int64
	}{
		{"bytes=0-", 0, -1}, {"bytes=10-20", 10, 20}, {" bytes=5-5", 5, 5}, {"bytes=-100", -100, -1},
	}
	for _, c := range ok {
		r, err := ParseRange(c.in)
		if err != nil || r.From != c.from || r.To != c.to {
			t.Errorf("%q: %+v %v", c.in, r, err)
		}
	}
	for _, in := range []string{"bytes=", "bytes=5", "bytes=9-3", "bytes=-0", "bytes=a-b", "items=0-1", "bytes=0-1,3-4", "bytes=-5-"} {
		if _, err := ParseRange(in); !blockstore.Is(err, blockstore.KindBadRange) {
			t.Errorf("%q: want BadRange, got %v", in, err)
		}
	}
}

func TestConfirmedRoundTrip(t *testing.T) {
	m := ParseConfirmed(" default=2, archive=1,default=1")
	if m["default"] != 3 || m["archive"] != 1 || len(m) != 2 {
		t.Fatalf("parse: %v", m)
	}
	if got := FormatConfirmed(m); got != "archive=1, default=3" {
		t.Fatalf("format: %q", got)
	}
	if len(ParseConfirmed("default")) != 0 || len(ParseConfirmed("default=-1")) != 0 {
		t.Fatal("malformed values must yield an empty map")
	}
}

func TestReplicaHeaders(t *testing.T) {
	for in, want := range map[string]int{"": 2, "0": 2, "-1": 2, "x": 2, "3": 3, " 1 ": 1} {
		if got := ParseDesiredReplicas(in, 2); got != want {
			t.Errorf("desired %q: %d, want %d", in, got, want)
		}
	}
	if n, ok := ParseReplicasStored("2"); !ok || n != 2 {
		t.Error("stored 2")
	}
	for _, in := range []string{"", "x", "-1"} {
		if _, ok := ParseReplicasStored(in); ok {
			t.Errorf("stored %q accepted", in)
		}
	}
}

func TestByteRangeResolve(t *testing.T) {
	for _, c := range []struct {
		r          ByteRange
		size       int64
		off, n     int64
		satisfying bool
	}{
		{ByteRange{0, 9}, 100, 0, 10, true},
		{ByteRange{90, -1}, 100, 90, 10, true},
		{ByteRange{500, 99999999}, 1000, 500, 500, true},
		{ByteRange{0, 99}, 100, 0, 100, true},
		{ByteRange{99, 99}, 100, 99, 1, true},
		{ByteRange{-5, -1}, 100, 95, 5, true},
		{ByteRange{-500, -1}, 100, 0, 100, true},
		{ByteRange{-5, -1}, 0, 0, 0, true},
		{ByteRange{100, -1}, 100, 0, 0, false},
		{ByteRange{200, 201}, 100, 0, 0, false},
		{ByteRange{0, -1}, 0, 0, 0, false},
	} {
		off, n, err := c.r.Resolve(c.size)
		if c.satisfying != (err == nil) || off != c.off || n != c.n {
			t.Errorf("%+v of %d: %d %d %v", c.r, c.size, off, n, err)
		}
		if err != nil && !blockstore.Is(err, blockstore.KindBadRange) {
			t.Errorf("%+v of %d: want BadRange, got %v", c.r, c.size, err)
		}
	}
	// Resolve after ParseRange, as a server does.
	r, err := ParseRange("bytes=-5")
	if err != nil {
		t.Fatal(err)
	}
	if off, n, err := r.Resolve(100); off != 95 || n != 5 || err != nil {
		t.Errorf("bytes=-5 of 100: %d %d %v", off, n, err)
	}
}

func TestIsZeroSuffix(t *testing.T) {
	for _, in := range []string{"bytes=-0", "bytes=-00", " bytes=-0", "bytes=-+0", "bytes=--0"} {
		if !IsZeroSuffix(in) {
			t.Errorf("%q: want a zero suffix", in)
		}
		if _, err := ParseRange(in); err == nil {
			t.Errorf("%q: ParseRange accepted it", in)
		}
	}
	for _, in := range []string{"", "bytes=-", "bytes=-1", "bytes=0-0", "bytes=0-", "items=-0", "bytes=-0,-0", "bytes=-0-", "bytes=a-0"} {
		if IsZeroSuffix(in) {
			t.Errorf("%q: not a zero suffix", in)
		}
	}
}

func TestRetryableStatus(t *testing.T) {
	for code, want := range map[int]bool{408: true, 429: true, 500: true, 502: true, 503: true, 504: true,
		507: false, 400: false, 401: false, 403: false, 404: false, 413: false, 416: false, 422: false} {
		if got := RetryableStatus(code); got != want {
			t.Errorf("RetryableStatus(%d) = %v, want %v", code, got, want)
		}
	}
}
