package command

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/internal/dirtest"
	"github.com/stretchr/testify/require"
)

// checkDir makes a data directory with two streams whose records are in
// sstables (NoSync: Close flushes) and returns it.
func checkDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	db, err := engine.Open(dir, &engine.Options{NoSync: true})
	require.NoError(t, err)
	for _, s := range []string{"orders", "events"} {
		require.NoError(t, db.CreateStream(s, engine.StreamConfig{ShardCount: 2}))
		for b := range 4 {
			entries := make([]engine.Entry, 500)
			for i := range entries {
				entries[i] = engine.Entry{PartitionKey: fmt.Sprintf("k%d-%d", b, i), Data: []byte(strings.Repeat(fmt.Sprintf("%s-%d-%d;", s, b, i), 8))}
			}
			_, err := db.PutRecords(context.Background(), s, entries)
			require.NoError(t, err)
		}
	}
	require.NoError(t, db.Close())
	return dir
}

// runCheck runs kvstream check and requires it to leave dir unchanged.
func runCheck(t *testing.T, dir string, args ...string) result {
	t.Helper()
	var before string
	if _, err := os.Stat(dir); err == nil {
		before = dirtest.Hash(t, dir)
	}
	r := runCtx(t.Context(), t, dir, "", append([]string{"check"}, args...)...)
	if before != "" {
		require.Equal(t, before, dirtest.Hash(t, dir), "kvstream check modified %s", dir)
	}
	return r
}

func TestCheckCommand(t *testing.T) {
	t.Run("healthy", func(t *testing.T) {
		dir := checkDir(t)
		r := runCheck(t, dir)
		require.Equal(t, ExitOK, r.code, "stderr: %s", r.stderr)
		require.Regexp(t, `^ok: .+: 2 streams, 4 shards, 4000 records; \d+ sstables \(.+\) verified\n$`, r.stdout)
		require.Empty(t, r.stderr)

		r = runCheck(t, dir, "--json")
		require.Equal(t, ExitOK, r.code, "stderr: %s", r.stderr)
		var rep engine.CheckReport
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep))
		require.True(t, rep.OK())
		require.Equal(t, dir, rep.Dir)
		require.EqualValues(t, 4000, rep.Records())
		require.Len(t, rep.Streams, 2)
		require.Contains(t, r.stdout, `"problems": []`)
	})
	t.Run("a damaged block", func(t *testing.T) {
		dir := checkDir(t)
		damageBlock(t, largestTable(t, dir)) // the records' (the engine keeps them in tables of their own)
		r := runCheck(t, dir)
		require.Equal(t, ExitFailure, r.code)
		require.Contains(t, r.stdout, "problem(s)")
		require.Contains(t, r.stdout, "checksum mismatch")
		require.Contains(t, r.stdout, "Unreadable records:")
		require.Regexp(t, `shardId-\d{12}\s+\d+-\d+\s+\d{56}\s+\d{56}`, r.stdout, "each range with the sequence numbers around it")
		require.Regexp(t, `^kvstream: check found \d+ problem\(s\) in `, r.stderr)

		r = runCheck(t, dir, "--json")
		require.Equal(t, ExitFailure, r.code)
		var rep engine.CheckReport
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep))
		require.False(t, rep.OK())
		var ranges int
		for _, s := range rep.Streams {
			for _, sh := range s.Shards {
				ranges += len(sh.Unreadable)
			}
		}
		require.Positive(t, ranges)
	})
	t.Run("a damaged MANIFEST", func(t *testing.T) {
		dir := checkDir(t)
		markers, err := filepath.Glob(filepath.Join(dir, "marker.manifest.*"))
		require.NoError(t, err)
		require.Len(t, markers, 1)
		m := filepath.Join(dir, markers[0][strings.LastIndex(markers[0], ".MANIFEST-")+1:])
		b, err := os.ReadFile(m)
		require.NoError(t, err)
		b[10] ^= 0xff // inside the first record
		require.NoError(t, os.WriteFile(m, b, 0o644))
		r := runCheck(t, dir)
		require.Equal(t, ExitFailure, r.code)
		require.Contains(t, r.stdout, "manifest "+filepath.Base(m))
	})
	t.Run("a deleted sstable", func(t *testing.T) {
		dir := checkDir(t)
		tables, err := filepath.Glob(filepath.Join(dir, "*.sst"))
		require.NoError(t, err)
		require.NotEmpty(t, tables)
		require.NoError(t, os.Remove(tables[0]))
		r := runCheck(t, dir)
		require.Equal(t, ExitFailure, r.code)
		require.Contains(t, r.stdout, "sstable "+filepath.Base(tables[0]))
		require.Contains(t, r.stdout, "missing")
	})
	t.Run("not a data directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nothing")
		r := runCheck(t, dir)
		require.Equal(t, ExitFailure, r.code)
		require.Contains(t, r.stderr, "does not exist")
		require.NoDirExists(t, dir, "check created the directory")
		empty := t.TempDir()
		r = runCheck(t, empty)
		require.Equal(t, ExitFailure, r.code)
		require.Contains(t, r.stderr, "not a kvstream data directory")
		names, err := os.ReadDir(empty)
		require.NoError(t, err)
		require.Empty(t, names, "check created files")
	})
	t.Run("in use", func(t *testing.T) {
		dir := checkDir(t)
		db, err := engine.Open(dir, nil)
		require.NoError(t, err)
		defer db.Close()
		r := runCtx(t.Context(), t, dir, "", "check")
		require.Equal(t, ExitFailure, r.code)
		require.Contains(t, r.stderr, "in use")
	})
}

// largestTable returns the path of dir's largest sstable.
func largestTable(t *testing.T, dir string) string {
	t.Helper()
	tables, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	require.NoError(t, err)
	require.NotEmpty(t, tables)
	var best string
	var size int64 = -1
	for _, p := range tables {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		if fi.Size() > size {
			best, size = p, fi.Size()
		}
	}
	return best
}

// damageBlock flips a byte in the middle of the sstable's middle data
// block.
func damageBlock(t *testing.T, path string) {
	t.Helper()
	po := &pebble.Options{}
	po.EnsureDefaults()
	f, err := vfs.Default.Open(path)
	require.NoError(t, err)
	readable, err := sstable.NewSimpleReadable(f)
	require.NoError(t, err)
	r, err := sstable.NewReader(context.Background(), readable, po.MakeReaderOptions())
	require.NoError(t, err)
	l, err := r.Layout()
	require.NoError(t, err)
	require.NoError(t, r.Close())
	bh := l.Data[len(l.Data)/2].Handle
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[bh.Offset+bh.Length/2] ^= 0xff
	require.NoError(t, os.WriteFile(path, b, 0o644))
}
