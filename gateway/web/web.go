// Package web is the browser uploader keepproxy serves at /_upload/. It is
// a static page (no build step, no network access beyond its own origin
// and the proxy it is pointed at) that splits files into 64 MiB blocks,
// hashes each with MD5 in the browser (vendored spark-md5), PUTs them to a
// keepproxy with CORS, retries failed blocks, and stores an Arvados
// manifest naming every file as one more block, whose locator it shows.
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
