package engine_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

// TestRecordTablesHoldOnlyRecords: Pebble's flushes and compactions never
// put a record key in the same table as one of the engine's other keys
// (metadata, catalog, consumers, shard counts and trim points), which
// every session rewrites: a table holding both overlapped every older one
// and cost compactions (see PebbleOptions).
func TestRecordTablesHoldOnlyRecords(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	opts := &engine.Options{NoSync: true, Pebble: &pebble.Options{MemTableSize: 1 << 20, L0CompactionThreshold: 2}}
	entries := make([]engine.Entry, 400)
	for i := range entries {
		entries[i] = engine.Entry{PartitionKey: itoa(i), Data: make([]byte, 200)}
	}
	for session := range 3 {
		db, err := engine.Open(dir, opts)
		require.NoError(t, err)
		if session == 0 {
			require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 4}))
		}
		c, err := db.Consumer("s", "c", nil)
		require.NoError(t, err)
		for range 30 {
			res, err := db.PutRecords(ctx, "s", entries)
			require.NoError(t, err)
			require.NoError(t, c.Checkpoint(engine.Record{ShardID: res[0].ShardID, SequenceNumber: res[0].SequenceNumber}))
		}
		require.NoError(t, db.Close()) // rewrites every shard's counts
	}

	var records, others int
	for level, tables := range sstables(t, dir) {
		for _, tab := range tables {
			lo, hi := tab.Smallest.UserKey[0], tab.Largest.UserKey[0]
			isRecords := lo == shard.PrefixRecords
			require.Equal(t, isRecords, hi == shard.PrefixRecords,
				"L%d table %s holds keys %x to %x: records and other keys", level, tab.FileNum, tab.Smallest.UserKey, tab.Largest.UserKey)
			if isRecords {
				records++
			} else {
				others++
			}
		}
	}
	require.Positive(t, records)
	require.Positive(t, others)
}

// sstables lists the sstables of a closed data directory by level,
// opening it read-only.
func sstables(t *testing.T, dir string) [][]pebble.SSTableInfo {
	t.Helper()
	po := engine.PebbleOptions(engine.ProfileSmall) // its quiet logger
	defer po.Cache.Unref()
	po.ReadOnly = true
	pdb, err := pebble.Open(dir, po)
	require.NoError(t, err)
	defer pdb.Close()
	levels, err := pdb.SSTables()
	require.NoError(t, err)
	return levels
}

// recordTables returns the paths of dir's sstables that hold records (a
// closed data directory).
func recordTables(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, tables := range sstables(t, dir) {
		for _, tab := range tables {
			if tab.Smallest.UserKey[0] == shard.PrefixRecords {
				out = append(out, filepath.Join(dir, tab.FileNum.String()+".sst"))
			}
		}
	}
	return out
}
