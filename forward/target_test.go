package forward

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// TestForwardCreatesTarget: with CreateTarget, a missing upstream stream
// is created with the local stream's open shard count, and every record
// arrives.
func TestForwardCreatesTarget(t *testing.T) {
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 3})
	closeOnCleanup(t, db)
	up := newUpstream(t, 1)
	up.start()
	cfg := testConfig()
	cfg.TargetStream = "fresh"
	cfg.CreateTarget = true
	f, err := New(db, up.client(), cfg)
	require.NoError(t, err)
	p := newProducer(t, db, 10)
	p.put(300)
	r := runForwarder(t, f)
	st := waitDrained(t, f)
	require.NoError(t, r.stop())
	require.EqualValues(t, 300, st.ForwardedRecords)

	up.mu.Lock()
	defer up.mu.Unlock()
	d, err := up.db.DescribeStream("fresh")
	require.NoError(t, err)
	require.Equal(t, 3, d.OpenShardCount)
	check(t, p.n, streamData(t, up.db, "fresh"), bothCopies, nil)
}

// TestForwardTargetNotFound: without CreateTarget (or with an ARN, which
// cannot be created), a missing upstream stream stops Run at the first
// answer with ErrRejected and ErrTargetNotFound; nothing is retried.
func TestForwardTargetNotFound(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target string
		create bool
	}{
		{"creation off", "missing", false},
		{"ARN", "arn:aws:kinesis:us-east-1:000000000000:stream/missing", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := newLocal(t, engine.StreamConfig{ShardCount: 1})
			closeOnCleanup(t, db)
			up := newUpstream(t, 1)
			up.start()
			cfg := testConfig()
			cfg.TargetStream, cfg.CreateTarget = tc.target, tc.create
			f, err := New(db, up.client(), cfg)
			require.NoError(t, err)
			newProducer(t, db, 3).put(10)
			err = f.Run(context.Background())
			require.ErrorIs(t, err, ErrRejected)
			require.ErrorIs(t, err, ErrTargetNotFound)
			require.ErrorContains(t, err, "ResourceNotFoundException")
			st, err := f.Stats()
			require.NoError(t, err)
			require.EqualValues(t, 1, st.Requests)
			require.EqualValues(t, 10, st.LagRecords)
		})
	}
}

// TestForwardRefusedCredentials: an upstream that refuses the credentials
// stops Run at once instead of being retried forever.
func TestForwardRefusedCredentials(t *testing.T) {
	for _, code := range []string{"AccessDeniedException", "UnrecognizedClientException"} {
		t.Run(code, func(t *testing.T) {
			db, _ := newLocal(t, engine.StreamConfig{ShardCount: 1})
			closeOnCleanup(t, db)
			up := newUpstream(t, 1)
			up.start()
			var calls atomic.Int64
			up.faults.setNext(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				calls.Add(1)
				w.Header().Set("Content-Type", "application/x-amz-json-1.1")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = fmt.Fprintf(w, `{"__type":%q,"message":"no"}`, code)
			}))
			newProducer(t, db, 3).put(10)
			cfg := testConfig()
			cfg.CreateTarget = true
			f, err := New(db, up.client(), cfg)
			require.NoError(t, err)
			err = f.Run(context.Background())
			require.ErrorIs(t, err, ErrRejected)
			require.NotErrorIs(t, err, ErrTargetNotFound)
			require.ErrorContains(t, err, code)
			require.EqualValues(t, 1, calls.Load())
		})
	}
}

// TestForwardStatsSteady: while the upstream is down, the same backlog
// reports the same exact lag in every Stats, and "failing since" stays at
// the first failure while the latest failure moves on.
func TestForwardStatsSteady(t *testing.T) {
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 1})
	closeOnCleanup(t, db)
	up := newUpstream(t, 1) // never started: connection refused
	for _, d := range []string{"a", "b", "c"} {
		_, err := db.PutRecord(context.Background(), localStream, engine.Entry{PartitionKey: "sensor-1", Data: []byte(d)})
		require.NoError(t, err)
	}
	f, err := New(db, up.client(), testConfig())
	require.NoError(t, err)
	// Before Run: all three on disk.
	st, err := f.Stats()
	require.NoError(t, err)
	require.EqualValues(t, 3, st.LagRecords)
	require.EqualValues(t, 27, st.LagBytes, "data plus key, as ForwardedBytes counts")
	require.False(t, st.LagBytesEstimated)

	r := runForwarder(t, f)
	var first Stats
	waitFor(t, f, "failing", func() bool {
		first, err = f.Stats()
		require.NoError(t, err)
		return first.Failing && first.FailedRequests >= 2
	})
	var later Stats
	waitFor(t, f, "more failures", func() bool {
		later, err = f.Stats()
		require.NoError(t, err)
		return later.FailedRequests > first.FailedRequests+2
	})
	require.NoError(t, r.stop())
	for _, s := range []Stats{first, later} {
		require.EqualValues(t, 3, s.LagRecords)
		require.EqualValues(t, 27, s.LagBytes)
		require.False(t, s.LagBytesEstimated)
	}
	require.Equal(t, first.FailingSince, later.FailingSince)
	require.True(t, later.LastErrorAt.After(later.FailingSince))
}

// TestForwardLagEstimate: a backlog longer than ExactLagRecords on disk
// is estimated, close to the exact size, and says so.
func TestForwardLagEstimate(t *testing.T) {
	db, _ := newLocal(t, engine.StreamConfig{ShardCount: 1})
	closeOnCleanup(t, db)
	up := newUpstream(t, 1)
	p := newProducer(t, db, 5)
	p.pad = make([]byte, 100)
	p.put(ExactLagRecords + 500)
	f, err := New(db, up.client(), testConfig())
	require.NoError(t, err)
	st, err := f.Stats()
	require.NoError(t, err)
	require.True(t, st.LagBytesEstimated)
	var exact int64
	for _, d := range streamData(t, db, localStream) {
		exact += int64(len(d) + 2) // keys are k0..k4
	}
	require.InEpsilon(t, exact, st.LagBytes, 0.02, "estimate %d, exact %d", st.LagBytes, exact)
}
