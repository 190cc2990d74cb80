package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// TestPutRecordAllocations: PutRecord allocates nothing per call in the
// engine (its result lives on the caller's stack, the commit request is
// pooled), so a stream of single puts costs the garbage collector
// nothing; Pebble's own occasional allocations keep the average below 1.
func TestPutRecordAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	clk := newStepClock()
	opts := memOpts(clk)
	opts.NoSync = true
	db := openDB(t, "db", opts)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 4}))
	ctx := context.Background()
	e := engine.Entry{PartitionKey: "partition-key", Data: make([]byte, 100)}
	for range 100 { // warm the pools and Pebble's buffers
		_, err := db.PutRecord(ctx, "s", e)
		require.NoError(t, err)
	}
	allocs := testing.AllocsPerRun(500, func() {
		if _, err := db.PutRecord(ctx, "s", e); err != nil {
			t.Fatal(err)
		}
	})
	require.Less(t, allocs, 1.0, "allocations per PutRecord")
}

// TestPutRecordsToAllocations: PutRecordsTo into the previous call's
// results allocates nothing per call in the engine, where PutRecords
// allocates its results slice every time.
func TestPutRecordsToAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	// On disk, not in memory: an in-memory file allocates as it grows.
	// Few enough records that Pebble flushes no memtable meanwhile (a
	// flush allocates, on its own goroutine, and AllocsPerRun counts
	// every goroutine's allocations).
	opts := &engine.Options{NoSync: true, Profile: engine.ProfileThroughput, MinFreeBytes: -1, BallastBytes: -1, TrimInterval: time.Hour}
	db := openDB(t, t.TempDir(), opts)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 4}))
	ctx := context.Background()
	entries := make([]engine.Entry, 100)
	for i := range entries {
		entries[i] = engine.Entry{PartitionKey: fmt.Sprintf("key-%d", i), Data: make([]byte, 100)}
	}
	var rs []engine.PutResult
	for range 3 { // warm the pools and Pebble's buffers
		var err error
		rs, err = db.PutRecordsTo(ctx, "s", entries, rs[:0])
		require.NoError(t, err)
	}
	allocs := testing.AllocsPerRun(10, func() {
		var err error
		if rs, err = db.PutRecordsTo(ctx, "s", entries, rs[:0]); err != nil {
			t.Fatal(err)
		}
	})
	require.Less(t, allocs, 1.0, "allocations per PutRecordsTo")
	// PutRecords allocates its results: this is what the reuse saves.
	allocs = testing.AllocsPerRun(10, func() {
		if _, err := db.PutRecords(ctx, "s", entries); err != nil {
			t.Fatal(err)
		}
	})
	require.GreaterOrEqual(t, allocs, 1.0, "allocations per PutRecords")
}

// TestPutRecordsTo: the results are appended after dst's own elements, in
// input order, as PutRecords returns them; a request-level error leaves
// dst as it was.
func TestPutRecordsTo(t *testing.T) {
	db := openDB(t, "db", memOpts(newStepClock()))
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
	ctx := context.Background()
	entries := []engine.Entry{{PartitionKey: "a", Data: []byte("1")}, {PartitionKey: "b", Data: []byte("2")}, {PartitionKey: "c", Data: []byte("3")}}
	want, err := db.PutRecords(ctx, "s", entries)
	require.NoError(t, err)

	prefix := engine.PutResult{ShardID: 7}
	dst := make([]engine.PutResult, 1, 2)
	dst[0] = prefix
	got, err := db.PutRecordsTo(ctx, "s", entries, dst)
	require.NoError(t, err)
	require.Len(t, got, 1+len(entries))
	require.Equal(t, prefix, got[0])
	for i := range entries {
		require.NoError(t, got[1+i].Err)
		require.Equal(t, want[i].ShardID, got[1+i].ShardID, "entry %d", i)
		require.True(t, got[1+i].SequenceNumber.Counter > want[i].SequenceNumber.Counter, "entry %d: a later put gets a later number", i)
	}
	// The records read back in put order, with the numbers returned.
	for _, rs := range [][]engine.PutResult{want, got[1:]} {
		for i, r := range rs {
			tok, err := db.GetShardIterator("s", r.ShardID, engine.AtSequenceNumber(r.SequenceNumber))
			require.NoError(t, err)
			out, err := db.GetRecords(ctx, tok, 1)
			require.NoError(t, err)
			require.Len(t, out.Records, 1)
			require.Equal(t, entries[i].Data, out.Records[0].Data)
		}
	}

	for _, bad := range [][]engine.Entry{nil, {{PartitionKey: "", Data: []byte("x")}}} {
		back, err := db.PutRecordsTo(ctx, "s", bad, dst[:1])
		require.Error(t, err)
		require.Equal(t, dst[:1], back)
	}
	_, err = db.PutRecordsTo(ctx, "missing", entries, nil)
	require.ErrorIs(t, err, engine.ErrStreamNotFound)
}
