package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestREADMEQuickStart compiles and runs the README's quick-start program
// as a module of its own (replacing kvstream with this tree) and checks
// that it prints what the README says it prints.
func TestREADMEQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a separate program")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	prog := regexp.MustCompile("(?s)## Quick start \\(Go\\)\n\n```go\n(.*?)```\n\nOn a fresh directory it prints:\n\n```\n(.*?)```").FindSubmatch(readme)
	require.NotNil(t, prog, "README.md has a quick start: a go block followed by its output")

	dir := t.TempDir()
	goMod := "module quickstart\n\ngo 1.26\n\nrequire github.com/kvstream/kvstream v0.0.0\n\nreplace github.com/kvstream/kvstream => " + root + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte(goMod), 0o644))
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), prog[1], 0o644))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "run", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "GOPROXY=off")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "go run of the README quick start: %s", stderr.String())
	require.Equal(t, strings.TrimSpace(string(prog[2])), strings.TrimSpace(stdout.String()))
	require.DirExists(t, filepath.Join(dir, "kvstream-data"))
}
