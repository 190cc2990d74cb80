package shard

import (
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// Fuse is a DB's fail-stop state. It blows once, at the first fatal
// storage failure (a failed WAL write or fsync, reported by the engine's
// Pebble hooks), and stays blown: from then on nothing is committed to
// Pebble, and every call that would commit returns Err (wrapping
// ErrFailed) instead. All methods are safe for concurrent use.
type Fuse struct {
	once  sync.Once
	err   error
	blown chan struct{}
}

// NewFuse returns an intact fuse.
func NewFuse() *Fuse { return &Fuse{blown: make(chan struct{})} }

// Blow records err as the failure (the first call wins) and reports
// whether this call was the first.
func (f *Fuse) Blow(err error) (first bool) {
	f.once.Do(func() {
		f.err = err
		close(f.blown)
		first = true
	})
	return first
}

// Err returns the failure, or nil while the fuse is intact.
func (f *Fuse) Err() error {
	select {
	case <-f.blown:
		return f.err
	default:
		return nil
	}
}

// Blown returns a channel closed when the fuse blows.
func (f *Fuse) Blown() <-chan struct{} { return f.blown }

// Commit commits a copy of b to db unless the fuse is blown, and returns
// the fuse's error if it blows while the commit is inside Pebble. The
// copy is committed on its own goroutine, which a fatal failure may stop
// forever (the engine never lets a failed Pebble call return); b itself is
// never handed to Pebble, so the caller may close it whatever happens.
func (f *Fuse) Commit(db *pebble.DB, b *pebble.Batch, opts *pebble.WriteOptions) error {
	if err := f.Err(); err != nil {
		return err
	}
	own := db.NewBatch()
	if err := own.SetRepr(slices.Clone(b.Repr())); err != nil {
		_ = own.Close()
		return err
	}
	done := make(chan error, 1)
	go func() {
		err := own.Commit(opts)
		_ = own.Close()
		done <- err
	}()
	select {
	case err := <-done:
		if ferr := f.Err(); ferr != nil {
			return ferr
		}
		if err != nil {
			return &Error{Kind: ErrWriteFailed, Msg: "Pebble refused the batch", Cause: err}
		}
		return nil
	case <-f.blown:
		return f.err
	}
}

// CommitBatch commits a batch outside the record path (catalog changes,
// checkpoints) through the Writer's fuse (see Fuse.Commit).
func (w *Writer) CommitBatch(b *pebble.Batch, opts *pebble.WriteOptions) error {
	return w.fuse.Commit(w.db, b, opts)
}
