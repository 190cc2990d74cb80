//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package command

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// seqPattern matches a Kinesis sequence number in command output.
var seqPattern = regexp.MustCompile(`\b\d{30,}\b`)

// holder runs kvstream args on dir in this process until stop is called,
// and waits until the directory's socket answers.
type holder struct {
	out    syncBuffer
	errb   syncBuffer
	cancel context.CancelFunc
	done   chan int
}

func startHolder(t *testing.T, dir string, args ...string) *holder {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	h := &holder{cancel: cancel, done: make(chan int, 1)}
	cmd := NewRootCommand()
	cmd.SetOut(&h.out)
	cmd.SetErr(&h.errb)
	cmd.SetIn(strings.NewReader(""))
	go func() { h.done <- Execute(ctx, cmd, append([]string{"--data", dir}, args...)) }()
	waitSocket(t, dir, h.done)
	t.Cleanup(func() { h.stop(t) })
	return h
}

// waitSocket waits until dir's socket answers (or exited reports the
// holder ended first).
func waitSocket(t *testing.T, dir string, exited <-chan int) {
	t.Helper()
	require.Eventually(t, func() bool {
		select {
		case code := <-exited:
			t.Fatalf("the holder exited with %d before serving its socket", code)
		default:
		}
		_, err := probeSocket(t.Context(), dir)
		return err == nil
	}, testHangGuard, time.Millisecond)
}

// stop cancels the holder (Ctrl-C) and returns its exit code.
func (h *holder) stop(t *testing.T) int {
	t.Helper()
	h.cancel()
	select {
	case code, ok := <-h.done:
		if ok {
			close(h.done)
		}
		return code
	case <-time.After(testHangGuard):
		t.Fatal("the holder did not stop")
	}
	return 0
}

// TestSocketSameOutput: while get --follow holds the data directory,
// other commands reach it through its socket and print what they print
// with the directory to themselves (errors included); what put writes is
// printed by the follower; the socket is gone once the follower exits.
func TestSocketSameOutput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRun(t, dir, "streams", "create", "s", "--shards", "2", "--max-bytes", "1MiB")
	mustRun(t, dir, "put", "s", "--key", "k0", "zero")

	h := startHolder(t, dir, "get", "s", "--follow")
	require.FileExists(t, filepath.Join(dir, socketName))
	fi, err := os.Stat(filepath.Join(dir, socketName))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "only the owner may connect")

	// Writes through the socket, printed by the follower.
	putLocked := run(t, dir, "put", "s", "--key", "k1", "one", "two")
	putLocked.check(t, ExitOK, nil, nil)
	require.Eventually(t, func() bool { return strings.Contains(h.out.String(), "two\n") }, testHangGuard, time.Millisecond)
	mustRun(t, dir, "streams", "create", "t", "--shards", "1", "--partitioner", "md5", "--retention", "90m")
	mustRun(t, dir, "streams", "split", "t", "0")
	mustRun(t, dir, "streams", "max-bytes", "t", "2MiB", "--discard", "new")

	reads := [][]string{
		{"streams", "list"},
		{"streams", "describe", "s"},
		{"streams", "describe", "t", "--json"},
		{"get", "s"},
		{"get", "s", "--format", "json"},
		{"get", "s", "--shard", "1", "--limit", "1"},
		{"get", "s", "--shard", "7"},
		{"get", "nosuch"},
		{"streams", "create", "s"},
		{"streams", "describe", "nosuch"},
		{"streams", "delete", "nosuch"},
		{"streams", "merge", "s", "0", "7"},
	}
	locked := make([]result, len(reads))
	for i, args := range reads {
		locked[i] = run(t, dir, args...)
	}
	require.Equal(t, ExitOK, h.stop(t))
	require.Equal(t, "one\ntwo\nzero\n", sortedLines(h.out.String()), "the follower printed every record")
	require.NoFileExists(t, filepath.Join(dir, socketName), "removed on exit")

	for i, args := range reads {
		unlocked := run(t, dir, args...)
		require.Equal(t, unlocked, locked[i], "kvstream %v through the socket and on the directory itself", args)
	}
	putUnlocked := run(t, dir, "put", "s", "--key", "k1", "three", "four")
	require.Equal(t, seqPattern.ReplaceAllString(putUnlocked.stdout, "SEQ"), seqPattern.ReplaceAllString(putLocked.stdout, "SEQ"))
	require.NoFileExists(t, filepath.Join(dir, socketName), "a short command removes its socket too")
}

// sortedLines returns s's lines sorted (records of two shards interleave).
func sortedLines(s string) string {
	l := lines(s)
	for i := range l {
		for j := i + 1; j < len(l); j++ {
			if l[j] < l[i] {
				l[i], l[j] = l[j], l[i]
			}
		}
	}
	return strings.Join(l, "\n") + "\n"
}

// TestKvstreamHelper is not a test: the socket tests run the test binary
// with KVSTREAM_TEST_MAIN set, and this runs kvstream with the arguments
// after "--", as the real command does.
func TestKvstreamHelper(t *testing.T) {
	if os.Getenv("KVSTREAM_TEST_MAIN") == "" {
		t.Skip("helper process only")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	if os.Getenv("KVSTREAM_TEST_HANG_AT_BIND") != "" {
		// Stop between binding the socket and renaming it into place,
		// for the parent to kill (TestSocketStaleDirProcess).
		socketBound = func(path string) {
			fmt.Println("bound " + path)
			select {}
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	go func() { // stdin closing is Ctrl-C
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	os.Exit(Execute(ctx, NewRootCommand(), args))
}

// kvstreamProcess starts kvstream args in a process of its own and
// returns it once its first line of output is there.
func kvstreamProcess(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	return kvstreamProcessEnv(t, nil, args...)
}

// kvstreamProcessEnv is kvstreamProcess with env added to the process's
// environment.
func kvstreamProcessEnv(t *testing.T, env []string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	child := exec.Command(os.Args[0], append([]string{"-test.run=^TestKvstreamHelper$", "--"}, args...)...)
	child.Env = append(append(os.Environ(), "KVSTREAM_TEST_MAIN=1"), env...)
	stdin, err := child.StdinPipe()
	require.NoError(t, err)
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	child.Stderr = os.Stderr
	require.NoError(t, child.Start())
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = child.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	return child, line
}

// TestSocketServeProcess: a kvstream serve in another process, verifying
// SigV4, shares its directory through the socket (which skips the
// signature check: its file mode is the access control); killed with
// SIGKILL, it leaves a stale socket that the next holder replaces, and a
// command finding it then opens the directory itself.
func TestSocketServeProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRun(t, dir, "streams", "create", "s")
	child, line := kvstreamProcess(t, "--data", dir, "serve", "--addr", "127.0.0.1:0", "--access-key", "AK", "--secret-key", "SK")
	require.Contains(t, line, "Serving the Kinesis API for "+dir)
	// The socket is there before serve says it is ready.
	_, err := probeSocket(t.Context(), dir)
	require.NoError(t, err)

	run(t, dir, "put", "s", "--key", "k", "one").check(t, ExitOK, []string{"shardId-000000000000 "}, nil)
	require.Equal(t, "one\n", mustRun(t, dir, "get", "s"))
	require.Equal(t, "s\n", mustRun(t, dir, "streams", "list"))
	// Commands that need the directory itself name the server.
	r := run(t, dir, "demo", "-n", "1")
	r.check(t, ExitFailure, nil, []string{"in use by process " + strconv.Itoa(child.Process.Pid), "needs the directory to itself", "--endpoint URL"})

	require.NoError(t, child.Process.Kill())
	_ = child.Wait()
	require.FileExists(t, filepath.Join(dir, socketName), "SIGKILL leaves the socket behind")
	_, err = probeSocket(t.Context(), dir)
	require.ErrorContains(t, err, "nothing answers")

	// The next holder replaces it, and answers.
	h := startHolder(t, dir, "get", "s", "--follow")
	run(t, dir, "put", "s", "--key", "k", "two").check(t, ExitOK, nil, nil)
	require.Eventually(t, func() bool { return h.out.String() == "one\ntwo\n" }, testHangGuard, time.Millisecond)
	require.Equal(t, ExitOK, h.stop(t))
	require.NoFileExists(t, filepath.Join(dir, socketName))
}

// TestSocketStaleDirProcess: a holder killed between binding its socket
// and renaming it into place leaves the private directory it bound it in;
// check ignores it, and the next holder removes it.
func TestSocketStaleDirProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRun(t, dir, "streams", "create", "s")
	child, line := kvstreamProcessEnv(t, []string{"KVSTREAM_TEST_HANG_AT_BIND=1"}, "--data", dir, "put", "s", "--key", "k", "x")
	bound, ok := strings.CutPrefix(strings.TrimSpace(line), "bound ")
	require.True(t, ok, line)
	require.NoError(t, child.Process.Kill())
	_ = child.Wait()
	fi, err := os.Lstat(bound)
	require.NoError(t, err, "SIGKILL leaves the bound socket in its private directory")
	require.NotZero(t, fi.Mode()&fs.ModeSocket)
	require.Equal(t, dir, filepath.Dir(filepath.Dir(bound)))

	mustRun(t, dir, "check")
	mustRun(t, dir, "put", "s", "--key", "k", "y") // holds the directory, so serves a socket
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		require.False(t, strings.HasPrefix(e.Name(), "."), "%s is left in the data directory", e.Name())
	}
	require.Equal(t, "y\n", mustRun(t, dir, "get", "s"))
}

// TestSocketFollowProcess: get --follow in another process prints what
// put in this one writes.
func TestSocketFollowProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRun(t, dir, "streams", "create", "s")
	mustRun(t, dir, "put", "s", "--key", "k", "first")
	_, line := kvstreamProcess(t, "--data", dir, "get", "s", "--follow")
	require.Equal(t, "first\n", line) // the follower holds the directory now
	waitSocket(t, dir, nil)
	run(t, dir, "put", "s", "--key", "k", "second").check(t, ExitOK, []string{"shardId-000000000000 "}, nil)
	require.Equal(t, "first\nsecond\n", mustRun(t, dir, "get", "s"))
}

// TestSocketLongPath: a data directory whose socket path is too long for
// a socket address has no socket; a command finding it locked says so.
func TestSocketLongPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for len(dir) <= maxSocketPath+len("/../..")*20 {
		dir = filepath.Join(dir, strings.Repeat("d", 40))
	}
	_, err := socketPath(dir)
	require.ErrorContains(t, err, "longer than the "+strconv.Itoa(maxSocketPath)+" bytes")
	mustRun(t, dir, "streams", "create", "s")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan result, 1)
	in, w := io.Pipe()
	defer w.Close()
	go func() { done <- runIn(ctx, t, dir, in, "put", "s", "--key", "k") }()
	_, err = io.WriteString(w, "x\n") // put holds the directory once it reads this
	require.NoError(t, err)
	r := run(t, dir, "streams", "list")
	cancel()
	<-done
	r.check(t, ExitFailure, nil, []string{"is in use by", "longer than the", "use a shorter --data path"})
}

// TestSocketPathRelative: a long absolute path is reached relative to the
// working directory when that is short enough.
func TestSocketPathRelative(t *testing.T) {
	wd, err := os.Getwd()
	require.NoError(t, err)
	name := strings.Repeat("a", maxSocketPath-len(socketName)-1)
	p, err := socketPath(filepath.Join(wd, name))
	require.NoError(t, err)
	require.Equal(t, filepath.Join(name, socketName), p)
	p, err = socketPath("@x")
	require.NoError(t, err)
	require.Equal(t, "./@x/"+socketName, p, "not a Linux abstract socket")
}
