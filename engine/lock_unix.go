//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris

package engine

import (
	"errors"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// readLock takes a shared fcntl lock on the LOCK file without creating or
// truncating it: it conflicts with a writer's exclusive lock (Pebble's),
// so a read-only open fails with ErrLocked while another process writes,
// and a writer cannot open while it is held. If there is no LOCK file
// there is nothing to lock without writing, and no lock is taken.
func readLock(path string) (io.Closer, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nopCloser{}, nil
	}
	if err != nil {
		return nil, err
	}
	spec := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &spec); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// lockHolder returns the pid of a process holding a lock on path that
// conflicts with an exclusive one, or 0 if the OS does not say. The caller
// holds no fcntl lock on path (closing this descriptor would release it).
func lockHolder(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	spec := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &spec); err != nil || spec.Type == unix.F_UNLCK {
		return 0
	}
	return int(spec.Pid)
}
