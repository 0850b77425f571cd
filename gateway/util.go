package gateway

import (
	"bytes"
	"io"
	"os"
	"syscall"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{mtime: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}
