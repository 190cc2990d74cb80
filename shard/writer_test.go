package shard_test

import (
	"errors"
	"fmt"
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
