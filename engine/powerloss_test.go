package engine_test

// Power-loss simulation on Pebble's crash-cloneable in-memory FS: while
// writers, a resharder and a trimmer run, CrashClone takes the state a
// power cut would leave (all synced data plus a random part of the rest).
// The clone must always reopen consistently; with the default durability
// every record acknowledged before the cut survives unchanged (Invariant
// 1); with NoSync acknowledged records may vanish, but a PutRecords batch
// never half-appears and each shard keeps a gap-free prefix (Invariants 2
// and 7).

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

// plClock is a clock the test moves forward from many goroutines.
type plClock struct{ ms atomic.Int64 }

func (c *plClock) Now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *plClock) Advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// plAck is one acknowledged record.
type plAck struct {
	shard engine.ShardID
	seq   engine.SequenceNumber
	data  string
}

// plRun is one power-loss scenario.
type plRun struct {
	seed     uint64
	noSync   bool
	reshard  bool
	trim     bool
	unsynced int // CrashCloneCfg.UnsyncedDataPercent
}

const (
	plStream    = "pl"
	plRetention = time.Minute
)

func TestPowerLoss(t *testing.T) {
	n := uint64(8)
	if testing.Short() {
		n = 4
	}
	for seed := range n {
		for _, noSync := range []bool{false, true} {
			r := plRun{seed: seed, noSync: noSync, reshard: seed%3 == 1, trim: seed%2 == 1, unsynced: []int{0, 30, 70, 100}[seed%4]}
			t.Run(fmt.Sprintf("seed=%d/nosync=%v/reshard=%v/trim=%v/unsynced=%d", seed, noSync, r.reshard, r.trim, r.unsynced), func(t *testing.T) {
				plRunScenario(t, r)
			})
		}
	}
}

func plRunScenario(t *testing.T, r plRun) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(r.seed, 11))
	clk := &plClock{}
	clk.ms.Store(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	start := clk.Now()
	fs := vfs.NewCrashableMem()
	opts := &engine.Options{FS: fs, NoSync: r.noSync, Clock: clk.Now, TrimInterval: time.Hour}
	db, err := engine.Open("db", opts)
	require.NoError(t, err)
	require.NoError(t, db.CreateStream(plStream, engine.StreamConfig{ShardCount: 3, Retention: plRetention}))

	var (
		mu    sync.Mutex
		acked = map[string]plAck{}
		stop  atomic.Bool
		wg    sync.WaitGroup
		errs  = make(chan error, 16)
	)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(r.seed, uint64(g)))
			for n := 0; !stop.Load(); n++ {
				batch := g*1_000_000 + n
				size := 1
				if g%2 == 1 {
					size = 1 + rng.IntN(20)
				}
				es := make([]engine.Entry, size)
				before := clk.ms.Load() // ≤ the batch's arrival time
				for i := range es {
					es[i] = engine.Entry{PartitionKey: fmt.Sprintf("k%d", rng.IntN(50)), Data: fmt.Appendf(nil, "%d/%d/%d/%d/%x", batch, i, size, before, rng.Uint64())}
				}
				var res []engine.PutResult
				var err error
				if size == 1 && g%2 == 0 {
					var one engine.PutResult
					one, err = db.PutRecord(ctx, plStream, es[0])
					res = []engine.PutResult{one}
				} else {
					res, err = db.PutRecords(ctx, plStream, es)
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d: %w", g, err)
					return
				}
				mu.Lock()
				for i, pr := range res {
					acked[string(es[i].Data)] = plAck{shard: pr.ShardID, seq: pr.SequenceNumber, data: string(es[i].Data)}
				}
				mu.Unlock()
			}
		}()
	}
	if r.reshard {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(r.seed, 77))
			for !stop.Load() {
				if err := plReshardOnce(db, rng); err != nil {
					errs <- err
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	if r.trim {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				clk.Advance(2 * time.Second)
				if err := db.Trim(ctx, plStream); err != nil {
					errs <- fmt.Errorf("trim: %w", err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}

	// Three power cuts at random moments while everything runs.
	type cut struct {
		fs    *vfs.MemFS
		acked map[string]plAck
		nowMs int64
	}
	var cuts []cut
	for range 3 {
		time.Sleep(time.Duration(5+rng.IntN(40)) * time.Millisecond)
		mu.Lock()
		snapshot := make(map[string]plAck, len(acked))
		for k, v := range acked {
			snapshot[k] = v
		}
		mu.Unlock()
		// Every ack in snapshot returned before the clone starts; the
		// clock read after it bounds what the trimmer could have deleted.
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: r.unsynced, RNG: rand.New(rand.NewPCG(r.seed, uint64(len(cuts))))})
		cuts = append(cuts, cut{clone, snapshot, clk.ms.Load()})
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	require.NoError(t, db.Close())

	for i, c := range cuts {
		plVerifyClone(t, i, c.fs, r, c.acked, start, c.nowMs)
	}

	// NoSync: Close flushes, so a power cut right after Close loses nothing.
	if r.noSync {
		plVerifyClone(t, len(cuts), fs.CrashClone(vfs.CrashCloneCfg{}), plRun{trim: r.trim}, acked, start, clk.ms.Load())
	}
}

// plReshardOnce splits, merges or rescales the stream, keeping 2 to 6 open
// shards. Refusals because of the stream's state are fine.
func plReshardOnce(db *engine.DB, rng *rand.Rand) error {
	shards, err := db.ListShards(plStream)
	if err != nil {
		return err
	}
	var open []engine.ShardDescription
	for _, s := range shards {
		if s.Open() {
			open = append(open, s)
		}
	}
	sortShardsByStart(open)
	switch k := rng.IntN(3); {
	case k == 0 && len(open) < 6:
		s := open[rng.IntN(len(open))]
		err = db.SplitShard(plStream, s.ShardID, shard.Mid(s.HashKeyRange.Start, s.HashKeyRange.End).String())
	case k == 1 && len(open) > 2:
		i := rng.IntN(len(open) - 1)
		err = db.MergeShards(plStream, open[i].ShardID, open[i+1].ShardID)
	default:
		lo, hi := max(2, (len(open)+1)/2), min(6, 2*len(open))
		err = db.UpdateShardCount(plStream, lo+rng.IntN(hi-lo+1))
	}
	if err != nil && !errors.Is(err, engine.ErrResourceInUse) && !errors.Is(err, engine.ErrInvalidArgument) {
		return fmt.Errorf("reshard: %w", err)
	}
	return nil
}

// plVerifyClone opens a crash clone and checks it, twice (the second
// open checks that the first one, and a write after the cut, left a
// consistent directory). It reads with the clock at the stream's creation,
// so retention hides nothing and the reopened DB trims nothing; a record
// the test's trimmer deleted may be missing only if it was past retention
// when the power went (cutMs).
func plVerifyClone(t *testing.T, i int, fs *vfs.MemFS, r plRun, acked map[string]plAck, start time.Time, cutMs int64) {
	t.Helper()
	ctx := context.Background()
	horizon := cutMs - plRetention.Milliseconds() // nothing newer can be trimmed
	lossHorizon := horizon                        // acked records older than this may be gone
	for reopen := range 2 {
		db, err := engine.Open("db", &engine.Options{FS: fs, Clock: func() time.Time { return start }, TrimInterval: time.Hour})
		require.NoError(t, err, "cut %d: the clone must reopen", i)
		shards, err := db.ListShards(plStream)
		require.NoError(t, err)
		crashCheckTiling(t, i, plStream, shards)
		present := map[string]plAck{}
		type batchInfo struct {
			found, size int
			before      int64
		}
		batches := map[int]batchInfo{}
		for _, sd := range shards {
			recs := crashReadShard(t, db, plStream, sd.ShardID)
			var nbytes int64
			for j, rec := range recs {
				if j > 0 && strings.HasPrefix(string(rec.Data), "-1/") && !strings.HasPrefix(string(recs[j-1].Data), "-1/") {
					// The first record written after the power loss: the
					// counter continues above the reserved ceiling.
					require.Greater(t, rec.SequenceNumber.Counter, recs[j-1].SequenceNumber.Counter, "cut %d: %s: counters must increase", i, sd.ShardID)
				} else if j > 0 {
					require.Equal(t, recs[j-1].SequenceNumber.Counter+1, rec.SequenceNumber.Counter, "cut %d: %s: counters must have no gaps", i, sd.ShardID)
					require.False(t, rec.Timestamp.Before(recs[j-1].Timestamp), "cut %d: %s: arrival went back", i, sd.ShardID)
				} else if !r.trim && !strings.HasPrefix(string(rec.Data), "-1/") {
					require.EqualValues(t, 1, rec.SequenceNumber.Counter, "cut %d: %s: untrimmed shard must start at counter 1", i, sd.ShardID)
				}
				d := string(rec.Data)
				_, dup := present[d]
				require.False(t, dup, "cut %d: record %q stored twice", i, d)
				present[d] = plAck{shard: sd.ShardID, seq: rec.SequenceNumber, data: d}
				var b, idx, size int
				var before int64
				_, err := fmt.Sscanf(d, "%d/%d/%d/%d/", &b, &idx, &size, &before)
				require.NoError(t, err, "payload %q", d)
				bi := batches[b]
				batches[b] = batchInfo{bi.found + 1, size, before}
				nbytes += int64(shard.ValueLen(rec.PartitionKey, rec.ExplicitHashKey != nil, rec.Data))
			}
			require.EqualValues(t, len(recs), sd.Records, "cut %d: %s: stats count", i, sd.ShardID)
			require.EqualValues(t, nbytes, sd.Bytes, "cut %d: %s: stats bytes", i, sd.ShardID)
		}
		for b, bi := range batches {
			// A batch arrived no earlier than "before"; if that is within
			// retention at the cut, trimming cannot explain a missing part.
			if !r.trim || bi.before >= horizon {
				require.Equal(t, bi.size, bi.found, "cut %d: batch %d is partially visible (%d of %d records)", i, b, bi.found, bi.size)
			}
		}
		lost := 0
		for d, a := range acked {
			p, ok := present[d]
			if !ok {
				if r.trim && int64(a.seq.Written)*1000 < lossHorizon {
					continue // past retention when the power went
				}
				if r.noSync {
					lost++
					continue
				}
				t.Fatalf("cut %d: acknowledged record %q (%s, %s) is lost", i, d, a.shard, a.seq)
			}
			require.Equal(t, a.shard, p.shard, "cut %d: record %q moved", i, d)
			require.Equal(t, a.seq, p.seq, "cut %d: record %q changed sequence number", i, d)
		}
		if reopen == 0 {
			t.Logf("cut %d: %d acknowledged, %d present, %d acknowledged but lost (NoSync)", i, len(acked), len(present), lost)
			// Writing continues after the cut; the second open must find
			// exactly what this one saw plus these records (this DB syncs).
			res, err := db.PutRecords(ctx, plStream, []engine.Entry{{PartitionKey: "after", Data: []byte("-1/0/2/0/")}, {PartitionKey: "cut", Data: []byte("-1/1/2/0/")}})
			require.NoError(t, err)
			// Invariant 8: no number handed out before the cut names one
			// of these records, lost (NoSync) or not.
			for _, a := range acked {
				for _, r := range res {
					require.NotEqual(t, a.seq.String(), r.SequenceNumber.String(), "cut %d: sequence number %s reissued", i, r.SequenceNumber)
					if a.shard == r.ShardID {
						require.Greater(t, r.SequenceNumber.Counter, a.seq.Counter, "cut %d: %s: counter %d issued after the cut is not above %d issued before", i, r.ShardID, r.SequenceNumber.Counter, a.seq.Counter)
					}
				}
			}
			for j, d := range []string{"-1/0/2/0/", "-1/1/2/0/"} {
				present[d] = plAck{shard: res[j].ShardID, seq: res[j].SequenceNumber, data: d}
			}
			acked, r.noSync, lossHorizon = present, false, math.MinInt64
		}
		require.NoError(t, db.Close())
	}
}
