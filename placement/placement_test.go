package placement

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
)

func TestRuleSetMatch(t *testing.T) {
	rules := []Rule{
		{Name: "a", Hosts: []string{"keep.a.example.org", "*.a.example.org"}},
		{Name: "deep", Hosts: []string{"*.x.a.example.org"}},
		{Name: "fallback"},
	}
	s := NewRuleSet(rules, "fallback")
	for host, want := range map[string]string{
		"keep.a.example.org": "a", "b.a.example.org": "a", "y.x.a.example.org": "deep",
		"a.example.org": "fallback", "other.example": "fallback",
	} {
		if r := s.Match(host); r == nil || r.Name != want {
			t.Errorf("%s: %+v, want rule %s", host, r, want)
		}
	}
	if r := NewRuleSet(rules, "").Match("other.example"); r != nil {
		t.Errorf("no fallback: %+v", r)
	}
}

func TestRuleResolve(t *testing.T) {
	r := &Rule{Storages: []string{"s-a"}, DefaultStorage: "s-a", CORSOrigins: []string{"https://a.example"}}
	id, err := r.Resolve(&access.Identity{Name: "file"}, "keep.a")
	if err != nil || id.Storage != "s-a" {
		t.Fatalf("token-file principal: %+v %v", id, err)
	}
	if _, err := r.Resolve(&access.Identity{Name: "key", Storage: "s-b"}, "keep.a"); !blockstore.Is(err, blockstore.KindForbidden) {
		t.Fatalf("another storage's key: %v", err)
	}
	if !r.AllowsOrigin("https://a.example") || r.AllowsOrigin("https://b.example") || !(&Rule{}).AllowsOrigin("https://b.example") {
		t.Error("CORS origins")
	}
}

func TestStorageFitAndRouter(t *testing.T) {
	st := Storage{Name: "s", Classes: []string{"hot"}, DefaultReplicas: 3, MaxReplicas: 2}
	if n, err := st.Fit(1, false, nil); n != 2 || err != nil {
		t.Errorf("default clamped: %d %v", n, err)
	}
	if n, err := st.Fit(1, true, []string{"hot"}); n != 1 || err != nil {
		t.Errorf("asked: %d %v", n, err)
	}
	if _, err := st.Fit(1, true, []string{"cold"}); !blockstore.Is(err, blockstore.KindBadRequest) {
		t.Errorf("class not offered: %v", err)
	}
	a, b := Service{UUID: "zzzzz-bi6l4-000000000000001"}, Service{UUID: "zzzzz-bi6l4-000000000000002", ReadOnly: true}
	r := NewStorageRouter([]Storage{{Name: "p", Stores: []Service{a, b}}, {Name: "u", Upstream: &Upstream{URL: "https://up.example/"}}}, "p")
	h := blockstore.HashOf([]byte("x"))
	if got := r.Route(context.Background(), RouteRequest{Hash: h, Write: true}); len(got) != 1 || got[0] != a {
		t.Errorf("write to the default pool: %+v", got)
	}
	if got := r.Route(context.Background(), RouteRequest{Hash: h, Identity: &access.Identity{Storage: "u"}}); len(got) != 1 || got[0].URL != "https://up.example" {
		t.Errorf("upstream storage: %+v", got)
	}
	if got := r.Route(context.Background(), RouteRequest{Hash: h, Identity: &access.Identity{Storage: "nope"}}); got != nil {
		t.Errorf("unknown storage: %+v", got)
	}
	if _, err := Find([]Storage{{Name: "p"}}, "q"); !blockstore.Is(err, blockstore.KindForbidden) {
		t.Errorf("Find: %v", err)
	}
}

func TestDiscovery(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/arvados/v1/keep_services/accessible" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		w.Write([]byte(`{"items":[{"uuid":"zzzzz-bi6l4-000000000000001","service_host":"s1","service_port":25107,"service_type":"disk"},
			{"uuid":"zzzzz-bi6l4-000000000000002","service_host":"p","service_port":443,"service_ssl_flag":true,"service_type":"proxy"},
			{"uuid":"zzzzz-bi6l4-000000000000003","service_host":"s3","service_port":443,"service_ssl_flag":true,"service_type":"disk","read_only":true}]}`))
	}))
	defer api.Close()
	d := &Discovery{BaseURL: api.URL, Client: api.Client()}
	svcs, err := d.Discover(context.Background(), "tok")
	if err != nil || len(svcs) != 2 || svcs[0].URL != "http://s1:25107" || svcs[1].URL != "https://s3:443" || !svcs[1].ReadOnly {
		t.Fatalf("%+v %v", svcs, err)
	}
	if _, err := d.Discover(context.Background(), "bad"); !blockstore.Is(err, blockstore.KindBadGateway) {
		t.Fatalf("refused: %v", err)
	}
}
