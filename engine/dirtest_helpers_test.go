package engine_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// dirNames lists a directory's entries (nil if it does not exist).
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// copyDir copies a flat directory (a data directory has no
// subdirectories kvstream reads) to a new temporary one.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	es, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range es {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644))
	}
	return dst
}

// holdEnv makes the test binary a child that holds a data directory (see
// TestHoldDirChild).
const holdEnv = "KVSTREAM_TEST_HOLD_DIR"

// TestHoldDirChild is the child side of holdDirInChild: it opens the
// directory in $KVSTREAM_TEST_HOLD_DIR ("ro:" prefix: read-only), says
// "R" on fd 3 and keeps it open until its stdin closes.
func TestHoldDirChild(t *testing.T) {
	arg := os.Getenv(holdEnv)
	if arg == "" {
		t.Skip("child process of the lock tests")
	}
	dir, ro := strings.CutPrefix(arg, "ro:")
	db, err := engine.Open(dir, &engine.Options{ReadOnly: ro})
	out := os.NewFile(3, "ready")
	if err != nil {
		fmt.Fprintf(out, "E %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(out, "R\n")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = db.Close()
	os.Exit(0)
}

// holdDirInChild starts a child process holding dir open (read-only if
// ro) and returns its pid; the child exits when the test ends.
func holdDirInChild(t *testing.T, dir string, ro bool) int {
	t.Helper()
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	defer pr.Close()
	arg := dir
	if ro {
		arg = "ro:" + dir
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldDirChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), holdEnv+"="+arg)
	cmd.ExtraFiles = []*os.File{pw}
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	_ = pw.Close()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	l, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "R\n", l, "child failed to open %s", dir)
	return cmd.Process.Pid
}

// itoa64 formats a counter.
func itoa64(n uint64) string { return strconv.FormatUint(n, 10) }
