package engine_test

// Tests for DESIGN.md's invariants 1–4 (durability across reopen and power
// loss, gap-free in-order visibility under concurrent writers, per-key
// routing and order, non-decreasing arrival times). Invariant 6 is in
// validation_test.go and invariant 7 in sticky_test.go.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// snapshot is everything a reader can observe about a DB's streams.
type snapshot struct {
	streams []string
	descs   map[string]engine.StreamDescription
	records map[string]map[engine.ShardID][]engine.Record
}

func takeSnapshot(t *testing.T, db *engine.DB) snapshot {
	t.Helper()
	names, err := db.ListStreams()
	require.NoError(t, err)
	s := snapshot{streams: names, descs: map[string]engine.StreamDescription{}, records: map[string]map[engine.ShardID][]engine.Record{}}
	for _, n := range names {
		d, err := db.DescribeStream(n)
		require.NoError(t, err)
		s.descs[n] = d
		s.records[n] = map[engine.ShardID][]engine.Record{}
		for _, sh := range d.Shards {
			s.records[n][sh.ShardID] = shardRecords(t, db, n, sh.ShardID)
		}
	}
	return s
}

// TestReopenKeepsEverything guards invariant 1 across a clean restart:
// records, sequence numbers (which continue), the catalog (shards, lineage,
// ranges, config, tags) and iterator tokens all survive Close/Open.
func TestReopenKeepsEverything(t *testing.T) {
	clk := newStepClock()
	opts := memOpts(clk)
	db := openDB(t, "db", opts)
	ctx := context.Background()

	require.NoError(t, db.CreateStream("orders", engine.StreamConfig{
		ShardCount: 3, Partitioner: engine.PartitionerMD5, Retention: 48 * time.Hour, Tags: map[string]string{"team": "billing"},
	}))
	require.NoError(t, db.CreateStream("logs", engine.StreamConfig{ShardCount: 1}))
	for i := range 30 {
		clk.Add(time.Millisecond)
		put(t, db, "orders", "k"+itoa(i%10), "o"+itoa(i))
	}
	for i := range 5 {
		put(t, db, "logs", "x", "l"+itoa(i))
	}
	d, err := db.DescribeStream("orders")
	require.NoError(t, err)
	r0 := d.Shards[0].HashKeyRange
	mid := engine.HashKey{Hi: r0.End.Hi / 2}
	require.NoError(t, db.SplitShard("orders", 0, mid.String()))
	route := map[string]engine.ShardID{}
	for i := range 10 {
		clk.Add(time.Millisecond)
		res := put(t, db, "orders", "k"+itoa(i), "p"+itoa(i))
		route["k"+itoa(i)] = res.ShardID
	}
	last := put(t, db, "logs", "x", "l5")
	before := takeSnapshot(t, db)
	require.Len(t, before.descs["orders"].Shards, 5)

	// Tokens issued before the restart.
	thTok, err := db.GetShardIterator("orders", 1, engine.TrimHorizon())
	require.NoError(t, err)
	latestTok, err := db.GetShardIterator("logs", 0, engine.Latest())
	require.NoError(t, err)

	require.NoError(t, db.Close())
	// A closed DB refuses every call.
	_, err = db.PutRecord(ctx, "logs", engine.Entry{PartitionKey: "x"})
	require.ErrorIs(t, err, engine.ErrClosed)
	_, err = db.GetRecords(ctx, thTok, 10)
	require.ErrorIs(t, err, engine.ErrClosed)
	_, err = db.DescribeStream("logs")
	require.ErrorIs(t, err, engine.ErrClosed)
	require.ErrorIs(t, db.CreateStream("new", engine.StreamConfig{ShardCount: 1}), engine.ErrClosed)
	require.ErrorIs(t, db.Close(), engine.ErrClosed)

	clk.Add(time.Minute)
	db = openDB(t, "db", opts)
	after := takeSnapshot(t, db)
	require.Equal(t, before.streams, after.streams)
	require.Equal(t, before.descs, after.descs)
	require.Equal(t, before.records, after.records)

	// Tokens from before the restart still read the same records.
	out, err := db.GetRecords(ctx, thTok, 100)
	require.NoError(t, err)
	require.Equal(t, datas(before.records["orders"][1]), datas(out.Records))

	// Sequence numbers continue: the next record follows the last one.
	next := put(t, db, "logs", "x", "l6")
	require.Equal(t, last.SequenceNumber.Counter+1, next.SequenceNumber.Counter)
	require.Greater(t, next.SequenceNumber.String(), last.SequenceNumber.String())
	out, err = db.GetRecords(ctx, latestTok, 100)
	require.NoError(t, err)
	require.Equal(t, []string{"l6"}, datas(out.Records), "a LATEST token from before the restart sees exactly the new record")
	it, err := db.Iterate("logs", 0, engine.AfterSequenceNumber(last.SequenceNumber))
	require.NoError(t, err)
	require.True(t, it.Next())
	require.Equal(t, next.SequenceNumber, it.Record().SequenceNumber)
	require.False(t, it.Next())
	require.NoError(t, it.Close())

	// The partitioner and the post-split routing persisted.
	for k, id := range route {
		require.Equal(t, id, put(t, db, "orders", k, "again").ShardID, k)
	}
}

// TestReopenOnDiskAndLock runs the restart on the real filesystem with nil
// options, and checks a second Open of an open directory is refused.
func TestReopenOnDiskAndLock(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir, nil)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
	var want []string
	for i := range 20 {
		want = append(want, put(t, db, "s", "k"+itoa(i), "d"+itoa(i)).SequenceNumber.String())
	}
	_, err := engine.Open(dir, nil)
	require.ErrorIs(t, err, engine.ErrLocked)
	require.Contains(t, engine.Message(err), dir)
	require.NoError(t, db.Close())

	db = openDB(t, dir, nil)
	var got []string
	for _, id := range []engine.ShardID{0, 1} {
		got = append(got, seqs(shardRecords(t, db, "s", id))...)
	}
	require.ElementsMatch(t, want, got)
}

// TestReopenNoSync: with fsync off, a clean Close still keeps every record.
func TestReopenNoSync(t *testing.T) {
	opts := memOpts(newStepClock())
	opts.NoSync = true
	db := openDB(t, "db", opts)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	for i := range 100 {
		put(t, db, "s", "k", itoa(i))
	}
	want := shardRecords(t, db, "s", 0)
	require.NoError(t, db.Close())
	db = openDB(t, "db", opts)
	require.Equal(t, want, shardRecords(t, db, "s", 0))
	require.EqualValues(t, 101, put(t, db, "s", "k", "next").SequenceNumber.Counter)
}

// TestUnknownFormatVersionRefused: a directory written by a newer format is
// not opened (and not modified).
func TestUnknownFormatVersionRefused(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, "db", &engine.Options{FS: fs})
	require.NoError(t, db.Close())
	p, err := pebble.Open("db", &pebble.Options{FS: fs, FormatMajorVersion: pebble.FormatNewest, Logger: quietPebble{}})
	require.NoError(t, err)
	require.NoError(t, p.Set([]byte("\x01format"), []byte{0, 0, 0, 99}, pebble.Sync))
	require.NoError(t, p.Close())
	_, err = engine.Open("db", &engine.Options{FS: fs})
	require.ErrorIs(t, err, engine.ErrFormatVersion)
	require.NotErrorIs(t, err, engine.ErrCorruption)
	require.Contains(t, engine.Message(err), "format version")
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// TestAckedPutsSurvivePowerLoss guards invariant 1 against power loss:
// with the default durability, every acknowledged put is in the synced
// state of the filesystem (CrashClone keeps only synced data).
func TestAckedPutsSurvivePowerLoss(t *testing.T) {
	mem := vfs.NewCrashableMem()
	clk := newStepClock()
	db := openDB(t, "db", &engine.Options{FS: mem, Clock: clk.Now})
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
	ctx := context.Background()
	var mu sync.Mutex
	acked := map[string]string{} // data → sequence number
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				data := fmt.Sprintf("w%d-%d", w, i)
				res, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: data, Data: []byte(data)})
				if err != nil {
					t.Errorf("put: %v", err)
					return
				}
				mu.Lock()
				acked[data] = res.SequenceNumber.String()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	db2 := openDB(t, "db", &engine.Options{FS: crashed, Clock: clk.Now})
	got := map[string]string{}
	for _, id := range []engine.ShardID{0, 1} {
		for _, r := range shardRecords(t, db2, "s", id) {
			got[string(r.Data)] = r.SequenceNumber.String()
		}
	}
	require.Equal(t, acked, got)
}

// TestConcurrentWritersOneShardNoGapNoReorder guards invariant 2: 32
// goroutines put into one shard (single puts and small batches) while two
// readers tail it, one with Iterator+Wait and one with a GetRecords loop.
// Neither ever sees a gap in the counters or a writer's records out of
// order, and every writer's own sequence numbers increase.
func TestConcurrentWritersOneShardNoGapNoReorder(t *testing.T) {
	const writers = 32
	perWriter := 150
	if soakEnvOn {
		perWriter = 3000
	}
	db, _, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	total := writers * perWriter
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// check validates one observed record against the previous ones.
	type checker struct {
		prev   uint64
		lastOf [writers]int
		n      int
	}
	newChecker := func() *checker {
		c := &checker{}
		for i := range c.lastOf {
			c.lastOf[i] = -1
		}
		return c
	}
	check := func(c *checker, r engine.Record) error {
		if r.SequenceNumber.Counter != c.prev+1 {
			return fmt.Errorf("gap or reorder: counter %d after %d", r.SequenceNumber.Counter, c.prev)
		}
		c.prev = r.SequenceNumber.Counter
		w, i, ok := strings.Cut(string(r.Data), "/")
		wi, _ := strconv.Atoi(w)
		ii, _ := strconv.Atoi(i)
		if !ok || ii != c.lastOf[wi]+1 {
			return fmt.Errorf("writer %d: record %q after %d", wi, r.Data, c.lastOf[wi])
		}
		c.lastOf[wi] = ii
		c.n++
		return nil
	}

	errs := make(chan error, writers+2)
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { // Iterator + Wait
		defer readers.Done()
		it, err := db.Iterate("s", 0, engine.TrimHorizon())
		if err != nil {
			errs <- err
			return
		}
		defer it.Close()
		c := newChecker()
		for c.n < total {
			for it.Next() {
				if err := check(c, it.Record()); err != nil {
					errs <- fmt.Errorf("iterator: %w", err)
					return
				}
			}
			if err := it.Err(); err != nil {
				errs <- err
				return
			}
			if c.n < total {
				if err := it.Wait(ctx); err != nil {
					errs <- fmt.Errorf("iterator wait after %d records: %w", c.n, err)
					return
				}
			}
		}
	}()
	go func() { // GetRecords loop
		defer readers.Done()
		tok, err := db.GetShardIterator("s", 0, engine.TrimHorizon())
		if err != nil {
			errs <- err
			return
		}
		c := newChecker()
		for c.n < total {
			out, err := db.GetRecords(ctx, tok, 7)
			if err != nil {
				errs <- fmt.Errorf("GetRecords: %w", err)
				return
			}
			for _, r := range out.Records {
				if err := check(c, r); err != nil {
					errs <- fmt.Errorf("GetRecords: %w", err)
					return
				}
			}
			if out.NextShardIterator == "" {
				errs <- fmt.Errorf("open shard returned no NextShardIterator")
				return
			}
			tok = out.NextShardIterator
			if len(out.Records) == 0 {
				if ctx.Err() != nil {
					errs <- fmt.Errorf("GetRecords: stuck after %d records", c.n)
					return
				}
				time.Sleep(200 * time.Microsecond) // a polling consumer
			}
		}
	}()

	var writersWG sync.WaitGroup
	for w := range writers {
		writersWG.Add(1)
		go func() {
			defer writersWG.Done()
			var prev engine.SequenceNumber
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; i < perWriter; {
				n := 1
				if w%2 == 1 {
					n = min(1+rng.IntN(4), perWriter-i)
				}
				var res []engine.PutResult
				var err error
				if n == 1 && w%2 == 0 {
					var r engine.PutResult
					r, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "w" + itoa(w), Data: fmt.Appendf(nil, "%d/%d", w, i)})
					res = []engine.PutResult{r}
				} else {
					es := make([]engine.Entry, n)
					for j := range es {
						es[j] = engine.Entry{PartitionKey: "w" + itoa(w), Data: fmt.Appendf(nil, "%d/%d", w, i+j)}
					}
					res, err = db.PutRecords(ctx, "s", es)
				}
				if err != nil {
					errs <- err
					return
				}
				for _, r := range res {
					if r.Err != nil {
						errs <- r.Err
						return
					}
					if r.SequenceNumber.Counter <= prev.Counter {
						errs <- fmt.Errorf("writer %d: sequence %d after %d", w, r.SequenceNumber.Counter, prev.Counter)
						return
					}
					prev = r.SequenceNumber
				}
				i += n
			}
		}()
	}
	writersWG.Wait()
	readers.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	d, err := db.DescribeStream("s")
	require.NoError(t, err)
	require.EqualValues(t, total, d.Records)
	recs := shardRecords(t, db, "s", 0)
	require.Len(t, recs, total)
	require.EqualValues(t, total, recs[total-1].SequenceNumber.Counter)
}

// TestSameKeySameShardInOrder guards invariant 3 with both partitioners:
// concurrent producers, one per key, each see all their records in one
// shard, in the order they put them; the routing matches the partitioner
// and the shard's hash range.
func TestSameKeySameShardInOrder(t *testing.T) {
	for _, p := range []engine.Partitioner{engine.PartitionerXXHash, engine.PartitionerMD5} {
		t.Run(p.String(), func(t *testing.T) {
			db, _, _ := newDB(t)
			require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 5, Partitioner: p}))
			d, err := db.DescribeStream("s")
			require.NoError(t, err)
			const keys, per = 24, 15
			var wg sync.WaitGroup
			shardOf := make([]engine.ShardID, keys)
			errs := make(chan error, keys)
			for k := range keys {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := fmt.Sprintf("key-%d", k)
					for i := range per {
						res, err := db.PutRecord(context.Background(), "s", engine.Entry{PartitionKey: key, Data: fmt.Appendf(nil, "%d/%d", k, i)})
						if err != nil {
							errs <- err
							return
						}
						if i == 0 {
							shardOf[k] = res.ShardID
						} else if res.ShardID != shardOf[k] {
							errs <- fmt.Errorf("key %s went to %s then %s", key, shardOf[k], res.ShardID)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			used := map[engine.ShardID]bool{}
			for k := range keys {
				h := p.Hash(fmt.Sprintf("key-%d", k))
				require.True(t, d.Shards[shardOf[k]].HashKeyRange.Contains(h), "key-%d routed outside its range", k)
				used[shardOf[k]] = true
			}
			require.Greater(t, len(used), 1, "keys spread over shards")
			// Reading each shard: each key's records in put order, and only
			// keys routed there.
			for _, sh := range d.Shards {
				next := map[int]int{}
				for _, r := range shardRecords(t, db, "s", sh.ShardID) {
					var k, i int
					_, err := fmt.Sscanf(string(r.Data), "%d/%d", &k, &i)
					require.NoError(t, err)
					require.Equal(t, sh.ShardID, shardOf[k])
					require.Equal(t, fmt.Sprintf("key-%d", k), r.PartitionKey)
					require.Equal(t, next[k], i, "key-%d out of order in %s", k, sh.ShardID)
					next[k]++
				}
				for k, n := range next {
					require.Equal(t, per, n, "key-%d incomplete", k)
				}
			}
		})
	}
}

// TestArrivalTimestampsNeverDecrease guards invariant 4: the injected clock
// jumps backwards and forwards (also across a restart and under concurrent
// writers), yet arrival times never decrease within a shard, and
// AT_TIMESTAMP's binary search finds the first record at or after each
// stored time.
func TestArrivalTimestampsNeverDecrease(t *testing.T) {
	clk := newStepClock()
	opts := memOpts(clk)
	db := openDB(t, "db", opts)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2, Retention: 8760 * time.Hour}))
	start := clk.Now()
	moves := []time.Duration{0, 10 * time.Millisecond, -time.Hour, 5 * time.Millisecond, -time.Millisecond, 2 * time.Hour, -3 * time.Hour, time.Second, -24 * time.Hour}
	var lastTS time.Time
	for i, m := range moves {
		clk.Add(m)
		r := put(t, db, "s", "same", "m"+itoa(i))
		recs := shardRecords(t, db, "s", r.ShardID)
		ts := recs[len(recs)-1].Timestamp
		require.False(t, ts.Before(lastTS), "move %d: %v after %v", i, ts, lastTS)
		// The arrival is max(now, previous arrival).
		want := clk.Now().Truncate(time.Millisecond)
		if want.Before(lastTS) {
			want = lastTS
		}
		require.True(t, ts.Equal(want), "move %d: arrival %v, want %v", i, ts, want)
		lastTS = ts
	}

	// Concurrent writers while another goroutine jitters the clock.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var jitter sync.WaitGroup
	jitter.Add(1)
	go func() {
		defer jitter.Done()
		rng := rand.New(rand.NewPCG(9, 9))
		for {
			select {
			case <-stop:
				return
			default:
			}
			clk.Add(time.Duration(rng.IntN(2001)-1000) * time.Millisecond)
			time.Sleep(50 * time.Microsecond)
		}
	}()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				if _, err := db.PutRecord(context.Background(), "s", engine.Entry{PartitionKey: fmt.Sprintf("%d-%d", w, i)}); err != nil {
					t.Errorf("put: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	jitter.Wait()

	// A restart with the clock far in the past keeps the order too.
	maxTS := map[engine.ShardID]time.Time{}
	for _, id := range []engine.ShardID{0, 1} {
		recs := shardRecords(t, db, "s", id)
		maxTS[id] = recs[len(recs)-1].Timestamp
	}
	require.NoError(t, db.Close())
	clk.Set(start.Add(-48 * time.Hour))
	db = openDB(t, "db", opts)
	for i := range 20 {
		put(t, db, "s", "after-"+itoa(i), "")
	}

	clk.Set(start.Add(1000 * time.Hour)) // no stored time is in the future now
	for _, id := range []engine.ShardID{0, 1} {
		recs := shardRecords(t, db, "s", id)
		require.NotEmpty(t, recs)
		for i := 1; i < len(recs); i++ {
			require.False(t, recs[i].Timestamp.Before(recs[i-1].Timestamp), "%s: record %d at %v after %v", id, i, recs[i].Timestamp, recs[i-1].Timestamp)
		}
		require.False(t, recs[len(recs)-1].Timestamp.Before(maxTS[id]), "%s: arrival went back across the restart", id)
		// AT_TIMESTAMP at every stored time and 1 ms after it.
		for _, r := range recs {
			for _, ts := range []time.Time{r.Timestamp, r.Timestamp.Add(time.Millisecond)} {
				want := len(recs)
				for j, q := range recs {
					if !q.Timestamp.Before(ts) {
						want = j
						break
					}
				}
				it, err := db.Iterate("s", id, engine.AtTimestamp(ts))
				require.NoError(t, err)
				if want == len(recs) {
					require.False(t, it.Next())
				} else {
					require.True(t, it.Next())
					require.Equal(t, recs[want].SequenceNumber, it.Record().SequenceNumber, "AtTimestamp(%v)", ts)
				}
				require.NoError(t, it.Close())
			}
		}
	}
}
