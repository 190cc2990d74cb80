package engine_test

// Hash-key ranges, partitioning and sequence numbers through the public
// API: exact CreateStream ranges, MD5 placement, ExplicitHashKey routing,
// the 56-digit sequence-number shape, rejection of numbers from another
// shard or stream, and delete + recreate isolation.

import (
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

const hashOfA = "16955237001963240173058271559858726497" // MD5("a") as a 128-bit integer

func TestCreateStreamHashRanges(t *testing.T) {
	db, _, _ := newDB(t)
	for _, n := range []int{1, 2, 3, 7, 1000} {
		name := "n" + itoa(n)
		require.NoError(t, db.CreateStream(name, engine.StreamConfig{ShardCount: n}))
		d, err := db.DescribeStream(name)
		require.NoError(t, err)
		require.Len(t, d.Shards, n)
		require.Equal(t, n, d.OpenShardCount)
		step := new(big.Int).Div(two128, big.NewInt(int64(n)))
		for i, sh := range d.Shards {
			require.Equal(t, engine.ShardID(i), sh.ShardID)
			require.Nil(t, sh.ParentShardID)
			require.Nil(t, sh.AdjacentParentShardID)
			require.True(t, sh.Open())
			wantStart := new(big.Int).Mul(step, big.NewInt(int64(i)))
			wantEnd := new(big.Int).Sub(new(big.Int).Add(wantStart, step), bigOne)
			if i == n-1 {
				wantEnd = maxHash
			}
			require.Equal(t, wantStart.String(), sh.HashKeyRange.Start.String(), "n=%d shard %d", n, i)
			require.Equal(t, wantEnd.String(), sh.HashKeyRange.End.String(), "n=%d shard %d", n, i)
			require.Len(t, sh.StartingSequenceNumber.String(), 56)
		}
		requireTiling(t, d.Shards)
		listed, err := db.ListShards(name)
		require.NoError(t, err)
		require.Equal(t, d.Shards, listed)
	}
	d, err := db.DescribeStream("n3")
	require.NoError(t, err)
	got := [][2]string{}
	for _, sh := range d.Shards {
		got = append(got, [2]string{sh.HashKeyRange.Start.String(), sh.HashKeyRange.End.String()})
	}
	require.Equal(t, [][2]string{
		{"0", "113427455640312821154458202477256070484"},
		{"113427455640312821154458202477256070485", "226854911280625642308916404954512140969"},
		{"226854911280625642308916404954512140970", "340282366920938463463374607431768211455"},
	}, got)
	d, err = db.DescribeStream("n2")
	require.NoError(t, err)
	require.Equal(t, "170141183460469231731687303715884105728", d.Shards[1].HashKeyRange.Start.String())
}

// TestMD5PlacementOfA pins "a" to hash 16955237001963240173058271559858726497
// by splitting exactly at that key and one past it.
func TestMD5PlacementOfA(t *testing.T) {
	db, _, _ := newDB(t)
	require.Equal(t, hashOfA, engine.PartitionerMD5.Hash("a").String())
	ha, ok := engine.ParseHashKey(hashOfA)
	require.True(t, ok)

	require.NoError(t, db.CreateStream("at", engine.StreamConfig{ShardCount: 1, Partitioner: engine.PartitionerMD5}))
	require.NoError(t, db.SplitShard("at", 0, hashOfA)) // children [0, h-1] and [h, max]
	require.Equal(t, engine.ShardID(2), put(t, db, "at", "a", "").ShardID, `"a" is the first key of the upper child`)

	require.NoError(t, db.CreateStream("past", engine.StreamConfig{ShardCount: 1, Partitioner: engine.PartitionerMD5}))
	require.NoError(t, db.SplitShard("past", 0, ha.Add(1).String())) // children [0, h] and [h+1, max]
	require.Equal(t, engine.ShardID(1), put(t, db, "past", "a", "").ShardID, `"a" is the last key of the lower child`)

	// The default partitioner is xxhash, persisted per stream.
	require.NoError(t, db.CreateStream("xx", engine.StreamConfig{ShardCount: 1}))
	d, err := db.DescribeStream("xx")
	require.NoError(t, err)
	require.Equal(t, engine.PartitionerXXHash, d.Partitioner)
	require.NoError(t, db.SplitShard("xx", 0, hashOfA))
	want := engine.ShardID(1)
	if engine.PartitionerXXHash.Hash("a").Cmp(ha) >= 0 {
		want = 2
	}
	require.Equal(t, want, put(t, db, "xx", "a", "").ShardID)
}

// TestExplicitHashKeyRouting: an ExplicitHashKey overrides the partition
// key's hash, boundaries included, and is returned with the record.
func TestExplicitHashKeyRouting(t *testing.T) {
	db, _, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 3, Partitioner: engine.PartitionerMD5}))
	for ehk, want := range map[string]engine.ShardID{
		"0": 0,
		"113427455640312821154458202477256070484": 0,
		"113427455640312821154458202477256070485": 1,
		"226854911280625642308916404954512140969": 1,
		"226854911280625642308916404954512140970": 2,
		"340282366920938463463374607431768211455": 2,
	} {
		res := putEHK(t, db, "s", ehk, ehk)
		require.Equal(t, want, res.ShardID, ehk)
		recs := shardRecords(t, db, "s", want)
		last := recs[len(recs)-1]
		require.Equal(t, ehk, string(last.Data))
		require.NotNil(t, last.ExplicitHashKey)
		require.Equal(t, ehk, last.ExplicitHashKey.String())
		require.Equal(t, "k", last.PartitionKey)
	}
	// Without one, the record carries none.
	r := put(t, db, "s", "a", "plain")
	recs := shardRecords(t, db, "s", r.ShardID)
	require.Nil(t, recs[len(recs)-1].ExplicitHashKey)
	require.Equal(t, engine.ShardID(0), r.ShardID, `MD5("a") is in the first third`)
}

// TestSequenceNumbersShape: every number the engine hands out has AWS's
// 56 digits, parses back to itself, names its shard and increases per
// shard; starting and ending numbers bracket the shard's records.
func TestSequenceNumbersShape(t *testing.T) {
	db, clk, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
	last := map[engine.ShardID]string{}
	for i := range 200 {
		if i%50 == 0 {
			clk.Add(1500 * time.Millisecond)
		}
		r := put(t, db, "s", "k"+itoa(i), "")
		s := r.SequenceNumber.String()
		require.Len(t, s, 56)
		n, ok := engine.ParseSequenceNumber(s)
		require.True(t, ok)
		require.Equal(t, r.SequenceNumber, n)
		require.Equal(t, uint32(r.ShardID), n.Shard)
		require.Equal(t, uint64(clk.Now().Unix()), n.Written)
		require.Greater(t, s, last[r.ShardID])
		last[r.ShardID] = s
	}
	d, err := db.DescribeStream("s")
	require.NoError(t, err)
	for _, sh := range d.Shards {
		recs := shardRecords(t, db, "s", sh.ShardID)
		require.NotEmpty(t, recs)
		require.Less(t, sh.StartingSequenceNumber.String(), recs[0].SequenceNumber.String())
		require.True(t, sh.EndingSequenceNumber.IsZero())
	}
	require.NoError(t, db.SplitShard("s", 0, "1000"))
	d, err = db.DescribeStream("s")
	require.NoError(t, err)
	end := d.Shards[0].EndingSequenceNumber
	require.False(t, end.IsZero())
	require.Len(t, end.String(), 56)
	require.Greater(t, end.String(), last[0])
	for _, child := range d.Shards[2:] {
		require.Len(t, child.StartingSequenceNumber.String(), 56)
		require.NotEqual(t, d.Shards[0].StartingSequenceNumber.ShardCreated, child.StartingSequenceNumber.ShardCreated,
			"children get their own creation second")
	}
}

// TestSequenceNumberFromOtherShardOrStreamRejected: AT_ and
// AFTER_SEQUENCE_NUMBER with a number issued for another shard or another
// stream (even one created in the same second) is ErrInvalidArgument.
func TestSequenceNumberFromOtherShardOrStreamRejected(t *testing.T) {
	db, _, _ := newDB(t) // the clock never moves: both streams share a second
	require.NoError(t, db.CreateStream("a", engine.StreamConfig{ShardCount: 2}))
	require.NoError(t, db.CreateStream("b", engine.StreamConfig{ShardCount: 2}))
	a0 := putEHK(t, db, "a", "0", "a0").SequenceNumber
	a1 := putEHK(t, db, "a", maxHash.String(), "a1").SequenceNumber
	b0 := putEHK(t, db, "b", "0", "b0").SequenceNumber
	require.Equal(t, a0.Counter, b0.Counter)
	require.NotEqual(t, a0.String(), b0.String(), "unique per stream")
	aws, ok := engine.ParseSequenceNumber("49647060812288014558888668248263847763900017820167045122")
	require.True(t, ok)

	for _, mk := range []func(engine.SequenceNumber) engine.StartPosition{engine.AtSequenceNumber, engine.AfterSequenceNumber} {
		_, err := db.GetShardIterator("a", 0, mk(a1))
		require.ErrorIs(t, err, engine.ErrInvalidArgument)
		e := asError(t, err)
		require.Equal(t, engine.ReasonSequenceOtherShard, e.Reason)
		require.Equal(t, []engine.ShardID{0, 1}, []engine.ShardID{e.Shard, e.Other})
		_, err = db.GetShardIterator("a", 0, mk(b0))
		require.ErrorIs(t, err, engine.ErrInvalidArgument)
		require.Equal(t, engine.ReasonSequenceOtherStream, asError(t, err).Reason)
		_, err = db.GetShardIterator("a", 0, mk(aws))
		require.ErrorIs(t, err, engine.ErrInvalidArgument)
		_, err = db.Iterate("a", 0, mk(b0))
		require.ErrorIs(t, err, engine.ErrInvalidArgument)
		_, err = db.Iterate("a", 1, mk(a0))
		require.ErrorIs(t, err, engine.ErrInvalidArgument)
		// The shard's own numbers are accepted.
		_, err = db.GetShardIterator("a", 0, mk(a0))
		require.NoError(t, err)
	}
}

// TestDeleteRecreateIsolation: a stream deleted and created again with the
// same name (in the same clock second) never shows the old records, and
// the old sequence numbers and iterator tokens are refused, before and
// after a restart.
func TestDeleteRecreateIsolation(t *testing.T) {
	clk := newStepClock()
	opts := memOpts(clk)
	db := openDB(t, "db", opts)
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	var old []engine.SequenceNumber
	for i := range 5 {
		old = append(old, put(t, db, "s", "k", "old"+itoa(i)).SequenceNumber)
	}
	oldTok, err := db.GetShardIterator("s", 0, engine.TrimHorizon())
	require.NoError(t, err)

	// A tail reader blocked in Wait is released by the delete.
	it, err := db.Iterate("s", 0, engine.Latest())
	require.NoError(t, err)
	waited := make(chan error, 1)
	go func() { waited <- it.Wait(ctx) }()

	require.NoError(t, db.DeleteStream(ctx, "s"))
	select {
	case err := <-waited:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after DeleteStream")
	}
	require.False(t, it.Next())
	require.NoError(t, it.Close())
	names, err := db.ListStreams()
	require.NoError(t, err)
	require.NotContains(t, names, "s")
	_, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k"})
	require.ErrorIs(t, err, engine.ErrStreamNotFound)
	_, err = db.DescribeStream("s")
	require.ErrorIs(t, err, engine.ErrStreamNotFound)
	_, err = db.GetRecords(ctx, oldTok, 10)
	require.ErrorIs(t, err, engine.ErrStreamNotFound)

	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	check := func(db *engine.DB) {
		t.Helper()
		require.Empty(t, shardRecords(t, db, "s", 0))
		for _, n := range old {
			_, err := db.GetShardIterator("s", 0, engine.AtSequenceNumber(n))
			require.ErrorIs(t, err, engine.ErrInvalidArgument)
			_, err = db.GetShardIterator("s", 0, engine.AfterSequenceNumber(n))
			require.ErrorIs(t, err, engine.ErrInvalidArgument)
		}
		out, err := db.GetRecords(ctx, oldTok, 10)
		require.Error(t, err, "an old token must not read the new stream")
		require.Empty(t, out.Records)
	}
	check(db)
	fresh := put(t, db, "s", "k", "new").SequenceNumber
	require.Equal(t, old[0].Counter, fresh.Counter)
	require.NotEqual(t, old[0].String(), fresh.String())
	require.NoError(t, db.Close())
	db = openDB(t, "db", opts)
	recs := shardRecords(t, db, "s", 0)
	require.Equal(t, []string{"new"}, datas(recs))
	for _, n := range old {
		_, err := db.GetShardIterator("s", 0, engine.AtSequenceNumber(n))
		require.ErrorIs(t, err, engine.ErrInvalidArgument)
	}
	_, err = db.GetRecords(ctx, oldTok, 10)
	require.Error(t, err)
}

// TestPutRecordsResultsMatchRecords: PutRecords results are in input
// order, each names the shard and the sequence number of its own record,
// and each shard holds its entries in input order.
func TestPutRecordsResultsMatchRecords(t *testing.T) {
	db, _, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 4, Partitioner: engine.PartitionerMD5}))
	var es []engine.Entry
	for i := range 60 {
		e := engine.Entry{PartitionKey: "key" + itoa(i%17), Data: []byte("d" + itoa(i))}
		if i%10 == 0 {
			e.ExplicitHashKey = maxHash.String() // last shard
		}
		es = append(es, e)
	}
	res, err := db.PutRecords(context.Background(), "s", es)
	require.NoError(t, err)
	require.Len(t, res, len(es))
	bySeq := map[string]string{}
	for _, id := range []engine.ShardID{0, 1, 2, 3} {
		var order []string
		for _, r := range shardRecords(t, db, "s", id) {
			bySeq[r.SequenceNumber.String()] = string(r.Data)
			order = append(order, string(r.Data))
		}
		var want []string
		for i, r := range res {
			if r.ShardID == id {
				want = append(want, string(es[i].Data))
			}
		}
		require.Equal(t, want, order, "%s holds its entries in input order", id)
	}
	for i, r := range res {
		require.NoError(t, r.Err)
		require.Equal(t, uint32(r.ShardID), r.SequenceNumber.Shard)
		require.Equal(t, string(es[i].Data), bySeq[r.SequenceNumber.String()], "result %d", i)
		if es[i].ExplicitHashKey != "" {
			require.Equal(t, engine.ShardID(3), r.ShardID)
		} else {
			h := engine.PartitionerMD5.Hash(es[i].PartitionKey)
			d, err := db.DescribeStream("s")
			require.NoError(t, err)
			require.True(t, d.Shards[r.ShardID].HashKeyRange.Contains(h))
		}
	}
}
