package engine_test

import (
	"context"
	"testing"

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
