package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

// statsTruth reads every record of the stream and returns, per shard and
// in all, the records and their stored value bytes.
func statsTruth(t *testing.T, db *engine.DB, stream string) (records, bytes map[engine.ShardID]int64, allRecords, allBytes int64) {
	t.Helper()
	shards, err := db.ListShards(stream)
	require.NoError(t, err)
	records, bytes = map[engine.ShardID]int64{}, map[engine.ShardID]int64{}
	for _, sd := range shards {
		for _, r := range shardRecords(t, db, stream, sd.ShardID) {
			records[sd.ShardID]++
			bytes[sd.ShardID] += int64(shard.ValueLen(r.PartitionKey, r.ExplicitHashKey != nil, r.Data))
		}
		allRecords += records[sd.ShardID]
		allBytes += bytes[sd.ShardID]
	}
	return records, bytes, allRecords, allBytes
}

// requireCounts checks DescribeStream's per-shard and stream counts
// against the records themselves.
func requireCounts(t *testing.T, db *engine.DB, stream string) {
	t.Helper()
	recs, bytes, allRecs, allBytes := statsTruth(t, db, stream)
	d, err := db.DescribeStream(stream)
	require.NoError(t, err)
	require.Equal(t, allRecs, d.Records, "stream records")
	require.Equal(t, allBytes, d.Bytes, "stream bytes")
	for _, sd := range d.Shards {
		require.Equal(t, recs[sd.ShardID], sd.Records, "%s records", sd.ShardID)
		require.Equal(t, bytes[sd.ShardID], sd.Bytes, "%s bytes", sd.ShardID)
	}
}

// TestShardCountsSurviveCrash: the Writer persists a shard's counts only
// once shard.StatsBacklog records are left out of them (and at trims and
// Close); after a crash,
// Open counts the records the persisted counts leave out, so
// DescribeStream's counts (and MaxBytes) still match the records, and
// kvstream check finds nothing wrong. The puts leave every shard with
// records beyond its last persisted count, some shards trimmed.
func TestShardCountsSurviveCrash(t *testing.T) {
	mem := vfs.NewCrashableMem()
	clk := newStepClock()
	opts := &engine.Options{FS: mem, Clock: clk.Now, TrimInterval: time.Hour}
	db, err := engine.Open("db", opts)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 3, Retention: time.Hour}))
	batch := func(from, n int) {
		es := make([]engine.Entry, n)
		for i := range es {
			es[i] = engine.Entry{PartitionKey: fmt.Sprint(from + i), Data: make([]byte, (from+i)%37)}
		}
		_, err := db.PutRecords(ctx, "s", es)
		require.NoError(t, err)
	}
	// Old records, expired by the trim below; then a tail that stays.
	for i := range 5 {
		batch(i*100, 100)
	}
	clk.Add(2 * time.Hour)
	for i := range 3 {
		batch(1000+i*100, 100)
	}
	require.NoError(t, db.Trim(ctx, "s"))
	batch(5000, 77)
	for i := range 40 {
		_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: fmt.Sprint(9000 + i), Data: []byte("single")})
		require.NoError(t, err)
	}
	requireCounts(t, db, "s")
	// Every record is fsync'd (default durability): the power loss loses
	// none, only the counts Close would have written.
	crash := mem.CrashClone(vfs.CrashCloneCfg{})
	require.NoError(t, db.Close())

	for _, fs := range []vfs.FS{crash, mem} { // after the crash, after Close
		o := *opts
		o.FS = fs
		db, err = engine.Open("db", &o)
		require.NoError(t, err)
		requireCounts(t, db, "s")
		batch(7000, 10)
		requireCounts(t, db, "s")
		require.NoError(t, db.Close())
		rep, err := engine.Check("db", &engine.CheckOptions{FS: fs})
		require.NoError(t, err)
		for _, p := range rep.Problems {
			require.NotEqual(t, "stats", p.Kind, "problems: %v", rep.Problems) // (a crash leaves a counter gap, a "counters" problem)
		}
		for _, sh := range rep.Streams[0].Shards {
			require.Equal(t, sh.Records, sh.StatsRecords, sh.ShardID)
			require.Equal(t, sh.Bytes, sh.StatsBytes, sh.ShardID)
		}
	}
}

// TestCloseSavesShardCounts: Close brings every shard's persisted counts
// up to its last record, so the next Open reads no records to count them.
func TestCloseSavesShardCounts(t *testing.T) {
	mem := vfs.NewMem()
	db, err := engine.Open("db", &engine.Options{FS: mem, NoSync: true})
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 4}))
	last := map[engine.ShardID]uint64{}
	for i := range 50 { // far fewer than StatsEvery per shard
		r, err := db.PutRecord(context.Background(), "s", engine.Entry{PartitionKey: fmt.Sprint(i), Data: []byte("x")})
		require.NoError(t, err)
		last[r.ShardID] = r.SequenceNumber.Counter
	}
	require.Len(t, last, 4)
	require.NoError(t, db.Close())

	pdb, err := pebble.Open("db", &pebble.Options{FS: mem, ReadOnly: true})
	require.NoError(t, err)
	defer pdb.Close()
	for id, c := range last {
		v, closer, err := pdb.Get(shard.ShardStateKey(1, uint32(id), shard.StateStats))
		require.NoError(t, err, "%s has no persisted counts", id)
		_, records, through, ok := shard.DecodeStats(v)
		require.NoError(t, closer.Close())
		require.True(t, ok)
		require.Equal(t, c, through, id)
		require.EqualValues(t, c, records, id)
	}
}

// TestShardCountsAfterCounterJump: after a crash, Open moves every
// shard's next counter far up; a shard that gets no record in that
// session continues right after its last record after the next clean
// restart. Its persisted counts must not claim to cover the skipped
// counters, or records put after the clean restart would go uncounted
// after the next crash.
func TestShardCountsAfterCounterJump(t *testing.T) {
	ctx := context.Background()
	putTo := func(db *engine.DB, ehk string, n int) {
		for i := range n {
			_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", ExplicitHashKey: ehk, Data: []byte(fmt.Sprint(i))})
			require.NoError(t, err)
		}
	}
	const shard0, shard1 = "0", "340282366920938463463374607431768211455"
	mem := vfs.NewCrashableMem()
	db, err := engine.Open("db", &engine.Options{FS: mem})
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
	putTo(db, shard0, 10)
	putTo(db, shard1, 10)
	fs := mem.CrashClone(vfs.CrashCloneCfg{})
	require.NoError(t, db.Close())

	// After the crash: records to shard 0 only, then a clean Close.
	db, err = engine.Open("db", &engine.Options{FS: fs})
	require.NoError(t, err)
	require.False(t, db.Recovery().Clean)
	putTo(db, shard0, 5)
	require.NoError(t, db.Close())

	// Clean: shard 1 continues at 11. A few records, then a crash.
	db, err = engine.Open("db", &engine.Options{FS: fs})
	require.NoError(t, err)
	r, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", ExplicitHashKey: shard1, Data: []byte("x")})
	require.NoError(t, err)
	require.EqualValues(t, 11, r.SequenceNumber.Counter)
	putTo(db, shard1, 4)
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	require.NoError(t, db.Close())

	db, err = engine.Open("db", &engine.Options{FS: crashed})
	require.NoError(t, err)
	defer db.Close()
	requireCounts(t, db, "s")
	d, err := db.DescribeStream("s")
	require.NoError(t, err)
	require.EqualValues(t, 30, d.Records)
}
