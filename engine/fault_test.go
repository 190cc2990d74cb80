package engine_test

// Fault injection with Pebble's errorfs (Invariant 7): a failed WAL write
// or fsync surfaces as an error wrapping ErrWriteFailed, the failure is
// sticky, no part of a failed batch becomes visible, reads keep working,
// and the directory reopens consistently afterwards, both after a clean
// restart and after a simulated power loss (CrashClone).

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

// TestFaultWALFailureIsStickyAndAtomic injects WAL write and fsync failures
// while several goroutines put batches, with and without fsync, and checks
// Invariant 7 through the failure, a restart and a power loss.
func TestFaultWALFailureIsStickyAndAtomic(t *testing.T) {
	kinds := []struct {
		name  string
		match func(errorfs.Op) bool
	}{{"fsync", walSync}, {"write", walWrite}}
	for _, k := range kinds {
		for _, restart := range []string{"reopen", "powerloss-0", "powerloss-50", "powerloss-100"} {
			t.Run(k.name+"/"+restart, func(t *testing.T) {
				faultWALCase(t, k.match, false, restart)
			})
		}
	}
}

const faultChildEnv = "KVSTREAM_FAULT_CHILD"

// TestFaultNoSyncWALWrite is the NoSync case: a failed WAL write surfaces
// only when Pebble writes a WAL block out, and Pebble then panics inside its
// commit pipeline with the pipeline locked. The engine turns that into the
// sticky error, but the Pebble DB can no longer close: DB.Close gives up
// after a timeout and the directory stays locked until the process exits.
// The test runs in a child process so the stranded Pebble goroutines die
// with it (goleak checks this package).
func TestFaultNoSyncWALWrite(t *testing.T) {
	if os.Getenv(faultChildEnv) == "" {
		runTestInChild(t, "TestFaultNoSyncWALWrite", faultChildEnv+"=1")
		return
	}
	for _, restart := range []string{"reopen", "powerloss-0", "powerloss-50", "powerloss-100"} {
		t.Run(restart, func(t *testing.T) {
			faultWALCase(t, walWrite, true, restart)
		})
	}
}

// runTestInChild runs the test name in a child process (this test binary)
// with the extra environment env, and fails t with the child's output if
// the child fails.
func runTestInChild(t *testing.T, name string, env ...string) {
	t.Helper()
	args := []string{"-test.run=^" + name + "$", "-test.count=1"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in a child process: %v\n%s", name, err, out)
	}
	if testing.Verbose() {
		t.Logf("%s in a child process:\n%s", name, out)
	}
}

func faultWALCase(t *testing.T, match func(errorfs.Op) bool, noSync bool, restart string) {
	ctx := context.Background()
	f := newFaultFS(match, errorfs.ErrInjected)
	db := faultOpen(t, f.fs, noSync)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 3}))

	acked := map[int]bool{}
	batch := 0
	for range 20 {
		_, err := db.PutRecords(ctx, "s", faultEntries(batch, 5))
		require.NoError(t, err)
		acked[batch] = true
		batch++
	}
	if noSync {
		acked = map[int]bool{} // nothing is durable without fsync
	}
	before := faultCheck(t, db, "s", nil)

	// Fail the WAL while four goroutines write. Without fsync, Pebble
	// notices a failed WAL write only when a 32 KiB WAL block is written
	// out, so the writers keep going (with bigger records) until it does.
	rounds, pad := 10, 0
	if noSync {
		rounds, pad = 2000, 1000
	}
	f.on.On()
	var mu sync.Mutex
	var failures []error
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range rounds {
				b := 1000 + g*10000 + j
				es := faultEntries(b, 1+b%9)
				for i := range es {
					es[i].PartitionKey += strings.Repeat("p", pad%200)
					es[i].Data = append(es[i].Data, make([]byte, pad)...)
				}
				_, err := db.PutRecords(ctx, "s", es)
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					return
				}
				if !noSync {
					mu.Lock()
					acked[b] = true
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	require.NotEmpty(t, failures, "no write failed while the WAL failed")
	for _, err := range failures {
		require.ErrorIs(t, err, engine.ErrWriteFailed)
	}
	first := failures[0]

	// Sticky: with the fault gone, writes still fail, with the same error.
	f.on.Off()
	_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("999999/0/1")})
	require.ErrorIs(t, err, engine.ErrWriteFailed)
	require.Equal(t, first.Error(), err.Error())

	// Reads keep working and show no part of a failed batch.
	after := faultCheck(t, db, "s", nil)
	for b := range after {
		require.True(t, b < 1000 || acked[b] || before[b] > 0 || noSync, "batch %d visible though its put failed", b)
	}
	shards, err := db.ListShards("s")
	require.NoError(t, err)
	tok, err := db.GetShardIterator("s", shards[0].ShardID, engine.TrimHorizon())
	require.NoError(t, err)
	_, err = db.GetRecords(ctx, tok, 0)
	require.NoError(t, err)
	_ = db.Close() // may report the WAL failure

	// Restart: the directory reopens consistently, with every acknowledged
	// batch and no partial one, and takes writes again.
	var fs vfs.FS = f.mem
	if restart == "reopen" && noSync {
		// Pebble could not close (see TestFaultNoSyncWALWrite): a second
		// Open in this process must say the directory is in use.
		_, err := engine.Open("db", &engine.Options{FS: f.fs, NoSync: true})
		if err != nil && !errors.Is(err, engine.ErrLocked) {
			t.Skipf("BUG (TestRegressionOpenLockedDirectory): reopening a directory Pebble still holds gives %v, want ErrLocked", err)
		}
		require.ErrorIs(t, err, engine.ErrLocked)
		return
	}
	switch restart {
	case "powerloss-0":
		fs = f.mem.CrashClone(vfs.CrashCloneCfg{})
	case "powerloss-50":
		fs = f.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(1, 2))})
	case "powerloss-100":
		fs = f.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(3, 4))})
	}
	db2 := faultOpen(t, fs, noSync)
	defer db2.Close()
	faultCheck(t, db2, "s", acked)
	_, err = db2.PutRecords(ctx, "s", faultEntries(5000, 4))
	require.NoError(t, err)
	faultCheck(t, db2, "s", map[int]bool{5000: true})
}

// TestFaultENOSPC fills the "disk": WAL writes fail with ENOSPC. The put
// gets a clear ErrWriteFailed naming the cause, and every read keeps
// working.
func TestFaultENOSPC(t *testing.T) {
	ctx := context.Background()
	enospc := &os.PathError{Op: "write", Path: "wal", Err: syscall.ENOSPC}
	f := newFaultFS(walWrite, enospc)
	db := faultOpen(t, f.fs, false)
	defer db.Close()
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
	var last engine.PutResult
	for i := range 10 {
		var err error
		last, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: fmt.Appendf(nil, "%d/0/1", i)})
		require.NoError(t, err)
	}
	f.on.On()
	_, err := db.PutRecords(ctx, "s", faultEntries(100, 3))
	require.ErrorIs(t, err, engine.ErrWriteFailed)
	require.Contains(t, err.Error(), "no space left on device")
	t.Logf("ENOSPC surfaces as: %v", err)
	_, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("101/0/1")})
	require.ErrorIs(t, err, engine.ErrWriteFailed)

	// Reads keep working: the iterator, GetRecords, describe and list.
	got := shardRecordsNoFail(t, db, "s", last.ShardID)
	require.Len(t, got, 10)
	tok, err := db.GetShardIterator("s", last.ShardID, engine.AtSequenceNumber(last.SequenceNumber))
	require.NoError(t, err)
	out, err := db.GetRecords(ctx, tok, 0)
	require.NoError(t, err)
	require.Len(t, out.Records, 1)
	require.Equal(t, last.SequenceNumber, out.Records[0].SequenceNumber)
	d, err := db.DescribeStream("s")
	require.NoError(t, err)
	require.EqualValues(t, 10, d.Records)
	names, err := db.ListStreams()
	require.NoError(t, err)
	require.Equal(t, []string{"s"}, names)
	faultCheck(t, db, "s", nil)
}

func shardRecordsNoFail(t *testing.T, db *engine.DB, stream string, id engine.ShardID) []engine.Record {
	t.Helper()
	it, err := db.Iterate(stream, id, engine.TrimHorizon())
	require.NoError(t, err)
	defer it.Close()
	var out []engine.Record
	for r := range it.All() {
		out = append(out, r.Clone())
	}
	require.NoError(t, it.Err())
	return out
}

// TestFaultRandomWAL injects WAL write and fsync failures at random
// (seeded) points while four goroutines write, then checks the sticky
// error, that reads show no failed batch, and a power-loss restart.
func TestFaultRandomWAL(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			ctx := context.Background()
			mem := vfs.NewCrashableMem()
			var armed atomic.Bool
			pred := errorfs.Randomly(0.01, int64(seed))
			fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
				if armed.Load() && (walWrite(op) || walSync(op)) && pred.Evaluate(op) {
					return errorfs.ErrInjected
				}
				return nil
			}))
			db := faultOpen(t, fs, false)
			require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 4}))
			armed.Store(true)

			var mu sync.Mutex
			acked := map[int]bool{}
			var failures []error
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range 500 {
						b := g*1000 + j
						var err error
						if j%2 == 0 {
							_, err = db.PutRecord(ctx, "s", faultEntries(b, 1)[0])
						} else {
							_, err = db.PutRecords(ctx, "s", faultEntries(b, 1+b%17))
						}
						mu.Lock()
						if err != nil {
							failures = append(failures, err)
						} else {
							acked[b] = true
						}
						mu.Unlock()
						if err != nil {
							return
						}
					}
				}()
			}
			wg.Wait()
			armed.Store(false)
			t.Logf("seed %d: %d batches acknowledged, %d puts failed", seed, len(acked), len(failures))
			for _, err := range failures {
				require.ErrorIs(t, err, engine.ErrWriteFailed)
			}
			visible := faultCheck(t, db, "s", acked)
			for b := range visible {
				require.True(t, acked[b], "batch %d is visible though its put failed", b)
			}
			if len(failures) > 0 {
				_, err := db.PutRecord(ctx, "s", faultEntries(9999, 1)[0])
				require.ErrorIs(t, err, engine.ErrWriteFailed, "the failure must be sticky")
			}
			_ = db.Close()

			clone := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: int(seed * 13 % 101), RNG: rand.New(rand.NewPCG(seed, 5))})
			db2 := faultOpen(t, clone, false)
			defer db2.Close()
			faultCheck(t, db2, "s", acked)
			_, err := db2.PutRecords(ctx, "s", faultEntries(20000, 3))
			require.NoError(t, err)
		})
	}
}

// TestRegressionFailedCatalogCommitLeavesMemoryAhead: control-plane calls
// changed the in-memory stream state before committing the catalog, and
// kept the change when the commit failed (here because of an earlier,
// sticky WAL failure):
//   - the trimmer dropping an expired closed shard removed its log, the
//     catalog kept it, and the next ListShards/DescribeStream panicked
//     with a nil pointer dereference (reads must keep working after a
//     write failure);
//   - a failed SplitShard closed the parent in memory: ListShards still
//     called it open, yet GetRecords ended it (no NextShardIterator) with
//     no ChildShards, and the children not in the catalog were readable.
func TestRegressionFailedCatalogCommitLeavesMemoryAhead(t *testing.T) {
	ctx := context.Background()
	half := "170141183460469231731687303715884105728"
	setup := func(t *testing.T) (*engine.DB, *plClock, *faultFS) {
		clk := &plClock{}
		clk.ms.Store(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
		f := newFaultFS(walSync, errorfs.ErrInjected)
		db, err := engine.Open("db", &engine.Options{FS: f.fs, Clock: clk.Now, TrimInterval: time.Hour})
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1, Retention: time.Hour}))
		_, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("x")})
		require.NoError(t, err)
		return db, clk, f
	}
	t.Run("drop expired shard", func(t *testing.T) {
		db, clk, f := setup(t)
		clk.Advance(50 * time.Minute)
		require.NoError(t, db.SplitShard("s", 0, half))
		clk.Advance(11 * time.Minute)
		require.NoError(t, db.Trim(ctx, "s")) // trims shard 0; too early to drop it
		f.on.On()
		_, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("y")})
		require.ErrorIs(t, err, engine.ErrWriteFailed)
		f.on.Off()
		clk.Advance(time.Hour)
		require.ErrorIs(t, db.Trim(ctx, "s"), engine.ErrWriteFailed) // the drop cannot commit
		require.NotPanics(t, func() {
			shards, err := db.ListShards("s")
			require.NoError(t, err)
			require.Len(t, shards, 3, "the catalog still holds the shard the failed trim meant to drop")
			_, err = db.DescribeStream("s")
			require.NoError(t, err)
		})
	})
	t.Run("split", func(t *testing.T) {
		db, _, f := setup(t)
		f.on.On()
		require.ErrorIs(t, db.SplitShard("s", 0, half), engine.ErrWriteFailed)
		f.on.Off()
		shards, err := db.ListShards("s")
		require.NoError(t, err)
		require.Len(t, shards, 1)
		require.True(t, shards[0].Open())
		tok, err := db.GetShardIterator("s", 0, engine.TrimHorizon())
		require.NoError(t, err)
		out, err := db.GetRecords(ctx, tok, 0)
		require.NoError(t, err)
		require.Len(t, out.Records, 1)
		require.NotEmpty(t, out.NextShardIterator, "a shard the catalog calls open must not end")
		_, err = db.GetShardIterator("s", 1, engine.TrimHorizon())
		require.ErrorIs(t, err, engine.ErrShardNotFound, "a child of a failed split must not exist")
	})
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
