package engine_test

// Fault injection with Pebble's errorfs: helpers shared with the
// fail-stop tests (failstop_test.go, where a failed WAL write or fsync ends
// the child process), and read failures, which are not fatal.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// faultFS is a crash-cloneable in-memory FS behind an errorfs whose
// injection the test switches on and off.
type faultFS struct {
	mem *vfs.MemFS
	fs  *errorfs.FS
	on  *errorfs.Toggle
}

// newFaultFS injects err into operations matching match while switched on.
func newFaultFS(match func(errorfs.Op) bool, err error) *faultFS {
	f := &faultFS{mem: vfs.NewCrashableMem()}
	f.on = &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if match(op) {
			return err
		}
		return nil
	})}
	f.fs = errorfs.Wrap(f.mem, f.on)
	return f
}

func isWAL(op errorfs.Op) bool { return strings.HasSuffix(op.Path, ".log") }

func walSync(op errorfs.Op) bool {
	return isWAL(op) && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo)
}

func walWrite(op errorfs.Op) bool {
	return isWAL(op) && (op.Kind == errorfs.OpFileWrite || op.Kind == errorfs.OpFileWriteAt)
}

// faultBatch is the payload convention of these tests: "<batch>/<i>/<n>",
// so a reader can tell whether a batch is complete.
func faultEntries(batch, n int) []engine.Entry {
	es := make([]engine.Entry, n)
	for i := range es {
		es[i] = engine.Entry{PartitionKey: fmt.Sprintf("k%d", (batch+i)%7), Data: fmt.Appendf(nil, "%d/%d/%d", batch, i, n)}
	}
	return es
}

// faultCheck reads every shard of stream and checks that each batch found
// is complete and that all batches in acked are there. It returns the
// batches found.
func faultCheck(t *testing.T, db *engine.DB, stream string, acked map[int]bool) map[int]int {
	t.Helper()
	shards, err := db.ListShards(stream)
	require.NoError(t, err)
	count := map[int]int{}
	size := map[int]int{}
	for _, sd := range shards {
		it, err := db.Iterate(stream, sd.ShardID, engine.TrimHorizon())
		require.NoError(t, err)
		var prev uint64
		n := 0
		for r := range it.All() {
			var b, i, total int
			_, err := fmt.Sscanf(string(r.Data), "%d/%d/%d", &b, &i, &total)
			require.NoError(t, err, "payload %q", r.Data)
			count[b]++
			size[b] = total
			require.Equal(t, prev+1, r.SequenceNumber.Counter, "%s: counters must have no gaps", sd.ShardID)
			prev = r.SequenceNumber.Counter
			n++
		}
		require.NoError(t, it.Err())
		require.NoError(t, it.Close())
		require.EqualValues(t, n, sd.Records, "%s: stats count %d records, the shard holds %d", sd.ShardID, sd.Records, n)
	}
	for b, c := range count {
		require.Equal(t, size[b], c, "batch %d is partially visible: %d of %d records", b, c, size[b])
	}
	for b := range acked {
		require.Contains(t, count, b, "acknowledged batch %d is lost", b)
	}
	return count
}

func faultOpen(t *testing.T, fs vfs.FS, noSync bool) *engine.DB {
	t.Helper()
	db, err := engine.Open("db", &engine.Options{FS: fs, NoSync: noSync})
	require.NoError(t, err)
	return db
}

// TestFaultReadErrors injects read failures into the table files under
// stored records: every read API must report an error (never panic, never
// return a silently shortened result), and reads work again once the
// fault is gone. Open under read failures must fail cleanly.
func TestFaultReadErrors(t *testing.T) {
	ctx := context.Background()
	isRead := func(op errorfs.Op) bool {
		return op.Kind == errorfs.OpFileRead || op.Kind == errorfs.OpFileReadAt
	}
	f := newFaultFS(func(op errorfs.Op) bool { return isRead(op) && strings.HasSuffix(op.Path, ".sst") }, errorfs.ErrInjected)
	// NoSync: Close flushes the memtable, so after reopening the records
	// live in table files.
	db := faultOpen(t, f.fs, true)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
	for b := range 200 {
		_, err := db.PutRecords(ctx, "s", faultEntries(b, 10))
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())
	db = faultOpen(t, f.fs, true)
	want := faultCheck(t, db, "s", nil)
	require.Len(t, want, 200)
	shards, err := db.ListShards("s")
	require.NoError(t, err)

	// Reopen so the block cache is cold, then fail every table read.
	require.NoError(t, db.Close())
	db = faultOpen(t, f.fs, true)
	f.on.On()
	failed := 0
	for _, sd := range shards {
		it, err := db.Iterate("s", sd.ShardID, engine.TrimHorizon())
		if err != nil {
			failed++
			continue
		}
		n := 0
		for range it.All() {
			n++
		}
		if it.Err() != nil {
			failed++
		} else {
			require.EqualValues(t, sd.Records, n, "%s: an iterator that hit read errors must report them, not end early", sd.ShardID)
		}
		require.NoError(t, it.Close())
		tok, err := db.GetShardIterator("s", sd.ShardID, engine.TrimHorizon())
		if err != nil {
			continue
		}
		got := 0
		for {
			out, err := db.GetRecords(ctx, tok, 100)
			if err != nil {
				break
			}
			got += len(out.Records)
			if len(out.Records) == 0 {
				require.EqualValues(t, sd.Records, got, "%s: GetRecords that hit read errors must report them, not end early", sd.ShardID)
				break
			}
			tok = out.NextShardIterator
		}
	}
	require.NotZero(t, failed, "no read failed while table reads failed")

	// The fault is gone: everything reads again.
	f.on.Off()
	faultCheck(t, db, "s", nil)
	require.NoError(t, db.Close())

	// Open itself under read failures: a clean error, no panic.
	f.on.On()
	require.NotPanics(t, func() {
		db2, err := engine.Open("db", &engine.Options{FS: f.fs})
		if err == nil {
			_ = db2.Close()
		}
	})
	f.on.Off()
	db = faultOpen(t, f.fs, true)
	faultCheck(t, db, "s", nil)
	require.NoError(t, db.Close())
}
