package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestREADMEQuickStart checks that main.go is the README's quick-start
// program, byte for byte, and that running it in a fresh directory prints
// the output the README shows. The program is compiled into this test's
// own binary (no separate go build or module download), so the test
// needs nothing beyond what go test ./... already built.
func TestREADMEQuickStart(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "README.md"))
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)## Quick start \\(Go\\)\n\n```go\n(.*?)```\n\nOn a fresh directory it prints:\n\n```\n(.*?)```").FindSubmatch(readme)
	require.NotNil(t, m, "README.md has a quick start: a go block followed by its output")
	src, err := os.ReadFile("main.go")
	require.NoError(t, err)
	require.Equal(t, string(m[1]), string(src), "cmd/kvstream/internal/quickstart/main.go must be the README's quick start, byte for byte")

	dir := t.TempDir()
	t.Chdir(dir)
	out := captureStdout(t, main)
	require.Equal(t, strings.TrimSpace(string(m[2])), strings.TrimSpace(out))
	require.DirExists(t, filepath.Join(dir, "kvstream-data"))
}

// captureStdout runs f with os.Stdout redirected and returns what it wrote.
func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	saved := os.Stdout
	os.Stdout = w
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	func() {
		defer func() { os.Stdout = saved }()
		f()
	}()
	require.NoError(t, w.Close())
	out := <-done
	require.NoError(t, r.Close())
	return string(out)
}

// TestCIRunsREADMECommands: .ci/run runs the README's test command exactly
// as the README writes it (and the -race run besides), so CI is green only
// if what a new user types is.
func TestCIRunsREADMECommands(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "README.md"))
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)^# kvstream\n\n```sh\n(.*?)```").FindSubmatch(readme)
	require.NotNil(t, m, "README.md starts with its commands")
	ci, err := os.ReadFile(filepath.Join("..", "..", "..", "..", ".ci", "run"))
	require.NoError(t, err)
	ciLines := strings.Split(string(ci), "\n")
	var tests int
	for _, cmd := range strings.Split(strings.TrimSpace(string(m[1])), "\n") {
		if strings.HasPrefix(cmd, "go test") {
			tests++
			require.Contains(t, ciLines, cmd, ".ci/run runs the README's %q as written", cmd)
		}
	}
	require.Equal(t, 1, tests)
	require.Contains(t, ciLines, "go test -race ./...")
	require.Contains(t, ciLines, "if ! go mod tidy -diff; then")
}
