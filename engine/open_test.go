package engine_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/internal/dirtest"
	"github.com/stretchr/testify/require"
)

// requireStorageError checks err is an OS error reported as such:
// ErrStorage, the OS cause reachable with errors.Is, the path named, and
// not corruption.
func requireStorageError(t *testing.T, err error, path string, cause error) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, engine.ErrStorage)
	require.False(t, engine.IsCorruptionError(err), "an OS error reported as corruption: %v", err)
	require.NotErrorIs(t, err, engine.ErrLocked)
	if cause != nil {
		require.ErrorIs(t, err, cause)
	}
	require.Contains(t, err.Error(), path)
}

func TestOpenClassifiesOSErrors(t *testing.T) {
	t.Run("a file where the directory should be", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "file")
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o644))
		_, err := engine.Open(p, nil)
		requireStorageError(t, err, p, syscall.ENOTDIR)
		b, _ := os.ReadFile(p)
		require.Equal(t, "x", string(b))
	})
	t.Run("a path below a file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "file")
		require.NoError(t, os.WriteFile(p, nil, 0o644))
		_, err := engine.Open(filepath.Join(p, "data"), nil)
		requireStorageError(t, err, filepath.Join(p, "data"), syscall.ENOTDIR)
	})
	t.Run("a path under /proc", func(t *testing.T) {
		if _, err := os.Stat("/proc/self"); err != nil {
			t.Skip("no /proc on this system")
		}
		p := "/proc/self/kvstream-data"
		_, err := engine.Open(p, nil)
		requireStorageError(t, err, p, nil)
		var pe *fs.PathError
		require.ErrorAs(t, err, &pe)
	})
	t.Run("/proc itself", func(t *testing.T) {
		if _, err := os.Stat("/proc/self"); err != nil {
			t.Skip("no /proc on this system")
		}
		_, err := engine.Open("/proc", nil)
		require.ErrorIs(t, err, engine.ErrNotDataDir)
		require.False(t, engine.IsCorruptionError(err))
		require.Contains(t, err.Error(), "/proc")
	})
	t.Run("LOCK is a directory", func(t *testing.T) {
		dir := t.TempDir()
		db := openDB(t, dir, nil)
		require.NoError(t, db.Close())
		lock := filepath.Join(dir, "LOCK")
		require.NoError(t, os.Remove(lock))
		require.NoError(t, os.Mkdir(lock, 0o755))
		_, err := engine.Open(dir, nil)
		requireStorageError(t, err, dir, syscall.EISDIR)
		require.Contains(t, err.Error(), "LOCK")
	})
	t.Run("an empty path", func(t *testing.T) {
		_, err := engine.Open("", nil)
		require.ErrorIs(t, err, engine.ErrInvalidOptions)
	})
}

// TestOpenPermissionDenied: a directory the process may not read or
// write is an OS error, not corruption. Permission bits do not bind root,
// so as root the test reruns itself without CAP_DAC_OVERRIDE and
// CAP_DAC_READ_SEARCH (setpriv), and skips if that is not possible.
func TestOpenPermissionDenied(t *testing.T) {
	const env = "KVSTREAM_TEST_NO_DAC"
	if os.Geteuid() == 0 && os.Getenv(env) == "" {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skip("running as root and setpriv is not installed: cannot drop the capabilities that bypass permission bits")
		}
		cmd := exec.Command(setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search",
			os.Args[0], "-test.run=^TestOpenPermissionDenied$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), env+"=1")
		out, err := cmd.CombinedOutput()
		if strings.Contains(string(out), "--- SKIP") {
			t.Skipf("child skipped:\n%s", out)
		}
		require.NoError(t, err, "child:\n%s", out)
		require.Contains(t, string(out), "--- PASS: TestOpenPermissionDenied")
		return
	}
	base := t.TempDir()
	probe := filepath.Join(base, "probe")
	require.NoError(t, os.Mkdir(probe, 0))
	defer os.Chmod(probe, 0o755)
	if _, err := os.ReadDir(probe); err == nil {
		t.Skip("permission bits do not apply to this process")
	}

	t.Run("an unreadable directory", func(t *testing.T) {
		dir := filepath.Join(base, "unreadable")
		require.NoError(t, os.Mkdir(dir, 0))
		defer os.Chmod(dir, 0o755)
		_, err := engine.Open(dir, nil)
		requireStorageError(t, err, dir, fs.ErrPermission)
	})
	t.Run("a directory in an unwritable parent", func(t *testing.T) {
		parent := filepath.Join(base, "ro")
		require.NoError(t, os.Mkdir(parent, 0o555))
		defer os.Chmod(parent, 0o755)
		dir := filepath.Join(parent, "data")
		_, err := engine.Open(dir, nil)
		requireStorageError(t, err, dir, fs.ErrPermission)
	})
	t.Run("an unreadable LOCK", func(t *testing.T) {
		dir := filepath.Join(base, "lock")
		db := openDB(t, dir, nil)
		require.NoError(t, db.Close())
		lock := filepath.Join(dir, "LOCK")
		require.NoError(t, os.Chmod(lock, 0))
		defer os.Chmod(lock, 0o644)
		_, err := engine.Open(dir, nil)
		requireStorageError(t, err, dir, fs.ErrPermission)
		_, err = engine.Open(dir, &engine.Options{ReadOnly: true})
		requireStorageError(t, err, dir, fs.ErrPermission)
		_, err = engine.Check(dir, nil)
		requireStorageError(t, err, dir, fs.ErrPermission)
	})
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir, nil)
	// Another spelling of the same directory is the same directory.
	alias := filepath.Join(t.TempDir(), "alias")
	require.NoError(t, os.Symlink(dir, alias))
	for _, p := range []string{dir, alias, dir + "/."} {
		for _, ro := range []bool{false, true} {
			_, err := engine.Open(p, &engine.Options{ReadOnly: ro})
			require.ErrorIs(t, err, engine.ErrLocked, "%s read-only=%v", p, ro)
			require.NotErrorIs(t, err, engine.ErrStorage)
			require.Contains(t, engine.Message(err), p)
		}
	}
	// The failed attempts did not release the holder's lock: another
	// process cannot open the directory either.
	require.NoError(t, db.Close())

	pid := holdDirInChild(t, dir, false)
	for _, ro := range []bool{false, true} {
		_, err := engine.Open(dir, &engine.Options{ReadOnly: ro})
		require.ErrorIs(t, err, engine.ErrLocked, "read-only=%v", ro)
		require.Contains(t, engine.Message(err), "process "+itoa(pid), "the message names the holder")
	}
}

// TestOpenLockedByReadOnlyProcess: a read-only DB in another process
// keeps writers out (its shared lock conflicts with their exclusive one)
// but lets other readers in.
func TestOpenLockedByReadOnlyProcess(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir, nil)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	require.NoError(t, db.Close())
	holdDirInChild(t, dir, true)
	_, err := engine.Open(dir, nil)
	require.ErrorIs(t, err, engine.ErrLocked)
	ro, err := engine.Open(dir, &engine.Options{ReadOnly: true})
	require.NoError(t, err)
	names, err := ro.ListStreams()
	require.NoError(t, err)
	require.Equal(t, []string{"s"}, names)
	require.NoError(t, ro.Close())
}

func TestOpenRefusesForeignDirectories(t *testing.T) {
	t.Run("files of another program", func(t *testing.T) {
		dir := t.TempDir()
		for _, n := range []string{"b.txt", "a.txt", "c.jpg", "d", "e"} {
			require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644))
		}
		require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
		before := dirtest.Hash(t, dir)
		for _, ro := range []bool{false, true} {
			_, err := engine.Open(dir, &engine.Options{ReadOnly: ro})
			require.ErrorIs(t, err, engine.ErrNotDataDir)
			require.False(t, engine.IsCorruptionError(err))
			msg := engine.Message(err)
			require.Contains(t, msg, dir)
			require.Contains(t, msg, "a.txt, b.txt, c.jpg, d and 2 more")
			require.Equal(t, before, dirtest.Hash(t, dir), "nothing written")
		}
	})
	t.Run("another program's Pebble database", func(t *testing.T) {
		dir := t.TempDir()
		p, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: quietPebble{}})
		require.NoError(t, err)
		require.NoError(t, p.Set([]byte("user-key"), []byte("v"), pebble.Sync))
		require.NoError(t, p.Close())
		for _, ro := range []bool{true, false} {
			_, err = engine.Open(dir, &engine.Options{ReadOnly: ro})
			require.ErrorIs(t, err, engine.ErrNotDataDir, "read-only=%v", ro)
			require.Contains(t, engine.Message(err), dir)
		}
		p, err = pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: quietPebble{}})
		require.NoError(t, err)
		v, closer, err := p.Get([]byte("user-key"))
		require.NoError(t, err)
		require.Equal(t, "v", string(v))
		require.NoError(t, closer.Close())
		_, closer, err = p.Get([]byte("\x01format"))
		require.ErrorIs(t, err, pebble.ErrNotFound, "kvstream wrote no format key into it")
		require.NoError(t, p.Close())
	})
	t.Run("empty, or only a LOCK left by a failed first Open", func(t *testing.T) {
		for _, lock := range []bool{false, true} {
			dir := t.TempDir()
			if lock {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "LOCK"), nil, 0o644))
			}
			db := openDB(t, dir, nil)
			require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
			require.NoError(t, db.Close())
		}
	})
	t.Run("a new directory is created", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "b")
		db := openDB(t, dir, nil)
		require.NoError(t, db.Close())
		require.DirExists(t, dir)
	})
}

func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	clk := newStepClock()
	ctx := context.Background()
	db := openDB(t, dir, &engine.Options{Clock: clk.Now})
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
	var want []string
	for i := range 50 {
		want = append(want, put(t, db, "s", "k"+itoa(i), "d"+itoa(i)).SequenceNumber.String())
	}
	c, err := db.Consumer("s", "c", nil)
	require.NoError(t, err)
	require.NoError(t, c.Checkpoint(shardRecords(t, db, "s", 0)[0]))
	require.NoError(t, db.Close()) // the records stay in the WAL: read-only replays it

	before := dirtest.Hash(t, dir)
	ro, err := engine.Open(dir, &engine.Options{ReadOnly: true, Clock: clk.Now})
	require.NoError(t, err)
	require.True(t, ro.Options().ReadOnly)

	// Reads work, including from the WAL and through a durable consumer.
	var got []string
	for _, id := range []engine.ShardID{0, 1} {
		got = append(got, seqs(shardRecords(t, ro, "s", id))...)
		tok, err := ro.GetShardIterator("s", id, engine.TrimHorizon())
		require.NoError(t, err)
		_, err = ro.GetRecords(ctx, tok, 0)
		require.NoError(t, err)
	}
	require.ElementsMatch(t, want, got)
	d, err := ro.DescribeStream("s")
	require.NoError(t, err)
	require.Len(t, d.Shards, 2)
	rc, err := ro.Consumer("s", "c", nil)
	require.NoError(t, err)
	require.Len(t, rc.Checkpoints(), 1)

	// Every write says the DB is read-only, and changes nothing.
	writes := map[string]func() error{
		"PutRecord": func() error {
			_, err := ro.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("x")})
			return err
		},
		"PutRecords": func() error {
			_, err := ro.PutRecords(ctx, "s", []engine.Entry{{PartitionKey: "k", Data: []byte("x")}})
			return err
		},
		"CreateStream":     func() error { return ro.CreateStream("t", engine.StreamConfig{ShardCount: 1}) },
		"DeleteStream":     func() error { return ro.DeleteStream(ctx, "s") },
		"SetRetention":     func() error { return ro.SetRetention("s", 48*time.Hour) },
		"AddTags":          func() error { return ro.AddTags("s", map[string]string{"a": "b"}) },
		"SplitShard":       func() error { return ro.SplitShard("s", 0, "1") },
		"UpdateShardCount": func() error { return ro.UpdateShardCount("s", 4) },
		"Trim":             func() error { return ro.Trim(ctx, "s") },
		"new Consumer": func() error {
			_, err := ro.Consumer("s", "new", nil)
			return err
		},
		"Checkpoint":     func() error { return rc.Checkpoint(shardRecords(t, ro, "s", 0)[1]) },
		"DeleteConsumer": func() error { return ro.DeleteConsumer("s", "c") },
		"SetAttr":        func() error { return ro.SetAttr("s", "k", []byte("v")) },
		"UpdateAttrs": func() error {
			return ro.UpdateAttrs("s", func(a map[string][]byte) error { a["k"] = nil; return nil })
		},
	}
	for name, w := range writes {
		err := w()
		require.ErrorIs(t, err, engine.ErrReadOnly, name)
		require.Contains(t, engine.Message(err), "read-only", name)
	}
	names, err := ro.ListStreams()
	require.NoError(t, err)
	require.Equal(t, []string{"s"}, names)
	require.NoError(t, ro.Close())
	require.Equal(t, before, dirtest.Hash(t, dir), "a read-only DB wrote to its directory")

	// After it, the directory opens for writing as before.
	db = openDB(t, dir, &engine.Options{Clock: clk.Now})
	put(t, db, "s", "k", "after")
}

func TestReadOnlyNeedsADataDirectory(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "missing")
		_, err := engine.Open(dir, &engine.Options{ReadOnly: true})
		require.ErrorIs(t, err, engine.ErrNotDataDir)
		require.ErrorIs(t, err, fs.ErrNotExist)
		require.Contains(t, engine.Message(err), dir)
		require.NoDirExists(t, dir)
	})
	t.Run("empty", func(t *testing.T) {
		dir := t.TempDir()
		_, err := engine.Open(dir, &engine.Options{ReadOnly: true})
		require.ErrorIs(t, err, engine.ErrNotDataDir)
		require.Contains(t, engine.Message(err), "empty")
		require.Empty(t, dirNames(t, dir))
	})
	t.Run("in memory", func(t *testing.T) {
		mem := vfs.NewMem()
		_, err := engine.Open("db", &engine.Options{FS: mem, ReadOnly: true})
		require.ErrorIs(t, err, engine.ErrNotDataDir)
		db := openDB(t, "db", &engine.Options{FS: mem})
		require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
		require.NoError(t, db.Close())
		ro := openDB(t, "db", &engine.Options{FS: mem, ReadOnly: true})
		names, err := ro.ListStreams()
		require.NoError(t, err)
		require.Equal(t, []string{"s"}, names)
		require.ErrorIs(t, ro.CreateStream("t", engine.StreamConfig{ShardCount: 1}), engine.ErrReadOnly)
	})
}

func TestOpenErrorsAreNotCorruption(t *testing.T) {
	// The sentinels of this area are distinct kinds.
	kinds := []error{engine.ErrStorage, engine.ErrNotDataDir, engine.ErrFormatVersion, engine.ErrReadOnly, engine.ErrLocked, engine.ErrCorruption}
	for i, a := range kinds {
		for j, b := range kinds {
			require.Equal(t, i == j, errors.Is(a, b), "%v vs %v", a, b)
		}
	}
}
