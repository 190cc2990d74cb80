package server

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// TestAdmissionFairTurns: with the capacity full of one client's requests
// and many more of them queued, a request of another client is admitted
// at the next release, ahead of the first client's queue.
func TestAdmissionFairTurns(t *testing.T) {
	a := &admission{capacity: 2, clients: map[string]*admitClient{}}
	ctx := context.Background()
	var held []func()
	for range 2 {
		rel, ok := a.acquire(ctx, "attacker", 1, 0)
		require.True(t, ok)
		held = append(held, rel)
	}
	type result struct {
		who string
		rel func()
	}
	admitted := make(chan result, 8)
	queued := func(n int) { // waits until n requests are queued
		waitFor(t, "requests to queue", func() bool {
			a.mu.Lock()
			defer a.mu.Unlock()
			q := 0
			for _, c := range a.clients {
				q += len(c.waiters)
			}
			return q == n
		})
	}
	for i := range 5 {
		go func() {
			if rel, ok := a.acquire(ctx, "attacker", 1, 0); ok {
				admitted <- result{"attacker", rel}
			}
		}()
		queued(i + 1)
	}
	go func() {
		if rel, ok := a.acquire(ctx, "good", 1, 0); ok {
			admitted <- result{"good", rel}
		}
	}()
	queued(6)
	held[0]()
	r := <-admitted
	require.Equal(t, "good", r.who, "the other client's request goes first")
	r.rel()
	r = <-admitted
	require.Equal(t, "attacker", r.who)
	r.rel()
	held[1]()
	for range 4 {
		(<-admitted).rel()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	require.Zero(t, a.used)
	require.Empty(t, a.clients)
	require.Empty(t, a.ring)
}

// TestAdmissionSmallReserve: bulk requests leave the reserve to small
// ones, and one client's bulk requests hold at most perClientBulk units
// (its first is always allowed).
func TestAdmissionSmallReserve(t *testing.T) {
	a := &admission{capacity: 8, reserve: 2, perClientBulk: 4, clients: map[string]*admitClient{}}
	ctx := context.Background()
	r1, ok := a.acquire(ctx, "bulk", 3, 0)
	require.True(t, ok)
	r2, ok := a.acquire(ctx, "other", 3, 0)
	require.True(t, ok)
	// 6 of 8 used: a third bulk request would eat the reserve.
	a.mu.Lock()
	require.False(t, a.fits(a.client("third"), 2))
	require.False(t, a.fits(a.client("bulk"), 1+1), "past its cap")
	require.True(t, a.fits(a.client("small"), 1))
	a.forget(a.client("third"))
	a.forget(a.client("small"))
	a.mu.Unlock()
	for range 2 {
		rel, ok := a.acquire(ctx, "small", 1, 0)
		require.True(t, ok)
		defer rel()
	}
	r1()
	r2()
}

// TestAdmissionTimesOut: a request not admitted in time is refused and
// leaves no trace in the queue.
func TestAdmissionTimesOut(t *testing.T) {
	a := &admission{capacity: 1, clients: map[string]*admitClient{}}
	rel, ok := a.acquire(context.Background(), "a", 1, 0)
	require.True(t, ok)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, ok = a.acquire(ctx, "b", 1, 0)
	require.False(t, ok)
	rel()
	a.mu.Lock()
	defer a.mu.Unlock()
	require.Empty(t, a.clients)
	require.Empty(t, a.ring)
	require.Zero(t, a.used)
}

func TestClientKey(t *testing.T) {
	r, err := http.NewRequest(http.MethodPost, "http://x/", nil)
	require.NoError(t, err)
	r.RemoteAddr = "10.0.0.1:5555"
	require.Equal(t, "10.0.0.1:5555", clientKey(r), "unsigned: the connection")
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID1/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00")
	require.Equal(t, "AKID1@10.0.0.1", clientKey(r))
}

// TestUnsignedBigBodyRefusedUnread: without verification, an unsigned
// call with a body over bodyStep is answered MissingAuthenticationToken
// before its body is read (it never takes budget).
func TestUnsignedBigBodyRefusedUnread(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	stop := make(chan struct{})
	defer close(stop)
	pr, pw := io.Pipe()
	go func() { // sends 64 KiB + 1 and then nothing until the test ends
		_, _ = pw.Write(make([]byte, bodyStep+1))
		<-stop
		pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPost, env.url+"/", pr)
	require.NoError(t, err)
	req.ContentLength = DefaultMaxBodyBytes
	req.Header.Set("X-Amz-Target", targetPrefix+"PutRecords")
	req.Header.Set("Content-Type", contentTypeJSON)
	resp, err := env.hs.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, errMissingAuthToken, resp.Header.Get("X-Amzn-Errortype"))
	require.Zero(t, env.srv.budget.inUse.Load())
}

// TestLargeBodyStepsSkipSmallReserve: the first steps of a large body do
// not draw from the small requests' reserve.
func TestLargeBodyStepsSkipSmallReserve(t *testing.T) {
	b := newMemBudget(64<<20, false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	big := b.newHold(ctx)
	require.True(t, big.grow(56<<20, false)) // all but the reserve
	large := b.newHold(ctx)                  // small is false: a large declared body
	require.False(t, large.grow(bodyCharge*bodyStep, false))
	big.release()
	large.release()
}

// TestAdmissionCloseStopsWake: a bulk request waiting for bulk tokens
// arms a wake-up timer; Server.Close stops it, and no later dispatch arms
// another.
func TestAdmissionCloseStopsWake(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	a := env.srv.admit
	a.mu.Lock()
	now := time.Now()
	a.rate, a.tokens = bulkRateMin, -1000*bulkRateMin // refilled in about 1000 s
	a.refilled, a.checked, a.raised = now, now, now
	a.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() {
		_, ok := a.acquireWithin(ctx, "bulk", 2, 2*admitUnit, time.Hour)
		done <- ok
	}()
	var wake *time.Timer
	waitFor(t, "the wake-up timer", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		wake = a.wake
		return wake != nil
	})
	env.srv.Close()
	a.mu.Lock()
	require.Nil(t, a.wake)
	require.False(t, wake.Stop(), "Close stopped the timer")
	a.dispatch() // the request still starves: no new timer
	require.Nil(t, a.wake)
	a.mu.Unlock()
	cancel()
	require.False(t, <-done)
}

// TestCloseStopsPendingTimer: a stream change scheduled after Close (a
// call racing it) arms no timer that outlives the server.
func TestCloseStopsPendingTimer(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	require.NoError(t, env.db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
	require.Nil(t, env.srv.schedule("s", pendingChange{Op: "scale", Target: 2, DueMs: time.Now().Add(time.Hour).UnixMilli()}))
	env.srv.pending.mu.Lock()
	first := env.srv.pending.timer
	env.srv.pending.mu.Unlock()
	require.NotNil(t, first)
	env.srv.Close()
	require.False(t, first.Stop(), "Close stopped the timer")
	require.Nil(t, env.srv.schedule("s", pendingChange{Op: "scale", Target: 2, DueMs: time.Now().Add(time.Hour).UnixMilli()}))
	env.srv.pending.mu.Lock()
	defer env.srv.pending.mu.Unlock()
	require.Nil(t, env.srv.pending.timer)
}
