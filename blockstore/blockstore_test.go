package blockstore

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestParseLocator(t *testing.T) {
	const h = "acbd18db4cc2f85cedef654fccc4a4d8"
	sig := "+A89118b78732c33104a4d6231e8b5a5fa1e4301e3@7fffffff"
	good := []struct {
		in, canon string
		size      int64
		hints     int
	}{
		{h, h, -1, 0},
		{h + "+3", h + "+3", 3, 0},
		{h + "+3" + sig, h + "+3" + sig, 3, 1},
		{h + sig, h + sig, -1, 1},
		{h + "+3+Zfoo+K@xyzzy", h + "+3+Zfoo+K@xyzzy", 3, 2},
		{h + "+0", h + "+0", 0, 0},
		{h + "+Abcdef", h + "+Abcdef", -1, 1},
		{h + "+3+Zé", h + "+3+Zé", 3, 1}, // hint bodies are not validated by keepstore
	}
	for _, c := range good {
		loc, err := ParseLocator(c.in)
		if err != nil {
			t.Fatalf("ParseLocator(%q): %v", c.in, err)
		}
		if loc.String() != c.canon || loc.Size != c.size || len(loc.Hints) != c.hints {
			t.Errorf("ParseLocator(%q) = %q size %d hints %v", c.in, loc.String(), loc.Size, loc.Hints)
		}
	}
	bad := []string{"", "acbd", strings.ToUpper(h), h[:31] + "g", h + "+", "+" + h, h + "++3", h + "+3+", h + "+Abcdef+1234",
		h + "x", h + "+3+4", "é" + h[2:], h + "+99999999999999999999999"}
	for _, in := range bad {
		if _, err := ParseLocator(in); !Is(err, KindInvalidLocator) {
			t.Errorf("ParseLocator(%q): want invalid locator, got %v", in, err)
		} else if StatusOf(err) != 400 {
			t.Errorf("invalid locator status %d", StatusOf(err))
		}
	}
}

func FuzzParseLocator(f *testing.F) {
	for _, s := range []string{"acbd18db4cc2f85cedef654fccc4a4d8+3", "acbd18db4cc2f85cedef654fccc4a4d8+3+A89118b78732c33104a4d6231e8b5a5fa1e4301e3@7fffffff", "x", "", "acbd18db4cc2f85cedef654fccc4a4d8++"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		loc, err := ParseLocator(s)
		if err != nil {
			return
		}
		out := loc.String()
		again, err := ParseLocator(out)
		if err != nil {
			t.Fatalf("canonical %q of %q does not parse: %v", out, s, err)
		}
		if again.String() != out {
			t.Fatalf("round trip: %q -> %q -> %q", s, out, again.String())
		}
		if !strings.HasPrefix(s, loc.Hash.String()) {
			t.Fatalf("hash %s not a prefix of %q", loc.Hash, s)
		}
	})
}

const knownKey = "13u9fkuccnboeewr0ne3mvapk28epf68a3bhj9q8sb4l6e4e5mkk" +
	"p6nhj2mmpscgu1zze5h5enydxfe3j215024u16ij4hjaiqs5u4pzsl3nczmaoxnc" +
	"ljkm4875xqn4xv058koz3vkptmzhyheiy6wzevzjmdvxhvcqsvr5abhl15c2d4o4" +
	"jhl0s91lojy1mtrzqqvprqcverls0xvy9vai9t1l1lvvazpuadafm71jl4mrwq2y" +
	"gokee3eamvjy8qq1fvy238838enjmy5wzy2md7yvsitp5vztft6j4q866efym7e6" +
	"vu5wm9fpnwjyxfldw3vbo01mgjs75rgo7qioh8z8ij7jpyp8508okhgbbex3ceei" +
	"786u5rw2a9gx743dj3fgq2irk"

func TestSignatureVectors(t *testing.T) {
	now := func() time.Time { return time.Unix(0x60000000, 0) }
	cases := []struct{ key, token, loc, exp, want string }{
		{knownKey, "hocfupkn2pjhrpgp2vxv8rsku7tvtx49arbc9s4bvu7p7wxqvk", "acbd18db4cc2f85cedef654fccc4a4d8+3", "7fffffff", "89118b78732c33104a4d6231e8b5a5fa1e4301e3"},
		{"examplesigningkey0123456789abcdefghijklmnopqrstuvwxyz", "mytokenABC", "6f09f2b353b6d63069f770b90e2b112c+11", "70000000", "1404a5336457929854b04b863ee8f64e2c43f906"},
		{"examplesigningkey0123456789abcdefghijklmnopqrstuvwxyz", "v2/zzzzz-gj3su-0123456789abcde/secretsecretsecretsecretsecretsecretsecretsecret", "6f09f2b353b6d63069f770b90e2b112c+11", "70000000", "7429539b9afa06ee14d9b663e3936347c3ce0dce"},
	}
	for _, c := range cases {
		s := &Signer{Key: []byte(c.key), TTL: 1209600 * time.Second, Now: now}
		loc, _ := ParseLocator(c.loc)
		var exp int64
		fmt.Sscanf(c.exp, "%x", &exp)
		signed := s.SignUntil(loc, c.token, time.Unix(exp, 0))
		want := c.loc + "+A" + c.want + "@" + c.exp
		if signed.String() != want {
			t.Fatalf("sign: got %s want %s", signed, want)
		}
		if err := s.Verify(signed, c.token); err != nil {
			t.Fatalf("verify: %v", err)
		}
		// Size is not covered; extra hints allowed.
		extra, _ := ParseLocator(loc.Hash.String() + "+99+Kfoo+A" + c.want + "@" + c.exp + "+Zbar")
		if err := s.Verify(extra, c.token); err != nil {
			t.Fatalf("verify with extra hints: %v", err)
		}
	}
}

func TestVerifyFailures(t *testing.T) {
	s := &Signer{Key: []byte(knownKey), TTL: 1209600 * time.Second, Now: func() time.Time { return time.Unix(0x60000000, 0) }}
	loc, _ := ParseLocator("acbd18db4cc2f85cedef654fccc4a4d8+3")
	tok := "hocfupkn2pjhrpgp2vxv8rsku7tvtx49arbc9s4bvu7p7wxqvk"
	good := s.Sign(loc, tok)
	expired := s.SignUntil(loc, tok, time.Unix(0x5fffffff, 0))
	expiredForged, _ := ParseLocator(loc.String() + "+A0000000000000000000000000000000000000000@5fffffff")
	malformed, _ := ParseLocator(loc.String() + "+Adeadbeef@7fffffff")
	two, _ := ParseLocator(good.String() + "+A89118b78732c33104a4d6231e8b5a5fa1e4301e3@7fffffff")
	lowerHint, _ := ParseLocator(good.String() + "+afoo")
	cases := []struct {
		name  string
		loc   Locator
		token string
		kind  Kind
		code  int
	}{
		{"no token", good, "", KindNoToken, 401},
		{"unsigned", loc, tok, KindInvalidSignature, 400},
		{"expired", expired, tok, KindExpiredSignature, 401},
		{"expired forgery reports expired", expiredForged, tok, KindExpiredSignature, 401},
		{"wrong token", good, tok + "x", KindInvalidSignature, 400},
		{"malformed", malformed, tok, KindInvalidSignature, 400},
		{"two A hints", two, tok, KindInvalidSignature, 400},
		{"lowercase hint", lowerHint, tok, KindInvalidSignature, 400},
	}
	for _, c := range cases {
		err := s.Verify(c.loc, c.token)
		if !Is(err, c.kind) || StatusOf(err) != c.code {
			t.Errorf("%s: got %v (status %d), want %v/%d", c.name, err, StatusOf(err), c.kind, c.code)
		}
	}
	other := &Signer{Key: []byte("otherkey"), TTL: s.TTL, Now: s.Now}
	if err := other.Verify(good, tok); !Is(err, KindInvalidSignature) {
		t.Errorf("wrong key: %v", err)
	}
	ttl := &Signer{Key: s.Key, TTL: time.Hour, Now: s.Now}
	if err := ttl.Verify(good, tok); !Is(err, KindInvalidSignature) {
		t.Errorf("wrong TTL: %v", err)
	}
}

func TestServiceOrderReference(t *testing.T) {
	var uuids []string
	for i := 0; i < 16; i++ {
		uuids = append(uuids, fmt.Sprintf("zzzzz-bi6l4-%015x", i))
	}
	want := map[int]string{0: "3eab2d5fc9681074", 1: "097dba52e648f1c3", 2: "c5b4e023f8a7d691", 3: "9d81c02e76a3bf54"}
	for i := 0; i < 4; i++ {
		h := Hash(md5.Sum([]byte(fmt.Sprintf("%064x", i))))
		var got strings.Builder
		for _, j := range ServiceOrder(h, uuids) {
			fmt.Fprintf(&got, "%x", j)
		}
		if got.String() != want[i] {
			t.Errorf("h=%d (%s): order %s, want %s", i, h, got.String(), want[i])
		}
	}
	h, _ := ParseHash("6f09f2b353b6d63069f770b90e2b112c")
	svcs := []string{"zzzzz-bi6l4-aaaaaaaaaaaaaaa", "zzzzz-bi6l4-bbbbbbbbbbbbbbb", "zzzzz-bi6l4-ccccccccccccccc"}
	if o := ServiceOrder(h, svcs); fmt.Sprint(o) != "[2 1 0]" {
		t.Errorf("service order %v, want [2 1 0]", o)
	}
	if o := MountOrder(h, svcs, nil); fmt.Sprint(o) != "[0 1 2]" {
		t.Errorf("mount order %v, want [0 1 2]", o)
	}
	if o := MountOrder(h, svcs, []int{0, 0, 5}); fmt.Sprint(o) != "[2 0 1]" {
		t.Errorf("mount order with priority %v, want [2 0 1]", o)
	}
}

func TestVerifyingReader(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 10000)
	h := HashOf(data)
	for _, sized := range []bool{true, false} {
		size := int64(len(data))
		if !sized {
			size = -1
		}
		got, err := io.ReadAll(NewVerifyingReader(iotest.HalfReader(bytes.NewReader(data)), h, size))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("sized=%v good: %d bytes, %v", sized, len(got), err)
		}
		bad := append([]byte(nil), data...)
		bad[len(bad)-1] = 'X'
		// The consumer must never receive the whole body.
		got, err = io.ReadAll(NewVerifyingReader(bytes.NewReader(bad), h, size))
		if !Is(err, KindHashMismatch) || len(got) >= len(data) {
			t.Fatalf("sized=%v wrong last byte: got %d bytes, err %v", sized, len(got), err)
		}
		// io.CopyN / io.ReadFull must fail too.
		buf := make([]byte, len(data))
		if _, err := io.ReadFull(NewVerifyingReader(bytes.NewReader(bad), h, size), buf); err == nil {
			t.Fatalf("sized=%v ReadFull accepted a wrong body", sized)
		}
		if err := iotest.TestReader(NewVerifyingReader(bytes.NewReader(data), h, size), data); err != nil {
			t.Fatalf("sized=%v iotest: %v", sized, err)
		}
	}
	if _, err := io.ReadAll(NewVerifyingReader(bytes.NewReader(data[:100]), h, int64(len(data)))); !Is(err, KindLengthMismatch) {
		t.Fatalf("short: %v", err)
	}
	if _, err := io.ReadAll(NewVerifyingReader(bytes.NewReader(append(data, 'x')), h, int64(len(data)))); !Is(err, KindLengthMismatch) {
		t.Fatalf("long: %v", err)
	}
	boom := errors.New("boom")
	if _, err := io.ReadAll(NewVerifyingReader(iotest.ErrReader(boom), h, 10)); !errors.Is(err, boom) {
		t.Fatalf("failing: %v", err)
	}
	if _, err := io.ReadAll(NewVerifyingReader(bytes.NewReader(nil), EmptyHash, 0)); err != nil {
		t.Fatalf("empty: %v", err)
	}
	if _, err := io.ReadAll(NewVerifyingReader(bytes.NewReader(nil), h, 0)); !Is(err, KindHashMismatch) {
		t.Fatalf("empty with wrong hash: %v", err)
	}
}

func TestVerifyingWriter(t *testing.T) {
	data := bytes.Repeat([]byte("abc"), 50000)
	h := HashOf(data)
	var out bytes.Buffer
	w := NewVerifyingWriter(&out, h, int64(len(data)))
	if _, err := io.Copy(w, iotest.HalfReader(bytes.NewReader(data))); err != nil || w.Finish() != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("good copy failed: %v", err)
	}
	bad := append([]byte(nil), data...)
	bad[len(bad)-1] = 'z'
	out.Reset()
	w = NewVerifyingWriter(&out, h, int64(len(data)))
	_, err := io.Copy(w, bytes.NewReader(bad))
	if !Is(err, KindCorrupt) || out.Len() >= len(data) {
		t.Fatalf("corrupt: err %v, %d bytes written", err, out.Len())
	}
	out.Reset()
	w = NewVerifyingWriter(&out, h, int64(len(data)))
	io.Copy(w, bytes.NewReader(data[:10]))
	if err := w.Finish(); !Is(err, KindCorrupt) {
		t.Fatalf("short: %v", err)
	}
}

func TestKindTable(t *testing.T) {
	for k := KindInternal; k <= KindMisdirected; k++ {
		if _, ok := kindTable[k]; !ok {
			t.Errorf("kind %v has no status", k)
		}
		if strings.HasPrefix(k.String(), "kind(") {
			t.Errorf("kind %d has no name", int(k))
		}
	}
	err := E("op", KindFull, errors.New("disk"))
	if StatusOf(err) != 507 || Message(err) != "insufficient storage" {
		t.Errorf("E: %v %d %q", err, StatusOf(err), Message(err))
	}
	wrapped := fmt.Errorf("ctx: %w", Errorf(KindNotFound, "nope"))
	if StatusOf(wrapped) != 404 || Message(wrapped) != "nope" {
		t.Errorf("wrapped: %d %q", StatusOf(wrapped), Message(wrapped))
	}
	if KindForStatus(507) != KindFull || KindForStatus(404) != KindNotFound || KindForStatus(503) != KindUnavailable {
		t.Error("KindForStatus")
	}
}
