package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// fakeClock is an injectable clock tests move by hand.
// openClocked opens dir on disk, not fsync'd, with clk.
func openClocked(t *testing.T, dir string, clk *stepClock) *engine.DB {
	t.Helper()
	db, err := engine.Open(dir, &engine.Options{Clock: clk.Now, NoSync: true, TrimInterval: time.Hour})
	require.NoError(t, err)
	return db
}

func TestRetentionExpiryVisibleAtOnceAndTrimmed(t *testing.T) {
	clk := newStepClock()
	dir := t.TempDir()
	db := openClocked(t, dir, clk)
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1, Retention: time.Hour}))
	for i := range 10 {
		_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte{byte(i)}})
		require.NoError(t, err)
	}
	clk.Add(30 * time.Minute)
	for i := range 5 {
		_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte{byte(100 + i)}})
		require.NoError(t, err)
	}
	require.Len(t, shardRecords(t, db, "s", 0), 15)
	clk.Add(31 * time.Minute) // the first 10 are past retention
	recs := shardRecords(t, db, "s", 0)
	require.Len(t, recs, 5, "expired records are hidden before any trim")
	require.Equal(t, byte(100), recs[0].Data[0])
	// AT_TIMESTAMP before the horizon starts at the horizon.
	it, err := db.Iterate("s", 0, engine.AtTimestamp(clk.Now().Add(-2*time.Hour)))
	require.NoError(t, err)
	require.True(t, it.Next())
	require.Equal(t, byte(100), it.Record().Data[0])
	require.NoError(t, it.Close())

	d, err := db.DescribeStream("s")
	require.NoError(t, err)
	require.EqualValues(t, 15, d.Records)
	require.NoError(t, db.Trim(ctx, "s"))
	d, err = db.DescribeStream("s")
	require.NoError(t, err)
	require.EqualValues(t, 5, d.Records)

	// The trim point and the accounting survive a restart.
	require.NoError(t, db.Close())
	db = openClocked(t, dir, clk)
	defer db.Close()
	d, err = db.DescribeStream("s")
	require.NoError(t, err)
	require.EqualValues(t, 5, d.Records)
	require.Len(t, shardRecords(t, db, "s", 0), 5)
	// An iterator token from before the trim resumes at the horizon.
	clk.Add(time.Hour)
	require.Empty(t, shardRecords(t, db, "s", 0))
}

func TestMaxBytesDiscardPolicies(t *testing.T) {
	clk := newStepClock()
	db := openClocked(t, t.TempDir(), clk)
	defer db.Close()
	ctx := context.Background()
	data := make([]byte, 100)
	require.NoError(t, db.CreateStream("old", engine.StreamConfig{ShardCount: 2, MaxBytes: 2000}))
	require.NoError(t, db.CreateStream("new", engine.StreamConfig{ShardCount: 2, MaxBytes: 2000, Discard: engine.DiscardNew}))
	for i := range 50 {
		clk.Add(time.Millisecond)
		_, err := db.PutRecord(ctx, "old", engine.Entry{PartitionKey: fmt.Sprint(i), Data: data})
		require.NoError(t, err)
	}
	require.NoError(t, db.Trim(ctx, "old"))
	d, err := db.DescribeStream("old")
	require.NoError(t, err)
	require.LessOrEqual(t, d.Bytes, int64(2000))
	require.Greater(t, d.Records, int64(10))

	var full error
	for i := range 50 {
		_, err := db.PutRecord(ctx, "new", engine.Entry{PartitionKey: fmt.Sprint(i), Data: data})
		if err != nil {
			full = err
			break
		}
	}
	require.ErrorIs(t, full, engine.ErrStreamFull)
	d, err = db.DescribeStream("new")
	require.NoError(t, err)
	require.LessOrEqual(t, d.Bytes, int64(2000))
}

// TestPutRecordsRefusedEntryNamesShard: an entry refused by its shard's
// write throttle still reports the shard it was routed to.
func TestPutRecordsRefusedEntryNamesShard(t *testing.T) {
	clk := newStepClock()
	db := openClocked(t, t.TempDir(), clk)
	defer db.Close()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2, Limits: engine.Limits{WriteRecordsPerSec: 2}}))
	entries := make([]engine.Entry, 4)
	for i := range entries {
		entries[i] = engine.Entry{PartitionKey: "k", ExplicitHashKey: "340282366920938463463374607431768211455", Data: []byte{byte(i)}}
	}
	res, err := db.PutRecords(context.Background(), "s", entries)
	require.NoError(t, err)
	for i, r := range res {
		require.Equal(t, engine.ShardID(1), r.ShardID, i)
		if i < 2 {
			require.NoError(t, r.Err, i)
		} else {
			require.ErrorIs(t, r.Err, engine.ErrThroughputExceeded, i)
		}
	}
}

func TestWriteThrottleExactlyAtLimit(t *testing.T) {
	clk := newStepClock()
	db := openClocked(t, t.TempDir(), clk)
	defer db.Close()
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1, Limits: engine.Limits{WriteRecordsPerSec: 10}}))
	entries := make([]engine.Entry, 12)
	for i := range entries {
		entries[i] = engine.Entry{PartitionKey: "k", Data: []byte{byte(i)}}
	}
	res, err := db.PutRecords(ctx, "s", entries)
	require.NoError(t, err)
	for i, r := range res {
		if i < 10 {
			require.NoError(t, r.Err, i)
		} else {
			require.ErrorIs(t, r.Err, engine.ErrThroughputExceeded, i)
			e := asError(t, r.Err)
			require.Equal(t, engine.ReasonWriteRate, e.Reason)
			require.Equal(t, "s", e.Stream)
			require.Equal(t, engine.ShardID(0), e.Shard)
		}
	}
	_, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k"})
	require.ErrorIs(t, err, engine.ErrThroughputExceeded)
	clk.Add(100 * time.Millisecond) // refills one token
	_, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k"})
	require.NoError(t, err)
	_, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k"})
	require.ErrorIs(t, err, engine.ErrThroughputExceeded)
	// Limits change at run time.
	require.NoError(t, db.SetLimits("s", engine.Limits{}))
	_, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k"})
	require.NoError(t, err)
}

func TestReadThrottle(t *testing.T) {
	clk := newStepClock()
	db := openClocked(t, t.TempDir(), clk)
	defer db.Close()
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1, Limits: engine.KinesisLimits}))
	tok, err := db.GetShardIterator("s", 0, engine.TrimHorizon())
	require.NoError(t, err)
	for range 5 {
		_, err := db.GetRecords(ctx, tok, 1)
		require.NoError(t, err)
	}
	_, err = db.GetRecords(ctx, tok, 1)
	require.ErrorIs(t, err, engine.ErrThroughputExceeded)
	clk.Add(time.Second)
	_, err = db.GetRecords(ctx, tok, 1)
	require.NoError(t, err)
}

func TestWriteByteThrottleAndRefill(t *testing.T) {
	clk := newStepClock()
	db := openClocked(t, t.TempDir(), clk)
	defer db.Close()
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1, Limits: engine.Limits{WriteBytesPerSec: 1000}}))
	// Exactly at the limit: 10 records of 99 B data + 1 B key.
	for range 10 {
		_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: make([]byte, 99)})
		require.NoError(t, err)
	}
	// One byte past it.
	_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k"})
	require.ErrorIs(t, err, engine.ErrThroughputExceeded)
	clk.Add(50 * time.Millisecond) // refills 50 bytes
	_, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: make([]byte, 49)})
	require.NoError(t, err)
	_, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k"})
	require.ErrorIs(t, err, engine.ErrThroughputExceeded)
}

func TestReadByteThrottleDebt(t *testing.T) {
	clk := newStepClock()
	db := openClocked(t, t.TempDir(), clk)
	defer db.Close()
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1, Limits: engine.Limits{ReadBytesPerSec: 1000}}))
	for range 30 {
		_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: make([]byte, 99)})
		require.NoError(t, err)
	}
	tok, err := db.GetShardIterator("s", 0, engine.TrimHorizon())
	require.NoError(t, err)
	out, err := db.GetRecords(ctx, tok, 0) // 3000 bytes: 2 s of debt
	require.NoError(t, err)
	require.Len(t, out.Records, 30)
	_, err = db.GetRecords(ctx, out.NextShardIterator, 0)
	require.ErrorIs(t, err, engine.ErrThroughputExceeded, "a read over the byte limit throttles the next calls")
	clk.Add(time.Second)
	_, err = db.GetRecords(ctx, out.NextShardIterator, 0)
	require.ErrorIs(t, err, engine.ErrThroughputExceeded, "still in debt after 1 s")
	clk.Add(1100 * time.Millisecond)
	_, err = db.GetRecords(ctx, out.NextShardIterator, 0)
	require.NoError(t, err)
}

func TestWriteThrottleWaitMode(t *testing.T) {
	db, err := engine.Open(t.TempDir(), &engine.Options{NoSync: true})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1, Limits: engine.Limits{WriteRecordsPerSec: 100, Wait: true}}))
	ctx := context.Background()
	start := time.Now()
	for range 110 { // 100 from the full bucket, 10 more need ~100 ms
		_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k"})
		require.NoError(t, err)
	}
	require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond, "puts over the limit waited for tokens")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for {
		_, err = db.PutRecord(cctx, "s", engine.Entry{PartitionKey: "k"})
		if err != nil {
			break
		}
	}
	require.ErrorIs(t, err, context.Canceled)
}
