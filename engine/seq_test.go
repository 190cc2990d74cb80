package engine_test

// Invariant 8: a sequence number, once returned, never names a different
// record — after a NoSync crash that loses acknowledged records, and after
// a truncated or damaged WAL tail — and lost records are detected and
// reported, never silent.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// seqAcks remembers every sequence number handed out, per shard.
type seqAcks struct {
	all map[string]bool
	top map[engine.ShardID]uint64
	n   int
}

func newSeqAcks() *seqAcks {
	return &seqAcks{all: map[string]bool{}, top: map[engine.ShardID]uint64{}}
}

func (a *seqAcks) add(res []engine.PutResult) {
	for _, r := range res {
		a.all[r.SequenceNumber.String()] = true
		a.top[r.ShardID] = max(a.top[r.ShardID], r.SequenceNumber.Counter)
		a.n++
	}
}

// putBatches writes n batches of 5 records to stream s and records the
// numbers handed out.
func (a *seqAcks) putBatches(t *testing.T, db *engine.DB, from, n int) {
	t.Helper()
	for b := from; b < from+n; b++ {
		es := faultEntries(b, 5)
		for i := range es {
			es[i].Data = append(es[i].Data, make([]byte, 200)...)
		}
		res, err := db.PutRecords(context.Background(), "s", es)
		require.NoError(t, err)
		a.add(res)
	}
}

// requireFresh checks that new puts get numbers never handed out before,
// above every earlier counter of their shard.
func (a *seqAcks) requireFresh(t *testing.T, db *engine.DB) []engine.PutResult {
	t.Helper()
	res, err := db.PutRecords(context.Background(), "s", faultEntries(777777, 12))
	require.NoError(t, err)
	for _, r := range res {
		require.False(t, a.all[r.SequenceNumber.String()], "sequence number %s was handed out before", r.SequenceNumber)
		require.Greater(t, r.SequenceNumber.Counter, a.top[r.ShardID], "%s: a counter at or below one handed out before", r.ShardID)
	}
	return res
}

// visible counts the records of stream s.
func visible(t *testing.T, db *engine.DB) int {
	t.Helper()
	shards, err := db.ListShards("s")
	require.NoError(t, err)
	n := 0
	for _, sd := range shards {
		n += len(shardRecords(t, db, "s", sd.ShardID))
	}
	return n
}

func TestSeqUniqueAfterNoSyncCrash(t *testing.T) {
	mem := vfs.NewCrashableMem()
	db, err := engine.Open("db", &engine.Options{FS: mem, NoSync: true})
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 3}))
	acks := newSeqAcks()
	acks.putBatches(t, db, 0, 50)
	// The power goes: only what was fsync'd survives (nothing since the
	// stream was created).
	crash := mem.CrashClone(vfs.CrashCloneCfg{})
	require.NoError(t, db.Close())

	db, err = engine.Open("db", &engine.Options{FS: crash, NoSync: true})
	require.NoError(t, err)
	rec := db.Recovery()
	require.False(t, rec.Clean)
	require.Less(t, visible(t, db), acks.n, "the crash must lose acknowledged NoSync records for this test to mean anything")
	faultCheck(t, db, "s", nil)
	res := acks.requireFresh(t, db)
	acks.add(res)
	requireLagCountsRecords(t, db)

	// A clean restart continues gap-free: the jump is only for crashes.
	require.NoError(t, db.Close())
	db, err = engine.Open("db", &engine.Options{FS: crash, NoSync: true})
	require.NoError(t, err)
	defer db.Close()
	require.True(t, db.Recovery().Clean)
	next, err := db.PutRecord(context.Background(), "s", engine.Entry{PartitionKey: "k", ExplicitHashKey: "0", Data: []byte("888888/0/1")})
	require.NoError(t, err)
	require.Equal(t, acks.top[next.ShardID]+1, next.SequenceNumber.Counter, "after Close the counters continue without a gap")
}

// requireLagCountsRecords checks that a new consumer's Lag counts the
// records behind it, not counters: a jump after a crash is no backlog.
func requireLagCountsRecords(t *testing.T, db *engine.DB) {
	t.Helper()
	c, err := db.Consumer("s", "lag", nil)
	require.NoError(t, err)
	lags, err := c.Lag()
	require.NoError(t, err)
	var behind int64
	for _, l := range lags {
		behind += l.Behind
	}
	require.EqualValues(t, visible(t, db), behind)
}

// newestWAL returns the path of the data directory's newest WAL file.
func newestWAL(t *testing.T, dir string) string {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	require.NoError(t, err)
	require.NotEmpty(t, logs)
	slices.Sort(logs)
	return logs[len(logs)-1]
}

// damageWAL truncates the newest WAL to half its size, or flips 16 bytes
// a quarter into it, or in its last record.
func damageWAL(t *testing.T, dir, how string) {
	t.Helper()
	wal := newestWAL(t, dir)
	fi, err := os.Stat(wal)
	require.NoError(t, err)
	require.Greater(t, fi.Size(), int64(16<<10), "the WAL must hold records")
	switch how {
	case "truncate":
		require.NoError(t, os.Truncate(wal, fi.Size()/2))
	case "flip", "flip-tail":
		f, err := os.OpenFile(wal, os.O_RDWR, 0)
		require.NoError(t, err)
		buf := make([]byte, 16)
		off := fi.Size() / 4
		if how == "flip-tail" {
			off = fi.Size() - 600 // inside the last batch
		}
		_, err = f.ReadAt(buf, off)
		require.NoError(t, err)
		for i := range buf {
			buf[i] ^= 0x5a
		}
		_, err = f.WriteAt(buf, off)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
}

// TestSeqLostWALTail loses the tail of the newest WAL — truncated, or
// damaged — of a directory closed cleanly (the records live only in the
// WAL: Close does not flush in fsync'd mode) or copied while open (a
// crash). The loss must be reported (or the open refused), and no number
// handed out before may be issued again.
func TestSeqLostWALTail(t *testing.T) {
	for _, shutdown := range []string{"clean", "crash"} {
		for _, how := range []string{"truncate", "flip", "flip-tail"} {
			t.Run(shutdown+"/"+how, func(t *testing.T) {
				dir := t.TempDir()
				db, err := engine.Open(dir, nil)
				require.NoError(t, err)
				require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 3}))
				acks := newSeqAcks()
				// Enough that the newest WAL (Pebble's first memtables are
				// small, so the WAL rotates early) holds over 16 KiB.
				acks.putBatches(t, db, 0, 300)
				if shutdown == "crash" {
					require.NoError(t, db.SaveHighWater())
					copied := copyDir(t, dir)
					require.NoError(t, db.Close())
					dir = copied
				} else {
					require.NoError(t, db.Close())
				}
				damageWAL(t, dir, how)

				db, err = engine.Open(dir, nil)
				if err != nil {
					// Pebble confirmed the corruption: loud, and nothing
					// can be reissued by a DB that does not open.
					t.Logf("open refused: %v", err)
					require.Equal(t, "flip", how, "a truncated tail, or damage in the last record, looks torn, not corrupt: Pebble opens it")
					return
				}
				defer db.Close()
				rec := db.Recovery()
				require.Equal(t, shutdown == "clean", rec.Clean)
				lost := acks.n - visible(t, db)
				require.Positive(t, lost, "the damage must lose acknowledged records for this test to mean anything")
				require.NotEmpty(t, rec.Lost, "the loss must be detected")
				require.EqualValues(t, lost, rec.LostRecords, "the report counts the lost records")
				for _, l := range rec.Lost {
					require.Equal(t, "s", l.Stream)
					require.LessOrEqual(t, l.First, l.Last)
				}
				t.Logf("%d of %d acknowledged records lost and reported: %+v", lost, acks.n, rec.Lost)
				faultCheck(t, db, "s", nil)
				acks.requireFresh(t, db)
				requireLagCountsRecords(t, db)
			})
		}
	}
}

// TestSeqFileDamaged: a damaged or missing sequence file is reported, and
// counters continue a block above the highest recovered one.
func TestSeqFileDamaged(t *testing.T) {
	for _, how := range []string{"garbage", "missing"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			db, err := engine.Open(dir, nil)
			require.NoError(t, err)
			require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
			acks := newSeqAcks()
			acks.putBatches(t, db, 0, 10)
			require.NoError(t, db.Close())
			path := filepath.Join(dir, "KVSTREAM-SEQ")
			if how == "missing" {
				require.NoError(t, os.Remove(path))
			} else {
				require.NoError(t, os.WriteFile(path, []byte("KVSQ not really"), 0o644))
			}
			db, err = engine.Open(dir, nil)
			require.NoError(t, err)
			defer db.Close()
			rec := db.Recovery()
			require.Contains(t, rec.SequenceFile, "KVSTREAM-SEQ")
			require.False(t, rec.Clean)
			for _, r := range acks.requireFresh(t, db) {
				require.GreaterOrEqual(t, r.SequenceNumber.Counter, acks.top[r.ShardID]+1<<32)
			}
		})
	}
}

// TestSeqConsumerCheckpointBeyondEnd: records a durable consumer had
// checkpointed are gone (here deleted behind the engine's back). Open
// reports the gap, the shard continues above the checkpoint, and the
// consumer resumes at the next record.
func TestSeqConsumerCheckpointBeyondEnd(t *testing.T) {
	ctx := context.Background()
	mem := vfs.NewMem()
	db, err := engine.Open("db", &engine.Options{FS: mem})
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	var last engine.PutResult
	for i := range 10 {
		last = put(t, db, "s", "k", fmt.Sprintf("r%d", i))
	}
	c, err := db.Consumer("s", "billing", nil)
	require.NoError(t, err)
	require.NoError(t, c.CheckpointAt(last.ShardID, last.SequenceNumber))
	require.NoError(t, db.Close())

	// Lose the last five records.
	po := engine.PebbleOptions(engine.ProfileSmall)
	po.FS = mem
	pdb, err := pebble.Open("db", po)
	require.NoError(t, err)
	po.Cache.Unref()
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{0x03}, UpperBound: []byte{0x04}})
	require.NoError(t, err)
	var keys [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		keys = append(keys, slices.Clone(it.Key()))
	}
	require.NoError(t, it.Close())
	require.Len(t, keys, 10)
	for _, k := range keys[5:] {
		require.NoError(t, pdb.Delete(k, pebble.Sync))
	}
	require.NoError(t, pdb.Close())

	db, err = engine.Open("db", &engine.Options{FS: mem})
	require.NoError(t, err)
	defer db.Close()
	rec := db.Recovery()
	require.Equal(t, []engine.ConsumerGap{{Stream: "s", Consumer: "billing", ShardID: 0, Checkpoint: 10, RecoveredEnd: 5}}, rec.ConsumerGaps)
	require.Equal(t, []engine.LostRange{{Stream: "s", ShardID: 0, First: 6, Last: 10}}, rec.Lost)
	next := put(t, db, "s", "k", "after")
	require.EqualValues(t, 11, next.SequenceNumber.Counter, "the shard continues above the checkpoint")

	c, err = db.Consumer("s", "billing", nil)
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for r, err := range c.Records(rctx) {
		require.NoError(t, err)
		require.Equal(t, "after", string(r.Data), "the consumer resumes at the next record")
		break
	}
}
