package engine

import (
	"errors"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// makeBallast creates the ballast file (as a .tmp, renamed into place
// when complete) and runs with m.creating set. It gives up when an ENOSPC
// is seen meanwhile or the DB closes.
func (m *diskMonitor) makeBallast() {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer func() { m.creating = false }()
	if ballastState(m.state.Load()) != ballastReleased {
		return
	}
	start := m.enospcAt.Load()
	aborted := func() bool { return m.enospcAt.Load() != start }
	tmp := m.ballast + ".tmp"
	err := m.writeBallast(tmp, aborted)
	if err == nil && aborted() {
		err = errBallastAborted
	}
	if err == nil {
		err = m.fs.Rename(tmp, m.ballast)
	}
	if err != nil {
		_ = m.fs.Remove(tmp)
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, errBallastAborted) {
			return // stays released: retried when space returns
		}
		m.state.Store(uint32(ballastNone))
		m.log.Error("kvstream: cannot create the emergency ballast; running without it", "path", m.ballast, "err", err.Error())
		return
	}
	m.state.Store(uint32(ballastPresent))
	m.log.Debug("kvstream: emergency ballast in place", "path", m.ballast, "bytes", m.ballastSize)
	// The ballast took its space: read again before admitting more.
	m.refreshLocked()
}

var errBallastAborted = errors.New("kvstream: ballast creation aborted")

// writeBallast writes a file of m.ballastSize bytes whose blocks are
// allocated (fallocate where available, zeros otherwise), and syncs it.
func (m *diskMonitor) writeBallast(path string, aborted func() bool) (err error) {
	if err := m.fs.MkdirAll(m.fs.PathDir(path), 0o755); err != nil {
		return err
	}
	f, err := m.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	done, err := allocate(f, m.ballastSize)
	if err != nil {
		return err
	}
	if !done {
		zeros := make([]byte, 1<<20)
		for off := int64(0); off < m.ballastSize; {
			if aborted() {
				return errBallastAborted
			}
			n := min(int64(len(zeros)), m.ballastSize-off)
			if _, err := f.Write(zeros[:n]); err != nil {
				return err
			}
			off += n
		}
	}
	return f.Sync()
}
