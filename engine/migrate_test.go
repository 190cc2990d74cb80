package engine

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

// copyLegacyDir copies testdata/legacy-v1, a data directory written by
// the build before the Kinesis settings and the registered consumers
// moved into attributes (see its README), to a temporary directory.
func copyLegacyDir(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("testdata", "legacy-v1")
	ents, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range ents {
		if e.Name() == "README" {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		out, err := os.Create(filepath.Join(dst, e.Name()))
		require.NoError(t, err)
		_, err = io.Copy(out, in)
		require.NoError(t, err)
		require.NoError(t, in.Close())
		require.NoError(t, out.Close())
	}
	return dst
}

// legacyAttrs returns the attributes the migration must produce from
// testdata/legacy-v1, by stream.
func legacyAttrs(t *testing.T) map[string]map[string]string {
	const t0 = 1764578000000
	consumer := func(c legacyConsumer) string {
		b, err := json.Marshal(c)
		require.NoError(t, err)
		return string(b)
	}
	return map[string]map[string]string{
		"orders": {
			legacyEncryptionAttr:             `{"type":"KMS","key_id":"alias/aws/kinesis"}`,
			legacyMetricsAttr:                `["IncomingBytes","OutgoingBytes"]`,
			legacyConsumerPrefix + "billing": consumer(legacyConsumer{CreatedMs: t0, ActiveMs: t0}),
			legacyConsumerPrefix + "audit":   consumer(legacyConsumer{CreatedMs: t0, ActiveMs: t0, DeletionDelayMs: 3600000, DeregisteredMs: t0 + 1500}),
			legacyConsumerPrefix + "slow":    consumer(legacyConsumer{CreatedMs: t0 + 1500, ActiveMs: t0 + 1500 + 3600000, DeletionDelayMs: 3600000}),
		},
		"ondemand": {
			legacyModeAttr:                  "ON_DEMAND",
			legacyConsumerPrefix + "reader": consumer(legacyConsumer{CreatedMs: t0 + 1500, ActiveMs: t0 + 1500}),
		},
		"plain": {},
	}
}

func requireAttrs(t *testing.T, db *DB, want map[string]map[string]string) {
	t.Helper()
	for stream, w := range want {
		got, err := db.Attrs(stream, "")
		require.NoError(t, err)
		gs := make(map[string]string, len(got))
		for k, v := range got {
			gs[k] = string(v)
		}
		require.Equal(t, w, gs, stream)
	}
}

// legacyConsumerKeys counts the entries left in the old registered
// consumer key space.
func legacyConsumerKeys(t *testing.T, db *DB) int {
	t.Helper()
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{shard.PrefixStreamConsumers}, UpperBound: []byte{shard.PrefixStreamConsumers + 1}})
	require.NoError(t, err)
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

// TestMigrateLegacyLayout opens a data directory written by the previous
// build: its stream modes, encryption settings, shard-level metrics and
// registered consumers come back as attributes, the old entries are gone
// after the first writable Open, a read-only Open sees the same without
// writing, and the result is stable across reopens.
func TestMigrateLegacyLayout(t *testing.T) {
	dir := copyLegacyDir(t)
	want := legacyAttrs(t)
	now := func() time.Time { return time.UnixMilli(1764578000000 + 2000) }

	ro, err := Open(dir, &Options{ReadOnly: true, Clock: now})
	require.NoError(t, err)
	requireAttrs(t, ro, want)
	require.Equal(t, 4, legacyConsumerKeys(t, ro), "a read-only Open writes nothing")
	require.NoError(t, ro.Close())

	for range 2 {
		db, err := Open(dir, &Options{BallastBytes: -1, Clock: now})
		require.NoError(t, err)
		requireAttrs(t, db, want)
		require.Zero(t, legacyConsumerKeys(t, db))
		for _, name := range []string{"orders", "ondemand", "plain"} {
			s, err := db.streamByName(name)
			require.NoError(t, err)
			m := s.load().meta
			require.Empty(t, m.LegacyMode, name)
			require.Empty(t, m.LegacyEncryption, name)
			require.Empty(t, m.LegacyKeyID, name)
			require.Nil(t, m.LegacyMetrics, name)
		}
		d, err := db.DescribeStream("orders")
		require.NoError(t, err)
		require.Len(t, d.Shards, 2)
		require.NoError(t, db.Close())
	}

	// The migrated attributes are deleted with their stream.
	db, err := Open(dir, &Options{BallastBytes: -1, Clock: now})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.DeleteStream(context.Background(), "orders"))
	require.NoError(t, db.CreateStream("orders", StreamConfig{ShardCount: 1}))
	got, err := db.Attrs("orders", "")
	require.NoError(t, err)
	require.Empty(t, got)
}

// migrateCrashEnv names the fault of TestMigrateCrashChild, and
// migrateCrashDir its data directory.
const (
	migrateCrashEnv = "KVSTREAM_MIGRATE_CRASH"
	migrateCrashDir = "KVSTREAM_MIGRATE_CRASH_DIR"
)

// TestMigrateCrash: a process that dies while the first Open migrates a
// legacy data directory (its WAL write or fsync fails: the engine stops
// the process, as it would crash) loses nothing; the next Open migrates
// everything.
func TestMigrateCrash(t *testing.T) {
	want := legacyAttrs(t)
	now := func() time.Time { return time.UnixMilli(1764578000000 + 2000) }
	for _, fault := range []string{"wal-write", "wal-fsync"} {
		t.Run(fault, func(t *testing.T) {
			dir := copyLegacyDir(t)
			cmd := exec.Command(os.Args[0], "-test.run=^TestMigrateCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), migrateCrashEnv+"="+fault, migrateCrashDir+"="+dir)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "the child must die in the migration: %s", out)
			require.Equal(t, FatalExitCode, exit.ExitCode(), "%s", out)

			db, err := Open(dir, &Options{BallastBytes: -1, Clock: now})
			require.NoError(t, err)
			defer db.Close()
			requireAttrs(t, db, want)
			require.Zero(t, legacyConsumerKeys(t, db))
		})
	}
}

// TestMigrateCrashChild is the child side of TestMigrateCrash: it opens
// the directory with its WAL failing. It does nothing in a normal run.
func TestMigrateCrashChild(t *testing.T) {
	fault := os.Getenv(migrateCrashEnv)
	if fault == "" {
		t.Skip("the child process of TestMigrateCrash")
	}
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt:
			if fault == "wal-write" {
				return errorfs.ErrInjected
			}
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if fault == "wal-fsync" {
				return errorfs.ErrInjected
			}
		}
		return nil
	}))
	db, err := Open(os.Getenv(migrateCrashDir), &Options{FS: fs, BallastBytes: -1})
	// The default OnFatal exits the process with FatalExitCode, before or
	// after Open returns the failure.
	if errors.Is(err, ErrFailed) {
		os.Exit(FatalExitCode)
	}
	t.Fatalf("Open returned (%v, %v) with its WAL failing", db, err)
}
