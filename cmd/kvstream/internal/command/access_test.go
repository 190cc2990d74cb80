package command

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestServeBindsBeforeCreating: a serve that cannot bind its port leaves
// no data directory behind.
func TestServeBindsBeforeCreating(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	dir := filepath.Join(t.TempDir(), "data")
	run(t, dir, "serve", "--addr", ln.Addr().String()).check(t, ExitFailure, nil, []string{"listen on " + ln.Addr().String()})
	require.NoDirExists(t, dir)
}

// TestCommandsWithoutDataDir: only the commands that may create a data
// directory do; reads and writes into an existing directory say there is
// none and create nothing.
func TestCommandsWithoutDataDir(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"streams", "describe", "s"},
		{"streams", "delete", "s"},
		{"streams", "retention", "s", "48h"},
		{"streams", "scale", "s", "2"},
		{"streams", "split", "s", "0"},
		{"streams", "merge", "s", "0", "1"},
		{"get", "s"},
		{"get", "s", "--consumer", "c"},
		{"put", "s", "x"},
		{"forward", "--stream", "s", "--to", "http://127.0.0.1:1"},
	} {
		t.Run(args[0]+" "+args[1], func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "data")
			run(t, dir, args...).check(t, ExitFailure, nil, []string{"no data directory at " + dir})
			require.NoDirExists(t, dir)
		})
	}
	dir := filepath.Join(t.TempDir(), "data")
	require.Equal(t, "", mustRun(t, dir, "streams", "list"))
	require.NoDirExists(t, dir)
}
