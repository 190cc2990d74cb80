package shard

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/stretchr/testify/require"
)

// stallFS blocks WAL syncs while armed, so a commit stays in flight until
// the test releases it.
type stallFS struct {
	armed   atomic.Bool
	entered chan struct{} // one send per blocked sync
	release chan struct{}
}

func (s *stallFS) MaybeError(op errorfs.Op) error {
	if s.armed.Load() && strings.HasSuffix(op.Path, ".log") &&
		(op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo) {
		s.entered <- struct{}{}
		<-s.release
	}
	return nil
}

func (s *stallFS) String() string { return "stall-wal-sync" }

type quietLog struct{}

func (quietLog) Infof(string, ...any)  {}
func (quietLog) Errorf(string, ...any) {}
func (quietLog) Fatalf(f string, a ...any) {
	panic(fmt.Sprintf(f, a...)) // no fault is injected here: a fatal error is a test bug
}

func (w *Writer) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.mu.queue)
}

// TestCommitContext: a request still queued when its ctx ends is
// withdrawn and never commits (and uses no counter); one whose commit has
// begun is reported in flight and completes in the background.
func TestCommitContext(t *testing.T) {
	st := &stallFS{entered: make(chan struct{}, 1), release: make(chan struct{})}
	db, err := pebble.Open("db", &pebble.Options{FS: errorfs.Wrap(vfs.NewMem(), st), FormatMajorVersion: pebble.FormatNewest, Logger: quietLog{}})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	w := NewWriter(db, WriterConfig{Sync: true, Now: func() int64 { return 1000 }})
	defer w.Close()
	l := NewLog(1, 0, 1, 0, 0, 0)
	req := func(data string) *Request {
		r := GetRequest()
		r.Appends = append(r.Appends, Append{Log: l, PartitionKey: "k", Data: []byte(data)})
		return r
	}

	first := req("first")
	require.NoError(t, w.Commit(first))
	require.EqualValues(t, 1, first.Appends[0].Counter)

	// A: its commit is stuck in the WAL sync when its ctx ends.
	st.armed.Store(true)
	ctxA, cancelA := context.WithCancel(context.Background())
	a := req("a")
	aDone := make(chan struct{})
	var aInFlight bool
	var aErr error
	go func() {
		aInFlight, aErr = w.CommitContext(ctxA, a)
		close(aDone)
	}()
	<-st.entered

	// B: queued behind A when its ctx ends.
	ctxB, cancelB := context.WithCancel(context.Background())
	b := req("b")
	bDone := make(chan struct{})
	var bInFlight bool
	var bErr error
	go func() {
		bInFlight, bErr = w.CommitContext(ctxB, b)
		close(bDone)
	}()
	for w.queued() == 0 {
		runtime.Gosched()
	}
	cancelB()
	<-bDone
	require.False(t, bInFlight, "a queued request is withdrawn")
	require.ErrorIs(t, bErr, context.Canceled)
	require.Zero(t, w.queued())

	cancelA()
	<-aDone
	require.True(t, aInFlight, "a request in Pebble's hands cannot be withdrawn")
	require.ErrorIs(t, aErr, context.Canceled)

	st.armed.Store(false)
	close(st.release)
	require.NoError(t, w.Wait(a), "the abandoned commit completes in the background")
	require.EqualValues(t, 2, a.Appends[0].Counter)

	// B used no counter and was never written: the next record follows A.
	c := req("c")
	inFlight, err := w.CommitContext(context.Background(), c)
	require.False(t, inFlight)
	require.NoError(t, err)
	require.EqualValues(t, 3, c.Appends[0].Counter)
	require.EqualValues(t, 3, l.Published())

	require.Equal(t, []string{"first", "a", "c"}, storedData(t, db, l, 1, 3))
}

// TestCommitContextReleasesData: a request abandoned in flight before the
// committer copied its records into a batch makes CommitContext wait for
// that copy, so the caller may reuse the records' memory once it returns
// (the server recycles request bodies). Without the wait, the bytes
// changed after the return are what gets stored, and -race reports the
// committer's read.
func TestCommitContextReleasesData(t *testing.T) {
	st := &stallFS{entered: make(chan struct{}, 1), release: make(chan struct{})}
	db, err := pebble.Open("db", &pebble.Options{FS: errorfs.Wrap(vfs.NewMem(), st), FormatMajorVersion: pebble.FormatNewest, Logger: quietLog{}})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	w := NewWriter(db, WriterConfig{Sync: true, Now: func() int64 { return 1000 }})
	defer w.Close()
	w.maxBatchBytes = 1 // one request per commit: a group commits request by request
	var unstall sync.Once
	defer unstall.Do(func() { // before w.Close, also when the test fails
		st.armed.Store(false)
		close(st.release)
	})
	l := NewLog(1, 0, 1, 0, 0, 0)
	req := func(data []byte) *Request {
		r := GetRequest()
		r.Appends = append(r.Appends, Append{Log: l, PartitionKey: "k", Data: data})
		return r
	}
	commit := func(ctx context.Context, r *Request) (done chan struct{}, inFlight *bool, err *error) {
		done, inFlight, err = make(chan struct{}), new(bool), new(error)
		go func() {
			*inFlight, *err = w.CommitContext(ctx, r)
			close(done)
		}()
		return done, inFlight, err
	}

	// Z holds the committer in its WAL sync while A and R queue up.
	st.armed.Store(true)
	zDone, _, zErr := commit(context.Background(), req([]byte("z")))
	<-st.entered
	aDone, _, aErr := commit(context.Background(), req([]byte("a")))
	for w.queued() < 1 {
		runtime.Gosched()
	}
	data := []byte("original")
	ctx, cancel := context.WithCancel(context.Background())
	r := req(data)
	rDone, rInFlight, rErr := commit(ctx, r)
	for w.queued() < 2 {
		runtime.Gosched()
	}
	// Z completes; the committer takes A and R as one group and commits
	// A first, stuck in its sync: R is the committer's, not yet encoded.
	st.release <- struct{}{}
	<-zDone
	require.NoError(t, *zErr)
	<-st.entered
	require.Zero(t, w.queued())

	cancel()
	// R's records are still to be copied: CommitContext must not return
	// yet. (A wrong return is caught whenever it comes before A's sync is
	// released; the wait only gives it the time to show.)
	select {
	case <-rDone:
	case <-time.After(50 * time.Millisecond):
	}
	require.False(t, isClosed(rDone), "CommitContext returned before the committer copied the request's data")
	// A completes; R is copied into its batch and stuck in its sync.
	st.release <- struct{}{}
	<-aDone
	require.NoError(t, *aErr)
	<-st.entered
	<-rDone
	require.True(t, *rInFlight)
	require.ErrorIs(t, *rErr, context.Canceled)
	copy(data, "CHANGED!") // the caller reuses its buffer
	unstall.Do(func() {
		st.armed.Store(false)
		close(st.release)
	})
	require.NoError(t, w.Wait(r))

	require.Equal(t, []string{"z", "a", "original"}, storedData(t, db, l, 1, 4))
}

// storedData returns the data of l's records with counters from to to
// (inclusive) as stored in db, in counter order.
func storedData(t *testing.T, db *pebble.DB, l *Log, from, to uint64) []string {
	t.Helper()
	lower, upper := l.Span(from, to)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	require.NoError(t, err)
	var got []string
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		require.NoError(t, err)
		d, ok := DecodeValue(v)
		require.True(t, ok)
		got = append(got, string(d.Data))
	}
	require.NoError(t, it.Close())
	return got
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
