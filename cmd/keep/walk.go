package main

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/keepgate/keepgate/manifest"
)

// srcFile is one regular file (or empty directory) to upload.
type srcFile struct {
	Abs   string // absolute path on disk
	Path  string // path in the manifest
	Size  int64
	Mtime int64 // ns
	Dir   bool  // an empty directory
}

// inputKey is how an argument takes part in the resume cache's name: its
// absolute path, with a trailing slash when only its contents are put.
func inputKey(arg string) (string, error) {
	abs, err := filepath.Abs(arg)
	if err != nil {
		return "", err
	}
	if contentsOnly(arg) {
		abs += "/"
	}
	return abs, nil
}

// contentsOnly: like arv-put (and rsync), "dir/" puts the directory's
// contents at the top of the manifest, "dir" puts the directory itself.
// "." and ".." always mean the contents.
func contentsOnly(arg string) bool {
	if strings.HasSuffix(arg, "/") {
		return true
	}
	b := filepath.Base(arg)
	return b == "." || b == ".."
}

// walkInputs expands the arguments into the files to upload, sorted by
// manifest path. Symbolic links to files are followed; links to
// directories, and sockets, devices and pipes, are skipped with a warning.
func walkInputs(args []string, warn func(string)) ([]srcFile, error) {
	var out []srcFile
	for _, arg := range args {
		abs, err := filepath.Abs(arg)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return nil, usageErr("%s: %v", arg, unwrapPathErr(err))
		}
		switch {
		case fi.Mode().IsRegular():
			out = append(out, srcFile{Abs: abs, Path: filepath.Base(abs), Size: fi.Size(), Mtime: fi.ModTime().UnixNano()})
		case fi.IsDir():
			prefix := ""
			if !contentsOnly(arg) {
				prefix = filepath.Base(abs)
			}
			files, err := walkDir(abs, prefix, warn)
			if err != nil {
				return nil, err
			}
			out = append(out, files...)
		default:
			return nil, usageErr("%s is not a regular file or a directory", arg)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	for i, f := range out {
		if err := manifest.ValidPath(f.Path); err != nil {
			return nil, usageErr("%s: cannot be named in a manifest: %v", f.Abs, err)
		}
		if i > 0 && out[i-1].Path == f.Path {
			return nil, usageErr("%s and %s would both be %q in the manifest; put them separately or rename one", out[i-1].Abs, f.Abs, f.Path)
		}
	}
	return out, nil
}

func walkDir(root, prefix string, warn func(string)) ([]srcFile, error) {
	var out []srcFile
	hasChild := map[string]bool{}
	var dirs []srcFile
	name := func(p string) string {
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if prefix == "" {
			return rel
		}
		if rel == "." {
			return prefix
		}
		return prefix + "/" + rel
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, unwrapPathErr(err))
		}
		if p != root {
			hasChild[filepath.Dir(p)] = true
		}
		mode := d.Type()
		switch {
		case d.IsDir():
			if p != root || prefix != "" {
				dirs = append(dirs, srcFile{Abs: p, Path: name(p), Dir: true})
			}
			return nil
		case mode&fs.ModeSymlink != 0:
			fi, err := os.Stat(p)
			switch {
			case err != nil:
				warn(fmt.Sprintf("skipping %s: broken symbolic link", p))
			case fi.Mode().IsRegular():
				out = append(out, srcFile{Abs: p, Path: name(p), Size: fi.Size(), Mtime: fi.ModTime().UnixNano()})
			case fi.IsDir():
				warn(fmt.Sprintf("skipping %s: symbolic link to a directory", p))
			default:
				warn(fmt.Sprintf("skipping %s: not a regular file", p))
			}
			return nil
		case mode.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return fmt.Errorf("reading %s: %w", p, unwrapPathErr(err))
			}
			out = append(out, srcFile{Abs: p, Path: name(p), Size: fi.Size(), Mtime: fi.ModTime().UnixNano()})
			return nil
		default:
			warn(fmt.Sprintf("skipping %s: not a regular file", p))
			return nil
		}
	})
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if !hasChild[d.Abs] {
			out = append(out, d)
		}
	}
	return out, nil
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

// dirOf is the manifest directory of a path ("" at the top).
func dirOf(p string) string {
	d := path.Dir(p)
	if d == "." {
		return ""
	}
	return d
}
