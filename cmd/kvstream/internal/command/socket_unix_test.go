//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package command

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// TestListenSocketPrivate: the socket is 0600 from the moment it can be
// reached, even under umask 0, it leaves nothing else in the directory,
// closing removes it, and a link at its path is refused, not followed.
func TestListenSocketPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	p := filepath.Join(dir, socketName)
	bound := 0
	socketBound = func(tp string) {
		bound++
		_, err := os.Lstat(p)
		require.ErrorIs(t, err, fs.ErrNotExist, "the socket is not at its path before it is 0600")
		fi, err := os.Stat(filepath.Dir(tp))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), "it is bound in a private directory")
	}
	defer func() { socketBound = nil }()

	ln, err := listenSocket(dir)
	require.NoError(t, err)
	fi, err := os.Lstat(p)
	require.NoError(t, err)
	require.NotZero(t, fi.Mode()&fs.ModeSocket)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the socket is left in the directory")
	c, err := net.Dial("unix", p)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, ln.Close())
	require.Equal(t, 1, bound)
	_, err = os.Lstat(p)
	require.ErrorIs(t, err, fs.ErrNotExist, "closing removes the socket")

	// A stale socket (a holder killed with SIGKILL) is replaced.
	ln, err = listenSocket(dir)
	require.NoError(t, err)
	ln.(*socketListener).UnixListener.SetUnlinkOnClose(false)
	require.NoError(t, ln.(*socketListener).UnixListener.Close())
	ln, err = listenSocket(dir)
	require.NoError(t, err)
	require.NoError(t, ln.Close())

	// A link at the path is in the way; its target is untouched.
	target := filepath.Join(t.TempDir(), "elsewhere")
	require.NoError(t, os.WriteFile(target, []byte("x"), 0o644))
	require.NoError(t, os.Symlink(target, p))
	_, err = listenSocket(dir)
	require.ErrorContains(t, err, "in the way")
	b, err := os.ReadFile(target)
	require.NoError(t, err)
	require.Equal(t, "x", string(b))
	fi, err = os.Lstat(p)
	require.NoError(t, err)
	require.NotZero(t, fi.Mode()&fs.ModeSymlink)
}

// TestEncodeStoreErrorKind: an error matching several engine sentinels
// carries the most specific one, every time.
func TestEncodeStoreErrorKind(t *testing.T) {
	err := &engine.Error{Kind: engine.ErrWriteFailed, Msg: "commit", Cause: &engine.Error{Kind: engine.ErrDiskFull, Msg: "full"}}
	for range 50 {
		require.Equal(t, "DiskFull", encodeStoreError(err).Kind)
	}
	require.Equal(t, "WriteFailed", encodeStoreError(&engine.Error{Kind: engine.ErrWriteFailed, Msg: "commit"}).Kind)
	require.Equal(t, engine.ErrDiskFull, errorKind("DiskFull"))
	require.Nil(t, errorKind("Nope"))
}
