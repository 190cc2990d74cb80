package dirtest_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/internal/dirtest"
	"github.com/stretchr/testify/require"
)

// TestHash: the hash sees every kind of write (new, changed, renamed and
// removed entries, a new mode, a touched file) and nothing else.
func TestHash(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "a")
	require.NoError(t, os.WriteFile(f, []byte("one"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	h := dirtest.Hash(t, dir)
	require.Equal(t, h, dirtest.Hash(t, dir), "reading changes nothing")

	changes := []func(){
		func() { require.NoError(t, os.WriteFile(f, []byte("two"), 0o644)) },                    // content
		func() { require.NoError(t, os.WriteFile(f, []byte("three"), 0o644)) },                  // size
		func() { require.NoError(t, os.Chmod(f, 0o600)) },                                       // mode
		func() { require.NoError(t, os.Chtimes(f, time.Unix(1, 0), time.Unix(1, 0))) },          // time
		func() { require.NoError(t, os.WriteFile(filepath.Join(dir, "sub", "b"), nil, 0o644)) }, // new entry
		func() { require.NoError(t, os.Rename(f, filepath.Join(dir, "c"))) },                    // rename
		func() { require.NoError(t, os.Remove(filepath.Join(dir, "c"))) },                       // removal
	}
	for i, change := range changes {
		change()
		next := dirtest.Hash(t, dir)
		require.NotEqual(t, h, next, "change %d", i)
		h = next
	}
}

// TestHashExcept ignores one entry's modification time, nothing else.
func TestHashExcept(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "LOCK")
	require.NoError(t, os.WriteFile(lock, nil, 0o644))
	h := dirtest.HashExcept(t, dir, "LOCK")
	require.NoError(t, os.Chtimes(lock, time.Unix(1, 0), time.Unix(1, 0)))
	require.Equal(t, h, dirtest.HashExcept(t, dir, "LOCK"))
	require.NotEqual(t, dirtest.Hash(t, dir), h)
	require.NoError(t, os.WriteFile(lock, []byte("x"), 0o644))
	require.NotEqual(t, h, dirtest.HashExcept(t, dir, "LOCK"), "the content still counts")
}

// TestHashBallast: the engine's ballast counts by path, mode, size and
// time, not content; another file of the same size and time still counts
// by content.
func TestHashBallast(t *testing.T) {
	dir := t.TempDir()
	aux := filepath.Join(dir, engine.BallastDir)
	require.NoError(t, os.Mkdir(aux, 0o755))
	ballast := filepath.Join(aux, engine.BallastName)
	other := filepath.Join(aux, "other")
	at := time.Unix(100, 0)
	write := func(p, content string) {
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		require.NoError(t, os.Chtimes(p, at, at))
	}
	write(ballast, "0000")
	write(other, "0000")
	h := dirtest.Hash(t, dir)
	write(ballast, "1111")
	require.Equal(t, h, dirtest.Hash(t, dir), "the ballast's content is not hashed")
	write(ballast, "11111")
	require.NotEqual(t, h, dirtest.Hash(t, dir), "its size is")
	h = dirtest.Hash(t, dir)
	write(other, "1111")
	require.NotEqual(t, h, dirtest.Hash(t, dir), "another file's content is")
}
