package engine_test

// Fail-stop (Invariant 7), tested in child processes on a real temporary
// directory: the child (this test binary, re-executed with
// -test.run=^TestFailStopChild$) writes batches from several goroutines
// over an error-injecting FS on vfs.Default, reports each acknowledged batch
// on stdout, and arms a WAL fault. The parent expects the child to exit
// with engine.FatalExitCode, reopens the directory and checks that every
// acknowledged (fsync'd) batch is there with the sequence numbers it was
// given, no batch is partly visible, per-shard counters are gap-free,
// the stats match, and writing continues above every number handed out
// before (Invariant 8).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

const (
	failStopEnvCase = "KVSTREAM_FAILSTOP_CASE"
	failStopEnvDir  = "KVSTREAM_FAILSTOP_DIR"
)

// failStopCase is one fault the child arms after its first batches.
type failStopCase struct {
	name   string
	noSync bool
	// inject returns the error to inject into op, or nil.
	inject func(op errorfs.Op) error
}

func isSync(op errorfs.Op) bool {
	return op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo
}

// inRotateWAL reports whether the calling goroutine is rotating Pebble's
// WAL (closing the old log): the path where a failure used to end in
// "fatal error: sync: unlock of unlocked mutex".
func inRotateWAL() bool { return bytes.Contains(debug.Stack(), []byte("rotateWAL")) }

func failStopCases() []failStopCase {
	errIf := func(match func(errorfs.Op) bool, err error) func(errorfs.Op) error {
		return func(op errorfs.Op) error {
			if match(op) {
				return err
			}
			return nil
		}
	}
	enospc := &os.PathError{Op: "write", Path: "wal", Err: syscall.ENOSPC}
	rotate := func(op errorfs.Op) bool { return walSync(op) && inRotateWAL() }
	manifest := func(op errorfs.Op) bool { return isSync(op) && strings.Contains(op.Path, "MANIFEST") }
	dirSync := func(op errorfs.Op) bool { return isSync(op) && op.Path == os.Getenv(failStopEnvDir) }
	cases := []failStopCase{
		{name: "wal-fsync", inject: errIf(walSync, errorfs.ErrInjected)},
		{name: "wal-write", inject: errIf(walWrite, errorfs.ErrInjected)},
		{name: "wal-enospc", inject: errIf(walWrite, enospc)},
		{name: "wal-fsync-in-rotation", inject: errIf(rotate, errorfs.ErrInjected)},
		{name: "manifest-fsync", inject: errIf(manifest, errorfs.ErrInjected)},
		{name: "dir-fsync", inject: errIf(dirSync, errorfs.ErrInjected)},
		{name: "nosync-wal-write", noSync: true, inject: errIf(walWrite, errorfs.ErrInjected)},
		{name: "nosync-wal-fsync-in-rotation", noSync: true, inject: errIf(rotate, errorfs.ErrInjected)},
	}
	for seed := range uint64(4) {
		// The nth WAL write or sync after arming fails, n drawn from a
		// seeded generator: a failure at an arbitrary point of the
		// commit pipeline, the same one on every run.
		rng := rand.New(rand.NewPCG(seed, 12))
		nth := int64(1 + rng.IntN(400))
		var ops atomic.Int64
		cases = append(cases, failStopCase{name: fmt.Sprintf("nth-wal-op-%d", seed), inject: func(op errorfs.Op) error {
			if (walWrite(op) || walSync(op)) && ops.Add(1) == nth {
				return errorfs.ErrInjected
			}
			return nil
		}})
	}
	return cases
}

func failStopCaseNamed(name string) failStopCase {
	for _, c := range failStopCases() {
		if c.name == name {
			return c
		}
	}
	panic("unknown fail-stop case " + name)
}

// failStopOptions are the child's options: small memtables, so the WAL
// rotates and memtables flush while the fault is armed.
func failStopOptions(fs vfs.FS, noSync bool) *engine.Options {
	return &engine.Options{FS: fs, NoSync: noSync, Pebble: &pebble.Options{MemTableSize: 256 << 10}}
}

// TestFailStopChild is the child side of TestFailStop and
// TestFailStopCustomOnFatal. It does nothing in a normal run.
func TestFailStopChild(t *testing.T) {
	name := os.Getenv(failStopEnvCase)
	if name == "" {
		t.Skip("the child process of TestFailStop")
	}
	if name == "custom-onfatal" {
		failStopCustomChild(t, os.Getenv(failStopEnvDir))
		return
	}
	c := failStopCaseNamed(name)
	var armed atomic.Bool
	fs := injectFS{FS: vfs.Default, inj: func(op errorfs.Op) error {
		if !armed.Load() {
			return nil
		}
		return c.inject(op)
	}}
	db, err := engine.Open(os.Getenv(failStopEnvDir), failStopOptions(fs, c.noSync))
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 3}))
	var out sync.Mutex
	ack := func(b int, res []engine.PutResult) {
		line := fmt.Appendf(nil, "ACK %d", b)
		for _, r := range res {
			line = fmt.Appendf(line, " %s", r.SequenceNumber)
		}
		out.Lock()
		_, _ = os.Stdout.Write(append(line, '\n'))
		out.Unlock()
	}
	ctx := context.Background()
	for b := range 20 {
		res, err := db.PutRecords(ctx, "s", faultEntries(b, 5))
		require.NoError(t, err)
		ack(b, res)
	}
	armed.Store(true)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20000 {
				b := 1000 + g*100000 + j
				es := faultEntries(b, 1+b%9)
				for i := range es {
					es[i].Data = append(es[i].Data, make([]byte, 300)...)
				}
				res, err := db.PutRecords(ctx, "s", es)
				if err != nil {
					// The fuse blows before OnFatal runs, so a put may
					// return ErrFailed just before the process ends; and
					// an ENOSPC makes the DB refuse other puts
					// (ErrDiskFull) while the failed write ends it.
					if !errors.Is(err, engine.ErrFailed) && !errors.Is(err, engine.ErrDiskFull) {
						fmt.Fprintf(os.Stderr, "put failed with %v, want ErrFailed\n", err)
						os.Exit(3)
					}
					time.AfterFunc(time.Minute, func() { os.Exit(3) }) // a guard only
					select {}
				}
				ack(b, res)
			}
		}()
	}
	wg.Wait()
	fmt.Fprintln(os.Stderr, "the fault never ended the process")
	os.Exit(3)
}

// failStopRunChild runs the child for case name on dir and returns its
// acknowledged batches (batch → sequence numbers), its stderr and its exit
// code.
func failStopRunChild(t *testing.T, name, dir string) (map[int][]string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a guard against hangs only
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFailStopChild$", "-test.count=1", "-test.v")
	// On the guard's timeout, ask for a goroutine dump before the kill.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(), failStopEnvCase+"="+name, failStopEnvDir+"="+dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else {
		require.NoError(t, err)
	}
	output := stdout.String() + stderr.String()
	acked := map[int][]string{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "ACK" {
			continue
		}
		b, err := strconv.Atoi(f[1])
		require.NoError(t, err)
		acked[b] = f[2:]
	}
	return acked, output, code
}

// failStopVerify reopens dir after a child's death and checks Invariants 7
// and 8 against the batches the child reported (all of which must be
// there if durable).
func failStopVerify(t *testing.T, dir string, acked map[int][]string, durable bool) {
	t.Helper()
	ctx := context.Background()
	db, err := engine.Open(dir, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	require.False(t, db.Recovery().Clean, "the child died: the session was not clean")
	want := map[int]bool{}
	if durable {
		for b := range acked {
			want[b] = true
		}
	}
	found := faultCheck(t, db, "s", want) // complete batches, gap-free counters, stats
	lost := 0
	for b := range acked {
		if found[b] == 0 {
			lost++
		}
	}
	t.Logf("%d batches acknowledged, %d visible after the restart, %d acknowledged but lost", len(acked), len(found), lost)

	// Every visible acknowledged record has the number it was given, and
	// the highest number handed out per shard is known.
	bySeq := map[string]bool{}
	top := map[engine.ShardID]uint64{}
	for _, seqs := range acked {
		for _, s := range seqs {
			n, ok := engine.ParseSequenceNumber(s)
			require.True(t, ok, s)
			bySeq[s] = true
			top[engine.ShardID(n.Shard)] = max(top[engine.ShardID(n.Shard)], n.Counter)
		}
	}
	shards, err := db.ListShards("s")
	require.NoError(t, err)
	for _, sd := range shards {
		for _, r := range shardRecords(t, db, "s", sd.ShardID) {
			var b, i, n int
			_, err := fmt.Sscanf(string(r.Data), "%d/%d/%d", &b, &i, &n)
			require.NoError(t, err)
			if seqs, ok := acked[b]; ok {
				require.Equal(t, seqs[i], r.SequenceNumber.String(), "batch %d record %d changed its sequence number", b, i)
			}
		}
	}

	// Writing continues, above every number handed out before, lost or not.
	res, err := db.PutRecords(ctx, "s", faultEntries(9000000, 12))
	require.NoError(t, err)
	for _, r := range res {
		require.False(t, bySeq[r.SequenceNumber.String()], "sequence number %s reissued", r.SequenceNumber)
		require.Greater(t, r.SequenceNumber.Counter, top[r.ShardID], "%s: counter not above the ones handed out before the failure", r.ShardID)
	}
	faultCheckAfterRestart(t, db, "s", 9000000)
}

// faultCheckAfterRestart checks the batches of one shard read back after
// a restart: complete, in order, the post-restart batch included.
func faultCheckAfterRestart(t *testing.T, db *engine.DB, stream string, batch int) {
	t.Helper()
	shards, err := db.ListShards(stream)
	require.NoError(t, err)
	n := 0
	for _, sd := range shards {
		recs := shardRecords(t, db, stream, sd.ShardID)
		require.EqualValues(t, len(recs), sd.Records, "%s: stats", sd.ShardID)
		for j, r := range recs {
			if j > 0 {
				require.Greater(t, r.SequenceNumber.Counter, recs[j-1].SequenceNumber.Counter)
			}
			if strings.HasPrefix(string(r.Data), strconv.Itoa(batch)+"/") {
				n++
			}
		}
	}
	require.Equal(t, 12, n, "the batch written after the restart is complete")
}

func TestFailStop(t *testing.T) {
	for _, c := range failStopCases() {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			acked, out, code := failStopRunChild(t, c.name, dir)
			require.Equal(t, engine.FatalExitCode, code, "the child must end with FatalExitCode; output:\n%s", out)
			require.Contains(t, out, fmt.Sprintf("exiting with status %d", engine.FatalExitCode))
			if c.name == "wal-enospc" {
				require.Contains(t, out, "no space left on device", "the exit message names the cause")
			}
			require.GreaterOrEqual(t, len(acked), 20)
			failStopVerify(t, dir, acked, !c.noSync)
		})
	}
}

// TestFailStopCustomOnFatal: an OnFatal hook that returns. The DB stops
// anyway: the puts in flight return ErrFailed (none hangs), every later
// call returns ErrFailed without touching Pebble, Close returns it, and
// the hook ran once. The goroutine that hit the failure stays blocked,
// which is why this runs in a child process too.
func TestFailStopCustomOnFatal(t *testing.T) {
	dir := t.TempDir()
	acked, out, code := failStopRunChild(t, "custom-onfatal", dir)
	require.Equal(t, 0, code, "child output:\n%s", out)
	require.Contains(t, out, "CUSTOM-ONFATAL-OK")
	failStopVerify(t, dir, acked, true)
}

func failStopCustomChild(t *testing.T, dir string) {
	var armed atomic.Bool
	fs := injectFS{FS: vfs.Default, inj: func(op errorfs.Op) error {
		if armed.Load() && walSync(op) {
			return errorfs.ErrInjected
		}
		return nil
	}}
	var calls atomic.Int32
	fatal := make(chan error, 10)
	opts := failStopOptions(fs, false)
	opts.OnFatal = func(err error) {
		calls.Add(1)
		fatal <- err
	}
	db, err := engine.Open(dir, opts)
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 3}))
	c, err := db.Consumer("s", "c", nil)
	require.NoError(t, err)
	ctx := context.Background()
	var out sync.Mutex
	ack := func(b int, res []engine.PutResult) {
		line := fmt.Appendf(nil, "ACK %d", b)
		for _, r := range res {
			line = fmt.Appendf(line, " %s", r.SequenceNumber)
		}
		out.Lock()
		_, _ = os.Stdout.Write(append(line, '\n'))
		out.Unlock()
	}
	for b := range 20 {
		res, err := db.PutRecords(ctx, "s", faultEntries(b, 5))
		require.NoError(t, err)
		ack(b, res)
	}
	armed.Store(true)
	errs := make(chan error, 8)
	for g := range 4 {
		go func() {
			for j := 0; ; j++ {
				b := 1000 + g*100000 + j
				res, err := db.PutRecords(ctx, "s", faultEntries(b, 1+b%9))
				if err != nil {
					errs <- err
					return
				}
				ack(b, res)
			}
		}()
	}
	go func() { // a control-plane commit in flight must return too
		for i := 0; ; i++ {
			if err := db.CreateStream(fmt.Sprintf("t%d", i), engine.StreamConfig{ShardCount: 1}); err != nil {
				errs <- err
				return
			}
		}
	}()
	deadline := time.After(time.Minute) // a guard against hangs only
	for range 5 {
		select {
		case err := <-errs:
			require.ErrorIs(t, err, engine.ErrFailed)
		case <-deadline:
			t.Fatal("a call in flight when the WAL failed did not return")
		}
	}
	err = <-fatal
	require.ErrorIs(t, err, engine.ErrFailed)
	require.ErrorIs(t, err, errorfs.ErrInjected, "the failure names its cause")
	require.ErrorIs(t, db.Failed(), engine.ErrFailed)

	// Every later call fails the same way, without touching Pebble.
	armed.Store(false)
	_, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("x")})
	require.ErrorIs(t, err, engine.ErrFailed)
	_, err = db.ListStreams()
	require.ErrorIs(t, err, engine.ErrFailed)
	_, err = db.ListShards("s")
	require.ErrorIs(t, err, engine.ErrFailed)
	_, err = db.GetShardIterator("s", 0, engine.TrimHorizon())
	require.ErrorIs(t, err, engine.ErrFailed)
	_, err = db.Iterate("s", 0, engine.TrimHorizon())
	require.ErrorIs(t, err, engine.ErrFailed)
	require.ErrorIs(t, db.CreateStream("u", engine.StreamConfig{ShardCount: 1}), engine.ErrFailed)
	require.ErrorIs(t, db.Trim(ctx, "s"), engine.ErrFailed)
	require.ErrorIs(t, c.CheckpointAt(0, engine.SequenceNumber{Shard: 0, Counter: 1}), engine.ErrFailed)
	require.ErrorIs(t, db.Close(), engine.ErrFailed)
	require.EqualValues(t, 1, calls.Load(), "OnFatal runs once")
	fmt.Println("CUSTOM-ONFATAL-OK")
}

// injectFS injects inj's errors into writes and syncs of files opened for
// writing and of directories. It stands in for errorfs.Wrap, which does not
// wrap files recycled with ReuseForWrite (Pebble recycles WAL files, so
// errorfs stops seeing WAL writes after the first rotations).
type injectFS struct {
	vfs.FS
	inj func(errorfs.Op) error
}

func (fs injectFS) file(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	return injectFile{File: f, fs: fs, name: name}, nil
}

func (fs injectFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, cat)
	return fs.file(name, f, err)
}

func (fs injectFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, cat)
	return fs.file(newname, f, err)
}

func (fs injectFS) OpenReadWrite(name string, cat vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, cat, opts...)
	return fs.file(name, f, err)
}

func (fs injectFS) OpenDir(name string) (vfs.File, error) {
	f, err := fs.FS.OpenDir(name)
	return fs.file(name, f, err)
}

type injectFile struct {
	vfs.File
	fs   injectFS
	name string
}

func (f injectFile) Write(p []byte) (int, error) {
	if err := f.fs.inj(errorfs.Op{Kind: errorfs.OpFileWrite, Path: f.name}); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f injectFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.inj(errorfs.Op{Kind: errorfs.OpFileWriteAt, Path: f.name}); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f injectFile) Sync() error {
	if err := f.fs.inj(errorfs.Op{Kind: errorfs.OpFileSync, Path: f.name}); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f injectFile) SyncData() error {
	if err := f.fs.inj(errorfs.Op{Kind: errorfs.OpFileSyncData, Path: f.name}); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f injectFile) SyncTo(n int64) (bool, error) {
	if err := f.fs.inj(errorfs.Op{Kind: errorfs.OpFileSyncTo, Path: f.name}); err != nil {
		return false, err
	}
	return f.File.SyncTo(n)
}
