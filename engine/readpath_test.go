package engine_test

// The read path's memory contract: partition keys and (GetRecords) data
// stay intact after the reader moves on, though the Iterator copies keys
// into shared chunks and GetRecords copies a page into shared arenas; and
// the Iterator costs no allocation per record.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// putKeyed puts n records whose partition keys have lengths 1..256 (so the
// Iterator's key chunks fill and are replaced many times) and returns the
// keys and data, in order.
func putKeyed(t *testing.T, db *engine.DB, stream string, n int) (keys, data []string) {
	t.Helper()
	for i := 0; i < n; i += 500 {
		var es []engine.Entry
		for j := i; j < min(n, i+500); j++ {
			k := fmt.Sprintf("%05d", j) + strings.Repeat("k", (j*37)%252)
			d := fmt.Sprintf("data-%d", j)
			keys, data = append(keys, k), append(data, d)
			es = append(es, engine.Entry{PartitionKey: k, Data: []byte(d)})
		}
		rs, err := db.PutRecords(context.Background(), stream, es)
		require.NoError(t, err)
		for _, r := range rs {
			require.NoError(t, r.Err)
		}
	}
	return keys, data
}

func TestReadPathKeysOutliveTheReader(t *testing.T) {
	db, _, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	keys, data := putKeyed(t, db, "s", 3000)

	// Iterator: keep every Record as returned (Data cloned, it is
	// borrowed); the keys must still read right after the iterator has
	// moved on and closed.
	it, err := db.Iterate("s", 0, engine.TrimHorizon())
	require.NoError(t, err)
	var recs []engine.Record
	for it.Next() {
		r := it.Record()
		require.Equal(t, r, it.Record(), "Record is stable between Next calls")
		recs = append(recs, r.Clone())
	}
	require.NoError(t, it.Err())
	require.NoError(t, it.Close())
	require.Len(t, recs, len(keys))
	for i, r := range recs {
		require.Equal(t, keys[i], r.PartitionKey, "record %d", i)
		require.Equal(t, data[i], string(r.Data), "record %d", i)
	}

	// GetRecords: pages own their keys and data.
	all, _ := pageAll(t, db, shardIter(t, db, "s", 0, engine.TrimHorizon()), 777)
	require.Len(t, all, len(keys))
	for i, r := range all {
		require.Equal(t, keys[i], r.PartitionKey, "record %d", i)
		require.Equal(t, data[i], string(r.Data), "record %d", i)
	}
}

func TestIteratorAllocatesNothingPerRecord(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	db, _, _ := newDB(t)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	const n = 4000
	keys, _ := putKeyed(t, db, "s", n)
	require.Len(t, keys, n)
	var got int
	allocs := testing.AllocsPerRun(3, func() {
		it, err := db.Iterate("s", 0, engine.TrimHorizon())
		require.NoError(t, err)
		got = 0
		for it.Next() {
			got += len(it.Record().PartitionKey)
		}
		require.NoError(t, it.Err())
		require.NoError(t, it.Close())
	})
	require.Positive(t, got)
	// The keys average ~130 bytes: about one 4 KiB key chunk per 30
	// records, plus the Iterator's and Pebble's fixed cost. One allocation
	// per record (a string per key) would be 4000.
	require.Less(t, allocs, float64(n)/10, "allocations for %d records", n)
}
