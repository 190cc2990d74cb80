package command

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

var gotSeq = regexp.MustCompile(`got \{"n":(\d+)\}  seq (\d+)`)

func TestDemo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  []string
		errs []string
		gots int
	}{
		{"five records", []string{"demo", "--records", "5", "--rate", "0"}, ExitOK,
			[]string{"Created stream myStream with 1 shard", "shardId-000000000000 from LATEST", `put {"n":1}`, `put {"n":5}`, "Put 5 records, got 5."}, nil, 5},
		{"paced", []string{"demo", "-n", "3", "--rate", "200"}, ExitOK, []string{"200 records/s", "Put 3 records, got 3."}, nil, 3},
		{"other stream", []string{"demo", "-n", "1", "--stream", "other"}, ExitOK, []string{"Created stream other"}, nil, 1},
		{"negative records", []string{"demo", "--records", "-1"}, ExitUsage, nil, []string{"must not be negative"}, 0},
		{"extra argument", []string{"demo", "now"}, ExitUsage, nil, []string{`unexpected argument "now"`}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, t.TempDir(), tc.args...)
			r.check(t, tc.code, tc.out, tc.errs)
			require.Len(t, gotSeq.FindAllString(r.stdout, -1), tc.gots)
		})
	}
}

// TestDemoRerun checks the walkthrough's point: a second run finds the
// records of the first and its sequence numbers carry on.
func TestDemoRerun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := mustRun(t, dir, "demo", "-n", "4", "--rate", "0")
	second := mustRun(t, dir, "demo", "-n", "2", "--rate", "0")
	require.Contains(t, second, "already holds 4 records from earlier runs")
	a := gotSeq.FindAllStringSubmatch(first, -1)
	b := gotSeq.FindAllStringSubmatch(second, -1)
	require.Len(t, a, 4)
	require.Len(t, b, 2)
	require.Equal(t, []string{"5", "6"}, []string{b[0][1], b[1][1]}, "the integers carry on")
	all := append(a, b...)
	for i := 1; i < len(all); i++ {
		require.True(t, seqLess(t, all[i-1][2], all[i][2]), "sequence numbers increase across runs")
	}
}

// TestDemoInterrupt is Ctrl-C: the demo stops, closes the engine (the
// directory can be opened again) and exits 0.
func TestDemoInterrupt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := runUntil(t, dir, "got {", "demo", "--rate", "50")
	r.check(t, ExitOK, []string{"Press Ctrl-C to stop", "Put "}, nil)
	require.NotEmpty(t, gotSeq.FindAllString(r.stdout, -1))
	db, err := engine.Open(dir, nil)
	require.NoError(t, err, "the demo closed the engine")
	require.NoError(t, db.Close())
}

// TestDemoLocked: a directory held by another DB (a running server) gets
// a one-line error pointing to --endpoint.
func TestDemoLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, err := engine.Open(dir, nil)
	require.NoError(t, err)
	defer db.Close()
	r := run(t, dir, "demo", "-n", "1")
	r.check(t, ExitFailure, nil, []string{"is in use by another process", "needs the directory to itself"})
	require.False(t, strings.Contains(r.stderr, "corruption"))
}

// TestHoldDirHelper is not a test: TestLockedByAnotherProcess runs the
// test binary with KVSTREAM_TEST_HOLD_DIR set, and this opens that
// directory, says "ready" and holds it until stdin closes.
func TestHoldDirHelper(t *testing.T) {
	dir := os.Getenv("KVSTREAM_TEST_HOLD_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	db, err := engine.Open(dir, nil)
	require.NoError(t, err)
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	require.NoError(t, db.Close())
}

// TestLockedByAnotherProcess: a directory held by another process (a
// running server) gets the one-line "in use by process …" error from every
// command that opens it, not a corruption error.
func TestLockedByAnotherProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^TestHoldDirHelper$")
	child.Env = append(os.Environ(), "KVSTREAM_TEST_HOLD_DIR="+dir)
	stdin, err := child.StdinPipe()
	require.NoError(t, err)
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, child.Start())
	defer func() {
		_ = stdin.Close()
		_ = child.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line)

	// The message names the holder: its pid, and on Linux its command line;
	// and says that it serves no socket (it is a program using the
	// engine), or, for a command that needs the directory itself, that.
	holder := "data directory " + dir + " is in use by process " + strconv.Itoa(child.Process.Pid)
	if runtime.GOOS == "linux" {
		holder += " (" + filepath.Base(os.Args[0]) + " -test.run=^TestHoldDirHelper$)"
	}
	noSocket := "which does not share it (no socket at " + filepath.Join(dir, socketName) + "); stop that process first"
	itself := "and this command needs the directory to itself; stop that process first"
	for _, tc := range []struct {
		args []string
		why  string
	}{
		{[]string{"demo", "-n", "1"}, itself},
		{[]string{"put", "s", "x"}, noSocket},
		{[]string{"get", "s", "--follow"}, noSocket},
		{[]string{"streams", "list"}, noSocket},
		{[]string{"serve", "--addr", "127.0.0.1:0"}, itself},
		{[]string{"forward", "--stream", "s", "--to", "http://127.0.0.1:1"}, itself},
		{[]string{"check"}, itself},
	} {
		r := run(t, dir, tc.args...)
		r.check(t, ExitFailure, nil, []string{holder, tc.why})
		require.NotContains(t, r.stderr, "corruption", "kvstream %v", tc.args)
	}

	// A socket file a dead holder left, which nothing answers.
	ln, err := net.Listen("unix", filepath.Join(dir, socketName))
	require.NoError(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, ln.Close())
	run(t, dir, "put", "s", "x").check(t, ExitFailure, nil, []string{holder, "which does not share it: nothing answers on " + filepath.Join(dir, socketName)})
}
