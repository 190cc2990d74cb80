package engine

// Invariant 9: a full disk is an error in time, not a hang. Puts are
// refused (ErrDiskFull, retryable) while the data directory's filesystem
// has less than Options.MinFreeBytes available, so the disk never fills
// under Pebble's feet; the writes that free space (DeleteStream, retention
// and MaxBytes trimming, catalog changes) are not refused; an emergency
// ballast file gives them, and Pebble's flushes and compactions, room when
// something else filled the disk anyway; and puts resume by themselves
// once space returns.

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/shard"
)

const (
	// diskCheckInterval is the longest a put works from a cached free-space
	// reading; statfs runs at most this often (and after an ENOSPC, or
	// after a burst of writes, see admit).
	diskCheckInterval = 250 * time.Millisecond
	// enospcHold keeps puts refused for this long after any write failed
	// with ENOSPC, whatever statfs says (quotas, reserved blocks and
	// filesystems that over-report free space).
	enospcHold = time.Second

	// BallastDir and BallastName locate the emergency ballast inside the
	// data directory. Pebble ignores the subdirectory.
	BallastDir  = "auxiliary"
	BallastName = "EMERGENCY_BALLAST"
)

// storageNow is the clock of the disk monitor and the event counters: real
// time, never Options.Clock (a test clock that stands still must not stop
// free-space checks). Internal tests replace it before Open.
var storageNow = time.Now

// defaultMinFree is MinFreeBytes' default for a filesystem of total bytes:
// the larger of 64 MiB and 2 %, but at most 10 % so small disks stay
// usable.
func defaultMinFree(total int64) int64 {
	return min(max(64<<20, total/50), total/10)
}

// defaultBallast is BallastBytes' default: 1 % of the filesystem, at most
// 1 GiB.
func defaultBallast(total int64) int64 { return min(1<<30, total/100) }

// ballastState says where the ballast file is.
type ballastState uint8

const (
	ballastNone     ballastState = iota // disabled, or it could not be made (not for lack of space)
	ballastPresent                      // on disk, holding its space
	ballastReleased                     // deleted for lack of space; puts need room for it again
)

// diskMonitor watches the data directory's free space, keeps the ballast
// and decides whether puts are admitted. Its methods are safe for
// concurrent use; a nil *diskMonitor admits everything.
type diskMonitor struct {
	fs       vfs.FS // the FS under Pebble's ENOSPC hook: statfs and ballast bypass it
	dir      string
	ballast  string // path of the ballast file
	log      *slog.Logger
	now      func() time.Time // real time; tests step it
	interval time.Duration
	onFull   func() // called, with no lock held, when puts start being refused

	minFree     int64 // resolved by start; > 0
	ballastSize int64 // resolved by start; 0 means none

	nextCheck atomic.Int64                // now() in ns after which admit reads statfs again
	written   atomic.Int64                // bytes admitted since the last reading
	refusal   atomic.Pointer[error]       // non-nil while puts are refused
	avail     atomic.Int64                // last reading, -1 before the first
	total     atomic.Int64                // last reading
	enospcAt  atomic.Int64                // now() in ns of the last ENOSPC, 0 if none
	enospcs   atomic.Int64                // ENOSPC failures seen
	rejected  atomic.Int64                // puts refused with ErrDiskFull
	state     atomic.Uint32               // ballastState, for stats
	started   atomic.Bool                 // start ran: minFree and ballastSize are set
	lastErr   atomic.Pointer[diskErrNote] // last statfs error logged

	mu       sync.Mutex  // serializes readings and ballast changes
	creating bool        // a ballast creation goroutine is running; guarded by mu
	flushing atomic.Bool // a spaceFreed flush is running

	// goMu guards closed and wg.Add: background work (ballast creation,
	// flushes after deletions) starts only before close.
	goMu   sync.Mutex
	closed bool
	quit   chan struct{} // closed by close
	wg     sync.WaitGroup
}

type diskErrNote struct{ msg string }

// newDiskMonitor returns the monitor for dir, or nil when o disables it
// (MinFreeBytes -1) or the FS cannot report free space (vfs.NewMem).
func newDiskMonitor(o *Options, dir string) *diskMonitor {
	if o.MinFreeBytes < 0 || !diskUsageSupported(o.FS, dir) {
		return nil
	}
	m := &diskMonitor{
		fs:       o.FS,
		dir:      dir,
		ballast:  o.FS.PathJoin(dir, BallastDir, BallastName),
		log:      o.Logger,
		now:      storageNow,
		interval: diskCheckInterval,
		quit:     make(chan struct{}),
	}
	m.avail.Store(-1)
	return m
}

// diskUsageSupported reports whether fs can tell the free space of dir's
// filesystem (asking the nearest existing ancestor: dir may not exist
// before Pebble creates it).
func diskUsageSupported(fsys vfs.FS, dir string) bool {
	for p := dir; ; {
		_, err := fsys.GetDiskUsage(p)
		if err == nil {
			return true
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return false
		}
		parent := fsys.PathDir(p)
		if parent == p {
			return false
		}
		p = parent
	}
}

// start resolves the defaults from the filesystem's size, adopts or
// removes a ballast left by an earlier run, takes the first reading and
// starts making the ballast if it is missing. Pebble has created dir.
func (m *diskMonitor) start(o *Options) error {
	if m == nil {
		return nil
	}
	u, err := m.fs.GetDiskUsage(m.dir)
	if err != nil {
		return fmt.Errorf("kvstream: free space of data directory %s: %w", m.dir, err)
	}
	total := clampInt64(u.TotalBytes)
	m.minFree = o.MinFreeBytes
	if m.minFree == 0 {
		m.minFree = max(defaultMinFree(total), 1)
	}
	switch {
	case o.BallastBytes > 0:
		m.ballastSize = o.BallastBytes
	case o.BallastBytes == 0:
		m.ballastSize = defaultBallast(total)
	}
	st := ballastNone
	_ = m.fs.Remove(m.ballast + ".tmp") // an interrupted creation
	if fi, err := m.fs.Stat(m.ballast); err == nil {
		if m.ballastSize > 0 && fi.Size() == m.ballastSize {
			st = ballastPresent
		} else if err := m.fs.Remove(m.ballast); err != nil {
			return fmt.Errorf("kvstream: remove old ballast %s: %w", m.ballast, err)
		}
	}
	if st == ballastNone && m.ballastSize > 0 {
		st = ballastReleased // made below when there is room for it
	}
	m.state.Store(uint32(st))
	m.started.Store(true)
	m.mu.Lock()
	m.refreshLocked()
	m.mu.Unlock()
	return nil
}

// close waits for a running ballast creation and stops new ones.
func (m *diskMonitor) close() {
	if m == nil {
		return
	}
	m.enospcAt.Store(m.now().UnixNano()) // abort a creation in progress
	m.goMu.Lock()
	if !m.closed {
		m.closed = true
		close(m.quit)
	}
	m.goMu.Unlock()
	m.wg.Wait()
}

// goBackground runs f on a goroutine that close waits for, unless the
// monitor is closed (then it returns false).
func (m *diskMonitor) goBackground(f func()) bool {
	m.goMu.Lock()
	defer m.goMu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
	return true
}

// admit reports whether a put of n bytes may proceed: nil, or an error
// wrapping ErrDiskFull. It reads free space when the last reading is
// older than the check interval or about an eighth of MinFreeBytes has
// been admitted since, so a fast writer cannot run far past the floor.
func (m *diskMonitor) admit(n int) error {
	if m == nil || !m.started.Load() {
		return nil
	}
	due := m.now().UnixNano() >= m.nextCheck.Load()
	if m.written.Add(int64(n)) > max(m.minFree/8, 1<<20) {
		due = true
	}
	if due && m.mu.TryLock() {
		m.refreshLocked()
		m.mu.Unlock()
	}
	if p := m.refusal.Load(); p != nil {
		m.rejected.Add(1)
		return *p
	}
	return nil
}

// check returns the current refusal (re-reading free space if due), for
// Health; it does not count as a rejection.
func (m *diskMonitor) check() error {
	if m == nil || !m.started.Load() {
		return nil
	}
	if m.now().UnixNano() >= m.nextCheck.Load() && m.mu.TryLock() {
		m.refreshLocked()
		m.mu.Unlock()
	}
	if p := m.refusal.Load(); p != nil {
		return *p
	}
	return nil
}

// refusing reports whether puts are being refused (cached, no statfs).
func (m *diskMonitor) refusing() bool { return m != nil && m.refusal.Load() != nil }

// onENOSPC is Pebble's disk-full hook (vfs.OnDiskFull): a write through
// Pebble's FS failed with ENOSPC. Every write through that FS waits until
// it returns, and the failed write is then retried once, so it releases
// the ballast at once. It must not call into Pebble.
func (m *diskMonitor) onENOSPC() {
	m.noteENOSPC()
	m.mu.Lock()
	m.refreshLocked()
	m.mu.Unlock()
}

// noteENOSPC records an ENOSPC (from the hook or a background error):
// puts are refused for at least enospcHold, and the next admit reads
// free space again.
func (m *diskMonitor) noteENOSPC() {
	if m == nil {
		return
	}
	m.enospcs.Add(1)
	m.enospcAt.Store(m.now().UnixNano())
	m.nextCheck.Store(0)
	if m.started.Load() && m.refusal.Load() == nil {
		m.setRefusal(m.enospcError(m.avail.Load()))
	}
}

// refreshLocked reads free space, releases the ballast when space is
// critically low, decides whether puts are refused, and starts making
// the ballast again once there is room. The caller holds m.mu.
func (m *diskMonitor) refreshLocked() {
	now := m.now()
	m.nextCheck.Store(now.Add(m.interval).UnixNano())
	m.written.Store(0)
	u, err := m.fs.GetDiskUsage(m.dir)
	if err != nil {
		// Keep the last decision; say so once per distinct error.
		if n := m.lastErr.Load(); n == nil || n.msg != err.Error() {
			m.lastErr.Store(&diskErrNote{err.Error()})
			m.log.Warn("kvstream: cannot read free space of the data directory", "dir", m.dir, "err", err.Error())
		}
		return
	}
	avail := clampInt64(u.AvailBytes)
	at := m.enospcAt.Load()
	recentENOSPC := at != 0 && now.UnixNano()-at < int64(enospcHold)
	st := ballastState(m.state.Load())
	if st == ballastPresent && (avail < m.minFree/2 || recentENOSPC) {
		if err := m.fs.Remove(m.ballast); err != nil && !errors.Is(err, fs.ErrNotExist) {
			m.log.Error("kvstream: cannot release the emergency ballast", "path", m.ballast, "err", err.Error())
		} else {
			st = ballastReleased
			m.state.Store(uint32(st))
			m.log.Warn("kvstream: disk nearly full: released the emergency ballast so deletions and trimming can commit",
				"dir", m.dir, "available", avail, "ballast", m.ballastSize)
			if u2, err := m.fs.GetDiskUsage(m.dir); err == nil {
				avail = clampInt64(u2.AvailBytes)
			}
		}
	}
	m.avail.Store(avail)
	m.total.Store(clampInt64(u.TotalBytes))
	eff := avail
	if st == ballastReleased {
		eff -= m.ballastSize // the ballast must fit again before puts resume
	}
	switch {
	case recentENOSPC:
		m.setRefusal(m.enospcError(avail))
	case eff < m.minFree:
		m.setRefusal(m.lowError(avail, st == ballastReleased))
	default:
		m.setRefusal(nil)
		if st == ballastReleased && !m.creating {
			m.creating = m.goBackground(m.makeBallast)
		}
	}
}

// setRefusal installs err (nil: admit) and logs transitions.
func (m *diskMonitor) setRefusal(err error) {
	if err == nil {
		if old := m.refusal.Swap(nil); old != nil {
			m.log.Info("kvstream: free space is back above MinFreeBytes; puts resume", "dir", m.dir, "available", m.avail.Load())
		}
		return
	}
	if old := m.refusal.Swap(&err); old == nil {
		m.log.Warn("kvstream: refusing puts: disk full", "err", err.Error())
		if m.onFull != nil {
			go m.onFull() // never under m.mu or inside Pebble's hook
		}
	}
}

func (m *diskMonitor) lowError(avail int64, released bool) error {
	msg := fmt.Sprintf("Data directory %s has %s available, below MinFreeBytes (%s); puts are refused until space is freed (DeleteStream, lower retention or MaxBytes, or free other files on the disk).",
		m.dir, bytesString(avail), bytesString(m.minFree))
	if released {
		msg += fmt.Sprintf(" The %s emergency ballast was released and must fit again first.", bytesString(m.ballastSize))
	}
	return shard.Errorf(shard.ErrDiskFull, "%s", msg)
}

func (m *diskMonitor) enospcError(avail int64) error {
	free := "unknown space"
	if avail >= 0 {
		free = bytesString(avail)
	}
	return shard.Errorf(shard.ErrDiskFull, "A write to data directory %s failed with ENOSPC (no space left on device); %s available. Puts are refused until space is freed.", m.dir, free)
}

// diskStats are the monitor's numbers for StorageStats.
func (m *diskMonitor) stats(s *StorageStats) {
	s.AvailableBytes, s.TotalBytes = -1, -1
	if m == nil || !m.started.Load() {
		return
	}
	s.AvailableBytes = m.avail.Load()
	s.TotalBytes = m.total.Load()
	s.MinFreeBytes = m.minFree
	if ballastState(m.state.Load()) == ballastPresent {
		s.BallastBytes = m.ballastSize
	}
	s.DiskFullRejections = m.rejected.Load()
	s.ENOSPCErrors = m.enospcs.Load()
	s.DiskFull = m.refusal.Load() != nil
}

func clampInt64(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

// bytesString renders n bytes for messages: "12.5 MiB (13107200 bytes)".
func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit && exp < 4; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTP"[exp], n)
}

// isENOSPC reports whether err is, or wraps, ENOSPC.
func isENOSPC(err error) bool { return errors.Is(err, syscall.ENOSPC) }
