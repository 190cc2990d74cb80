package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

// TestLoadShards: Open's recovery of every shard's last record and counts
// (after Close by point reads of the sequence file's marks, otherwise one
// iterator per goroutine seeking from shard to shard) finds what was
// written — with empty shards first, last and between, records above the
// persisted counts (a crash) or none (Close) — and the seeks give the same
// answer with one goroutine as with several.
func TestLoadShards(t *testing.T) {
	const shards = 300
	mem := vfs.NewCrashableMem()
	db, err := Open("db", &Options{FS: mem})
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("s", StreamConfig{ShardCount: shards}))
	require.NoError(t, db.CreateStream("other", StreamConfig{ShardCount: 2}))
	ranges := shard.SplitHashSpace(shards)
	type want struct {
		last           uint64
		records, bytes int64
	}
	wants := make([]want, shards)
	var entries []Entry
	for i := range shards {
		if i%3 == 0 || i == shards-1 {
			continue // empty: 0, 3, ..., 297, and the last one
		}
		for j := range i%7*40 + 1 { // 1 to 241 records: some beyond StatsEvery
			e := Entry{PartitionKey: "k", ExplicitHashKey: ranges[i].Start.String(), Data: fmt.Appendf(nil, "%d/%d", i, j)}
			entries = append(entries, e)
			wants[i].records++
			wants[i].bytes += int64(shard.ValueLen(e.PartitionKey, true, e.Data))
			wants[i].last++
		}
	}
	for len(entries) > 0 {
		n := min(500, len(entries))
		_, err := db.PutRecords(context.Background(), "s", entries[:n])
		require.NoError(t, err)
		entries = entries[n:]
	}
	_, err = db.PutRecord(context.Background(), "other", Entry{PartitionKey: "k", Data: []byte("x")})
	require.NoError(t, err)
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	require.NoError(t, db.Close())

	for name, fs := range map[string]vfs.FS{"crash": crashed, "close": mem} {
		t.Run(name, func(t *testing.T) {
			db, err := Open("db", &Options{FS: fs})
			require.NoError(t, err)
			defer db.Close()
			s, err := db.streamByName("s")
			require.NoError(t, err)
			// What Open recovered (after Close: from the sequence file's
			// marks with point reads).
			d, err := db.DescribeStream("s")
			require.NoError(t, err)
			for _, sd := range d.Shards {
				w := wants[sd.ShardID]
				require.Equal(t, w.records, sd.Records, "%s records", sd.ShardID)
				require.Equal(t, w.bytes, sd.Bytes, "%s bytes", sd.ShardID)
				require.Equal(t, w.last, s.logs[sd.ShardID].Published(), "%s last", sd.ShardID)
			}
			ids := make([]shard.ShardID, shards)
			for i := range ids {
				ids[i] = shard.ShardID(i)
			}
			states, err := db.loadShardStates(s.id)
			require.NoError(t, err)
			var first []loadedShard
			for _, workers := range []int{1, 2, 7} {
				got, err := db.loadShardsWith(workers, s.id, ids, states)
				require.NoError(t, err)
				for i, w := range wants {
					require.Equal(t, w.last, got[i].last, "shard %d last (%d goroutines)", i, workers)
					require.Equal(t, w.records, got[i].records, "shard %d records", i)
					require.Equal(t, w.bytes, got[i].bytes, "shard %d bytes", i)
					if w.last > 0 {
						require.Positive(t, got[i].arrival, "shard %d arrival", i)
					}
				}
				if first == nil {
					first = got
				}
				require.Equal(t, first, got, "%d goroutines", workers)
			}
			if name == "close" {
				for i, ls := range first {
					require.Equal(t, ls.last, ls.through, "shard %d: Close persisted the counts through the last record", i)
				}
			}
		})
	}
}

// route finds the last open range starting at or below the hash key,
// as a search over the ranges does, both for CreateStream's equal splits
// (where it guesses the range from the key) and for uneven ranges (where
// the guess fails and it searches).
func TestRouteMatchesSearch(t *testing.T) {
	search := func(ranges []shard.HashRange, h shard.HashKey) int {
		// The first range starting above h, less one.
		return sort.Search(len(ranges), func(j int) bool { return ranges[j].Start.Cmp(h) > 0 }) - 1
	}
	check := func(ranges []shard.HashRange, keys []shard.HashKey) {
		t.Helper()
		s := &stream{ranges: ranges}
		for i := range ranges {
			s.open = append(s.open, shard.NewLog(1, shard.ShardID(i), 1, 0, 0, 0))
		}
		for _, h := range keys {
			require.Equal(t, s.open[search(ranges, h)], s.route(h), "key %+v, %d ranges", h, len(ranges))
		}
	}
	rng := rand.New(rand.NewPCG(9, 10))
	var keys []shard.HashKey
	for range 2000 {
		keys = append(keys, shard.HashKey{Hi: rng.Uint64(), Lo: rng.Uint64()})
	}
	keys = append(keys, shard.HashKey{}, shard.HashKey{Hi: ^uint64(0), Lo: ^uint64(0)})
	for _, n := range []int{1, 2, 3, 4, 7, 100, 256, 2047, 2048, 10000} {
		ranges := shard.SplitHashSpace(n)
		edges := slices.Clone(keys)
		for _, r := range ranges { // every boundary and its neighbours
			edges = append(edges, r.Start, r.End)
			if r.Start.Lo > 0 {
				edges = append(edges, shard.HashKey{Hi: r.Start.Hi, Lo: r.Start.Lo - 1})
			}
		}
		check(ranges, edges)
		// Uneven: split one range of the equal split in two.
		if n > 1 {
			k := rng.IntN(n)
			mid := shard.HashKey{Hi: ranges[k].Start.Hi + (ranges[k].End.Hi-ranges[k].Start.Hi)/3, Lo: 0}
			if mid.Cmp(ranges[k].Start) > 0 {
				uneven := slices.Insert(slices.Clone(ranges), k+1, shard.HashRange{Start: mid, End: ranges[k].End})
				uneven[k].End = mid
				check(uneven, append(edges, mid))
			}
		}
	}
}
