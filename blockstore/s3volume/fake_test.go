package s3volume

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeS3 is a small in-process S3 server with one bucket, implementing
// what the volume and minio-go use: object PUT (with Content-MD5 check,
// plain or aws-chunked bodies), server-side copy, GET with Range, HEAD,
// DELETE, ListObjectsV2 with prefix/start-after/max-keys, multipart
// uploads, and bucket HEAD. It does not check signatures. Like a real
// server, it stores an object only once its whole body has arrived intact.
type fakeS3 struct {
	t      testing.TB
	bucket string
	srv    *httptest.Server

	mu      sync.Mutex
	objects map[string]fakeObject
	uploads map[string]map[int][]byte
	nextID  int
	// fail, when set, is asked first about every request; a non-empty code
	// makes the fake answer with that error and status.
	fail func(r *http.Request) (status int, code string)
}

type fakeObject struct {
	data []byte
	mod  time.Time
}

func newFakeS3(t testing.TB, bucket string) *fakeS3 {
	f := &fakeS3{t: t, bucket: bucket, objects: map[string]fakeObject{}, uploads: map[string]map[int][]byte{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// addr is the server's host:port, for Config.Endpoint.
func (f *fakeS3) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// setFail installs (or, with nil, removes) a failure hook.
func (f *fakeS3) setFail(fn func(r *http.Request) (int, string)) {
	f.mu.Lock()
	f.fail = fn
	f.mu.Unlock()
}

// keys returns every object key, sorted.
func (f *fakeS3) keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ks []string
	for k := range f.objects {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// put stores an object directly (tests).
func (f *fakeS3) put(key string, data []byte, mod time.Time) {
	f.mu.Lock()
	f.objects[key] = fakeObject{data: data, mod: mod}
	f.mu.Unlock()
}

func (f *fakeS3) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		if status, code := fail(r); code != "" {
			io.Copy(io.Discard, r.Body)
			f.errorReply(w, r, status, code, "injected failure")
			return
		}
	}
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucket, key, _ := strings.Cut(path, "/")
	if bucket != f.bucket {
		f.errorReply(w, r, http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist")
		return
	}
	q := r.URL.Query()
	switch {
	case key == "" && (r.Method == http.MethodHead || r.Method == http.MethodGet && q.Has("location")):
		if r.Method == http.MethodGet {
			writeXML(w, http.StatusOK, struct {
				XMLName xml.Name `xml:"LocationConstraint"`
			}{})
		}
	case key == "" && r.Method == http.MethodGet && q.Get("list-type") == "2":
		f.list(w, q)
	case key == "":
		f.errorReply(w, r, http.StatusNotImplemented, "NotImplemented", "not implemented by the fake")
	case r.Method == http.MethodPost && q.Has("uploads"):
		f.mu.Lock()
		f.nextID++
		id := strconv.Itoa(f.nextID)
		f.uploads[id] = map[int][]byte{}
		f.mu.Unlock()
		writeXML(w, http.StatusOK, struct {
			XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
			Bucket   string
			Key      string
			UploadID string `xml:"UploadId"`
		}{Bucket: bucket, Key: key, UploadID: id})
	case r.Method == http.MethodPut && q.Has("uploadId"):
		f.putPart(w, r, q)
	case r.Method == http.MethodPost && q.Has("uploadId"):
		f.complete(w, r, key, q.Get("uploadId"))
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		f.mu.Lock()
		delete(f.uploads, q.Get("uploadId"))
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "":
		f.copyObject(w, r, key)
	case r.Method == http.MethodPut:
		data, ok := f.readBody(w, r)
		if !ok {
			return
		}
		f.put(key, data, time.Now())
		w.Header().Set("ETag", etag(data))
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		f.get(w, r, key)
	case r.Method == http.MethodDelete:
		f.mu.Lock()
		delete(f.objects, key)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		f.errorReply(w, r, http.StatusNotImplemented, "NotImplemented", "not implemented by the fake")
	}
}

// readBody reads a PUT body, decoding aws-chunked framing, and checks its
// length and Content-MD5. It answers the error itself when !ok.
func (f *fakeS3) readBody(w http.ResponseWriter, r *http.Request) (data []byte, ok bool) {
	var err error
	want := r.ContentLength
	if strings.HasPrefix(r.Header.Get("X-Amz-Content-Sha256"), "STREAMING-") {
		want, _ = strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64)
		data, err = decodeChunked(r.Body)
	} else {
		data, err = io.ReadAll(r.Body)
	}
	if err != nil || int64(len(data)) != want {
		// The client went away or sent too little: store nothing.
		f.errorReply(w, r, http.StatusBadRequest, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.")
		return nil, false
	}
	if m := r.Header.Get("Content-Md5"); m != "" {
		sum := md5.Sum(data)
		if m != base64.StdEncoding.EncodeToString(sum[:]) {
			f.errorReply(w, r, http.StatusBadRequest, "BadDigest", "The Content-MD5 you specified did not match what we received.")
			return nil, false
		}
	}
	return data, true
}

// decodeChunked decodes an aws-chunked body ("<hex size>;chunk-signature=…
// CRLF data CRLF", ending with a zero-size chunk), ignoring signatures.
func decodeChunked(r io.Reader) ([]byte, error) {
	br := bufio.NewReader(r)
	var out bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		sizeHex, _, _ := strings.Cut(strings.TrimSpace(line), ";")
		n, err := strconv.ParseInt(sizeHex, 16, 64)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out.Bytes(), nil
		}
		if _, err := io.CopyN(&out, br, n); err != nil {
			return nil, err
		}
		if _, err := br.Discard(2); err != nil {
			return nil, err
		}
	}
}

func (f *fakeS3) putPart(w http.ResponseWriter, r *http.Request, q url.Values) {
	data, ok := f.readBody(w, r)
	if !ok {
		return
	}
	n, _ := strconv.Atoi(q.Get("partNumber"))
	f.mu.Lock()
	parts, found := f.uploads[q.Get("uploadId")]
	if found {
		parts[n] = data
	}
	f.mu.Unlock()
	if !found {
		f.errorReply(w, r, http.StatusNotFound, "NoSuchUpload", "The specified upload does not exist.")
		return
	}
	w.Header().Set("ETag", etag(data))
	w.WriteHeader(http.StatusOK)
}

func (f *fakeS3) complete(w http.ResponseWriter, r *http.Request, key, id string) {
	io.Copy(io.Discard, r.Body)
	f.mu.Lock()
	parts, found := f.uploads[id]
	var data []byte
	if found {
		nums := make([]int, 0, len(parts))
		for n := range parts {
			nums = append(nums, n)
		}
		sort.Ints(nums)
		for _, n := range nums {
			data = append(data, parts[n]...)
		}
		delete(f.uploads, id)
		f.objects[key] = fakeObject{data: data, mod: time.Now()}
	}
	f.mu.Unlock()
	if !found {
		f.errorReply(w, r, http.StatusNotFound, "NoSuchUpload", "The specified upload does not exist.")
		return
	}
	writeXML(w, http.StatusOK, struct {
		XMLName xml.Name `xml:"CompleteMultipartUploadResult"`
		Bucket  string
		Key     string
		ETag    string
	}{Bucket: f.bucket, Key: key, ETag: etag(data)})
}

func (f *fakeS3) copyObject(w http.ResponseWriter, r *http.Request, key string) {
	src, err := url.PathUnescape(r.Header.Get("X-Amz-Copy-Source"))
	if err != nil {
		f.errorReply(w, r, http.StatusBadRequest, "InvalidArgument", "bad copy source")
		return
	}
	srcBucket, srcKey, _ := strings.Cut(strings.TrimPrefix(src, "/"), "/")
	f.mu.Lock()
	o, found := f.objects[srcKey]
	now := time.Now()
	if found && srcBucket == f.bucket {
		f.objects[key] = fakeObject{data: o.data, mod: now}
	}
	f.mu.Unlock()
	if !found || srcBucket != f.bucket {
		f.errorReply(w, r, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	writeXML(w, http.StatusOK, struct {
		XMLName      xml.Name `xml:"CopyObjectResult"`
		LastModified string
		ETag         string
	}{LastModified: now.UTC().Format("2006-01-02T15:04:05.000Z"), ETag: etag(o.data)})
}

func (f *fakeS3) get(w http.ResponseWriter, r *http.Request, key string) {
	f.mu.Lock()
	o, found := f.objects[key]
	f.mu.Unlock()
	if !found {
		f.errorReply(w, r, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	h := w.Header()
	h.Set("Last-Modified", o.mod.UTC().Format(http.TimeFormat))
	h.Set("ETag", etag(o.data))
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Accept-Ranges", "bytes")
	size := int64(len(o.data))
	start, end, status := int64(0), size-1, http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" && r.Method == http.MethodGet {
		a, b, _ := strings.Cut(strings.TrimPrefix(rg, "bytes="), "-")
		s, err1 := strconv.ParseInt(a, 10, 64)
		e, err2 := strconv.ParseInt(b, 10, 64)
		if b == "" {
			e, err2 = size-1, nil
		}
		if err1 != nil || err2 != nil || s >= size || e < s {
			f.errorReply(w, r, http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The requested range is not satisfiable")
			return
		}
		start, end, status = s, min(e, size-1), http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, size))
	}
	h.Set("Content-Length", strconv.FormatInt(end-start+1, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodGet {
		w.Write(o.data[start : end+1])
	}
}

type fakeContent struct {
	Key          string
	LastModified string
	ETag         string
	Size         int64
	StorageClass string
}

func (f *fakeS3) list(w http.ResponseWriter, q url.Values) {
	prefix := q.Get("prefix")
	after := q.Get("start-after")
	if tok := q.Get("continuation-token"); tok != "" {
		after = tok
	}
	maxKeys := 1000
	if s := q.Get("max-keys"); s != "" {
		maxKeys, _ = strconv.Atoi(s)
	}
	var res struct {
		XMLName               xml.Name `xml:"ListBucketResult"`
		Name                  string
		Prefix                string
		StartAfter            string `xml:",omitempty"`
		KeyCount              int
		MaxKeys               int
		IsTruncated           bool
		NextContinuationToken string `xml:",omitempty"`
		Contents              []fakeContent
	}
	res.Name, res.Prefix, res.StartAfter, res.MaxKeys = f.bucket, prefix, q.Get("start-after"), maxKeys
	f.mu.Lock()
	var keys []string
	for k := range f.objects {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) > maxKeys {
		keys = keys[:maxKeys]
		res.IsTruncated = true
		res.NextContinuationToken = keys[maxKeys-1]
	}
	for _, k := range keys {
		o := f.objects[k]
		res.Contents = append(res.Contents, fakeContent{Key: k, LastModified: o.mod.UTC().Format("2006-01-02T15:04:05.000Z"),
			ETag: etag(o.data), Size: int64(len(o.data)), StorageClass: "STANDARD"})
	}
	f.mu.Unlock()
	res.KeyCount = len(res.Contents)
	writeXML(w, http.StatusOK, res)
}

func (f *fakeS3) errorReply(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if r.Method == http.MethodHead {
		w.WriteHeader(status) // HEAD answers have no body; minio-go goes by the status
		return
	}
	writeXML(w, status, struct {
		XMLName    xml.Name `xml:"Error"`
		Code       string
		Message    string
		BucketName string
		Resource   string
		RequestID  string `xml:"RequestId"`
	}{Code: code, Message: msg, BucketName: f.bucket, Resource: r.URL.Path, RequestID: "fake"})
}

func writeXML(w http.ResponseWriter, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		panic(err)
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(b)))
	w.WriteHeader(status)
	io.WriteString(w, xml.Header)
	w.Write(b)
}

func etag(data []byte) string {
	sum := md5.Sum(data)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}
