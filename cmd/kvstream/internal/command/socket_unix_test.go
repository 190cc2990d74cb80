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

// TestListenSocketRemovesStaleDirs: the private directories that holders
// killed before renaming their socket into place left behind (empty, or
// with the bound socket) are removed by the next holder; anything that
// only looks like one is left alone.
func TestListenSocketRemovesStaleDirs(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.Mkdir(p, mode))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	// What a killed holder leaves: the socket bound, not yet renamed.
	bound := mk(".1234567890", 0o700)
	ln, err := net.Listen("unix", filepath.Join(bound, "s"))
	require.NoError(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, ln.Close())
	mk(".42", 0o700) // killed before the bind
	// Not ours, or not only what we put there.
	keep := []string{".7x", ".123456789012", ".55", ".66", ".77", ".88"}
	mk(".7x", 0o700)
	mk(".123456789012", 0o700) // more digits than MkdirTemp makes
	require.NoError(t, os.WriteFile(filepath.Join(mk(".55", 0o700), "s"), []byte("data"), 0o600))
	mk(".66", 0o755)
	other := t.TempDir()
	require.NoError(t, os.Symlink(other, filepath.Join(dir, ".77")))
	p88 := mk(".88", 0o700)
	ln, err = net.Listen("unix", filepath.Join(p88, "s"))
	require.NoError(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, ln.Close())
	require.NoError(t, os.WriteFile(filepath.Join(p88, "t"), nil, 0o600)) // and something else

	ln, err = listenSocket(dir)
	require.NoError(t, err)
	defer ln.Close()
	var names []string
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, append([]string{socketName}, keep...), names)
	entries, err = os.ReadDir(other)
	require.NoError(t, err)
	require.Empty(t, entries, "a link is not followed")
	for _, name := range []string{".55/s", ".88/s", ".88/t"} {
		_, err := os.Lstat(filepath.Join(dir, name))
		require.NoError(t, err, name)
	}
}
