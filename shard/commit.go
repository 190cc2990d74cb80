package shard

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// PebbleFatal is the panic value the engine's Pebble logger raises from
// Fatalf. Pebble reports a failed WAL write or sync during a commit by
// calling Logger.Fatalf and then returning nil from Commit, so a logger
// that returned would let a failed commit look successful. Panicking with
// this value lets SafeCommit turn the failure into an error instead of
// crashing the process.
type PebbleFatal struct{ Msg string }

func (p PebbleFatal) Error() string { return p.Msg }

// SafeCommit commits b and returns any failure as an error, including the
// failures Pebble reports by panicking: a WAL write error (Pebble panics
// with the error, leaving its commit pipeline locked) and a WAL sync error
// (reported through Logger.Fatalf, see PebbleFatal). After either, Pebble
// cannot commit again; callers must treat the error as sticky (Writer
// does). Panics with other values propagate.
func SafeCommit(b *pebble.Batch, opts *pebble.WriteOptions) (err error) {
	defer func() {
		if r := recover(); r != nil {
			switch v := r.(type) {
			case PebbleFatal:
				err = v // its message already reads "pebble: …"
			case error:
				err = fmt.Errorf("pebble: commit failed: %w", v)
			default:
				panic(r)
			}
		}
	}()
	return b.Commit(opts)
}

// CommitBatch commits a batch outside the record path (catalog changes,
// checkpoints) under the Writer's sticky-error rule: once any commit has
// failed, it returns that error without touching Pebble, and a failure
// here becomes the sticky error too.
func (w *Writer) CommitBatch(b *pebble.Batch, opts *pebble.WriteOptions) error {
	if err := w.Err(); err != nil {
		return err
	}
	if err := SafeCommit(b, opts); err != nil {
		return w.fail(err)
	}
	return nil
}

// fail records err as the sticky error (the first one wins) and returns
// the sticky error.
func (w *Writer) fail(err error) error {
	var e error = &Error{Kind: ErrWriteFailed, Msg: "a write to the data directory failed; reopen the DB", Cause: err}
	w.err.CompareAndSwap(nil, &e)
	return *w.err.Load()
}
