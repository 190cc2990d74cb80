package engine_test

// Resharding: after SplitShard, MergeShards and UpdateShardCount the open
// ranges tile [0, 2^128-1] exactly, every new shard's parents are closed,
// lineage is consistent (split children inside their parent, a merge
// child exactly the union of its two parents), shard ids are never reused,
// and every key maps to exactly one open shard. A reader that drains
// parents before children sees each key's records in put order.

import (
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// checkLineage checks the shard table of a stream and returns it by id.
func checkLineage(t *testing.T, db *engine.DB, stream string) map[engine.ShardID]engine.ShardDescription {
	t.Helper()
	d, err := db.DescribeStream(stream)
	require.NoError(t, err)
	byID := map[engine.ShardID]engine.ShardDescription{}
	for i, s := range d.Shards {
		require.Equal(t, engine.ShardID(i), s.ShardID, "shard ids are consecutive and never reused")
		byID[s.ShardID] = s
	}
	open := requireTiling(t, d.Shards)
	require.Equal(t, len(open), d.OpenShardCount)
	for _, s := range d.Shards {
		if s.ParentShardID == nil {
			require.Nil(t, s.AdjacentParentShardID)
			continue
		}
		p, ok := byID[*s.ParentShardID]
		require.True(t, ok, "%s: parent %s missing", s.ShardID, *s.ParentShardID)
		require.False(t, p.Open(), "%s: parent %s still open", s.ShardID, p.ShardID)
		require.Less(t, p.ShardID, s.ShardID)
		if s.AdjacentParentShardID == nil { // split child: inside its parent
			require.True(t, p.HashKeyRange.Contains(s.HashKeyRange.Start) && p.HashKeyRange.Contains(s.HashKeyRange.End),
				"%s not inside its parent %s", s.ShardID, p.ShardID)
			continue
		}
		q, ok := byID[*s.AdjacentParentShardID]
		require.True(t, ok)
		require.False(t, q.Open(), "%s: adjacent parent %s still open", s.ShardID, q.ShardID)
		lo, hi := p.HashKeyRange, q.HashKeyRange
		if hi.Start.Cmp(lo.Start) < 0 {
			lo, hi = hi, lo
		}
		require.Equal(t, lo.End.Add(1), hi.Start, "%s: parents not adjacent", s.ShardID)
		require.Equal(t, engine.HashRange{Start: lo.Start, End: hi.End}, s.HashKeyRange, "%s: not the union of its parents", s.ShardID)
	}
	return byID
}

// checkRouting puts records at every open range's edges and at random
// hash keys and checks each lands in the one open shard containing it.
func checkRouting(t *testing.T, db *engine.DB, stream string, rng *rand.Rand) {
	t.Helper()
	d, err := db.DescribeStream(stream)
	require.NoError(t, err)
	var open []engine.ShardDescription
	var probes []*big.Int
	for _, s := range d.Shards {
		if s.Open() {
			open = append(open, s)
			probes = append(probes, bigOf(t, s.HashKeyRange.Start), bigOf(t, s.HashKeyRange.End))
		}
	}
	for range 20 {
		b := make([]byte, 16)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		probes = append(probes, new(big.Int).SetBytes(b))
	}
	for _, p := range probes {
		h, ok := engine.ParseHashKey(p.String())
		require.True(t, ok)
		var owners []engine.ShardID
		for _, s := range open {
			if s.HashKeyRange.Contains(h) {
				owners = append(owners, s.ShardID)
			}
		}
		require.Len(t, owners, 1, "hash %s is in %v", p, owners)
		res, err := db.PutRecord(context.Background(), stream, engine.Entry{PartitionKey: "probe", ExplicitHashKey: p.String(), Data: []byte("probe")})
		require.NoError(t, err)
		require.Equal(t, owners[0], res.ShardID, "hash %s", p)
	}
}

func uniform(t *testing.T, db *engine.DB, stream string, n int) {
	t.Helper()
	d, err := db.DescribeStream(stream)
	require.NoError(t, err)
	var got []string
	for _, s := range d.Shards {
		if s.Open() {
			got = append(got, s.HashKeyRange.Start.String()+"-"+s.HashKeyRange.End.String())
		}
	}
	step := new(big.Int).Div(two128, big.NewInt(int64(n)))
	var want []string
	for i := range n {
		start := new(big.Int).Mul(step, big.NewInt(int64(i)))
		end := new(big.Int).Sub(new(big.Int).Add(start, step), bigOne)
		if i == n-1 {
			end = maxHash
		}
		want = append(want, start.String()+"-"+end.String())
	}
	require.ElementsMatch(t, want, got, "open ranges after UpdateShardCount(%d)", n)
}

func TestUpdateShardCountLineage(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct{ from, to int }{{4, 6}, {5, 3}, {3, 2}, {1, 2}, {2, 1}, {4, 8}, {8, 4}, {3, 5}, {7, 4}, {6, 6}} {
		t.Run(fmt.Sprintf("%d_to_%d", c.from, c.to), func(t *testing.T) {
			db, _, opts := newDB(t)
			require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: c.from}))
			require.NoError(t, db.UpdateShardCount("s", c.to))
			byID := checkLineage(t, db, "s")
			// The new shard table is what a restart loads.
			require.NoError(t, db.Close())
			db = openDB(t, "db", opts)
			require.Equal(t, byID, checkLineage(t, db, "s"))
			uniform(t, db, "s", c.to)
			if c.from == c.to {
				require.Len(t, byID, c.from, "a uniform stream at its count is left alone")
			}
			for id, s := range byID {
				if int(id) >= c.from {
					require.NotNil(t, s.ParentShardID, "new shard %s has a parent", id)
				}
			}
			checkRouting(t, db, "s", rng)
		})
	}
}

// TestReshardChainKeepsPerKeyOrder reshards one stream many ways while
// writing, then reads parents before children and checks every key's
// records come out in put order.
func TestReshardChainKeepsPerKeyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	db, _, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2, Partitioner: engine.PartitionerMD5}))
	seq := map[string]int{}
	writeSome := func() {
		for i := range 40 {
			k := "key" + itoa(i%13)
			put(t, db, "s", k, fmt.Sprintf("%s/%d", k, seq[k]))
			seq[k]++
		}
	}
	ops := []func() error{
		func() error { return db.UpdateShardCount("s", 4) },
		func() error { return db.SplitShard("s", openShard(t, db), midOf(t, db)) },
		func() error { return db.UpdateShardCount("s", 3) },
		func() error { return mergeFirstPair(t, db) },
		func() error { return db.UpdateShardCount("s", 4) },
		func() error { return db.UpdateShardCount("s", 7) },
		func() error { return db.UpdateShardCount("s", 4) },
		func() error { return mergeFirstPair(t, db) },
		func() error { return db.UpdateShardCount("s", 2) },
		func() error { return db.UpdateShardCount("s", 1) },
	}
	writeSome()
	for i, op := range ops {
		require.NoError(t, op(), "op %d", i)
		checkLineage(t, db, "s")
		checkRouting(t, db, "s", rng)
		writeSome()
	}

	// Drain in lineage order: a shard only after all its parents.
	d, err := db.DescribeStream("s")
	require.NoError(t, err)
	done := map[engine.ShardID]bool{}
	next := map[string]int{}
	for len(done) < len(d.Shards) {
		progressed := false
		for _, s := range d.Shards {
			if done[s.ShardID] || (s.ParentShardID != nil && !done[*s.ParentShardID]) || (s.AdjacentParentShardID != nil && !done[*s.AdjacentParentShardID]) {
				continue
			}
			recs, last := pageAll(t, db, shardIter(t, db, "s", s.ShardID, engine.TrimHorizon()), 1000)
			if !s.Open() {
				require.Empty(t, last.NextShardIterator, "%s: closed shard ends", s.ShardID)
			}
			for _, r := range recs {
				if r.PartitionKey == "probe" {
					continue
				}
				k := r.PartitionKey
				require.Equal(t, fmt.Sprintf("%s/%d", k, next[k]), string(r.Data), "%s: key %s out of order", s.ShardID, k)
				next[k]++
			}
			done[s.ShardID] = true
			progressed = true
		}
		require.True(t, progressed, "lineage has a cycle or a missing parent")
	}
	require.Equal(t, seq, next, "every record read exactly once")
}

func openShard(t *testing.T, db *engine.DB) engine.ShardID {
	t.Helper()
	d, err := db.DescribeStream("s")
	require.NoError(t, err)
	for _, s := range d.Shards {
		if s.Open() {
			return s.ShardID
		}
	}
	t.Fatal("no open shard")
	return 0
}

// midOf returns the middle hash key of the first open shard.
func midOf(t *testing.T, db *engine.DB) string {
	t.Helper()
	d, err := db.DescribeStream("s")
	require.NoError(t, err)
	for _, s := range d.Shards {
		if s.Open() {
			m := new(big.Int).Add(bigOf(t, s.HashKeyRange.Start), bigOf(t, s.HashKeyRange.End))
			return m.Rsh(m, 1).String()
		}
	}
	t.Fatal("no open shard")
	return ""
}

// mergeFirstPair merges the two open shards with the lowest ranges.
func mergeFirstPair(t *testing.T, db *engine.DB) error {
	t.Helper()
	d, err := db.DescribeStream("s")
	require.NoError(t, err)
	open := requireTiling(t, d.Shards)
	require.GreaterOrEqual(t, len(open), 2)
	return db.MergeShards("s", open[0].ShardID, open[1].ShardID)
}

func TestSplitAndMergeLineage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	db, _, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	// Kinesis' own edge: [0, max] split at 2 gives [0, 1] and [2, max].
	require.NoError(t, db.SplitShard("s", 0, "2"))
	byID := checkLineage(t, db, "s")
	require.Equal(t, "1", byID[1].HashKeyRange.End.String())
	require.Equal(t, "2", byID[2].HashKeyRange.Start.String())
	require.Equal(t, engine.ShardID(0), *byID[1].ParentShardID)
	require.Equal(t, engine.ShardID(0), *byID[2].ParentShardID)
	checkRouting(t, db, "s", rng)
	// Split the upper child at its last allowed key (End-1), then merge
	// everything back pairwise.
	require.NoError(t, db.SplitShard("s", 2, new(big.Int).Sub(maxHash, bigOne).String()))
	byID = checkLineage(t, db, "s")
	require.Equal(t, new(big.Int).Sub(maxHash, bigOne).String(), byID[4].HashKeyRange.Start.String(), "upper child is [max-1, max]")
	require.Equal(t, new(big.Int).Sub(maxHash, big.NewInt(2)).String(), byID[3].HashKeyRange.End.String())
	checkRouting(t, db, "s", rng)
	require.NoError(t, db.MergeShards("s", 3, 4)) // ShardToMerge, then the adjacent shard above it
	byID = checkLineage(t, db, "s")
	require.Equal(t, engine.ShardID(3), *byID[5].ParentShardID)
	require.Equal(t, engine.ShardID(4), *byID[5].AdjacentParentShardID)
	require.NoError(t, db.MergeShards("s", 1, 5))
	byID = checkLineage(t, db, "s")
	require.Equal(t, engine.HashRange{End: engine.MaxHashKey}, byID[6].HashKeyRange)
	checkRouting(t, db, "s", rng)
}

// TestReshardOverShardLimitChangesNothing: a reshard refused by the shard
// quota leaves the stream exactly as it was.
func TestReshardOverShardLimitChangesNothing(t *testing.T) {
	opts := memOpts(nil)
	opts.MaxShards = 4
	db := openDB(t, "db", opts)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 3}))
	err := db.CreateStream("t", engine.StreamConfig{ShardCount: 2})
	require.ErrorIs(t, err, engine.ErrLimitExceeded)
	require.NoError(t, db.SplitShard("s", 0, midOf(t, db)))
	before := takeSnapshot(t, db)
	err = db.SplitShard("s", 1, midOf(t, db))
	require.ErrorIs(t, err, engine.ErrLimitExceeded)
	e := asError(t, err)
	require.Equal(t, engine.ReasonShardLimit, e.Reason)
	require.Equal(t, int64(4), e.Limit)
	err = db.UpdateShardCount("s", 6)
	require.ErrorIs(t, err, engine.ErrLimitExceeded)
	require.Equal(t, before, takeSnapshot(t, db))
	checkLineage(t, db, "s")
	checkRouting(t, db, "s", rand.New(rand.NewPCG(2, 2)))
	require.NoError(t, db.MergeShards("s", 3, 4))
	checkLineage(t, db, "s")
}
