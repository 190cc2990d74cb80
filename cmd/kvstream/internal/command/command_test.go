package command

import (
	"bytes"
	"context"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// result is one in-process run of the kvstream command.
type result struct {
	stdout, stderr string
	code           int
}

// runCtx runs kvstream with args on data directory dir (if not empty) in
// this process, with stdin as input.
func runCtx(ctx context.Context, t *testing.T, dir, stdin string, args ...string) result {
	t.Helper()
	cmd := NewRootCommand()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetIn(strings.NewReader(stdin))
	if dir != "" {
		args = append([]string{"--data", dir}, args...)
	}
	code := Execute(ctx, cmd, args)
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// runUntil runs kvstream like runCtx, waits until its stdout holds want,
// then cancels its context, as Ctrl-C would, and returns the result.
func runUntil(t *testing.T, dir, want string, args ...string) result {
	t.Helper()
	return runUntilIn(t, dir, strings.NewReader(""), want, args...)
}

// runUntilIn is runUntil with stdin read from in.
func runUntilIn(t *testing.T, dir string, in io.Reader, want string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cmd := NewRootCommand()
	var out, errb syncBuffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetIn(in)
	done := make(chan int, 1)
	go func() { done <- Execute(ctx, cmd, append([]string{"--data", dir}, args...)) }()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), want) }, testHangGuard, time.Millisecond,
		"waiting for %q; stdout %q, stderr %q", want, out.String(), errb.String())
	cancel()
	select {
	case code := <-done:
		return result{stdout: out.String(), stderr: errb.String(), code: code}
	case <-time.After(testHangGuard):
		t.Fatalf("kvstream %v did not stop after cancel", args)
	}
	return result{}
}

func run(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return runCtx(t.Context(), t, dir, "", args...)
}

// mustRun runs a setup command and fails the test unless it succeeds.
func mustRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	r := run(t, dir, args...)
	require.Equal(t, ExitOK, r.code, "kvstream %v: %s", args, r.stderr)
	return r.stdout
}

// check asserts a run's exit code, that stdout holds every string in out
// and stderr every string in errs; an error is always exactly one line.
func (r result) check(t *testing.T, code int, out, errs []string) {
	t.Helper()
	require.Equal(t, code, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	for _, s := range out {
		require.Contains(t, r.stdout, s)
	}
	for _, s := range errs {
		require.Contains(t, r.stderr, s)
	}
	if code != ExitOK {
		require.Equal(t, 1, strings.Count(r.stderr, "\n"), "errors are one line: %q", r.stderr)
		require.True(t, strings.HasPrefix(r.stderr, "kvstream: "), "stderr %q", r.stderr)
	}
}

// seqLess compares two decimal sequence numbers as big integers.
func seqLess(t *testing.T, a, b string) bool {
	t.Helper()
	x, ok1 := new(big.Int).SetString(a, 10)
	y, ok2 := new(big.Int).SetString(b, 10)
	require.True(t, ok1 && ok2, "sequence numbers %q %q", a, b)
	return x.Cmp(y) < 0
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestRoot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  []string
		errs []string
	}{
		{"no args prints help", nil, ExitOK, []string{"Usage:", "demo", "serve", "streams"}, nil},
		{"help flag", []string{"--help"}, ExitOK, []string{"Usage:"}, nil},
		{"help command", []string{"help", "get"}, ExitOK, []string{"--follow", "--from"}, nil},
		{"unknown command", []string{"dmeo"}, ExitUsage, nil, []string{`unknown command "dmeo"`, "did you mean demo"}},
		{"unknown flag", []string{"put", "s", "--nope"}, ExitUsage, nil, []string{"unknown flag: --nope", "kvstream put --help"}},
		{"bad global flag", []string{"--data"}, ExitUsage, nil, []string{"flag needs an argument"}},
		{"streams without subcommand", []string{"streams"}, ExitOK, []string{"Available Commands:"}, nil},
		{"unknown streams subcommand", []string{"streams", "lst"}, ExitUsage, nil, []string{`unknown streams subcommand "lst"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			run(t, t.TempDir(), tc.args...).check(t, tc.code, tc.out, tc.errs)
		})
	}
}

// testHangGuard bounds waits for a command to make progress: only a hang
// reaches it.
const testHangGuard = 2 * time.Minute
