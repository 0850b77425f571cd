// Package web is the browser uploader keepproxy serves at /_upload/. It is
// a static page (no build step, no network access beyond its own origin
// and the proxies an operator lists in a config.json next to it) that
// splits files into 64 MiB blocks, hashes each with MD5 in the browser
// (vendored spark-md5), PUTs them to a keepproxy, retries failed blocks,
// and stores an Arvados manifest naming every file as one more block, whose
// locator it shows. The embedded files have no config.json, so the page
// keepproxy serves uploads to that keepproxy; see docs/uploader.md.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// FS returns the uploader's files (index.html at the root).
func FS() http.FileSystem {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	return http.FS(sub)
}
