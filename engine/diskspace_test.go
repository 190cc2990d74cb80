package engine

// Invariant 9 (a full disk is an error in time, not a hang), on in-memory
// filesystems whose free space the test sets (vfs.MemFS's
// TestingSetDiskUsage) and whose writes errorfs fails with ENOSPC. The
// real thing, a small tmpfs filled by the engine, is in
// diskspace_tmpfs_test.go.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

// fakeNow replaces storageNow (the disk monitor's clock) for one test.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func useFakeNow(t *testing.T) *fakeNow {
	f := &fakeNow{t: time.Unix(1_700_000_000, 0)}
	old := storageNow
	storageNow = f.Now
	t.Cleanup(func() { storageNow = old })
	return f
}

func (f *fakeNow) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeNow) Add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func setAvail(fs *vfs.MemFS, avail uint64) {
	fs.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: avail, TotalBytes: 4 << 30, UsedBytes: 4<<30 - avail})
}

// settle waits for the disk monitor's background work (ballast creation,
// flushes after deletions) to finish.
func settle(db *DB) {
	if m := db.disk; m != nil {
		m.goMu.Lock() // no new background work meanwhile (goBackground)
		m.wg.Wait()
		m.goMu.Unlock()
	}
}

func putOne(db *DB, stream, data string) (PutResult, error) {
	return db.PutRecord(context.Background(), stream, Entry{PartitionKey: "k", Data: []byte(data)})
}

// readAll returns the data of every record of the stream's shards.
func readAll(t *testing.T, db *DB, stream string) []string {
	t.Helper()
	shards, err := db.ListShards(stream)
	require.NoError(t, err)
	var out []string
	for _, sd := range shards {
		it, err := db.Iterate(stream, sd.ShardID, TrimHorizon())
		require.NoError(t, err)
		for it.Next() {
			out = append(out, string(it.Record().Data))
		}
		require.NoError(t, it.Err())
		require.NoError(t, it.Close())
	}
	return out
}

// TestDiskFullAdmissionAndBallast walks the free-space states: puts are
// refused below MinFreeBytes with a message naming the directory and the
// free space, reads keep working, the ballast is released under half the
// floor and must fit again before puts resume, and it is recreated.
func TestDiskFullAdmissionAndBallast(t *testing.T) {
	clk := useFakeNow(t)
	mem := vfs.NewMem()
	setAvail(mem, 1<<30)
	const minFree, ballast = 100 << 20, 1 << 20
	opts := &Options{FS: mem, MinFreeBytes: minFree, BallastBytes: ballast, TrimInterval: time.Hour}
	db, err := Open("data", opts)
	require.NoError(t, err)
	defer func() { _ = db.Close() }()
	settle(db)
	ballastPath := mem.PathJoin("data", BallastDir, BallastName)
	fi, err := mem.Stat(ballastPath)
	require.NoError(t, err, "the ballast is made at Open")
	require.EqualValues(t, ballast, fi.Size())

	require.NoError(t, db.CreateStream("s", StreamConfig{ShardCount: 1}))
	_, err = putOne(db, "s", "before")
	require.NoError(t, err)
	require.NoError(t, db.Health())

	// Below the floor: refused at once, retryably, with the reason.
	setAvail(mem, 90<<20)
	clk.Add(time.Second)
	_, err = putOne(db, "s", "refused")
	require.ErrorIs(t, err, ErrDiskFull)
	require.Contains(t, err.Error(), "data")
	require.Contains(t, err.Error(), "90.0 MiB")
	require.Contains(t, err.Error(), "MinFreeBytes (100.0 MiB")
	_, err = db.PutRecords(context.Background(), "s", []Entry{{PartitionKey: "k", Data: []byte("x")}})
	require.ErrorIs(t, err, ErrDiskFull)
	require.ErrorIs(t, db.Health(), ErrDiskFull)
	st := db.StorageStats()
	require.True(t, st.DiskFull)
	require.EqualValues(t, 2, st.DiskFullRejections)
	require.EqualValues(t, 90<<20, st.AvailableBytes)
	require.EqualValues(t, minFree, st.MinFreeBytes)
	require.EqualValues(t, ballast, st.BallastBytes, "above half the floor the ballast stays")
	// Reads and control-plane calls keep working.
	require.Equal(t, []string{"before"}, readAll(t, db, "s"))
	require.NoError(t, db.CreateStream("other", StreamConfig{ShardCount: 1}))

	// Under half the floor: the ballast is released.
	setAvail(mem, 40<<20)
	clk.Add(time.Second)
	_, err = putOne(db, "s", "refused")
	require.ErrorIs(t, err, ErrDiskFull)
	require.Contains(t, err.Error(), "ballast was released")
	_, err = mem.Stat(ballastPath)
	require.ErrorIs(t, err, os.ErrNotExist)
	require.Zero(t, db.StorageStats().BallastBytes)

	// Back above the floor, but the ballast would not fit: still refused.
	setAvail(mem, minFree+ballast/2)
	clk.Add(time.Second)
	_, err = putOne(db, "s", "refused")
	require.ErrorIs(t, err, ErrDiskFull)

	// Room for both: puts resume without a reopen, the ballast returns.
	setAvail(mem, minFree+2*ballast)
	clk.Add(time.Second)
	_, err = putOne(db, "s", "after")
	require.NoError(t, err)
	require.NoError(t, db.Health())
	settle(db)
	fi, err = mem.Stat(ballastPath)
	require.NoError(t, err)
	require.EqualValues(t, ballast, fi.Size())
	require.Equal(t, []string{"before", "after"}, readAll(t, db, "s"))
	require.NoError(t, db.Close())

	// A reopen adopts the ballast; a changed size replaces it.
	opts.BallastBytes = 2 * ballast
	db, err = Open("data", opts)
	require.NoError(t, err)
	settle(db)
	fi, err = mem.Stat(ballastPath)
	require.NoError(t, err)
	require.EqualValues(t, 2*ballast, fi.Size())
	require.Equal(t, []string{"before", "after"}, readAll(t, db, "s"))
	require.NoError(t, db.Close())

	// -1 disables the ballast (an old one is removed) ...
	opts.BallastBytes = -1
	db, err = Open("data", opts)
	require.NoError(t, err)
	_, err = mem.Stat(ballastPath)
	require.ErrorIs(t, err, os.ErrNotExist)
	require.Zero(t, db.StorageStats().BallastBytes)
	require.NoError(t, db.Close())

	// ... and MinFreeBytes -1 the whole check.
	setAvail(mem, 1)
	db, err = Open("data", &Options{FS: mem, MinFreeBytes: -1})
	require.NoError(t, err)
	_, err = putOne(db, "s", "unchecked")
	require.NoError(t, err)
	require.NoError(t, db.Health())
	require.EqualValues(t, -1, db.StorageStats().AvailableBytes)
	require.NoError(t, db.Close())
}

// TestDiskFullDefaults checks the documented defaults and option errors.
func TestDiskFullDefaults(t *testing.T) {
	require.EqualValues(t, 64<<20, defaultMinFree(1<<30))         // 64 MiB floor
	require.EqualValues(t, int64(2<<30), defaultMinFree(100<<30)) // 2 %
	require.EqualValues(t, 6710886, defaultMinFree(64<<20))       // at most 10 % on small disks
	require.EqualValues(t, 1<<30, defaultBallast(1<<40))          // at most 1 GiB
	require.EqualValues(t, 671088, defaultBallast(64<<20))        // 1 %
	require.EqualValues(t, 10737418, defaultBallast(1<<30))       // 1 %
	require.EqualValues(t, 1<<30, defaultBallast(200<<30))        // capped
	require.EqualValues(t, 107374182, defaultBallast(10<<30))     // 1 %
	require.EqualValues(t, 214748364, defaultMinFree(10<<30))     // 2 %
	require.EqualValues(t, 64<<20, defaultMinFree(2<<30))         // floor
	require.EqualValues(t, 6710886*2, defaultMinFree(128<<20))    // 10 %

	mem := vfs.NewMem()
	setAvail(mem, 1<<30) // of 4 GiB
	db, err := Open("d", &Options{FS: mem})
	require.NoError(t, err)
	settle(db)
	st := db.StorageStats()
	require.EqualValues(t, defaultMinFree(4<<30), st.MinFreeBytes)
	require.EqualValues(t, defaultBallast(4<<30), st.BallastBytes)
	require.NoError(t, db.Close())

	for _, o := range []*Options{{MinFreeBytes: -2}, {BallastBytes: -5}} {
		_, err := Open("x", &Options{FS: vfs.NewMem(), MinFreeBytes: o.MinFreeBytes, BallastBytes: o.BallastBytes})
		require.ErrorIs(t, err, ErrInvalidOptions)
	}
	// A filesystem that cannot report free space is not checked.
	db, err = Open("m", &Options{FS: vfs.NewMem()})
	require.NoError(t, err)
	require.Nil(t, db.disk)
	require.EqualValues(t, -1, db.StorageStats().AvailableBytes)
	require.NoError(t, db.Close())
}

// enospcFS is an in-memory FS with plenty of reported free space whose
// sstable writes fail with ENOSPC while switched on.
type enospcFS struct {
	mem *vfs.MemFS
	fs  vfs.FS
	on  atomic.Bool
}

func newENOSPCFS() *enospcFS { return newSSTFaultFS(syscall.ENOSPC) }

// newSSTFaultFS is an enospcFS failing sstable writes with errno instead.
func newSSTFaultFS(errno syscall.Errno) *enospcFS {
	f := &enospcFS{mem: vfs.NewMem()}
	setAvail(f.mem, 1<<30)
	f.fs = errorfs.Wrap(f.mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if f.on.Load() && strings.HasSuffix(op.Path, ".sst") && (op.Kind == errorfs.OpFileWrite || op.Kind == errorfs.OpFileWriteAt) {
			return &os.PathError{Op: "write", Path: op.Path, Err: errno}
		}
		return nil
	}))
	return f
}

// eventTap forwards Pebble's flush, compaction and background-error
// events to the test (non-blocking: it keeps only what fits).
type eventTap struct {
	bg        chan error
	flushed   chan error
	compacted chan error
}

func newEventTap() *eventTap {
	return &eventTap{bg: make(chan error, 1), flushed: make(chan error, 64), compacted: make(chan error, 64)}
}

func (e *eventTap) listener() *pebble.EventListener {
	send := func(c chan error, err error) {
		select {
		case c <- err:
		default:
		}
	}
	return &pebble.EventListener{
		BackgroundError: func(err error) { send(e.bg, err) },
		FlushEnd:        func(info pebble.FlushInfo) { send(e.flushed, info.Err) },
		CompactionEnd:   func(info pebble.CompactionInfo) { send(e.compacted, info.Err) },
	}
}

// drain forgets the events seen so far.
func (e *eventTap) drain() {
	for _, c := range []chan error{e.bg, e.flushed, e.compacted} {
		for len(c) > 0 {
			<-c
		}
	}
}

// waitFlushOK waits for a flush that succeeded.
func (e *eventTap) waitFlushOK(t *testing.T) {
	t.Helper()
	deadline := time.After(time.Minute) // a guard against hangs only
	for {
		select {
		case err := <-e.flushed:
			if err == nil || isEmptyFlush(err) {
				return
			}
		case <-deadline:
			t.Fatal("no successful flush")
		}
	}
}

func (e *eventTap) waitBackgroundError(t *testing.T) error {
	t.Helper()
	select {
	case err := <-e.bg:
		return err
	case <-time.After(time.Minute): // a guard against hangs only
		t.Fatal("no background error")
		return nil
	}
}

// TestENOSPCOnFlushAndCompaction: sstable writes of a flush, then of a
// compaction, fail with ENOSPC although statfs reports room. The
// background error reaches Health, puts fail fast with ErrDiskFull instead
// of queueing behind a stalled flush, and once writes succeed again puts
// resume without a reopen and nothing acknowledged is lost.
func TestENOSPCOnFlushAndCompaction(t *testing.T) {
	clk := useFakeNow(t)
	f := newENOSPCFS()
	tap := newEventTap()
	// Compactions run only when the test asks: a failed one makes Pebble
	// leave its key span alone for 30 s.
	popts := &pebble.Options{EventListener: tap.listener()}
	popts.DisableAutomaticCompactions = true
	opts := &Options{FS: f.fs, MinFreeBytes: 1 << 20, BallastBytes: -1, TrimInterval: time.Hour, Pebble: popts}
	db, err := Open("data", opts)
	require.NoError(t, err)
	defer func() { _ = db.Close() }()
	require.NoError(t, db.CreateStream("s", StreamConfig{ShardCount: 2}))
	var acked []string
	put := func(data string) error {
		_, err := putOne(db, "s", data)
		if err == nil {
			acked = append(acked, data)
		}
		return err
	}
	for i := range 10 {
		require.NoError(t, put(fmt.Sprint("a", i)))
	}
	// Refusing puts kicks the trimmer; let it have nothing to commit, so
	// the only writes below are the test's.
	require.NoError(t, db.Trim(context.Background(), "s"))

	for _, phase := range []string{"flush", "compaction"} {
		t.Logf("ENOSPC on %s", phase)
		tap.drain()
		if phase == "flush" {
			f.on.Store(true)
			_, err := db.pdb.AsyncFlush()
			require.NoError(t, err)
		} else {
			require.NoError(t, db.pdb.Flush())
			f.on.Store(true)
			require.True(t, isENOSPC(db.pdb.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff}, false)))
		}
		require.True(t, isENOSPC(tap.waitBackgroundError(t)))
		herr := db.Health()
		require.ErrorIs(t, herr, ErrDiskFull)
		require.Contains(t, herr.Error(), "ENOSPC")
		start := time.Now()
		err = put("refused-" + phase)
		require.ErrorIs(t, err, ErrDiskFull, "a put fails fast instead of waiting for the flush")
		require.Less(t, time.Since(start), 10*time.Second)
		st := db.StorageStats()
		require.NotZero(t, st.BackgroundErrors)
		require.NotZero(t, st.ENOSPCErrors)
		require.True(t, st.DiskFull)

		if phase == "compaction" {
			herr := db.Health()
			require.ErrorIs(t, herr, ErrDiskFull)
			require.NotZero(t, db.StorageStats().CompactionErrors)
		}
		// Space returns: Pebble retries a failed flush at once (a failed
		// compaction's key span after 30 s). Once space is back, an ENOSPC
		// from before is no reason to refuse puts or fail Health.
		f.on.Store(false)
		if phase == "flush" {
			tap.waitFlushOK(t)
			require.NotZero(t, db.StorageStats().FlushErrors)
		}
		clk.Add(2 * enospcHold)
		require.NoError(t, db.Health())
		for i := range 10 {
			require.NoError(t, put(fmt.Sprint(phase, i)))
		}
	}
	require.ElementsMatch(t, acked, readAll(t, db, "s"))
	require.NoError(t, db.Close())

	db, err = Open("data", &Options{FS: f.fs, BallastBytes: -1})
	require.NoError(t, err)
	require.ElementsMatch(t, acked, readAll(t, db, "s"), "every acknowledged record survives a reopen")
	require.NoError(t, db.Close())
}

// TestCompactionIOErrorReachesHealth: a compaction failing with an I/O
// error other than ENOSPC is logged, counted and reported by Health
// (ErrWriteFailed, naming the compaction) for compactionErrorTTL, while
// puts are still admitted: the disk has room.
func TestCompactionIOErrorReachesHealth(t *testing.T) {
	clk := useFakeNow(t)
	f := newSSTFaultFS(syscall.EIO)
	tap := newEventTap()
	popts := &pebble.Options{EventListener: tap.listener()}
	popts.DisableAutomaticCompactions = true
	db, err := Open("data", &Options{FS: f.fs, MinFreeBytes: 1 << 20, BallastBytes: -1, TrimInterval: time.Hour, Pebble: popts})
	require.NoError(t, err)
	defer func() { _ = db.Close() }()
	require.NoError(t, db.CreateStream("s", StreamConfig{ShardCount: 1}))
	for i := range 2 {
		_, err := putOne(db, "s", fmt.Sprint(i))
		require.NoError(t, err)
		require.NoError(t, db.pdb.Flush())
	}
	f.on.Store(true)
	require.ErrorIs(t, db.pdb.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff}, false), syscall.EIO)
	require.ErrorIs(t, tap.waitBackgroundError(t), syscall.EIO)
	f.on.Store(false)
	herr := db.Health()
	require.ErrorIs(t, herr, ErrWriteFailed)
	require.NotErrorIs(t, herr, ErrDiskFull)
	require.Contains(t, herr.Error(), "compaction")
	st := db.StorageStats()
	require.EqualValues(t, 1, st.CompactionErrors)
	require.NotZero(t, st.BackgroundErrors)
	require.Zero(t, st.ENOSPCErrors)
	_, err = putOne(db, "s", "admitted")
	require.NoError(t, err)
	clk.Add(compactionErrorTTL)
	require.NoError(t, db.Health())
}

// stallWAL blocks WAL syncs while armed, so a commit hangs in Pebble as
// it would behind a write stall.
type stallWAL struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (s *stallWAL) MaybeError(op errorfs.Op) error {
	if s.armed.Load() && strings.HasSuffix(op.Path, ".log") &&
		(op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo) {
		s.entered <- struct{}{}
		<-s.release
	}
	return nil
}

func (s *stallWAL) String() string { return "stall-wal-sync" }

// TestPutHonoursCtxWhileCommitStalls: a put whose commit hangs returns
// when its ctx ends, without being acknowledged; the commit completes in
// the background, a put that had not reached Pebble is never written,
// counters stay gap-free, and the stream's lock is released afterwards.
func TestPutHonoursCtxWhileCommitStalls(t *testing.T) {
	st := &stallWAL{entered: make(chan struct{}, 1), release: make(chan struct{})}
	db, err := Open("data", &Options{FS: errorfs.Wrap(vfs.NewMem(), st), TrimInterval: time.Hour})
	require.NoError(t, err)
	defer func() { _ = db.Close() }()
	require.NoError(t, db.CreateStream("s", StreamConfig{ShardCount: 1}))
	first, err := putOne(db, "s", "first")
	require.NoError(t, err)

	st.armed.Store(true)
	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() {
		_, err := db.PutRecord(ctxA, "s", Entry{PartitionKey: "k", Data: []byte("a")})
		errA <- err
	}()
	<-st.entered // A's commit is in Pebble, waiting on the WAL

	ctxB, cancelB := context.WithCancel(context.Background())
	errB := make(chan error, 1)
	go func() {
		_, err := db.PutRecords(ctxB, "s", []Entry{{PartitionKey: "k", Data: []byte("b")}})
		errB <- err
	}()
	cancelB()
	err = <-errB
	require.ErrorIs(t, err, context.Canceled)

	cancelA()
	err = <-errA
	require.ErrorIs(t, err, context.Canceled)
	require.Contains(t, err.Error(), "not acknowledged")

	st.armed.Store(false)
	close(st.release)
	// The stream's exclusive lock waits for A's background commit, then
	// works: nothing is left locked.
	require.NoError(t, db.SetRetention("s", 48*time.Hour))
	c, err := putOne(db, "s", "c")
	require.NoError(t, err)
	require.Equal(t, []string{"first", "a", "c"}, readAll(t, db, "s"), "B was withdrawn, A completed")
	require.Equal(t, first.SequenceNumber.Counter+2, c.SequenceNumber.Counter)
}

// TestDeleteStreamFreesSpaceWhileFull: with puts refused, DeleteStream
// commits and flushes so the deleted records' space can be reclaimed; a
// trim does too.
func TestDeleteStreamFreesSpaceWhileFull(t *testing.T) {
	clk := useFakeNow(t)
	mem := vfs.NewMem()
	setAvail(mem, 1<<30)
	tap := newEventTap()
	db, err := Open("data", &Options{FS: mem, MinFreeBytes: 100 << 20, BallastBytes: -1, TrimInterval: time.Hour,
		Pebble: &pebble.Options{EventListener: tap.listener()}})
	require.NoError(t, err)
	defer func() { _ = db.Close() }()
	require.NoError(t, db.CreateStream("big", StreamConfig{ShardCount: 1}))
	require.NoError(t, db.CreateStream("keep", StreamConfig{ShardCount: 1}))
	for i := range 20 {
		_, err := putOne(db, "big", fmt.Sprint(i))
		require.NoError(t, err)
	}
	_, err = putOne(db, "keep", "kept")
	require.NoError(t, err)

	setAvail(mem, 10<<20)
	clk.Add(time.Second)
	_, err = putOne(db, "keep", "refused")
	require.ErrorIs(t, err, ErrDiskFull)

	require.NoError(t, db.DeleteStream(context.Background(), "big"))
	tap.waitFlushOK(t) // the deletion was flushed at once, not when the memtable fills
	settle(db)
	_, err = db.DescribeStream("big")
	require.ErrorIs(t, err, ErrStreamNotFound)
	require.Equal(t, []string{"kept"}, readAll(t, db, "keep"))

	// Trimming flushes too.
	require.NoError(t, db.SetMaxBytes("keep", 1, DiscardOld))
	require.NoError(t, db.Trim(context.Background(), "keep"))
	tap.waitFlushOK(t)
	settle(db)
	require.Empty(t, readAll(t, db, "keep"))

	setAvail(mem, 1<<30)
	clk.Add(time.Second)
	_, err = putOne(db, "keep", "resumed")
	require.NoError(t, err)
}

// TestENOSPCHookReleasesBallast: a write through Pebble's FS that fails
// with ENOSPC releases the ballast at once and refuses puts, before any
// statfs would notice.
func TestENOSPCHookReleasesBallast(t *testing.T) {
	useFakeNow(t)
	mem := vfs.NewMem()
	setAvail(mem, 1<<30)
	db, err := Open("data", &Options{FS: mem, MinFreeBytes: 1 << 20, BallastBytes: 1 << 20, TrimInterval: time.Hour})
	require.NoError(t, err)
	defer func() { _ = db.Close() }()
	settle(db)
	require.EqualValues(t, 1<<20, db.StorageStats().BallastBytes)
	db.disk.onENOSPC()
	_, err = mem.Stat(mem.PathJoin("data", BallastDir, BallastName))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.NoError(t, db.CreateStream("s", StreamConfig{ShardCount: 1}))
	_, err = putOne(db, "s", "x")
	require.ErrorIs(t, err, ErrDiskFull)
	require.True(t, shard.IsCorruptionError(err) == false)
	require.Contains(t, err.Error(), "ENOSPC")
}
