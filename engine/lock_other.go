//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris)

package engine

import "io"

// readLock takes no OS lock on systems without fcntl locks: a read-only
// open is excluded only from DBs of the same process (holdDir).
func readLock(string) (io.Closer, error) { return nopCloser{}, nil }

// lockHolder cannot tell the holder's pid on this system.
func lockHolder(string) int { return 0 }
