package engine_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// TestReshardUnderConcurrentWriters puts from many goroutines while the
// stream is split, merged and rescaled, then checks that every
// acknowledged record is in exactly the shard its ack named, that no put
// acknowledged after a reshard returned landed in a closed shard, and that
// a consumer sees every key's records in put order.
func TestReshardUnderConcurrentWriters(t *testing.T) {
	db, err := engine.Open(t.TempDir(), &engine.Options{NoSync: true})
	require.NoError(t, err)
	defer db.Close()
	ctx := context.Background()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))

	type ack struct {
		shard engine.ShardID
		seq   engine.SequenceNumber
		after int64 // reshard generation known closed when the put started
	}
	var (
		mu     sync.Mutex
		acks   = map[string]ack{} // data → ack
		closed sync.Map           // ShardID → generation at which it was closed
		gen    atomic.Int64
		stop   atomic.Bool
		wg     sync.WaitGroup
	)
	const writers = 8
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				g := gen.Load()
				data := fmt.Sprintf("w%d-k%d-%d", w, i%5, i)
				res, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: fmt.Sprintf("w%d-k%d", w, i%5), Data: []byte(data)})
				if err != nil {
					t.Errorf("put: %v", err)
					return
				}
				mu.Lock()
				acks[data] = ack{shard: res.ShardID, seq: res.SequenceNumber, after: g}
				mu.Unlock()
			}
		}()
	}
	reshard := func(fn func() error) {
		// Let some puts through between reshards.
		mu.Lock()
		n := len(acks)
		mu.Unlock()
		for {
			mu.Lock()
			m := len(acks)
			mu.Unlock()
			if m >= n+200 {
				break
			}
		}
		before, err := db.ListShards("s")
		require.NoError(t, err)
		require.NoError(t, fn())
		after, err := db.ListShards("s")
		require.NoError(t, err)
		g := gen.Add(1)
		for i, d := range after {
			if !d.Open() && (i >= len(before) || before[i].Open()) {
				closed.Store(d.ShardID, g)
			}
		}
	}
	reshard(func() error { return db.SplitShard("s", 0, "85070591730234615865843651857942052864") })
	reshard(func() error { return db.MergeShards("s", 2, 3) })
	reshard(func() error { return db.UpdateShardCount("s", 3) })
	reshard(func() error { return db.UpdateShardCount("s", 5) })
	stop.Store(true)
	wg.Wait()

	// Every ack is in its shard, once.
	found := map[string]engine.Record{}
	shards, err := db.ListShards("s")
	require.NoError(t, err)
	for _, d := range shards {
		it, err := db.Iterate("s", d.ShardID, engine.TrimHorizon())
		require.NoError(t, err)
		for r := range it.All() {
			_, dup := found[string(r.Data)]
			require.False(t, dup, "record %s stored twice", r.Data)
			found[string(r.Data)] = r.Clone()
		}
		require.NoError(t, it.Err())
		require.NoError(t, it.Close())
	}
	require.Len(t, found, len(acks))
	for data, a := range acks {
		r, ok := found[data]
		require.True(t, ok, "acknowledged record %s is missing", data)
		require.Equal(t, a.shard, r.ShardID, data)
		require.Equal(t, a.seq, r.SequenceNumber, data)
		if g, ok := closed.Load(a.shard); ok {
			require.Less(t, a.after, g.(int64), "record %s was put after %s closed but landed in it", data, a.shard)
		}
	}

	// A consumer (parents before children) sees each key in put order.
	c, err := db.Consumer("s", "order-check", nil)
	require.NoError(t, err)
	last := map[string]int{}
	got := 0
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for r, err := range c.Records(cctx) {
		require.NoError(t, err)
		parts := strings.Split(string(r.Data), "-")
		i, _ := strconv.Atoi(parts[2])
		key := parts[0] + "-" + parts[1]
		if prev, ok := last[key]; ok {
			require.Greater(t, i, prev, "key %s out of order", key)
		}
		last[key] = i
		if got++; got == len(acks) {
			break
		}
	}
	require.Equal(t, len(acks), got)
}
