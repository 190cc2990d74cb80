package command

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

func TestServe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		code int
		errs []string
	}{
		{"remote address without auth", []string{"serve", "--addr", "0.0.0.0:0"}, ExitFailure, []string{"refusing to listen on non-loopback address"}},
		{"bad profile", []string{"serve", "--profile", "huge"}, ExitUsage, []string{`--profile "huge"`}},
		{"access key without secret", []string{"serve", "--addr", "127.0.0.1:0", "--access-key", "AKID"}, ExitFailure, []string{"AccessKey and SecretKey must be set together"}},
		{"extra argument", []string{"serve", "now"}, ExitUsage, []string{`unexpected argument "now"`}},
		{"cpu profile in a missing directory", []string{"serve", "--addr", "127.0.0.1:0", "--cpu-profile", "/nonexistent-dir/cpu.prof"}, ExitFailure, []string{"--cpu-profile", "no such file or directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			run(t, t.TempDir(), tc.args...).check(t, tc.code, nil, tc.errs)
		})
	}
}

var servingOn = regexp.MustCompile(`on (http://127\.0\.0\.1:\d+) `)

// TestServeAndEndpoint runs kvstream serve in this process, talks to it
// with --endpoint, checks that the directory is reported busy meanwhile,
// and stops it with the equivalent of Ctrl-C.
func TestServeAndEndpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cmd := NewRootCommand()
	var out, errb syncBuffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	done := make(chan int, 1)
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	go func() {
		done <- Execute(ctx, cmd, []string{"--data", dir, "serve", "--addr", "127.0.0.1:0", "--cpu-profile", prof})
	}()
	var url string
	require.Eventually(t, func() bool {
		m := servingOn.FindStringSubmatch(out.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	}, testHangGuard, 5*time.Millisecond, "serve never said where it listens: %q %q", out.String(), errb.String())

	mustRun(t, "", "streams", "create", "s", "--endpoint", url)
	mustRun(t, "", "put", "s", "one", "two", "--key", "k", "--endpoint", url)
	require.Equal(t, "one\ntwo\n", mustRun(t, "", "get", "s", "--endpoint", url))
	// Commands on the directory itself go through its socket (socket.go),
	// except a second server, which needs the directory to itself.
	require.Equal(t, "one\ntwo\n", mustRun(t, dir, "get", "s"))
	run(t, dir, "serve", "--addr", "127.0.0.1:0").check(t, ExitFailure, nil, []string{"is in use by another process", "needs the directory to itself"})

	cancel()
	select {
	case code := <-done:
		require.Equal(t, ExitOK, code, "stderr: %s", errb.String())
	case <-time.After(testHangGuard):
		t.Fatal("serve did not stop")
	}
	require.Contains(t, out.String(), "Stopped;")
	require.True(t, strings.Contains(out.String(), "no authentication"))
	// --cpu-profile wrote the run's profile (gzip'd protobuf) on stopping.
	b, err := os.ReadFile(prof)
	require.NoError(t, err)
	require.True(t, len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b, "not a pprof profile: %q", b[:min(len(b), 16)])
	// The engine was closed: the records are there for a local read.
	require.Equal(t, "one\ntwo\n", mustRun(t, dir, "get", "s"))
	db, err := engine.Open(dir, nil)
	require.NoError(t, err)
	require.NoError(t, db.Close())
}
