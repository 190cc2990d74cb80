// Package dirtest holds the repository's test helpers for data
// directories: a hash of a directory tree, to check that a call wrote
// nothing (kvstream check, read-only opens, refused opens). Tests only.
package dirtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// ballastPath is the engine's ballast file relative to a data directory.
var ballastPath = filepath.Join(engine.BallastDir, engine.BallastName)

// Hash hashes everything about the tree under dir that a write could
// change: every entry's path (relative to dir), type, mode, size,
// modification time and content. Equal hashes before and after a call
// mean the call wrote nothing (not even an empty LOCK file truncated in
// place). It fails t if the tree cannot be read. The engine's emergency
// ballast (auxiliary/EMERGENCY_BALLAST, up to 1 GiB of zeros nothing
// reads) is hashed by path, mode, size and time only: hashing its
// content cost seconds per call, and a write to it changes its time.
func Hash(t testing.TB, dir string) string {
	t.Helper()
	return HashExcept(t, dir, "")
}

// HashExcept is Hash ignoring the modification time of the entry at
// path skipTime (relative to dir): a writable open truncates LOCK in
// place to lock it.
func HashExcept(t testing.TB, dir, skipTime string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		mtime := fi.ModTime().UnixNano()
		if skipTime != "" && rel == skipTime {
			mtime = 0
		}
		line := fmt.Sprintf("%s %v %d %d", rel, fi.Mode(), fi.Size(), mtime)
		if fi.Mode().IsRegular() && rel != ballastPath {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		lines = append(lines, line)
		return nil
	})
	require.NoError(t, err, "hashing %s", dir)
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:])
}
