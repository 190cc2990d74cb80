//go:build linux

package engine

import (
	"errors"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// allocate reserves size bytes for f with fallocate(2), which allocates
// the blocks without writing them. It returns false when f has no OS
// file descriptor (an in-memory FS) or the filesystem cannot fallocate;
// the caller then writes zeros.
func allocate(f vfs.File, size int64) (bool, error) {
	fd := f.Fd()
	if fd == vfs.InvalidFd {
		return false, nil
	}
	err := syscall.Fallocate(int(fd), 0, 0, size)
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
		return false, nil
	}
	return err == nil, err
}
