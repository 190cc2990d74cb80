//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package command

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxSocketPath is the longest path a Unix socket address holds here:
// sun_path less its terminating NUL (107 bytes on Linux, 103 on the BSDs
// and macOS).
var maxSocketPath = len(syscall.RawSockaddrUnix{}.Path) - 1

// socketPath returns the path to bind or dial for dir's socket:
// dir/kvstream.sock, or if that is too long for a socket address, the
// same file by its absolute path or relative to the working directory,
// whichever fits. Two processes may reach the file by different paths.
func socketPath(dir string) (string, error) {
	p := filepath.Join(dir, socketName)
	cands := []string{p}
	if abs, err := filepath.Abs(p); err == nil {
		cands = append(cands, abs)
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, abs); err == nil {
				cands = append(cands, rel)
			}
		}
	}
	for _, c := range cands {
		if strings.HasPrefix(c, "@") {
			c = "./" + c // "@…" would name a Linux abstract socket
		}
		if len(c) <= maxSocketPath {
			return c, nil
		}
	}
	return "", fmt.Errorf("its path %s is longer than the %d bytes a Unix socket address holds; use a shorter --data path", p, maxSocketPath)
}

// listenSocket listens on dir's socket, replacing a socket file a dead
// holder left, and makes it 0600. The caller holds dir's lock for
// writing, so no live process serves a socket there.
//
// The socket is bound inside a new private (0700) directory beside its
// path, made 0600 there and only then renamed into place: bind creates
// the file with the process's umask, and under a permissive one (0 in
// many containers) another user could otherwise connect in the moment
// before the chmod and keep that connection to the trusted API. rename
// replaces the path itself and follows no link there; anything at the
// path other than a socket (a link included) is refused beforehand.
// Closing the listener removes the socket file. Private directories a
// holder killed before its rename left behind are removed first
// (removeStaleSocketDirs).
func listenSocket(dir string) (net.Listener, error) {
	p, err := socketPath(dir)
	if err != nil {
		return nil, err
	}
	removeStaleSocketDirs(filepath.Dir(p))
	if fi, err := os.Lstat(p); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("%s is in the way: it is not a socket", p)
		}
		if err := os.Remove(p); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	// "." and at most 10 digits, then "/s": never longer than socketName,
	// so the private path fits wherever p does.
	tmp, err := os.MkdirTemp(filepath.Dir(p), ".")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	tp := filepath.Join(tmp, "s")
	if len(tp) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is too long", tp)
	}
	ln, err := net.Listen("unix", tp)
	if err != nil {
		return nil, err
	}
	if socketBound != nil {
		socketBound(tp)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // it unlinks p itself (below)
	if err := os.Chmod(tp, 0o600); err != nil {
		_ = ln.Close()
		return nil, err
	}
	if err := os.Rename(tp, p); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return &socketListener{UnixListener: ul, path: p}, nil
}

// socketBound, if set (by tests), is called with the bound path before
// its mode is set.
var socketBound func(path string)

// removeStaleSocketDirs removes from dir the private directories that
// holders killed between binding their socket and renaming it into place
// left behind. The caller holds the data directory's lock for writing, and
// only such a holder makes these directories, so none is in use. To leave
// anything else alone, a directory is removed only if it is what
// listenSocket makes: named "." and digits (os.MkdirTemp(dir, ".")), a
// real directory (not a link), of this user, mode 0700, holding nothing
// or just the socket "s". Failures are ignored: a leftover costs nothing
// but its name.
func removeStaleSocketDirs(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !isSocketDirName(e.Name()) || e.Type() != fs.ModeDir {
			continue
		}
		p := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(p)
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
			continue
		}
		inner, err := os.ReadDir(p)
		if err != nil || len(inner) > 1 {
			continue
		}
		if len(inner) == 1 {
			if inner[0].Name() != "s" || inner[0].Type() != fs.ModeSocket {
				continue
			}
			if err := os.Remove(filepath.Join(p, "s")); err != nil {
				continue
			}
		}
		_ = os.Remove(p) // fails, harmlessly, if something appeared in it
	}
}

// isSocketDirName reports whether name is one os.MkdirTemp(dir, ".")
// makes: "." and 1 to 10 digits.
func isSocketDirName(name string) bool {
	if len(name) < 2 || len(name) > 11 || name[0] != '.' {
		return false
	}
	for _, c := range name[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// socketListener removes its socket file when closed.
type socketListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { _ = os.Remove(l.path) })
	return err
}

// errNoSocket: there is no socket file.
var errNoSocket = errors.New("no socket")

// probeSocket returns the path of dir's socket if a process answers on
// it, or an error saying why not (wrapping errNoSocket when there is no
// socket file).
func probeSocket(ctx context.Context, dir string) (string, error) {
	p, err := socketPath(dir)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%w at %s", errNoSocket, p)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "", fmt.Errorf("nothing answers on %s", p)
	case err != nil:
		return "", err
	}
	_ = c.Close()
	return p, nil
}
