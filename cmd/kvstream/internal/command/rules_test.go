package command

import (
	"context"
	"io"
	"regexp"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/kvstream/kvstream/bench"
	"github.com/stretchr/testify/require"
)

// TestCtrlC: Ctrl-C (the context ending) stops every command with exit
// code 0 — put reading stdin, bench mid-workload, get --follow, demo.
func TestCtrlC(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRun(t, dir, "streams", "create", "s")

	t.Run("put from stdin", func(t *testing.T) {
		r, w := io.Pipe()
		defer w.Close()
		go func() { _, _ = io.WriteString(w, "one\n") }() // then stdin stays open
		res := runUntilIn(t, dir, r, "shardId-", "put", "s", "--key", "k")
		res.check(t, ExitOK, []string{"shardId-000000000000 "}, nil)
		require.Empty(t, res.stderr)
	})
	t.Run("put -q from stdin", func(t *testing.T) {
		r, w := io.Pipe()
		defer w.Close()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan result, 1)
		go func() { done <- runIn(ctx, t, dir, r, "put", "s", "--key", "k", "-q") }()
		_, err := io.WriteString(w, "two\n") // returns once put has read it
		require.NoError(t, err)
		cancel()
		res := <-done
		res.check(t, ExitOK, nil, nil)
		require.Regexp(t, `^put [01] records? to s \(interrupted\)\n$`, res.stdout)
	})
	t.Run("get --follow", func(t *testing.T) {
		runUntil(t, dir, "one", "get", "s", "--follow").check(t, ExitOK, nil, nil)
	})
	t.Run("bench", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel() // interrupted before the first workload finishes
		res := runCtx(ctx, t, "", "", "bench", "putrecords", "--records", "100000", "--no-sync", "--profile", "small", "--dir", t.TempDir())
		res.check(t, ExitOK, nil, []string{"interrupted during putrecords"})
	})
}

// runIn runs kvstream like runCtx with stdin read from in.
func runIn(ctx context.Context, t *testing.T, dir string, in io.Reader, args ...string) result {
	t.Helper()
	cmd := NewRootCommand()
	var out, errb syncBuffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetIn(in)
	code := Execute(ctx, cmd, append([]string{"--data", dir}, args...))
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	line := regexp.MustCompile(`^kvstream \S+( \([^)]*\))? go\S+ \S+/\S+\n$`)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out := mustRun(t, "", args...)
		require.Regexp(t, line, out, "kvstream %v", args)
		require.Contains(t, out, runtime.GOOS+"/"+runtime.GOARCH)
	}
	require.Equal(t, mustRun(t, "", "version"), mustRun(t, "", "--version"))

	bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Path: "github.com/kvstream/kvstream", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-11-25T22:51:48Z"},
			{Key: "vcs.modified", Value: "true"},
		}}
	require.Equal(t, "kvstream v1.2.3 (revision 0123456789ab, 2026-11-25T22:51:48Z, modified) go1.99.1 linux/arm",
		formatVersion(bi, "go1.0", "linux/arm"))
	require.Equal(t, "kvstream (devel) go1.0 windows/amd64", formatVersion(nil, "go1.0", "windows/amd64"))
	require.Equal(t, "kvstream (devel) go1.0 darwin/arm64", formatVersion(&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "go1.0", "darwin/arm64"))
}

// TestBenchRateNote: a tail run that fell short of --rate says so.
func TestBenchRateNote(t *testing.T) {
	t.Parallel()
	o := &benchOptions{rate: 2000}
	res := []bench.Result{
		{Workload: "PutRecords", Engine: bench.Measurement{Records: 10, RecordsPerSec: 5}},
		{Workload: "Tail", Engine: bench.Measurement{Records: 5000, RecordsPerSec: 838}, Ceiling: bench.Measurement{Records: 5000, RecordsPerSec: 1990}},
	}
	notes := o.rateNotes(res)
	require.Len(t, notes, 1)
	require.Contains(t, notes[0], "Tail (engine) reached 838 rec/s, not the requested --rate 2000")
	res[1].Engine.RecordsPerSec = 1999
	require.Empty(t, o.rateNotes(res))
}
