package forward

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

func closeOnCleanup(t *testing.T, db *engine.DB) {
	t.Cleanup(func() { require.NoError(t, db.Close()) })
}

// TestForward forwards a backlog and records written while it runs,
// with nothing going wrong: every record exactly once, in key order,
// checkpointed.
func TestForward(t *testing.T) {
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 4})
	closeOnCleanup(t, db)
	up := newUpstream(t, 2)
	up.start()
	p := newProducer(t, db, 50)
	p.put(5000)

	f, err := New(db, up.client(), testConfig())
	require.NoError(t, err)
	r := runForwarder(t, f)
	p.put(5000)
	st := waitDrained(t, f)
	require.NoError(t, r.stop())

	d := check(t, p.n, up.records(), bothCopies, nil)
	require.Zero(t, d.duplicates, "last failure: %v (%d failed calls)", st.LastError, st.FailedRequests)
	require.EqualValues(t, p.total(), st.ForwardedRecords)
	require.Zero(t, st.DroppedRecords)
	require.Zero(t, st.FailedRequests)
	require.Zero(t, st.RetriedRecords)
	require.Zero(t, st.LagAge)
	require.False(t, st.Failing)
	require.Less(t, st.Requests, int64(p.total()), "records are batched")

	// The checkpoints are durable: a new Forwarder has nothing to do.
	f2, err := New(db, up.client(), testConfig())
	require.NoError(t, err)
	st2, err := f2.Stats()
	require.NoError(t, err)
	require.Zero(t, st2.LagRecords)
}

// TestForwardUpstreamDown starts the Forwarder before the upstream
// listens: calls get "connection refused", local writes go on, Stats
// reports the lag, and everything arrives once the upstream is up.
func TestForwardUpstreamDown(t *testing.T) {
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 2})
	closeOnCleanup(t, db)
	up := newUpstream(t, 2) // not listening yet
	f, err := New(db, up.client(), testConfig())
	require.NoError(t, err)
	r := runForwarder(t, f)

	p := newProducer(t, db, 20)
	start := time.Now()
	p.put(3000)
	t.Logf("3000 local puts took %v with the upstream down", time.Since(start))
	var st Stats
	// While the reader fills its queues a record may be counted twice
	// (on disk and in memory); once it waits on the dead upstream the
	// count is exact.
	waitFor(t, f, "failed calls and a settled lag", func() bool {
		st, err = f.Stats()
		require.NoError(t, err)
		return st.Failing && st.FailedRequests >= 3 && st.LagRecords == int64(p.total())
	})
	require.ErrorContains(t, st.LastError, "connection refused")
	require.Positive(t, st.LagBytes)
	require.Positive(t, st.LagAge)
	require.Zero(t, st.ForwardedRecords)
	// Per shard: a queue of two batches plus the batch being sent.
	require.LessOrEqual(t, st.BufferedRecords, int64(2*3*MaxBatchRecords), "memory is bounded: the rest waits on disk")

	up.start()
	p.put(1000)
	st = waitDrained(t, f)
	require.NoError(t, r.stop())
	d := check(t, p.n, up.records(), bothCopies, nil)
	// A refused connection writes nothing. Rarely, on a loaded machine,
	// the first answer after the upstream starts is lost on the client
	// side (a 200 whose body read fails with "use of closed network
	// connection"); that batch is then sent again: one per shard at most.
	require.LessOrEqual(t, d.duplicates, 2*MaxBatchRecords)
	if d.duplicates > 0 {
		t.Logf("%d duplicates; last error: %v", d.duplicates, st.LastError)
	}
	require.False(t, st.Failing)
	require.EqualValues(t, p.total(), st.ForwardedRecords)
}

// TestForwardFaults injects one kind of upstream failure at a time, and
// all of them together.
func TestForwardFaults(t *testing.T) {
	cases := []struct {
		name   string
		faults func(f *faults)
		// ord: which copies must be in key order; maxDup bounds duplicates
		// given the final Stats and the number of injected faults.
		ord    order
		maxDup func(st Stats, injected int) int
	}{
		{"throttled calls", func(f *faults) { f.throttle = 0.5 }, bothCopies,
			func(Stats, int) int { return 0 }},
		{"partial failures", func(f *faults) { f.partial, f.entry = 0.5, 0.3 }, lastCopies,
			func(st Stats, _ int) int { return int(st.RetriedRecords) }},
		{"lost acks", func(f *faults) { f.lostAck = 0.2 }, bothCopies,
			func(_ Stats, n int) int { return n * MaxBatchRecords }},
		{"slow upstream", func(f *faults) { f.delay = 5 * time.Millisecond }, bothCopies,
			func(Stats, int) int { return 0 }},
		{"everything", func(f *faults) {
			f.throttle, f.partial, f.entry, f.lostAck, f.delay = 0.2, 0.3, 0.2, 0.1, 2*time.Millisecond
		}, lastCopies, func(st Stats, n int) int { return int(st.RetriedRecords) + n*MaxBatchRecords }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := newLocal(t, engine.StreamConfig{ShardCount: 3})
			closeOnCleanup(t, db)
			up := newUpstream(t, 2)
			up.faults.set(tc.faults)
			up.start()
			p := newProducer(t, db, 10) // few keys: each batch repeats keys
			p.put(4000)
			cfg := testConfig()
			cfg.MaxBatchRecords = 200
			f, err := New(db, up.client(), cfg)
			require.NoError(t, err)
			r := runForwarder(t, f)
			p.put(2000)
			st := waitDrained(t, f)
			require.NoError(t, r.stop())
			d := check(t, p.n, up.records(), tc.ord, nil)
			injected := int(up.faults.injected.Load())
			t.Logf("%d faults injected, %d calls, %d failed, %d throttled, %d entries re-sent, %d duplicates",
				injected, st.Requests, st.FailedRequests, st.Throttled, st.RetriedRecords, d.duplicates)
			if tc.name != "slow upstream" {
				require.Positive(t, injected, "faults were injected")
			}
			require.LessOrEqual(t, d.duplicates, tc.maxDup(st, injected), "last failure: %v (%d failed calls)", st.LastError, st.FailedRequests)
			require.EqualValues(t, p.total(), st.ForwardedRecords)
		})
	}
}

// TestForwardHungUpstream: calls that get no answer time out after
// RequestTimeout and are retried; nothing is lost or reordered.
func TestForwardHungUpstream(t *testing.T) {
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 2})
	closeOnCleanup(t, db)
	up := newUpstream(t, 1)
	hang := make(chan struct{})
	up.faults.set(func(f *faults) { f.hang = hang })
	up.start()
	cfg := testConfig()
	cfg.RequestTimeout = 20 * time.Millisecond
	f, err := New(db, up.client(), cfg)
	require.NoError(t, err)
	r := runForwarder(t, f)
	p := newProducer(t, db, 10)
	p.put(2000)
	waitFor(t, f, "timed-out calls", func() bool {
		st, err := f.Stats()
		require.NoError(t, err)
		return st.Failing && st.FailedRequests >= 4
	})
	st, err := f.Stats()
	require.NoError(t, err)
	require.ErrorIs(t, st.LastError, context.DeadlineExceeded)
	up.faults.set(func(f *faults) { f.hang = nil })
	close(hang)
	st = waitDrained(t, f)
	require.NoError(t, r.stop())
	// A call the Forwarder gave up on may still be applied when the
	// upstream wakes up, after its retry and after later batches: only
	// the first copies are sure to be in order.
	d := check(t, p.n, up.records(), firstCopies, nil)
	require.LessOrEqual(t, d.duplicates, int(st.FailedRequests)*MaxBatchRecords)
	require.EqualValues(t, p.total(), st.ForwardedRecords)
}

// TestForwardServerRestart stops the upstream server while records flow
// and starts it again on the same data directory and address.
func TestForwardServerRestart(t *testing.T) {
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 3})
	closeOnCleanup(t, db)
	up := newUpstream(t, 2)
	up.start()
	cfg := testConfig()
	cfg.MaxBatchRecords = 100
	f, err := New(db, up.client(), cfg)
	require.NoError(t, err)
	r := runForwarder(t, f)
	p := newProducer(t, db, 20)
	for range 3 {
		p.put(3000)
		waitFor(t, f, "some records forwarded", func() bool {
			st, err := f.Stats()
			require.NoError(t, err)
			return st.ForwardedRecords > 0
		})
		up.stop()
		p.put(1000)
		waitFor(t, f, "failed calls", func() bool {
			st, err := f.Stats()
			require.NoError(t, err)
			return st.Failing
		})
		up.start()
	}
	st := waitDrained(t, f)
	require.NoError(t, r.stop())
	d := check(t, p.n, up.records(), bothCopies, nil)
	// A call cut by the shutdown may have been applied: one batch per
	// shard per restart at most.
	require.LessOrEqual(t, d.duplicates, 3*3*cfg.MaxBatchRecords)
	require.EqualValues(t, p.total(), st.ForwardedRecords)
}

// TestForwardCrash cancels Run in the middle of a call, closes and
// reopens the local DB, and resumes with a new Forwarder, several times:
// alternately after the upstream applied the call (the Forwarder never
// sees the answer: duplicates) and before (nothing written: the batch
// must not have been checkpointed).
func TestForwardCrash(t *testing.T) {
	db, dir := newLocal(t, engine.StreamConfig{ShardCount: 3})
	up := newUpstream(t, 2)
	up.start()
	p := newProducer(t, db, 20)
	cfg := testConfig()
	cfg.MaxBatchRecords = 100
	const crashes = 6
	for i := range crashes {
		p.put(3000)
		f, err := New(db, up.client(), cfg)
		require.NoError(t, err)
		r := runForwarder(t, f)
		crashAt := int(up.faults.calls.Load()) + 3 + i
		crash := func(n int) bool {
			if n >= crashAt {
				r.cancel()
				return true
			}
			return false
		}
		up.faults.set(func(f *faults) {
			if i%2 == 0 {
				f.afterPut = crash
			} else {
				f.onPut = crash
			}
		})
		require.NoError(t, r.wait())
		up.faults.set(func(f *faults) { f.onPut, f.afterPut = nil, nil })
		require.NoError(t, db.Close())
		db = openLocal(t, dir)
		p.db = db
	}
	closeOnCleanup(t, db)
	f, err := New(db, up.client(), cfg)
	require.NoError(t, err)
	r := runForwarder(t, f)
	p.put(1000)
	waitDrained(t, f)
	require.NoError(t, r.stop())
	// A call cut by the crash may still be applied after the next Run's
	// first batch: only the first copies are sure to be in order.
	d := check(t, p.n, up.records(), firstCopies, nil)
	t.Logf("%d duplicates after %d crashes", d.duplicates, crashes)
	require.Positive(t, d.duplicates, "the crashes cut applied calls")
	require.LessOrEqual(t, d.duplicates, crashes*3*cfg.MaxBatchRecords, "at most one batch per shard per crash")
}

// TestForwardReshard splits and merges the local stream's shards while
// the upstream throttles and answers slowly: a child shard's records must
// not overtake its parents' last batch.
func TestForwardReshard(t *testing.T) {
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 2})
	closeOnCleanup(t, db)
	up := newUpstream(t, 1)
	up.faults.set(func(f *faults) { f.throttle, f.delay = 0.3, 2*time.Millisecond })
	up.start()
	cfg := testConfig()
	cfg.MaxBatchRecords = 50
	f, err := New(db, up.client(), cfg)
	require.NoError(t, err)
	r := runForwarder(t, f)
	p := newProducer(t, db, 8)
	for _, n := range []int{4, 2, 4, 8, 4} {
		p.put(1000)
		require.NoError(t, db.UpdateShardCount(localStream, n))
	}
	p.put(1000)
	st := waitDrained(t, f)
	require.NoError(t, r.stop())
	d := check(t, p.n, up.records(), bothCopies, nil)
	require.Zero(t, d.duplicates, "last failure: %v (%d failed calls)", st.LastError, st.FailedRequests)
}

// TestForwardRetention keeps the upstream down while far more than the
// stream's MaxBytes is written: DiscardOld keeps the disk bounded, the
// records deleted before they were forwarded are counted, and the rest
// arrive in order once the upstream is up.
func TestForwardRetention(t *testing.T) {
	const maxBytes = 256 << 10
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 2, MaxBytes: maxBytes, Discard: engine.DiscardOld})
	closeOnCleanup(t, db)
	up := newUpstream(t, 2)
	cfg := testConfig()
	cfg.MaxBatchRecords = 100
	f, err := New(db, up.client(), cfg)
	require.NoError(t, err)
	r := runForwarder(t, f)

	p := newProducer(t, db, 10)
	p.pad = make([]byte, 500)
	ctx := context.Background()
	for range 20 {
		p.put(200) // ~2 MB in all
		require.NoError(t, db.Trim(ctx, localStream))
		d, err := db.DescribeStream(localStream)
		require.NoError(t, err)
		require.LessOrEqual(t, d.Bytes, int64(maxBytes))
	}
	var st Stats
	waitFor(t, f, "stable accounting", func() bool {
		st, err = f.Stats()
		require.NoError(t, err)
		return st.ForwardedRecords+st.LagRecords+st.DroppedRecords == int64(p.total())
	})
	require.Positive(t, st.DroppedRecords)
	require.Zero(t, st.ForwardedRecords)
	t.Logf("while down: lag %d records (%d buffered, ~%d bytes), %d dropped of %d",
		st.LagRecords, st.BufferedRecords, st.LagBytes, st.DroppedRecords, p.total())

	up.start()
	st = waitDrained(t, f)
	require.NoError(t, r.stop())
	dropped := map[string]map[int]bool{}
	for k, n := range p.n {
		dropped[k] = map[int]bool{}
		for i := range n {
			dropped[k][i] = true // allowed missing; the counts are checked below
		}
	}
	d := check(t, p.n, up.records(), bothCopies, dropped)
	require.Zero(t, d.duplicates, "last failure: %v (%d failed calls)", st.LastError, st.FailedRequests)
	require.EqualValues(t, p.total(), int64(d.distinct)+st.DroppedRecords, "every record is forwarded or counted as dropped")
	require.EqualValues(t, d.distinct, st.ForwardedRecords)

	// A new Forwarder (another process) may report again the drops at the
	// end of a shard (no later record was acknowledged, so the checkpoint
	// is before them)...
	f2, err := New(db, up.client(), cfg)
	require.NoError(t, err)
	st2, err := f2.Stats()
	require.NoError(t, err)
	require.Zero(t, st2.LagRecords)
	require.LessOrEqual(t, st2.DroppedRecords, st.DroppedRecords)
	// ...but once it has run, the checkpoints are past them for good.
	r = runForwarder(t, f2)
	waitFor(t, f2, "Run to start", func() bool { return f2.running.Load() })
	require.NoError(t, r.stop())
	f3, err := New(db, up.client(), cfg)
	require.NoError(t, err)
	st3, err := f3.Stats()
	require.NoError(t, err)
	require.Zero(t, st3.LagRecords)
	require.Zero(t, st3.DroppedRecords)
	lag, err := consumerLag(db, f3.Config().Consumer)
	require.NoError(t, err)
	require.Zero(t, lag, "the consumer's own Lag agrees")
}

// consumerLag sums the durable consumer's Lag.
func consumerLag(db *engine.DB, consumer string) (int64, error) {
	c, err := db.Consumer(localStream, consumer, nil)
	if err != nil {
		return 0, err
	}
	lags, err := c.Lag()
	var n int64
	for _, l := range lags {
		n += l.Behind
	}
	return n, err
}

// TestForwardDropsCountedOnce: a gap seen by one Run and not yet
// acknowledged is not counted again by the next Run.
func TestForwardDropsCountedOnce(t *testing.T) {
	const maxBytes = 64 << 10
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 1, MaxBytes: maxBytes})
	closeOnCleanup(t, db)
	up := newUpstream(t, 1)
	f, err := New(db, up.client(), testConfig())
	require.NoError(t, err)
	p := newProducer(t, db, 3)
	p.pad = make([]byte, 200)
	p.put(2000)
	require.NoError(t, db.Trim(context.Background(), localStream))
	for range 2 { // two Runs against a dead upstream
		r := runForwarder(t, f)
		waitFor(t, f, "failed calls", func() bool {
			st, err := f.Stats()
			require.NoError(t, err)
			return st.FailedRequests > 0 && st.BufferedRecords > 0
		})
		require.NoError(t, r.stop())
	}
	st, err := f.Stats()
	require.NoError(t, err)
	require.EqualValues(t, p.total(), st.LagRecords+st.DroppedRecords)
	up.start()
	r := runForwarder(t, f)
	st = waitDrained(t, f)
	require.NoError(t, r.stop())
	require.EqualValues(t, p.total(), st.ForwardedRecords+st.DroppedRecords)
}

// TestForwardRejected: a batch the upstream calls invalid stops Run with
// ErrRejected instead of being retried forever, and is not checkpointed.
func TestForwardRejected(t *testing.T) {
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 1})
	closeOnCleanup(t, db)
	up := newUpstream(t, 1)
	up.start()
	var rejects atomic.Int64
	up.faults.setNext(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rejects.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"__type":"InvalidArgumentException","message":"Records size exceeds 5 MB limit"}`)
	}))
	p := newProducer(t, db, 3)
	p.put(10)
	f, err := New(db, up.client(), testConfig())
	require.NoError(t, err)
	err = f.Run(context.Background())
	require.ErrorIs(t, err, ErrRejected)
	require.ErrorContains(t, err, "InvalidArgumentException")
	require.EqualValues(t, 1, rejects.Load())
	st, err := f.Stats()
	require.NoError(t, err)
	require.EqualValues(t, 10, st.LagRecords)
}

// TestForwardRunOnce: one Run at a time; a second Run after the first
// returns resumes.
func TestForwardRunOnce(t *testing.T) {
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 1})
	closeOnCleanup(t, db)
	up := newUpstream(t, 1)
	up.start()
	f, err := New(db, up.client(), testConfig())
	require.NoError(t, err)
	r := runForwarder(t, f)
	waitFor(t, f, "Run to start", func() bool { return f.running.Load() })
	require.ErrorIs(t, f.Run(context.Background()), ErrRunning)
	require.NoError(t, r.stop())
	p := newProducer(t, db, 3)
	p.put(100)
	r = runForwarder(t, f)
	waitDrained(t, f)
	require.NoError(t, r.stop())
	check(t, p.n, up.records(), bothCopies, nil)
}

// TestForwardLinger: a trickle of single puts lingers into full batches.
// The linger is an hour, so each call goes out because its batch filled up
// (MaxBatchRecords), however slowly the puts come: 50 records in exactly 5
// calls. Without lingering, most puts would go out alone. (That a batch
// goes out once its linger passes, every other test checks: they drain
// with a 1 ms linger.)
func TestForwardLinger(t *testing.T) {
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 1})
	closeOnCleanup(t, db)
	up := newUpstream(t, 1)
	up.start()
	cfg := testConfig()
	cfg.Linger = time.Hour
	cfg.MaxBatchRecords = 10
	f, err := New(db, up.client(), cfg)
	require.NoError(t, err)
	r := runForwarder(t, f)
	for i := range 50 {
		_, err := db.PutRecord(context.Background(), localStream, engine.Entry{PartitionKey: "k", Data: []byte("k:" + strconv.Itoa(i))})
		require.NoError(t, err)
	}
	st := waitDrained(t, f)
	require.NoError(t, r.stop())
	require.EqualValues(t, 50, st.ForwardedRecords)
	require.EqualValues(t, 5, st.Requests-st.FailedRequests, "records lingered into full batches (%d failed calls: %v)", st.FailedRequests, st.LastError)
}

// TestForwardClosedDB: Run reports a closed local DB.
func TestForwardClosedDB(t *testing.T) {
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 1})
	up := newUpstream(t, 1)
	f, err := New(db, up.client(), testConfig())
	require.NoError(t, err)
	require.NoError(t, db.Close())
	require.ErrorIs(t, f.Run(context.Background()), engine.ErrClosed)
	_, err = f.Stats()
	require.ErrorIs(t, err, engine.ErrClosed)
}

func TestRetrySet(t *testing.T) {
	mk := func(keys ...string) []pending {
		out := make([]pending, len(keys))
		for i, k := range keys {
			out[i] = pending{entry: types.PutRecordsRequestEntry{PartitionKey: aws.String(k), Data: []byte(k + string(rune('0'+i)))}}
		}
		return out
	}
	ok := types.PutRecordsResultEntry{SequenceNumber: aws.String("1"), ShardId: aws.String("shardId-000000000000")}
	thr := types.PutRecordsResultEntry{ErrorCode: aws.String("ProvisionedThroughputExceededException")}
	internal := types.PutRecordsResultEntry{ErrorCode: aws.String("InternalFailure")}
	cases := []struct {
		name      string
		keys      []string
		res       []types.PutRecordsResultEntry
		want      []int
		throttled int
	}{
		{"all accepted", []string{"a", "b", "a"}, []types.PutRecordsResultEntry{ok, ok, ok}, nil, 0},
		{"one failed, later same key re-sent", []string{"a", "b", "a", "b", "c"}, []types.PutRecordsResultEntry{ok, thr, ok, ok, ok}, []int{1, 3}, 1},
		{"earlier same key not re-sent", []string{"a", "a", "a"}, []types.PutRecordsResultEntry{ok, internal, ok}, []int{1, 2}, 0},
		{"all failed", []string{"a", "b"}, []types.PutRecordsResultEntry{thr, thr}, []int{0, 1}, 2},
		{"two keys", []string{"a", "b", "a", "b", "c", "a"}, []types.PutRecordsResultEntry{thr, ok, ok, internal, ok, ok}, []int{0, 2, 3, 5}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			todo := mk(tc.keys...)
			retry, throttled := retrySet(todo, tc.res)
			var got []int
			for _, r := range retry {
				for i := range todo {
					if string(todo[i].entry.Data) == string(r.entry.Data) {
						got = append(got, i)
					}
				}
			}
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.throttled, throttled)
		})
	}
}

func TestConfig(t *testing.T) {
	c := Config{Stream: "s"}.withDefaults()
	require.NoError(t, c.validate())
	require.Equal(t, "s", c.TargetStream)
	require.Equal(t, "forward-aws-s", c.Consumer)
	require.Equal(t, MaxBatchRecords, c.MaxBatchRecords)
	require.Equal(t, MaxBatchBytes, c.MaxBatchBytes)
	require.Equal(t, DefaultLinger, c.Linger)
	require.Equal(t, DefaultMinBackoff, c.MinBackoff)
	require.Equal(t, DefaultMaxBackoff, c.MaxBackoff)
	require.Equal(t, DefaultRequestTimeout, c.RequestTimeout)
	require.Zero(t, Config{Stream: "s", Linger: -1}.withDefaults().Linger)
	require.Equal(t, "forward-aws-kinesis-us-east-1-123456789012-stream-up", Config{Stream: "s", TargetStream: "arn:aws:kinesis:us-east-1:123456789012:stream/up"}.withDefaults().Consumer)
	require.Equal(t, "forward-aws-eu-west-1-s", Config{Stream: "s", Region: "eu-west-1"}.withDefaults().Consumer)
	require.Equal(t, "forward-127.0.0.1-4567-up", Config{Stream: "s", TargetStream: "up", Endpoint: "http://127.0.0.1:4567"}.withDefaults().Consumer)
	require.Equal(t, "forward-central.example-up", Config{Stream: "s", TargetStream: "up", Endpoint: "https://central.example/kinesis"}.withDefaults().Consumer)
	long := Config{Stream: "s", TargetStream: strings.Repeat("x", 128)}.withDefaults().Consumer
	require.Len(t, long, 128)
	require.NotEqual(t, long, Config{Stream: "s", TargetStream: strings.Repeat("x", 129)}.withDefaults().Consumer, "cut names end in a hash of the whole")
	require.NotEqual(t, DefaultConsumer("http://a:1", "", "s"), DefaultConsumer("http://b:1", "", "s"), "two upstreams, two consumers")

	for _, bad := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Stream is required"},
		{Config{Stream: "s", MaxBatchRecords: 501}, "MaxBatchRecords 501"},
		{Config{Stream: "s", MaxBatchBytes: 6 << 20}, "MaxBatchBytes"},
		{Config{Stream: "s", MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "MaxBackoff"},
		{Config{Stream: "s", RequestTimeout: -1}, "RequestTimeout"},
	} {
		err := bad.cfg.withDefaults().validate()
		require.ErrorIs(t, err, ErrInvalidConfig)
		require.ErrorContains(t, err, bad.want)
	}
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 1})
	closeOnCleanup(t, db)
	_, err := New(db, nil, Config{Stream: "nope", Endpoint: "http://127.0.0.1:1"})
	require.ErrorIs(t, err, engine.ErrStreamNotFound)
	_, err = New(db, nil, Config{Stream: localStream, Endpoint: "127.0.0.1:1"})
	require.ErrorIs(t, err, ErrInvalidConfig)
	f, err := New(db, nil, Config{Stream: localStream, Endpoint: "http://127.0.0.1:1"})
	require.NoError(t, err)
	require.Equal(t, localStream, f.Config().TargetStream)
	require.Equal(t, "forward-127.0.0.1-1-"+localStream, f.Config().Consumer)
	// Without an endpoint, the region the client resolved names the consumer.
	f, err = New(db, nil, Config{Stream: localStream, Region: "ap-south-1"})
	require.NoError(t, err)
	require.Equal(t, "forward-aws-ap-south-1-"+localStream, f.Config().Consumer)
}

func TestBackoff(t *testing.T) {
	f := &Forwarder{cfg: Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: time.Second}}
	for range 100 {
		d := f.backoff(0)
		require.True(t, d >= 5*time.Millisecond && d <= 10*time.Millisecond, "%v", d)
		d = f.backoff(3)
		require.True(t, d >= 40*time.Millisecond && d <= 80*time.Millisecond, "%v", d)
		d = f.backoff(1000)
		require.True(t, d >= 500*time.Millisecond && d <= time.Second, "%v", d)
	}
}

func TestClassify(t *testing.T) {
	require.Equal(t, retryable, classify(errors.New("dial tcp: connection refused")))
	require.Equal(t, throttle, classify(&types.ProvisionedThroughputExceededException{}))
	require.Equal(t, throttle, classify(&types.LimitExceededException{}))
	require.Equal(t, fatal, classify(&types.InvalidArgumentException{}))
	require.Equal(t, notFound, classify(&types.ResourceNotFoundException{}))
	require.Equal(t, fatal, classify(&smithy.GenericAPIError{Code: "AccessDeniedException"}))
	require.Equal(t, fatal, classify(&smithy.GenericAPIError{Code: "UnrecognizedClientException"}))
	require.Equal(t, fatal, classify(&smithy.GenericAPIError{Code: "InvalidSignatureException"}))
	require.Equal(t, retryable, classify(&smithy.GenericAPIError{Code: "ExpiredTokenException"}))
	require.Equal(t, retryable, classify(&smithy.GenericAPIError{Code: "InternalFailure"}))
}

func TestQueueBarrier(t *testing.T) {
	q := newQueue(10, 1000)
	ctx := context.Background()
	rec := func(n int) pending { return pending{size: n} }
	require.NoError(t, q.push(ctx, rec(10), nil))
	require.NoError(t, q.push(ctx, rec(10), nil))
	b := q.pushBarrier()
	require.NoError(t, q.push(ctx, rec(10), nil))

	batch, bytes, cut, barrier := q.take(nil, 0, 5, 100)
	require.Len(t, batch, 2)
	require.Equal(t, 20, bytes)
	require.True(t, cut, "a barrier ends the batch")
	require.Nil(t, barrier)
	batch, _, _, barrier = q.take(nil, 0, 5, 100)
	require.Empty(t, batch)
	require.Equal(t, b, (<-chan struct{})(barrier))
	batch, _, cut, _ = q.take(nil, 0, 5, 100)
	require.Len(t, batch, 1)
	require.False(t, cut)

	// Bytes: an empty batch takes one record however large.
	require.NoError(t, q.push(ctx, rec(500), nil))
	require.NoError(t, q.push(ctx, rec(1), nil))
	batch, bytes, cut, _ = q.take(nil, 0, 5, 100)
	require.Len(t, batch, 1)
	require.Equal(t, 500, bytes)
	require.True(t, cut)

	// push waits while full.
	q = newQueue(1, 1000)
	pushed := 0
	require.NoError(t, q.push(ctx, rec(1), func() { pushed++ }))
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, q.push(cctx, rec(1), func() { pushed++ }), context.DeadlineExceeded)
	require.Equal(t, 1, pushed)
}
