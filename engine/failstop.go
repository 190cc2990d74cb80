package engine

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/shard"
)

// FatalExitCode is the exit status of the default Options.OnFatal: a
// failed WAL write or fsync ended the process. It is 74, EX_IOERR of
// sysexits(3), so supervisors can tell it from a crash (2) or a kill.
const FatalExitCode = 74

// defaultOnFatal reports err on stderr and exits with FatalExitCode.
func defaultOnFatal(err error) {
	fmt.Fprintf(os.Stderr, "kvstream: fatal storage failure, exiting with status %d: %v\n", FatalExitCode, err)
	os.Exit(FatalExitCode)
}

// failStop is one DB's fail-stop machinery: the fuse, Pebble's logger and
// the filesystem wrapper that report fatal failures, and the OnFatal hook.
//
// What is fatal: any error of a write, sync, preallocation or close of a
// WAL file, of creating or recycling a WAL file, and of a directory sync,
// once Pebble has opened; and every Logger.Fatalf call of Pebble (a failed
// commit, a failed MANIFEST write or sync, an internal invariant). Pebble
// cannot continue soundly after any of these: it panics (leaving its
// commit pipeline locked, or unlocking a mutex it had already released) or
// reports the failure through Fatalf and carries on. So the goroutine that
// hit the failure never returns into Pebble: it blows the fuse, logs, calls
// OnFatal, and if OnFatal returns it blocks forever.
type failStop struct {
	fuse    *shard.Fuse
	dir     string
	logger  *slog.Logger
	onFatal func(error)
	armed   atomic.Bool // after pebble.Open: FS errors are fatal
}

func newFailStop(dir string, o *Options) *failStop {
	return &failStop{fuse: shard.NewFuse(), dir: dir, logger: o.Logger, onFatal: o.OnFatal}
}

// fatal handles a fatal storage failure and never returns.
func (f *failStop) fatal(cause error) {
	err := &shard.Error{Kind: shard.ErrFailed, Msg: fmt.Sprintf(
		"a write or fsync in data directory %s failed; the DB has stopped (reopen it to recover every fsync'd acknowledgement)", f.dir), Cause: cause}
	if f.fuse.Blow(err) {
		f.logger.Error("kvstream: fatal storage failure; the DB stops (fail-stop)", "dir", f.dir, "err", cause)
		f.onFatal(err)
	}
	// OnFatal returned (a custom hook), or another goroutine failed first:
	// this goroutine holds Pebble's state mid-operation and must never go
	// back into Pebble.
	select {}
}

// pebbleLogger is the logger Pebble gets: informational and error lines
// are dropped (Pebble's background errors are retried by Pebble), and
// Fatalf is fatal.
type pebbleLogger struct{ f *failStop }

func (pebbleLogger) Infof(string, ...any)  {}
func (pebbleLogger) Errorf(string, ...any) {}
func (l pebbleLogger) Fatalf(format string, a ...any) {
	l.f.fatal(fmt.Errorf(format, a...))
}

// failFS wraps the FS Pebble uses so that a failed WAL write or fsync is
// fatal where it happens, before Pebble sees the error (see failStop).
type failFS struct {
	vfs.FS
	f *failStop
}

func isWALName(name string) bool { return strings.HasSuffix(name, ".log") }

func (fs failFS) check(op, name string, err error) {
	if err != nil && fs.f.armed.Load() {
		fs.f.fatal(fmt.Errorf("%s %s: %w", op, name, err))
	}
}

func (fs failFS) wrap(name string, file vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return file, err
	}
	return walFile{File: file, fs: fs, name: name}, nil
}

func (fs failFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	file, err := fs.FS.Create(name, cat)
	if !isWALName(name) {
		return file, err
	}
	fs.check("create", name, err)
	return fs.wrap(name, file, err)
}

func (fs failFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	file, err := fs.FS.ReuseForWrite(oldname, newname, cat)
	if !isWALName(newname) {
		return file, err
	}
	fs.check("recycle", newname, err)
	return fs.wrap(newname, file, err)
}

func (fs failFS) OpenReadWrite(name string, cat vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	file, err := fs.FS.OpenReadWrite(name, cat, opts...)
	if !isWALName(name) {
		return file, err
	}
	fs.check("open", name, err)
	return fs.wrap(name, file, err)
}

func (fs failFS) OpenDir(name string) (vfs.File, error) {
	file, err := fs.FS.OpenDir(name)
	if err != nil {
		return file, err
	}
	return dirFile{File: file, fs: fs, name: name}, nil
}

// walFile is a WAL file opened for writing: every failure is fatal.
type walFile struct {
	vfs.File
	fs   failFS
	name string
}

func (w walFile) Write(p []byte) (int, error) {
	n, err := w.File.Write(p)
	w.fs.check("write", w.name, err)
	return n, err
}

func (w walFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := w.File.WriteAt(p, off)
	w.fs.check("write", w.name, err)
	return n, err
}

func (w walFile) Preallocate(off, n int64) error {
	err := w.File.Preallocate(off, n)
	w.fs.check("preallocate", w.name, err)
	return err
}

func (w walFile) Sync() error {
	err := w.File.Sync()
	w.fs.check("fsync", w.name, err)
	return err
}

func (w walFile) SyncData() error {
	err := w.File.SyncData()
	w.fs.check("fdatasync", w.name, err)
	return err
}

func (w walFile) SyncTo(length int64) (bool, error) {
	full, err := w.File.SyncTo(length)
	w.fs.check("sync", w.name, err)
	return full, err
}

func (w walFile) Close() error {
	err := w.File.Close()
	w.fs.check("close", w.name, err)
	return err
}

// dirFile is a directory handle: a failed directory fsync is fatal (it
// leaves unknown which newly created files, WALs among them, survive).
type dirFile struct {
	vfs.File
	fs   failFS
	name string
}

func (d dirFile) Sync() error {
	err := d.File.Sync()
	d.fs.check("fsync directory", d.name, err)
	return err
}

// Failed returns the fatal storage failure that stopped the DB (it wraps
// ErrFailed), or nil while the DB runs. With the default Options.OnFatal
// the process has exited before anyone could call it; with a custom hook
// that returns, every call of the DB returns this error from then on.
func (db *DB) Failed() error { return db.fail.fuse.Err() }
