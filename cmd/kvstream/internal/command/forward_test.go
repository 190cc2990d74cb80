package command

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/server"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
)

// forwardRoot returns the kvstream command tree with forward in it: the
// real one once root.go registers forward, else a root with the same
// global flags and error handling around newForwardCommand.
func forwardRoot() *cobra.Command {
	root := NewRootCommand()
	for _, c := range root.Commands() {
		if c.Name() == "forward" {
			return root
		}
	}
	ro := &rootOptions{}
	cmd := &cobra.Command{Use: "kvstream", SilenceErrors: true, SilenceUsage: true}
	ro.AddFlags(cmd.PersistentFlags())
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	cmd.AddCommand(newForwardCommand(ro))
	markRuns(cmd)
	return cmd
}

// forwardOutput is a bytes.Buffer safe for the forwarder's logger and the
// command writing at once.
type forwardOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *forwardOutput) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *forwardOutput) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runForward(ctx context.Context, dir string, args ...string) result {
	return runForwardErr(ctx, &forwardOutput{}, dir, args...)
}

// runForwardErr is runForward writing stderr to errb, which a test may
// read while forward runs.
func runForwardErr(ctx context.Context, errb *forwardOutput, dir string, args ...string) result {
	cmd := forwardRoot()
	var out forwardOutput
	cmd.SetOut(&out)
	cmd.SetErr(errb)
	args = append([]string{"--data", dir, "forward"}, args...)
	code := Execute(ctx, cmd, args)
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// forwardPutLocal writes n records "i" (from first) to stream in dir.
func forwardPutLocal(t *testing.T, dir, stream string, shards, first, n int) {
	t.Helper()
	db, err := engine.Open(dir, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	if shards > 0 {
		require.NoError(t, db.CreateStream(stream, engine.StreamConfig{ShardCount: shards}))
	}
	var entries []engine.Entry
	for i := first; i < first+n; i++ {
		entries = append(entries, engine.Entry{PartitionKey: fmt.Sprint("k", i%7), Data: fmt.Append(nil, i)})
		if len(entries) == 500 || i == first+n-1 {
			_, err := db.PutRecords(context.Background(), stream, entries)
			require.NoError(t, err)
			entries = entries[:0]
		}
	}
}

func TestForwardCommand(t *testing.T) {
	// The upstream: a kvstream server with stream "central".
	updb, err := engine.Open(t.TempDir(), &engine.Options{NoSync: true})
	require.NoError(t, err)
	require.NoError(t, updb.CreateStream("central", engine.StreamConfig{ShardCount: 1}))
	srv, err := server.New(updb, server.Config{})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.Close()
		require.NoError(t, updb.Close())
	})
	count := func() int {
		it, err := updb.Iterate("central", 0, engine.TrimHorizon())
		require.NoError(t, err)
		defer it.Close()
		n := 0
		for it.Next() {
			n++
		}
		return n
	}

	dir := filepath.Join(t.TempDir(), "data")
	forwardPutLocal(t, dir, "events", 2, 0, 2000)
	// forward runs until Ctrl-C; cancel it once everything is upstream
	// and a progress line says every record is acknowledged.
	forwardAll := func(want int) result {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan result, 1)
		var errb forwardOutput
		go func() {
			done <- runForwardErr(ctx, &errb, dir, "--stream", "events", "--to", hs.URL, "--to-stream", "central",
				"--linger", "1ms", "--stats-interval", "5ms")
		}()
		// Polled: the upstream's count and forward's output have no event.
		deadline := time.Now().Add(testHangGuard)
		poll := func(what string, cond func() bool) {
			for !cond() {
				require.True(t, time.Now().Before(deadline), "waiting for %s; stderr:\n%s", what, errb.String())
				select {
				case r := <-done:
					t.Fatalf("forward ended early: %+v", r)
				case <-time.After(2 * time.Millisecond):
				}
			}
		}
		poll("the upstream to hold every record", func() bool { return count() >= want })
		require.Equal(t, want, count())
		seen := len(errb.String())
		caughtUp := regexp.MustCompile(`(?m)^progress: .*; caught up$`)
		poll("a progress line saying every record is acknowledged", func() bool { return caughtUp.MatchString(errb.String()[seen:]) })
		cancel()
		return <-done
	}
	r := forwardAll(2000)
	t.Logf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	r.check(t, ExitOK, []string{"forwarded: 2000 records", "caught up"}, []string{"forwarding events in", "to central at " + hs.URL, "consumer forward-" + strings.ReplaceAll(strings.TrimPrefix(hs.URL, "http://"), ":", "-") + "-central", "progress:"})

	// A restart resumes after the checkpoints: nothing is sent twice.
	forwardPutLocal(t, dir, "events", 0, 2000, 500)
	r = forwardAll(2500)
	r.check(t, ExitOK, []string{"forwarded: 500 records"}, nil)
	require.Equal(t, 2500, count())
}

func TestForwardCommandErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	forwardPutLocal(t, dir, "events", 1, 0, 1)
	for _, tc := range []struct {
		name string
		dir  string
		args []string
		code int
		err  string
	}{
		{"no stream", dir, []string{"--to", "http://127.0.0.1:1"}, ExitUsage, "--stream is required"},
		{"sequence start", dir, []string{"--stream", "events", "--from", "at:49647060812288014558888668248263847763900017820167045122"}, ExitUsage, "--from must be"},
		{"bad url", dir, []string{"--stream", "events", "--to", "127.0.0.1:4567"}, ExitUsage, "must be a URL"},
		{"big batch", dir, []string{"--stream", "events", "--batch-records", "501"}, ExitUsage, "--batch-records 501"},
		{"bad backoff", dir, []string{"--stream", "events", "--min-backoff", "2s", "--max-backoff", "1s"}, ExitUsage, "--min-backoff"},
		{"argument", dir, []string{"--stream", "events", "extra"}, ExitUsage, "extra"},
		{"no data dir", filepath.Join(t.TempDir(), "none"), []string{"--stream", "events", "--to", "http://127.0.0.1:1"}, ExitFailure, "no data directory"},
		{"unknown stream", dir, []string{"--stream", "nope", "--to", "http://127.0.0.1:1"}, ExitFailure, `stream "nope" not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runForward(t.Context(), tc.dir, tc.args...)
			r.check(t, tc.code, nil, []string{tc.err})
			require.False(t, strings.Contains(r.stderr, "forwarding"), r.stderr)
		})
	}
}

// TestForwardCommandTarget: forward creates a missing upstream stream with
// the local stream's shard count; with --no-create it stops at once with
// exit code 1 and says why.
func TestForwardCommandTarget(t *testing.T) {
	updb, err := engine.Open(t.TempDir(), &engine.Options{NoSync: true})
	require.NoError(t, err)
	srv, err := server.New(updb, server.Config{})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.Close()
		require.NoError(t, updb.Close())
	})
	dir := filepath.Join(t.TempDir(), "data")
	forwardPutLocal(t, dir, "events", 2, 0, 5)

	r := runForward(t.Context(), dir, "--stream", "events", "--to", hs.URL, "--no-create")
	require.Equal(t, ExitFailure, r.code)
	require.Contains(t, r.stdout, "forwarded: 0 records")
	errLine := lines(r.stderr)[len(lines(r.stderr))-1]
	require.Equal(t, "kvstream: upstream stream events does not exist at "+hs.URL+" (ResourceNotFoundException: Stream events under account 000000000000 not found.); without --no-create, forward creates it", errLine)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan result, 1)
	go func() { done <- runForward(ctx, dir, "--stream", "events", "--to", hs.URL, "--linger", "1ms") }()
	for {
		d, err := updb.DescribeStream("events")
		if err == nil && d.Records == 5 {
			require.Equal(t, 2, d.OpenShardCount)
			break
		}
		select {
		case r := <-done:
			t.Fatalf("forward ended early: %+v", r)
		case <-time.After(2 * time.Millisecond):
		}
	}
	cancel()
	r = <-done
	// Cancelled once the upstream holds them all, maybe before the last
	// acknowledgement arrived: the summary may count fewer.
	r.check(t, ExitOK, []string{"forwarded: "}, []string{"created the target stream"})
}
