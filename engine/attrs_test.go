package engine_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// TestAttrs: per-stream and DB-wide attributes persist across a reopen,
// survive other catalog changes, are deleted with their stream, and
// enforce their limits.
func TestAttrs(t *testing.T) {
	fs := vfs.NewMem()
	opts := &engine.Options{FS: fs}
	db, err := engine.Open("db", opts)
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))

	require.NoError(t, db.SetAttr("s", "policy/stream", []byte(`{"a":1}`)))
	require.NoError(t, db.SetAttr("s", "policy/consumer/c:1", []byte(`{"b":2}`)))
	require.NoError(t, db.SetAttr("s", "other", []byte("x")))
	require.NoError(t, db.SetAttr("", "account/settings", []byte("on")))
	require.NoError(t, db.SetRetention("s", 48*60*60*1e9)) // another catalog change keeps them
	require.NoError(t, db.Close())

	db, err = engine.Open("db", opts)
	require.NoError(t, err)
	defer db.Close()
	v, ok, err := db.Attr("s", "policy/stream")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, `{"a":1}`, string(v))
	v[0] = 'X' // the caller's copy
	v, _, _ = db.Attr("s", "policy/stream")
	require.Equal(t, `{"a":1}`, string(v))
	all, err := db.Attrs("s", "policy/")
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Equal(t, `{"b":2}`, string(all["policy/consumer/c:1"]))
	v, ok, err = db.Attr("", "account/settings")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "on", string(v))

	// nil deletes.
	require.NoError(t, db.SetAttr("s", "other", nil))
	_, ok, err = db.Attr("s", "other")
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, db.SetAttr("", "account/settings", nil))
	_, ok, err = db.Attr("", "account/settings")
	require.NoError(t, err)
	require.False(t, ok)

	// Limits and unknown streams.
	require.ErrorIs(t, db.SetAttr("s", "", []byte("x")), engine.ErrValidation)
	require.ErrorIs(t, db.SetAttr("s", strings.Repeat("k", engine.MaxAttrKeyBytes+1), []byte("x")), engine.ErrValidation)
	require.ErrorIs(t, db.SetAttr("s", "big", make([]byte, engine.MaxAttrValueBytes+1)), engine.ErrValidation)
	for i := 0; i < engine.MaxAttrBytes/engine.MaxAttrValueBytes-1; i++ {
		require.NoError(t, db.SetAttr("s", "fill"+string(rune('a'+i)), make([]byte, engine.MaxAttrValueBytes)))
	}
	require.ErrorIs(t, db.SetAttr("s", "one-too-many", make([]byte, engine.MaxAttrValueBytes)), engine.ErrValidation)
	require.ErrorIs(t, db.SetAttr("nope", "k", []byte("x")), engine.ErrStreamNotFound)
	_, _, err = db.Attr("nope", "k")
	require.ErrorIs(t, err, engine.ErrStreamNotFound)

	// Deleted with the stream: a new stream of the same name has none.
	require.NoError(t, db.DeleteStream(context.Background(), "s"))
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	all, err = db.Attrs("s", "")
	require.NoError(t, err)
	require.Empty(t, all)
}

// TestStreamMaxRecordBytes: a stream's own record limit replaces the DB's
// for PutRecord and PutRecords, persists, and can be changed and reset.
func TestStreamMaxRecordBytes(t *testing.T) {
	fs := vfs.NewMem()
	opts := &engine.Options{FS: fs}
	db, err := engine.Open("db", opts)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, db.CreateStream("big", engine.StreamConfig{ShardCount: 1, MaxRecordBytes: 3 << 20}))
	require.NoError(t, db.CreateStream("small", engine.StreamConfig{ShardCount: 1}))
	require.ErrorIs(t, db.CreateStream("bad", engine.StreamConfig{ShardCount: 1, MaxRecordBytes: -1}), engine.ErrValidation)
	require.ErrorIs(t, db.CreateStream("bad", engine.StreamConfig{ShardCount: 1, MaxRecordBytes: 65 << 20}), engine.ErrValidation)

	data := bytes.Repeat([]byte{7}, 2<<20)
	_, err = db.PutRecord(ctx, "small", engine.Entry{PartitionKey: "k", Data: data})
	require.ErrorIs(t, err, engine.ErrValidation)
	require.Contains(t, engine.Message(err), "limit of 1048576 bytes")
	_, err = db.PutRecord(ctx, "big", engine.Entry{PartitionKey: "k", Data: data})
	require.NoError(t, err)
	// PutRecords takes one record of the stream's limit even above
	// MaxPutRecordsBytes (5 MiB).
	require.NoError(t, db.SetMaxRecordBytes("big", 6<<20))
	res, err := db.PutRecords(ctx, "big", []engine.Entry{{PartitionKey: "k", Data: bytes.Repeat([]byte{1}, 6<<20-1)}})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	d, err := db.DescribeStream("big")
	require.NoError(t, err)
	require.Equal(t, 6<<20, d.MaxRecordBytes)
	require.NoError(t, db.Close())

	db, err = engine.Open("db", opts)
	require.NoError(t, err)
	defer db.Close()
	d, err = db.DescribeStream("big")
	require.NoError(t, err)
	require.Equal(t, 6<<20, d.MaxRecordBytes)
	_, err = db.PutRecord(ctx, "big", engine.Entry{PartitionKey: "k", Data: data})
	require.NoError(t, err)
	require.NoError(t, db.SetMaxRecordBytes("big", 0)) // back to the DB's default
	_, err = db.PutRecord(ctx, "big", engine.Entry{PartitionKey: "k", Data: data})
	require.ErrorIs(t, err, engine.ErrValidation)
	d, _ = db.DescribeStream("small")
	require.Equal(t, 1<<20, d.MaxRecordBytes)
	require.ErrorIs(t, db.SetMaxRecordBytes("big", -5), engine.ErrValidation)
	require.ErrorIs(t, db.SetMaxRecordBytes("nope", 1<<20), engine.ErrStreamNotFound)
}

// TestMergeShardsOrder: MergeShards takes the lower shard first, as
// Kinesis does; the reverse order is not an adjacent pair.
func TestMergeShardsOrder(t *testing.T) {
	db, _, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
	err := db.MergeShards("s", 1, 0)
	require.ErrorIs(t, err, engine.ErrInvalidArgument)
	e := asError(t, err)
	require.Equal(t, engine.ReasonNotAdjacent, e.Reason)
	require.Equal(t, "s", e.Stream)
	require.Equal(t, []engine.ShardID{1, 0}, []engine.ShardID{e.Shard, e.Other})
	require.NoError(t, db.MergeShards("s", 0, 1))
}

func TestChildShards(t *testing.T) {
	db, _, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	cs, err := db.ChildShards("s", 0)
	require.NoError(t, err)
	require.Empty(t, cs, "an open shard has no children")
	require.NoError(t, db.SplitShard("s", 0, "170141183460469231731687303715884105728"))
	cs, err = db.ChildShards("s", 0)
	require.NoError(t, err)
	require.Len(t, cs, 2)
	require.Equal(t, engine.ShardID(1), cs[0].ShardID)
	require.Equal(t, []engine.ShardID{0}, cs[0].ParentShards)
	require.Equal(t, "170141183460469231731687303715884105727", cs[0].HashKeyRange.End.String())
	require.Equal(t, engine.ShardID(2), cs[1].ShardID)
	require.NoError(t, db.MergeShards("s", 1, 2))
	cs, err = db.ChildShards("s", 2)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	require.Equal(t, []engine.ShardID{1, 2}, cs[0].ParentShards)
	require.NoError(t, db.DeleteStream(context.Background(), "s"))
	_, err = db.ChildShards("s", 0)
	require.ErrorIs(t, err, engine.ErrStreamNotFound)
}

// TestChildShardsAtShardEnd: a reader woken because its shard was split
// finds the children at once (the close comes after the new catalog is
// published). Before, a reader could run between the two and see a
// SHARD_END with no children (a SubscribeToShard sent such an event now
// and then). Timing decides whether the old order shows, so the test
// splits many times.
func TestChildShardsAtShardEnd(t *testing.T) {
	db, _, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	ctx := context.Background()
	id := engine.ShardID(0)
	for range 50 {
		it, err := db.Iterate("s", id, engine.Latest())
		require.NoError(t, err)
		children := make(chan int, 1)
		go func() {
			defer it.Close()
			for !it.ShardEnded() {
				for it.Next() {
				}
				if it.ShardEnded() {
					break
				}
				if err := it.Wait(ctx); err != nil {
					children <- -1
					return
				}
			}
			cs, err := db.ChildShards("s", id)
			if err != nil {
				children <- -1
				return
			}
			children <- len(cs)
		}()
		shards, err := db.ListShards("s")
		require.NoError(t, err)
		var start string
		for _, d := range shards {
			if d.ShardID == id {
				start = d.HashKeyRange.Start.Add(1 << 20).String()
			}
		}
		require.NoError(t, db.SplitShard("s", id, start))
		require.Equal(t, 2, <-children, "the children of %s, seen by the reader its close woke", id)
		id = shard2(db, t, id)
	}
}

// shard2 returns the upper child of id.
func shard2(db *engine.DB, t *testing.T, id engine.ShardID) engine.ShardID {
	t.Helper()
	cs, err := db.ChildShards("s", id)
	require.NoError(t, err)
	return cs[1].ShardID
}

// TestUpdateAttrs: UpdateAttrs is an atomic read-modify-write (no
// increment is lost among concurrent ones), an error from fn changes
// nothing, StreamConfig.Attrs are written with the stream, and the limits
// apply to the result.
func TestUpdateAttrs(t *testing.T) {
	db, _, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1, Attrs: map[string][]byte{"first": []byte("1")}}))
	v, ok, err := db.Attr("s", "first")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "1", string(v))

	const workers, each = 8, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				require.NoError(t, db.UpdateAttrs("s", func(a map[string][]byte) error {
					n, _ := strconv.Atoi(string(a["n"]))
					a["n"] = []byte(strconv.Itoa(n + 1))
					return nil
				}))
			}
		}()
	}
	wg.Wait()
	v, _, _ = db.Attr("s", "n")
	require.Equal(t, strconv.Itoa(workers*each), string(v))

	stop := errors.New("stop")
	err = db.UpdateAttrs("s", func(a map[string][]byte) error {
		delete(a, "n")
		a["x"] = []byte("y")
		return stop
	})
	require.ErrorIs(t, err, stop)
	all, err := db.Attrs("s", "")
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"first": []byte("1"), "n": []byte(strconv.Itoa(workers * each))}, all)

	err = db.UpdateAttrs("s", func(a map[string][]byte) error {
		a[strings.Repeat("k", engine.MaxAttrKeyBytes+1)] = nil
		return nil
	})
	require.ErrorIs(t, err, engine.ErrValidation)
	err = db.CreateStream("t", engine.StreamConfig{ShardCount: 1, Attrs: map[string][]byte{"big": make([]byte, engine.MaxAttrValueBytes+1)}})
	require.ErrorIs(t, err, engine.ErrValidation)
	require.ErrorIs(t, db.UpdateAttrs("nope", func(map[string][]byte) error { return nil }), engine.ErrStreamNotFound)
	require.ErrorIs(t, db.UpdateAttrs("", func(map[string][]byte) error { return nil }), engine.ErrValidation)
}
