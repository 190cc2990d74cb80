package engine

import (
	"context"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

// TestDeleteStreamDeletesStreamConsumerKeys checks DeleteStream's
// DeleteRange covers the registered-consumer key space: no key of the
// deleted stream is left behind, and other streams keep theirs.
func TestDeleteStreamDeletesStreamConsumerKeys(t *testing.T) {
	db, err := Open("db", &Options{FS: vfs.NewMem()})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.CreateStream("a", StreamConfig{ShardCount: 1}))
	require.NoError(t, db.CreateStream("b", StreamConfig{ShardCount: 1}))
	for _, n := range []string{"x", "y", "z"} {
		_, err := db.RegisterStreamConsumer("a", n, StreamConsumerConfig{})
		require.NoError(t, err)
		_, err = db.RegisterStreamConsumer("b", n, StreamConsumerConfig{})
		require.NoError(t, err)
	}
	a, err := db.streamByName("a")
	require.NoError(t, err)
	b, err := db.streamByName("b")
	require.NoError(t, err)
	count := func(id uint32) int {
		lower, upper := shard.StreamSpan(shard.PrefixStreamConsumers, id)
		it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		require.NoError(t, err)
		defer it.Close()
		n := 0
		for ok := it.First(); ok; ok = it.Next() {
			require.Equal(t, streamConsumerKey(id, string(it.Key()[5:])), it.Key())
			n++
		}
		return n
	}
	require.Equal(t, 3, count(a.id))
	require.NoError(t, db.DeleteStream(context.Background(), "a"))
	require.Zero(t, count(a.id))
	require.Equal(t, 3, count(b.id))
}

// TestStreamConsumerRecordCodec round-trips the persisted entry and
// refuses malformed ones.
func TestStreamConsumerRecordCodec(t *testing.T) {
	r := streamConsumerRecord{CreatedMs: 1748779200123, ActiveMs: 1748779201123, DeletionDelayMs: 5000, DeregisteredMs: 1748779300000}
	got, ok := decodeStreamConsumerRecord(r.encode())
	require.True(t, ok)
	require.Equal(t, r, got)
	enc := r.encode()
	for _, bad := range [][]byte{nil, enc[:len(enc)-1], append(enc[:len(enc):len(enc)], 0), append([]byte{2}, enc[1:]...)} {
		_, ok := decodeStreamConsumerRecord(bad)
		require.False(t, ok, "%x", bad)
	}
	neg := streamConsumerRecord{CreatedMs: 1, DeletionDelayMs: -1}
	_, ok = decodeStreamConsumerRecord(neg.encode())
	require.False(t, ok)
}
