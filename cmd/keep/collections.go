package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

// collectionUUIDRe: an Arvados collection UUID, as keep put --name prints.
var collectionUUIDRe = regexp.MustCompile(`^[a-z0-9]{5}-4zz18-[a-z0-9]{15}$`)

// collections talks to the Arvados collections API that keepproxy serves
// on the same URL (arvados_api in its config), as arv-put and arv-get do:
// so a collection saved by keep is one arv-get reads, and the reverse.
type collections struct {
	base  string // the proxy URL
	token string
	hc    *http.Client
}

func newCollections(s *settings) *collections {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.Insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // #nosec G402 -- opt-in, warned about at start
	}
	return &collections{base: strings.TrimRight(s.Proxy, "/"), token: s.Token, hc: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}
}

// collectionRecord: the fields keep reads.
type collectionRecord struct {
	UUID             string `json:"uuid"`
	ManifestText     string `json:"manifest_text"`
	PortableDataHash string `json:"portable_data_hash"`
}

// call sends one API call; an error answer becomes an error of the kind
// of its status, with the API's message.
func (c *collections) call(ctx context.Context, method, path string, body any) (collectionRecord, error) {
	var rec collectionRecord
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/arvados/v1/"+path, rd)
	if err != nil {
		return rec, usageErr("proxy URL %q: %v", c.base, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "keep-cli/1")
	resp, err := c.hc.Do(req)
	if err != nil {
		return rec, blockstore.E("collections API", blockstore.KindBadGateway, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return rec, blockstore.E("collections API", blockstore.KindBadGateway, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Errors []string `json:"errors"`
		}
		msg := fmt.Sprintf("HTTP %d", resp.StatusCode)
		if json.Unmarshal(b, &e) == nil && len(e.Errors) > 0 {
			msg = strings.Join(e.Errors, "; ")
		} else if resp.StatusCode == http.StatusNotFound {
			msg += ": the proxy serves no collections API (arvados_api is off?)"
		}
		return rec, blockstore.Errorf(blockstore.KindForStatus(resp.StatusCode), "collections API: %s", msg)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, blockstore.Errorf(blockstore.KindBadGateway, "collections API: the answer is not a collection: %v", err)
	}
	return rec, nil
}

// save stores manifest text (with the locators signed for this token)
// as a new collection named name.
func (c *collections) save(ctx context.Context, text, name string) (collectionRecord, error) {
	return c.call(ctx, http.MethodPost, "collections?ensure_unique_name=true",
		map[string]any{"collection": map[string]any{"manifest_text": text, "name": name}})
}

// load fetches a collection by UUID; its manifest comes signed for this token.
func (c *collections) load(ctx context.Context, uuid string) (collectionRecord, error) {
	return c.call(ctx, http.MethodGet, "collections/"+url.PathEscape(uuid), nil)
}
