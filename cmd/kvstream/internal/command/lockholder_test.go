package command

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// holdEnv makes the test binary, started by TestInUseNamesHolder, hold
// the data directory it names until its stdin closes.
const holdEnv = "KVSTREAM_TEST_HOLD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(holdEnv); dir != "" {
		db, err := engine.Open(dir, nil)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("holding")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the test closes stdin
		_ = db.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestInUseNamesHolder: when another process holds the data directory,
// the error names it (its pid, and on Linux its command line).
func TestInUseNamesHolder(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("fcntl locks")
	}
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	mustRun(t, dir, "streams", "create", "s")
	holder := exec.Command(os.Args[0], "-test.run=^$")
	holder.Env = append(os.Environ(), holdEnv+"="+dir)
	stdin, err := holder.StdinPipe()
	require.NoError(t, err)
	stdout, err := holder.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, holder.Start())
	defer func() {
		_ = stdin.Close()
		require.NoError(t, holder.Wait())
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "holding\n", line)

	want := []string{"data directory " + dir + " is in use by process " + strconv.Itoa(holder.Process.Pid)}
	if runtime.GOOS == "linux" {
		want = append(want, filepath.Base(os.Args[0])+" -test.run=^$", "stop that one first")
	}
	run(t, dir, "streams", "list").check(t, ExitFailure, nil, want)
	run(t, dir, "put", "s", "x").check(t, ExitFailure, nil, want)
}

func TestServeAddr(t *testing.T) {
	require.Equal(t, "127.0.0.1:4567", serveAddr("kvstream serve"))
	require.Equal(t, "127.0.0.1:9000", serveAddr("kvstream --data d serve --addr 127.0.0.1:9000"))
	require.Equal(t, "[::1]:80", serveAddr("kvstream serve --addr=[::1]:80 --no-sync"))
}
