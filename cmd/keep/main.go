// Command keep moves files and directory trees in and out of a Keep
// store through a keepproxy, in the manner of Arvados' arv-put and
// arv-get, without an Arvados API server:
//
//	keep put PATH...               store files, print the manifest's locator
//	keep get SOURCE DEST           restore a manifest's tree under DEST
//	keep cat SOURCE [PATH]         write one file (or a raw block) to stdout
//	keep ls SOURCE                 list a manifest's files
//
// SOURCE is a manifest locator, a file holding manifest text, or "-".
// See docs/keep-cli.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/keepgate/keepgate/keepclient"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv,
		tty: term.IsTerminal(int(os.Stderr.Fd()))}
	code := a.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// app is one invocation: its streams and environment, so tests can run
// it in-process.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	tty    bool // stderr is a terminal: show progress bars
	cmd    string
	set    *settings // the resolved settings of the running command
}

const usage = `keep — store and fetch files and directory trees through a keepproxy

Usage:
  keep put [flags] PATH...          upload files and directories; print the manifest's signed locator
                                    (with --name NAME: save them as a collection, print its UUID)
  keep get [flags] SOURCE DEST      download a manifest's files into the directory DEST
  keep cat [flags] SOURCE [PATH]    write one file of a manifest (or, without PATH, a raw block) to stdout
  keep ls  [flags] SOURCE           list a manifest's files and sizes
  keep help [COMMAND]               show help

SOURCE is a manifest locator (as printed by keep put), a collection UUID
(as printed by keep put --name, arv-put or the SDKs; read through the
proxy's Arvados API), a file holding manifest text, or "-" for standard
input.

Configuration (flags > environment > config file):
  --proxy URL      KEEP_PROXY   (or ARVADOS_KEEP_SERVICES)     proxy: in the config file
  --token TOKEN    KEEP_TOKEN   (or ARVADOS_API_TOKEN)         token:
  --insecure       KEEP_INSECURE (or ARVADOS_API_HOST_INSECURE) insecure:
  --config FILE    KEEP_CONFIG  (default ~/.config/keep/config.yml)

Exit status: 0 success, 1 failure, 2 bad usage or configuration,
3 data that did not match its hash, 130 interrupted.
`

const putHelp = `Upload files and directories and print the signed locator of the
manifest that names them all (one locator for the whole tree).
With --name NAME the manifest is saved instead as a collection through the
proxy's Arvados API (keepproxy's arvados_api), and the collection's UUID is
printed: arv-get UUID/, the SDKs and keep get UUID read it.

A directory argument "dir" is stored as the directory dir; "dir/" stores
its contents at the top. Files up to 32 MiB are packed together into
shared blocks; larger files are cut into blocks of 64 MiB. Identical
blocks are sent once. Memory: up to (threads + 1) x 64 MiB of block
buffers.

An interrupted put, run again with the same arguments, sends only what is
missing (the resume cache lives in $XDG_CACHE_HOME/keep or ~/.cache/keep).
`

const getHelp = `Download every file of a manifest into the directory DEST (created if
needed), verifying each block's MD5. Each file is written to a temporary
file beside it and renamed into place only when complete, so a failed
download never leaves a partial or wrong file under its real name.
Memory: up to threads x 64 MiB of block buffers.
`

const catHelp = `Write one file of a manifest to standard output. Without PATH, SOURCE
must be a block locator, and the block itself is written. Only verified
blocks are written, but a failure part-way leaves the output short (and
the exit status non-zero).
`

const lsHelp = `List the files of a manifest: size in bytes, then path. Empty directories
end in "/".
`

func (a *app) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(a.stderr, usage)
		return exitUsage
	}
	a.cmd = args[0]
	var err error
	switch args[0] {
	case "put":
		err = a.cmdPut(ctx, args[1:])
	case "get":
		err = a.cmdGet(ctx, args[1:])
	case "cat":
		err = a.cmdCat(ctx, args[1:])
	case "ls":
		err = a.cmdLs(ctx, args[1:])
	case "help", "-h", "--help":
		return a.help(args[1:])
	default:
		fmt.Fprintf(a.stderr, "keep: unknown command %q (see keep help)\n", args[0])
		return exitUsage
	}
	if err == nil {
		return exitOK
	}
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	code := exitCode(err)
	msg := oneLine(err.Error())
	if ctx.Err() != nil {
		code = exitInterrupt
		msg = "interrupted" + strings.TrimPrefix(strings.TrimPrefix(msg, context.Canceled.Error()), ":")
	}
	a.fail(msg)
	return code
}

func (a *app) help(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(a.stdout, usage)
		return exitOK
	}
	switch args[0] {
	case "put", "get", "cat", "ls":
		return a.run(context.Background(), []string{args[0], "--help"})
	}
	fmt.Fprintf(a.stderr, "keep: unknown command %q\n", args[0])
	return exitUsage
}

// parse parses a subcommand's flags; --help prints its help to stdout.
func (a *app) parse(fs *pflag.FlagSet, synopsis, help string, args []string) error {
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	err := fs.Parse(args)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintf(a.stdout, "Usage: keep %s\n\n%s\nFlags:\n%s", synopsis, help, fs.FlagUsages())
		return err
	}
	if err != nil {
		return usageErr("%v (see keep help %s)", err, fs.Name())
	}
	return nil
}

// settings resolves the configuration and prints the --insecure warning.
func (a *app) settings(fs *pflag.FlagSet, cf *commonFlags) (*settings, error) {
	s, err := resolve(fs, cf, a.getenv, a.warn)
	if err != nil {
		return nil, err
	}
	a.set = s
	if s.Insecure {
		fmt.Fprintln(a.stderr, "keep: WARNING: --insecure: the proxy's TLS certificate is NOT verified. Anyone on the network path can read your token and data. Use this only with a self-signed development certificate.")
	}
	return s, nil
}

// renderer picks the progress display: JSON lines with --json, bars on a
// terminal, else nothing.
func (a *app) renderer(s *settings) renderer {
	switch {
	case s.JSON:
		return &jsonRenderer{w: a.stdout, stderr: a.stderr}
	case a.tty && !s.Quiet:
		return newBarRenderer(a.stderr)
	}
	return nopRenderer{w: a.stderr}
}

// client builds the keepproxy client; retries are reported through tr.
func (a *app) client(s *settings, tr *tracker) (*keepclient.Client, error) {
	retries := s.Retries
	if retries == 0 {
		retries = -1
	}
	return keepclient.New(keepclient.Options{
		Proxy:     s.Proxy,
		Token:     s.Token,
		Insecure:  s.Insecure,
		Retries:   retries,
		UserAgent: "keep-cli/1",
		OnRetry: func(op string, err error, wait time.Duration) {
			if !s.Quiet {
				tr.Log(fmt.Sprintf("keep %s: %s failed (%s); retrying in %s", a.cmd, op, oneLine(err.Error()), wait.Round(10*time.Millisecond)))
			}
		},
	})
}

func (a *app) warn(msg string) { fmt.Fprintf(a.stderr, "keep %s: warning: %s\n", a.cmd, msg) }

func (a *app) fail(msg string) { fmt.Fprintf(a.stderr, "keep %s: %s\n", a.cmd, msg) }

func (a *app) jsonOut(v map[string]any) {
	b, _ := json.Marshal(v)
	a.stdout.Write(append(b, '\n'))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
