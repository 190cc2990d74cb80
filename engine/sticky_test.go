package engine_test

// Invariant 7: a failed WAL write or fsync is sticky, and nothing of the
// failed write becomes visible. (fault_test.go has the wider fault and
// power-loss matrix.)

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

func TestStickyWriteFailure(t *testing.T) {
	for _, c := range []struct {
		name  string
		kinds []errorfs.OpKind
	}{
		{"wal-sync", []errorfs.OpKind{errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo}},
		{"wal-write", []errorfs.OpKind{errorfs.OpFileWrite, errorfs.OpFileWriteAt}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var on atomic.Bool
			inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
				if !on.Load() || !strings.HasSuffix(op.Path, ".log") {
					return nil
				}
				for _, k := range c.kinds {
					if op.Kind == k {
						return errorfs.ErrInjected
					}
				}
				return nil
			})
			clk := newStepClock()
			fs := errorfs.Wrap(vfs.NewMem(), inj)
			db, err := engine.Open("db", &engine.Options{FS: fs, Clock: clk.Now})
			require.NoError(t, err)
			ctx := context.Background()
			require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
			for i := range 3 {
				putEHK(t, db, "s", "0", "ok"+itoa(i))
			}
			tail, err := db.Iterate("s", 0, engine.Latest())
			require.NoError(t, err)
			defer tail.Close()
			tok := shardIter(t, db, "s", 0, engine.Latest())

			on.Store(true)
			// One atomic batch across both shards.
			_, err = db.PutRecords(ctx, "s", []engine.Entry{
				{PartitionKey: "k", ExplicitHashKey: "0", Data: []byte("bad0")},
				{PartitionKey: "k", ExplicitHashKey: maxHash.String(), Data: []byte("bad1")},
			})
			require.ErrorIs(t, err, engine.ErrWriteFailed)
			first := err
			on.Store(false)

			// Sticky: the fault is gone, but every later write fails the same way.
			_, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("later")})
			require.ErrorIs(t, err, engine.ErrWriteFailed)
			require.Equal(t, first.Error(), err.Error())
			_, err = db.PutRecords(ctx, "s", []engine.Entry{{PartitionKey: "k"}})
			require.ErrorIs(t, err, engine.ErrWriteFailed)
			require.ErrorIs(t, db.CreateStream("t", engine.StreamConfig{ShardCount: 1}), engine.ErrWriteFailed)

			// Readers: the three good records, nothing of the failed batch.
			require.Equal(t, []string{"ok0", "ok1", "ok2"}, datas(shardRecords(t, db, "s", 0)))
			require.Empty(t, shardRecords(t, db, "s", 1))
			require.False(t, tail.Next(), "a tailing iterator sees nothing new")
			out := getRecords(t, db, tok, 10)
			require.Empty(t, out.Records)
			d, err := db.DescribeStream("s")
			require.NoError(t, err)
			require.EqualValues(t, 3, d.Records)
			names, err := db.ListStreams()
			require.NoError(t, err)
			require.Equal(t, []string{"s"}, names)
			require.NotPanics(t, func() { _ = db.Close() })
		})
	}
}
