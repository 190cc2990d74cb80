package engine

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/shard"
)

const (
	// logEvery bounds how often background errors are logged; the
	// counters still count every one (Pebble retries a failed flush at
	// once, so a full disk can fail thousands of flushes a second).
	logEvery = 10 * time.Second
	// flushErrorTTL and compactionErrorTTL are how long a failed flush or
	// compaction keeps Health failing when none succeeds after it. Pebble
	// retries a failed flush at once (a flush that keeps failing keeps
	// Health failing), and a failed compaction's key span after 30 s.
	flushErrorTTL      = 10 * time.Second
	compactionErrorTTL = time.Minute
	// stallLogAfter is the shortest write stall worth a warning.
	stallLogAfter = time.Second
)

// StorageStats are readings and counters about the data directory's
// storage since Open (DB.StorageStats).
type StorageStats struct {
	// AvailableBytes and TotalBytes are the last free-space reading of the
	// data directory's filesystem; -1 when free space is not checked
	// (MinFreeBytes -1, or a filesystem that cannot report it).
	AvailableBytes, TotalBytes int64
	// MinFreeBytes is the free-space floor in use; 0 when not checked.
	MinFreeBytes int64
	// BallastBytes is the size of the emergency ballast on disk now: 0
	// while it is released (or disabled).
	BallastBytes int64
	// DiskFull says puts are being refused with ErrDiskFull.
	DiskFull bool
	// DiskFullRejections counts puts refused with ErrDiskFull.
	DiskFullRejections int64
	// ENOSPCErrors counts writes that failed with ENOSPC.
	ENOSPCErrors int64
	// BackgroundErrors counts Pebble's background errors: failed flushes
	// and compactions, and other failures outside a caller's call.
	BackgroundErrors int64
	// FlushErrors and CompactionErrors count failed flushes and
	// compactions (each is also a background error).
	FlushErrors, CompactionErrors int64
	// WriteStalls counts the times Pebble stopped admitting writes until a
	// flush or compaction caught up; WriteStalled says one is in progress
	// and WriteStallTime is the total time spent stalled (ended stalls).
	WriteStalls    int64
	WriteStalled   bool
	WriteStallTime time.Duration
	// DiskSlowEvents counts disk operations Pebble found slow (only
	// reported when the FS has disk-health checks).
	DiskSlowEvents int64
}

// storageEvents receives Pebble's events (pebble.EventListener), logs
// them through Options.Logger and keeps the counters and the state
// Health reports. Safe for concurrent use: Pebble calls it from its
// background goroutines.
type storageEvents struct {
	o    *Options
	disk *diskMonitor // may be nil
	now  func() time.Time

	bgErrors, flushErrors, compactionErrors atomic.Int64
	stalls, stallNanos, diskSlow            atomic.Int64
	stalledSince                            atomic.Int64 // now() in ns, 0 when not stalled

	mu struct {
		sync.Mutex
		flushErr   error     // the last flush failure, until one succeeds
		flushAt    time.Time // when it failed
		compactErr error     // the last compaction failure, until one succeeds
		compactAt  time.Time // when it failed
		lastLog    time.Time // when a background error was last logged
		suppressed int       // background errors not logged since
	}
}

func newStorageEvents(o *Options, disk *diskMonitor) *storageEvents {
	return &storageEvents{o: o, disk: disk, now: storageNow}
}

// attach wires e into po: Pebble's events reach e (before any listener
// the caller configured in Options.Pebble, so Health and StorageStats
// already reflect an event when the caller's listener sees it), and writes through po.FS that fail
// with ENOSPC reach the disk monitor at once (vfs.OnDiskFull), which
// releases the ballast before Pebble retries the write.
func (e *storageEvents) attach(po *pebble.Options) {
	l := e.listener()
	if po.EventListener != nil {
		l = pebble.TeeEventListener(l, *po.EventListener)
	}
	po.EventListener = &l
	if e.disk != nil {
		po.FS = vfs.OnDiskFull(po.FS, e.disk.onENOSPC)
	}
}

func (e *storageEvents) listener() pebble.EventListener {
	return pebble.EventListener{
		BackgroundError: e.backgroundError,
		FlushEnd: func(info pebble.FlushInfo) {
			e.mu.Lock()
			defer e.mu.Unlock()
			if info.Err == nil || isEmptyFlush(info.Err) {
				e.mu.flushErr = nil
				return
			}
			e.flushErrors.Add(1)
			e.mu.flushErr, e.mu.flushAt = info.Err, e.now()
		},
		CompactionEnd: func(info pebble.CompactionInfo) {
			if errors.Is(info.Err, pebble.ErrCancelledCompaction) {
				return
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			if info.Err == nil {
				e.mu.compactErr = nil
				return
			}
			e.compactionErrors.Add(1)
			e.mu.compactErr, e.mu.compactAt = info.Err, e.now()
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			e.stalls.Add(1)
			e.stalledSince.Store(e.now().UnixNano())
			e.o.Logger.Debug("kvstream: write stall", "reason", info.Reason)
		},
		WriteStallEnd: func() {
			since := e.stalledSince.Swap(0)
			if since == 0 {
				return
			}
			d := time.Duration(e.now().UnixNano() - since)
			e.stallNanos.Add(int64(d))
			if d >= stallLogAfter {
				e.o.Logger.Warn("kvstream: writes were stalled waiting for Pebble's flushes or compactions", "duration", d)
			}
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			// Called on Pebble's disk-health goroutine: count, log, nothing
			// that could wait on the disk.
			e.diskSlow.Add(1)
			e.o.Logger.Warn("kvstream: slow disk", "info", info.String())
		},
	}
}

// backgroundError counts and logs a Pebble background error (at most one
// log line per logEvery, saying how many were not logged: a failing flush
// or compaction is retried at once, with a new file name each time). An
// ENOSPC refuses puts at once.
func (e *storageEvents) backgroundError(err error) {
	e.bgErrors.Add(1)
	if isENOSPC(err) {
		e.disk.noteENOSPC()
	}
	now := e.now()
	e.mu.Lock()
	if !e.mu.lastLog.IsZero() && now.Sub(e.mu.lastLog) < logEvery {
		e.mu.suppressed++
		e.mu.Unlock()
		return
	}
	suppressed := e.mu.suppressed
	e.mu.lastLog, e.mu.suppressed = now, 0
	e.mu.Unlock()
	e.o.Logger.Error("kvstream: Pebble background error", "err", err.Error(), "earlier_not_logged", suppressed)
}

// isEmptyFlush reports Pebble's "empty table" flush outcome, which
// FlushEnd reports as an error but is a success (the memtable held
// nothing to write). Pebble keeps that sentinel unexported and sets no
// other field for it, so its text is the only way to tell; this is the
// one comparison of error text in the module, on Pebble's constant.
func isEmptyFlush(err error) bool { return err.Error() == "pebble: empty table" }

// health returns nil or why writes cannot proceed, after the DB-level
// checks Health makes.
func (e *storageEvents) health(dir string) error {
	if err := e.disk.check(); err != nil {
		return err
	}
	now := e.now()
	e.mu.Lock()
	ferr, fat := e.mu.flushErr, e.mu.flushAt
	err, at := e.mu.compactErr, e.mu.compactAt
	e.mu.Unlock()
	// With a disk monitor, an ENOSPC is the monitor's to report (above): a
	// flush that keeps failing keeps it refusing puts, and a failure from
	// before space returned is no reason to fail Health now.
	report := func(err error) bool { return err != nil && (e.disk == nil || !isENOSPC(err)) }
	if report(ferr) && now.Sub(fat) < flushErrorTTL {
		return storageFailure("Pebble cannot flush its memtable to data directory "+dir+"; writes stall until it can", ferr)
	}
	if report(err) && now.Sub(at) < compactionErrorTTL {
		return storageFailure("Pebble's last compaction in data directory "+dir+" failed", err)
	}
	return nil
}

// storageFailure wraps a background failure for Health: ErrDiskFull for
// ENOSPC, ErrCorruption for damaged data, ErrWriteFailed otherwise.
func storageFailure(msg string, cause error) error {
	kind := shard.ErrWriteFailed
	switch {
	case isENOSPC(cause):
		kind = shard.ErrDiskFull
	case pebble.IsCorruptionError(cause):
		kind = shard.ErrCorruption
	}
	return &shard.Error{Kind: kind, Msg: msg, Cause: cause}
}

func (e *storageEvents) stats(s *StorageStats) {
	e.disk.stats(s)
	s.BackgroundErrors = e.bgErrors.Load()
	s.FlushErrors = e.flushErrors.Load()
	s.CompactionErrors = e.compactionErrors.Load()
	s.WriteStalls = e.stalls.Load()
	s.WriteStalled = e.stalledSince.Load() != 0
	s.WriteStallTime = time.Duration(e.stallNanos.Load())
	s.DiskSlowEvents = e.diskSlow.Load()
}

// Health returns nil while the DB can accept puts, or the reason it
// cannot: ErrClosed after Close, the failed write that stopped the DB
// (ErrWriteFailed), ErrDiskFull while free space is under MinFreeBytes or
// a write recently failed with ENOSPC, or a failing Pebble flush (puts
// soon stall behind it) or a recent failed compaction (ErrWriteFailed, or
// ErrCorruption when Pebble found damaged data). The server's /healthz
// answers 503 with it. It is cheap (statfs at most every 250 ms) and safe
// for concurrent use.
func (db *DB) Health() error {
	if err := db.check(); err != nil {
		return err
	}
	if err := db.writer.Err(); err != nil {
		return err
	}
	return db.events.health(db.dir)
}

// StorageStats returns the storage readings and counters since Open (the
// server exports them in /metrics). Safe for concurrent use.
func (db *DB) StorageStats() StorageStats {
	var s StorageStats
	db.events.stats(&s)
	return s
}

// startStorage runs after Pebble opened: it resolves the free-space
// defaults, adopts or schedules the ballast, and lets a disk-full
// transition kick the trimmer (so expired and over-MaxBytes records go
// at once).
func (db *DB) startStorage() error {
	if db.disk == nil {
		return nil
	}
	db.disk.onFull = db.bg.kick
	return db.disk.start(db.opts)
}

// spaceFreed is called after a commit that deleted records (DeleteStream,
// a trim). While puts are refused for lack of space, it flushes the
// memtable in the background, so the deletion reaches the sstables at once
// rather than when the memtable fills (puts are refused: it would not).
// Pebble then drops the sstables the deletion covers whole without
// writing anything (delete-only compactions) and rewrites the others as
// space allows. Free space is read again afterwards.
func (db *DB) spaceFreed() {
	m := db.disk
	if !m.refusing() || !m.flushing.CompareAndSwap(false, true) {
		return
	}
	started := m.goBackground(func() {
		defer m.flushing.Store(false)
		flushed, err := db.pdb.AsyncFlush()
		if err != nil {
			db.opts.Logger.Warn("kvstream: flush after a deletion failed", "err", err.Error())
			return
		}
		select {
		case <-flushed:
		case <-m.quit:
		}
		m.nextCheck.Store(0)
	})
	if !started {
		m.flushing.Store(false)
	}
}
