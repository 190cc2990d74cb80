package shard

import (
	"context"
	"slices"
)

// CommitContext is Commit that stops waiting when ctx ends.
//
// If ctx ends while r is still queued, r is withdrawn: it never commits,
// none of its counters are used, and CommitContext returns (false,
// ctx.Err()); r is the caller's again.
//
// If ctx ends after r's commit has begun, the commit cannot be called
// back: it completes (or fails) in the background. CommitContext then
// returns (true, ctx.Err()) as soon as the committer has copied r's
// records into its batch, so the memory of the Appends' Data is the
// caller's again. That is CPU work once the committer reaches r, but the
// committer takes the queue in slices of at most maxBatchBytes and
// commits them in order: r waits for the commits (and syncs) of the
// slices queued before it, so a stalled disk can hold CommitContext past
// ctx's end; a failed DB (the fuse) always ends the wait. r itself still
// belongs to the Writer: the caller
// must not reuse r, nor release anything the commit depends on (locks
// that keep its shards open), until r.Wait returns. Such a request must
// never be reported to a client as acknowledged.
//
// If the commit finished before ctx ended, its result is returned as
// Commit would, even if ctx has ended by then.
func (w *Writer) CommitContext(ctx context.Context, r *Request) (inFlight bool, err error) {
	if ctx.Done() == nil {
		return false, w.Commit(r)
	}
	if err := w.Err(); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := w.enqueue(r); err != nil {
		return false, err
	}
	select {
	case <-r.done:
		return false, r.err
	case <-w.fuse.Blown():
		r.abandoned = true
		return false, w.fuse.Err()
	case <-ctx.Done():
	}
	w.mu.Lock()
	if i := slices.Index(w.mu.queue, r); i >= 0 {
		w.mu.queue = slices.Delete(w.mu.queue, i, i+1)
		w.mu.Unlock()
		return false, ctx.Err()
	}
	w.mu.Unlock()
	// The committer has r: wait until it no longer reads r's data (the
	// caller may reuse that memory, e.g. a pooled request body, once this
	// returns).
	select {
	case <-r.encoded:
	case <-w.fuse.Blown():
		r.abandoned = true
		return false, w.fuse.Err()
	}
	select {
	case <-r.done:
		return false, r.err // it finished meanwhile: the caller gets the outcome
	default:
		return true, ctx.Err()
	}
}

// Wait blocks until the Writer is done with r (committed or failed), or
// the DB has failed (fail-stop: r is then abandoned, never reused), and
// returns the commit's error. It is for a request CommitContext gave up
// on while in flight; call it at most once per such request.
func (w *Writer) Wait(r *Request) error {
	select {
	case <-r.done:
		return r.err
	case <-w.fuse.Blown():
		r.abandoned = true
		return w.fuse.Err()
	}
}
