package iterator_test

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/iterator"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

// Record and ReadPage hand out every field of a record, explicit hash
// keys included, and Data whose capacity ends at its own bytes, so a
// reader appending to it cannot write into the next record (ReadPage's
// arena) or into Pebble's block (Record's borrowed Data).
func TestRecordFields(t *testing.T) {
	const n = 300
	pdb, l := gateDB(t, 0)
	defer pdb.Close()
	b := pdb.NewBatch()
	ehk := func(c int) *shard.HashKey {
		if c%3 != 0 {
			return nil
		}
		return &shard.HashKey{Hi: uint64(c), Lo: ^uint64(c)}
	}
	for c := 1; c <= n; c++ {
		pk, data := fmt.Sprintf("key-%d", c), []byte(fmt.Sprintf("data-%d", c))
		v := make([]byte, shard.ValueLen(pk, ehk(c) != nil, data))
		shard.PutValue(v, int64(c)*1500, pk, ehk(c), data)
		require.NoError(t, b.Set(shard.AppendRecordKey(nil, 1, 0, uint64(c)), v, nil))
	}
	require.NoError(t, b.Commit(pebble.Sync))
	l = shard.NewLog(1, 0, 1, n, n*1500, 0)
	check := func(c int, r shard.Record) {
		t.Helper()
		require.Equal(t, l.Seq(uint64(c), int64(c)*1500), r.SequenceNumber, "record %d", c)
		require.Equal(t, l.ID, r.ShardID)
		require.Equal(t, fmt.Sprintf("key-%d", c), r.PartitionKey)
		require.Equal(t, fmt.Sprintf("data-%d", c), string(r.Data))
		require.Equal(t, len(r.Data), cap(r.Data), "record %d: Data's capacity ends at its bytes", c)
		require.Equal(t, ehk(c), r.ExplicitHashKey, "record %d", c)
		require.Equal(t, int64(c)*1500, r.Timestamp.UnixMilli())
	}

	it := iterator.New(pdb, l, 1, nil)
	for c := 1; c <= n; c++ {
		require.True(t, it.Next())
		r := it.Record()
		check(c, r)
		require.Equal(t, r, it.Record(), "Record is stable between Next calls")
	}
	require.False(t, it.Next())
	require.NoError(t, it.Err())
	require.NoError(t, it.Close())

	it = iterator.New(pdb, l, 1, nil)
	require.True(t, it.Next())
	recs, full := iterator.ReadPage(it, n, 1<<20)
	require.True(t, full == (len(recs) == n))
	require.Len(t, recs, n-1)
	require.Equal(t, shard.Record{}, it.Record(), "no current record after ReadPage")
	for i := range recs {
		_ = append(recs[i].Data, "XXXXXXXXXXXXXXXX"...) // must not land in the next record
	}
	for i, r := range recs {
		check(i+2, r)
	}
	require.NoError(t, it.Close())
}
