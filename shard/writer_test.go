package shard_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

func openMem(t *testing.T) *pebble.DB {
	t.Helper()
	db, err := pebble.Open("db", &pebble.Options{FS: vfs.NewMem(), FormatMajorVersion: pebble.FormatNewest, Logger: quiet{}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(f string, a ...any) {
	panic(fmt.Sprintf(f, a...))
}

func appendN(w *shard.Writer, l *shard.Log, n int) ([]uint64, error) {
	r := shard.GetRequest()
	defer shard.PutRequest(r)
	for range n {
		r.Appends = append(r.Appends, shard.Append{Log: l, PartitionKey: "k", Data: []byte("x")})
	}
	if err := w.Commit(r); err != nil {
		return nil, err
	}
	out := make([]uint64, n)
	for i, a := range r.Appends {
		out[i] = a.Counter
	}
	return out, nil
}

// TestWriterCeiling: the Writer never hands out a counter at or above the
// durable ceiling; it raises the ceiling first, and when raising fails the
// batch fails without using any counter.
func TestWriterCeiling(t *testing.T) {
	db := openMem(t)
	var raises []uint64
	fail := false
	ceiling := uint64(5)
	w := shard.NewWriter(db, shard.WriterConfig{Now: func() int64 { return 1000 }, Ceiling: ceiling, Raise: func(min uint64) (uint64, error) {
		if fail {
			return 0, errors.New("disk gone")
		}
		raises = append(raises, min)
		ceiling = min + 10
		return ceiling, nil
	}})
	defer w.Close()
	l := shard.NewLog(1, 0, 1, 0, 0, 0)

	got, err := appendN(w, l, 4)
	require.NoError(t, err)
	require.Equal(t, []uint64{1, 2, 3, 4}, got)
	require.Empty(t, raises, "counters below the ceiling need no raise")

	got, err = appendN(w, l, 3) // 5, 6, 7: 5 reaches the ceiling
	require.NoError(t, err)
	require.Equal(t, []uint64{5, 6, 7}, got)
	require.Equal(t, []uint64{8}, raises, "raised above the batch's top counter before it was handed out")

	fail = true
	_, err = appendN(w, l, 20) // would reach 27 ≥ 18
	require.ErrorIs(t, err, shard.ErrWriteFailed)
	require.Equal(t, uint64(7), l.Published(), "nothing of the failed batch is visible")
	fail = false
	got, err = appendN(w, l, 1)
	require.NoError(t, err)
	require.Equal(t, []uint64{8}, got, "the failed batch used no counter")
}

// TestWriterFuse: after the fuse blows, no commit reaches Pebble and every
// request returns the fuse's error.
func TestWriterFuse(t *testing.T) {
	db := openMem(t)
	fuse := shard.NewFuse()
	w := shard.NewWriter(db, shard.WriterConfig{Now: func() int64 { return 1000 }, Fuse: fuse})
	defer w.Close()
	l := shard.NewLog(1, 0, 1, 0, 0, 0)
	_, err := appendN(w, l, 2)
	require.NoError(t, err)
	boom := &shard.Error{Kind: shard.ErrFailed, Msg: "test"}
	require.True(t, fuse.Blow(boom))
	require.False(t, fuse.Blow(errors.New("second")), "the first failure wins")
	_, err = appendN(w, l, 1)
	require.ErrorIs(t, err, shard.ErrFailed)
	b := db.NewBatch()
	defer b.Close()
	require.NoError(t, b.Set([]byte("k"), []byte("v"), nil))
	require.ErrorIs(t, w.CommitBatch(b, pebble.Sync), shard.ErrFailed)
	_, closer, err := db.Get([]byte("k"))
	require.ErrorIs(t, err, pebble.ErrNotFound, "nothing reached Pebble")
	if closer != nil {
		_ = closer.Close()
	}
	require.Equal(t, uint64(2), l.Published())
}

// readStats returns the decoded StateStats value of l (found false if
// there is none).
func readStats(t *testing.T, db *pebble.DB, l *shard.Log) (bytes, records int64, through uint64, found bool) {
	t.Helper()
	v, closer, err := db.Get(shard.ShardStateKey(l.Stream, uint32(l.ID), shard.StateStats))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, 0, 0, false
	}
	require.NoError(t, err)
	defer closer.Close()
	bytes, records, through, ok := shard.DecodeStats(v)
	require.True(t, ok, "stats value of %d bytes", len(v))
	return bytes, records, through, true
}

// TestWriterStatsCadence: a shard's persisted counts are rewritten once
// StatsEvery records arrived since the last rewrite, and at every trim,
// always covering every record up to their through; in between they are
// left alone (with no backlog allowed: StatsBacklog -1).
func TestWriterStatsCadence(t *testing.T) {
	db := openMem(t)
	w := shard.NewWriter(db, shard.WriterConfig{Now: func() int64 { return 1000 }, StatsBacklog: -1})
	defer w.Close()
	l := shard.NewLog(1, 0, 1, 0, 0, 0)
	other := shard.NewLog(1, 1, 1, 0, 0, 0)
	vlen := int64(shard.ValueLen("k", false, []byte("x")))

	_, err := appendN(w, l, shard.StatsEvery-1)
	require.NoError(t, err)
	_, _, _, found := readStats(t, db, l)
	require.False(t, found, "counts written before StatsEvery records")

	_, err = appendN(w, l, 1)
	require.NoError(t, err)
	bytes, records, through, found := readStats(t, db, l)
	require.True(t, found)
	require.EqualValues(t, shard.StatsEvery, through)
	require.EqualValues(t, shard.StatsEvery, records)
	require.Equal(t, shard.StatsEvery*vlen, bytes)

	// Small commits, also touching another shard: nothing until the next
	// StatsEvery records of this shard.
	for range shard.StatsEvery - 1 {
		r := shard.GetRequest()
		r.Appends = append(r.Appends, shard.Append{Log: l, PartitionKey: "k", Data: []byte("x")}, shard.Append{Log: other, PartitionKey: "k", Data: []byte("x")})
		require.NoError(t, w.Commit(r))
		shard.PutRequest(r)
	}
	_, _, through, _ = readStats(t, db, l)
	require.EqualValues(t, shard.StatsEvery, through)

	// A trim rewrites them at once, up to the last record.
	r := shard.GetRequest()
	r.Trims = append(r.Trims, shard.Trim{Log: l, To: 11, Bytes: 10 * vlen, Records: 10})
	require.NoError(t, w.Commit(r))
	shard.PutRequest(r)
	bytes, records, through, _ = readStats(t, db, l)
	require.EqualValues(t, 2*shard.StatsEvery-1, through)
	require.EqualValues(t, 2*shard.StatsEvery-1-10, records)
	require.Equal(t, records*vlen, bytes)
	require.Equal(t, records, l.Records.Load())
	require.Equal(t, bytes, l.Bytes.Load())

	// A single big commit rewrites them too.
	_, err = appendN(w, l, 3*shard.StatsEvery)
	require.NoError(t, err)
	_, records, through, _ = readStats(t, db, l)
	require.EqualValues(t, 5*shard.StatsEvery-1, through)
	require.Equal(t, l.Records.Load(), records)
}

// TestWriterStatsBacklog: no shard's counts are rewritten while the
// records left out of persisted counts (over all shards) stay under
// StatsBacklog; the commit that reaches it rewrites those of the shards
// it touches that are StatsEvery records behind, which empties the
// backlog of theirs, and a trim rewrites at once whatever the backlog.
func TestWriterStatsBacklog(t *testing.T) {
	db := openMem(t)
	const backlog = 1000
	w := shard.NewWriter(db, shard.WriterConfig{Now: func() int64 { return 1000 }, StatsBacklog: backlog})
	defer w.Close()
	a := shard.NewLog(1, 0, 1, 0, 0, 0)
	b := shard.NewLog(1, 1, 1, 0, 0, 0)
	idle := shard.NewLog(1, 2, 1, 0, 0, 0)
	vlen := int64(shard.ValueLen("k", false, []byte("x")))

	_, err := appendN(w, idle, 300)
	require.NoError(t, err)
	_, err = appendN(w, a, 400)
	require.NoError(t, err)
	_, err = appendN(w, b, 299) // backlog 999
	require.NoError(t, err)
	for _, l := range []*shard.Log{a, b, idle} {
		_, _, _, found := readStats(t, db, l)
		require.False(t, found, "shard %d's counts written under the backlog", l.ID)
	}

	_, err = appendN(w, a, 1) // backlog 1000: a is rewritten
	require.NoError(t, err)
	bytes, records, through, found := readStats(t, db, a)
	require.True(t, found)
	require.EqualValues(t, 401, through)
	require.EqualValues(t, 401, records)
	require.Equal(t, 401*vlen, bytes)
	for _, l := range []*shard.Log{b, idle} {
		_, _, _, found := readStats(t, db, l)
		require.False(t, found, "shard %d was not in the commit", l.ID)
	}

	// The backlog is b's and idle's 599 now: b's next records stay out.
	_, err = appendN(w, b, 100)
	require.NoError(t, err)
	_, _, _, found = readStats(t, db, b)
	require.False(t, found)
	// Reaching it again rewrites b (StatsEvery behind), not idle.
	_, err = appendN(w, b, 301)
	require.NoError(t, err)
	_, records, through, found = readStats(t, db, b)
	require.True(t, found)
	require.EqualValues(t, 700, through)
	require.EqualValues(t, 700, records)
	_, _, _, found = readStats(t, db, idle)
	require.False(t, found)

	// A trim rewrites at once, under the backlog too.
	r := shard.GetRequest()
	r.Trims = append(r.Trims, shard.Trim{Log: idle, To: 11, Bytes: 10 * vlen, Records: 10})
	require.NoError(t, w.Commit(r))
	shard.PutRequest(r)
	_, records, through, found = readStats(t, db, idle)
	require.True(t, found)
	require.EqualValues(t, 300, through)
	require.EqualValues(t, 290, records)
}

// TestWriterKeyOrder: a commit's records go into the batch in key order
// whatever order the requests list them in, with counters assigned in
// request order per shard.
func TestWriterKeyOrder(t *testing.T) {
	db := openMem(t)
	w := shard.NewWriter(db, shard.WriterConfig{Now: func() int64 { return 1000 }})
	defer w.Close()
	logs := []*shard.Log{shard.NewLog(2, 5, 1, 0, 0, 0), shard.NewLog(1, 9, 1, 0, 0, 0), shard.NewLog(1, 2, 1, 0, 0, 0)}
	r := shard.GetRequest()
	defer shard.PutRequest(r)
	for i := range 30 {
		r.Appends = append(r.Appends, shard.Append{Log: logs[(i*7)%3], PartitionKey: fmt.Sprint(i), Data: []byte{byte(i)}})
	}
	var batches [][]byte
	w.SetBatchHook(func(b *pebble.Batch) { batches = append(batches, slices.Clone(b.Repr())) })
	require.NoError(t, w.Commit(r))
	next := map[*shard.Log]uint64{}
	for _, a := range r.Appends {
		next[a.Log]++
		require.Equal(t, next[a.Log], a.Counter, "counters in request order per shard")
	}
	require.Len(t, batches, 1)
	b := db.NewBatch()
	require.NoError(t, b.SetRepr(batches[0]))
	var keys [][]byte
	for rd := b.Reader(); ; {
		kind, k, _, ok, err := rd.Next()
		require.NoError(t, err)
		if !ok {
			break
		}
		if kind == pebble.InternalKeyKindSet && k[0] == shard.PrefixRecords {
			keys = append(keys, slices.Clone(k))
		}
	}
	require.Len(t, keys, 30)
	require.True(t, slices.IsSortedFunc(keys, bytes.Compare), "records are in key order")
}
