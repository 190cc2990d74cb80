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
func listenSocket(dir string) (net.Listener, error) {
	p, err := socketPath(dir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(p); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("%s is in the way: it is not a socket", p)
		}
		if err := os.Remove(p); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", p)
	if err != nil {
		return nil, err
	}
	// Connecting needs write permission on the socket file; with the usual
	// umask (022) nobody else had it in the moment before this either.
	if err := os.Chmod(p, 0o600); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return ln, nil
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
