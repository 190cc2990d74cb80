package engine

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/shard"
)

// Opening a data directory: what Open checks before Pebble touches the
// directory, the directory lock, read-only mode, and how Open's errors
// are classified. The rules:
//
//   - A directory that does not exist is created (never in read-only mode).
//   - A directory that exists but holds no Pebble store is initialised
//     only if it is empty; otherwise Open fails with ErrNotDataDir naming
//     a few of its files, and writes nothing.
//   - The operating system refusing something (permission denied, not a
//     directory, an unreadable LOCK, a path under /proc) is ErrStorage,
//     wrapping the OS error with its path. It is never ErrCorruption.
//   - ErrCorruption means damaged data: a checksum mismatch, a malformed
//     file, an sstable the MANIFEST lists that is missing or has the
//     wrong size, a kvstream entry that does not decode.
//   - ErrLocked comes from the lock itself: another process holds the
//     directory's LOCK (its pid is named when the OS tells it), or a DB of
//     this process has the directory open.

// Sentinels of the data directory's state; see the shard package.
var (
	ErrFormatVersion = shard.ErrFormatVersion
	ErrNotDataDir    = shard.ErrNotDataDir
	ErrReadOnly      = shard.ErrReadOnly
	ErrStorage       = shard.ErrStorage
)

// CorruptionError is the error of a read that met damaged data: it names
// the stream, shard and position, and wraps ErrCorruption.
type CorruptionError = shard.CorruptionError

// openPebble checks dir (prepareDir), locks it and opens Pebble on it,
// read-only if o.ReadOnly. Pebble's consistency check (every sstable the
// MANIFEST lists exists with its recorded size) runs before Pebble
// changes anything; its error does not say it is damage, so when Open
// fails for a reason Pebble did not mark as corruption, the directory is
// opened again read-only without the check and checkTables tells missing
// or truncated sstables (ErrCorruption) from OS errors. forCheck skips
// the check (Check reports missing tables and reads on).
func openPebble(dir string, o *Options, forCheck bool, fail *failStop, events *storageEvents) (*pebble.DB, error) {
	if err := prepareDir(dir, o); err != nil {
		return nil, err
	}
	po := o.pebbleOptions()
	if po.Cache != nil && (o.Pebble == nil || o.Pebble.Cache != po.Cache) {
		defer po.Cache.Unref()
	}
	po.ReadOnly = o.ReadOnly
	if o.ReadOnly {
		po.FS = readOnlyFS{po.FS}
	}
	if events != nil {
		// Pebble's background errors and stalls reach DB.Health; an
		// ENOSPC releases the ballast and the write is retried once,
		// inside the fail-stop wrapper below (events.go).
		events.attach(po)
	}
	if fail != nil {
		// A failed WAL write or fsync, or Pebble's Logger.Fatalf, ends the
		// DB (failstop.go).
		po.Logger = pebbleLogger{fail}
		po.FS = failFS{FS: po.FS, f: fail}
	}
	po.DisableConsistencyCheck = forCheck
	// Pebble's default DataCorruption handler calls Logger.Fatalf, which
	// would end the process (or, with the engine's logger, panic) on the
	// first damaged block a read meets. Reads report damage as
	// ErrCorruption instead, and only the damaged shard is affected.
	el := pebble.EventListener{}
	if po.EventListener != nil {
		el = *po.EventListener
	}
	user := el.DataCorruption
	el.DataCorruption = func(info pebble.DataCorruptionInfo) {
		if user != nil {
			user(info)
		}
	}
	po.EventListener = &el

	lock, err := pebble.LockDirectory(dir, &lockFS{FS: o.FS, dir: dir, readOnly: o.ReadOnly})
	if err != nil {
		return nil, err // classified by lockFS.Lock
	}
	defer lock.Close()
	po.Lock = lock
	pdb, err := pebble.Open(dir, po)
	// Pebble took its own reference on success (released by its Close) and
	// dropped it on failure: the deferred Close drops ours either way.
	if err != nil {
		if !forCheck && !shard.IsPebbleCorruption(err) {
			if derr := diagnoseTables(dir, po); derr != nil {
				return nil, derr
			}
		}
		return nil, openError(dir, err)
	}
	return pdb, nil
}

// diagnoseTables opens dir read-only without Pebble's consistency check
// (po.Lock is held) and returns ErrCorruption if an sstable the MANIFEST
// lists is missing or has the wrong size, nil if not (or if it cannot
// tell).
func diagnoseTables(dir string, po *pebble.Options) error {
	ro := po.Clone()
	ro.ReadOnly = true
	ro.DisableConsistencyCheck = true
	if _, ok := ro.FS.(readOnlyFS); !ok {
		ro.FS = readOnlyFS{ro.FS}
	}
	pdb, err := pebble.Open(dir, ro)
	if err != nil {
		return nil
	}
	defer pdb.Close()
	if err := checkTables(dir, ro.FS, pdb); errors.Is(err, shard.ErrCorruption) {
		return err
	}
	return nil
}

// prepareDir checks dir before Pebble opens it: it must be a directory
// (created if missing, unless read-only) that is empty or holds a Pebble
// store.
func prepareDir(dir string, o *Options) error {
	if dir == "" {
		return shard.Errorf(shard.ErrInvalidOptions, "the data directory path is empty")
	}
	fi, err := o.FS.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return storageError(fmt.Sprintf("data directory %s is not a directory", dir),
			&fs.PathError{Op: "open", Path: dir, Err: syscall.ENOTDIR})
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		if o.ReadOnly {
			return &shard.Error{Kind: shard.ErrNotDataDir, Msg: fmt.Sprintf("data directory %s does not exist", dir), Cause: err}
		}
		if err := o.FS.MkdirAll(dir, 0o755); err != nil {
			return storageError("create data directory "+dir, err)
		}
		return nil
	default:
		return storageError("open data directory "+dir, err)
	}
	names, err := o.FS.List(dir)
	if err != nil {
		return storageError("read data directory "+dir, err)
	}
	var others []string
	for _, n := range names {
		switch {
		case n == "CURRENT" || strings.HasPrefix(n, "MANIFEST-") || strings.HasPrefix(n, "marker.manifest."):
			return nil // a Pebble store: load decides whether it is kvstream's
		case n != "LOCK": // an empty LOCK is what a failed first Open leaves
			others = append(others, n)
		}
	}
	if o.ReadOnly {
		what := "it is empty"
		if len(others) > 0 {
			what = "it holds " + fewNames(others)
		}
		return shard.Errorf(shard.ErrNotDataDir, "%s is not a kvstream data directory (%s)", dir, what)
	}
	if len(others) > 0 {
		return shard.Errorf(shard.ErrNotDataDir,
			"refusing to initialise %s as a kvstream data directory: it is not empty and holds no kvstream data (%s); use a new or empty directory",
			dir, fewNames(others))
	}
	return nil
}

// fewNames lists up to four names, sorted, and how many more there are.
func fewNames(names []string) string {
	names = slices.Clone(names)
	slices.Sort(names)
	const show = 4
	if len(names) <= show {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:show], ", "), len(names)-show)
}

// openError classifies an error of pebble.Open (after prepareDir and the
// lock succeeded).
func openError(dir string, err error) error {
	switch {
	case shard.IsPebbleCorruption(err):
		return &shard.Error{Kind: shard.ErrCorruption, Msg: fmt.Sprintf("data directory %s is damaged (run kvstream check)", dir), Cause: err}
	case errors.Is(err, pebble.ErrDBDoesNotExist):
		return &shard.Error{Kind: shard.ErrNotDataDir, Msg: fmt.Sprintf("%s is not a kvstream data directory", dir), Cause: err}
	case errors.Is(err, ErrReadOnly):
		// readOnlyFS refused a write Pebble tried in read-only mode.
		return &shard.Error{Kind: shard.ErrReadOnly, Msg: fmt.Sprintf("opening %s read-only would modify it", dir), Cause: err}
	}
	return storageError("open data directory "+dir, err)
}

// loadError classifies an error of load: Pebble corruption met while
// reading the catalog or a shard's state is ErrCorruption; kvstream's own
// errors are already classified.
func loadError(dir string, err error) error {
	var e *shard.Error
	if errors.As(err, &e) || errors.Is(err, shard.ErrCorruption) {
		return err
	}
	if shard.IsPebbleCorruption(err) {
		return &shard.Error{Kind: shard.ErrCorruption, Msg: fmt.Sprintf("data directory %s is damaged (run kvstream check)", dir), Cause: err}
	}
	return storageError("read data directory "+dir, err)
}

// storageError is ErrStorage with msg, wrapping the OS error.
func storageError(msg string, cause error) error {
	return &shard.Error{Kind: shard.ErrStorage, Msg: msg, Cause: cause}
}

// lockedError is ErrLocked for dir; holder describes who holds it.
func lockedError(dir, holder string, cause error) error {
	return &shard.Error{Kind: shard.ErrLocked, Msg: fmt.Sprintf(
		"data directory %s is in use by another kvstream DB (%s); close it, or talk to the server with --endpoint", dir, holder), Cause: cause}
}

// checkTables is Pebble's consistency check done so its failure can be
// classified: every sstable the MANIFEST lists must exist with the size
// the MANIFEST records. A missing or truncated table is damage
// (ErrCorruption); an OS error reading the directory is ErrStorage.
func checkTables(dir string, fsys vfs.FS, pdb *pebble.DB) error {
	tables, err := liveTables(dir, fsys, pdb)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if t.problem != "" {
			return shard.Errorf(shard.ErrCorruption, "data directory %s is damaged: %s (run kvstream check)", dir, t.problem)
		}
		if t.statErr != nil {
			return storageError("read data directory "+dir, t.statErr)
		}
	}
	return nil
}

// liveTable is one sstable file the MANIFEST lists.
type liveTable struct {
	level   int
	num     string // disk file number, as in the file name
	path    string
	size    uint64 // per the MANIFEST
	info    pebble.SSTableInfo
	problem string // missing, or the wrong size
	statErr error  // the OS refused the stat (not damage)
}

// liveTables lists the sstables of the current version, one entry per
// file (virtual tables share their backing file), with each file's state
// on disk.
func liveTables(dir string, fsys vfs.FS, pdb *pebble.DB) ([]liveTable, error) {
	levels, err := pdb.SSTables()
	if err != nil {
		// SSTables fails only when a table of the current version is
		// unknown to Pebble's object store, which is built from the
		// directory listing at open: the MANIFEST lists a file the
		// directory lacks.
		return nil, &shard.Error{Kind: shard.ErrCorruption, Msg: fmt.Sprintf(
			"data directory %s is damaged: the MANIFEST lists an sstable that is missing (run kvstream check)", dir), Cause: err}
	}
	var out []liveTable
	seen := make(map[string]bool)
	for level, tables := range levels {
		for _, info := range tables {
			if info.BackingType != pebble.BackingTypeLocal {
				continue
			}
			num := info.BackingSSTNum.String()
			if seen[num] {
				continue
			}
			seen[num] = true
			t := liveTable{level: level, num: num, path: fsys.PathJoin(dir, num+".sst"), size: info.Size, info: info}
			if info.Virtual {
				t.size = 0 // a virtual table's size is not its file's
			}
			fi, err := fsys.Stat(t.path)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				t.problem = fmt.Sprintf("sstable %s.sst (L%d) is listed in the MANIFEST but missing", num, level)
			case err != nil:
				t.statErr = err
			case t.size != 0 && uint64(fi.Size()) != t.size:
				t.problem = fmt.Sprintf("sstable %s.sst (L%d) has %d bytes, the MANIFEST says %d", num, level, fi.Size(), t.size)
			}
			out = append(out, t)
		}
	}
	return out, nil
}

// checkNewDir runs when the directory has no kvstream format key, before
// load initialises it: a read-only open fails, and so does a Pebble store
// that already holds keys (another program's database).
func (db *DB) checkNewDir() error {
	if db.opts.ReadOnly {
		return shard.Errorf(shard.ErrNotDataDir, "%s is not a kvstream data directory (a Pebble store without kvstream's format key)", db.dir)
	}
	it, err := db.pdb.NewIter(nil)
	if err != nil {
		return err
	}
	defer it.Close()
	if it.First() {
		return shard.Errorf(shard.ErrNotDataDir,
			"refusing to initialise %s as a kvstream data directory: it holds another program's Pebble database", db.dir)
	}
	return it.Error()
}

// writable returns ErrReadOnly if the DB was opened read-only. Every
// write checks it before touching Pebble or the in-memory state.
func (db *DB) writable() error {
	if db.opts.ReadOnly {
		return shard.Errorf(shard.ErrReadOnly, "the DB was opened read-only (Options.ReadOnly); reopen it without ReadOnly to write")
	}
	return nil
}

// readOnlyFS refuses every operation that would create, modify or remove
// a file, so a read-only open cannot write by construction (Pebble's
// ReadOnly mode does not write either; this makes sure).
type readOnlyFS struct{ vfs.FS }

func (r readOnlyFS) refuse(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: shard.ErrReadOnly}
}

func (r readOnlyFS) Create(name string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, r.refuse("create", name)
}
func (r readOnlyFS) Link(oldname, newname string) error { return r.refuse("link", newname) }
func (r readOnlyFS) OpenReadWrite(name string, _ vfs.DiskWriteCategory, _ ...vfs.OpenOption) (vfs.File, error) {
	return nil, r.refuse("open for writing", name)
}
func (r readOnlyFS) Remove(name string) error             { return r.refuse("remove", name) }
func (r readOnlyFS) RemoveAll(name string) error          { return r.refuse("remove", name) }
func (r readOnlyFS) Rename(oldname, newname string) error { return r.refuse("rename", oldname) }
func (r readOnlyFS) ReuseForWrite(oldname, newname string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, r.refuse("reuse", oldname)
}
func (r readOnlyFS) MkdirAll(dir string, _ os.FileMode) error { return r.refuse("mkdir", dir) }
func (r readOnlyFS) Lock(name string) (io.Closer, error)      { return nil, r.refuse("lock", name) }
func (r readOnlyFS) Unwrap() vfs.FS                           { return r.FS }

// lockFS is the filesystem pebble.LockDirectory locks through: it adds
// in-process exclusion by directory identity (fcntl locks do not exclude
// the process that holds them, and Pebble's own in-process check goes by
// path spelling), read-only locking that creates and truncates nothing,
// and classified errors.
type lockFS struct {
	vfs.FS
	dir      string
	readOnly bool
}

func (l *lockFS) Lock(name string) (io.Closer, error) {
	if vfs.Root(l.FS) != vfs.Default {
		// Not the OS (vfs.MemFS in tests): its own lock. MemFS excludes
		// in-process holders with EAGAIN.
		if l.readOnly {
			if _, err := l.FS.Stat(name); err != nil {
				return nopCloser{}, nil // locking would create LOCK
			}
		}
		c, err := l.FS.Lock(name)
		if err != nil {
			return nil, l.lockError(name, err)
		}
		return c, nil
	}
	release, err := holdDir(l.dir)
	if err != nil {
		return nil, err
	}
	var c io.Closer
	if l.readOnly {
		c, err = readLock(name)
	} else {
		c, err = l.FS.Lock(name)
	}
	if err != nil {
		release()
		return nil, l.lockError(name, err)
	}
	return closerFunc(func() error {
		defer release()
		return c.Close()
	}), nil
}

// lockError classifies a failure to lock the LOCK file: the OS refusing
// to open it is ErrStorage; fcntl's "held" answers are ErrLocked.
func (l *lockFS) lockError(name string, err error) error {
	var pe *fs.PathError
	var errno syscall.Errno
	switch {
	case errors.As(err, &pe):
		return storageError(fmt.Sprintf("lock data directory %s", l.dir), err)
	case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EWOULDBLOCK):
		holder := "another process"
		if pid := lockHolder(name); pid > 0 {
			holder = fmt.Sprintf("process %d", pid)
		}
		return lockedError(l.dir, holder, err)
	case !errors.As(err, &errno) && vfs.Root(l.FS) == vfs.Default:
		// Pebble's in-process check (a raw Pebble DB of this process holds
		// the directory; kvstream's own DBs are caught by holdDir).
		return lockedError(l.dir, "this process", err)
	}
	return storageError(fmt.Sprintf("lock %s", name), err)
}

// openDirs are the data directories this process holds, by identity.
var openDirs struct {
	sync.Mutex
	held []*os.FileInfo
}

// holdDir registers dir as held by this process, or fails with ErrLocked
// if a DB of this process already holds it (under any path spelling).
func holdDir(dir string) (release func(), err error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, storageError("open data directory "+dir, err)
	}
	openDirs.Lock()
	defer openDirs.Unlock()
	for _, h := range openDirs.held {
		if os.SameFile(*h, fi) {
			return nil, lockedError(dir, "in this process", nil)
		}
	}
	entry := &fi
	openDirs.held = append(openDirs.held, entry)
	return func() {
		openDirs.Lock()
		defer openDirs.Unlock()
		openDirs.held = slices.DeleteFunc(openDirs.held, func(h *os.FileInfo) bool { return h == entry })
	}, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
