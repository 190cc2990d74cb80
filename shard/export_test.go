package shard

import "github.com/cockroachdb/pebble/v2"

// SetBatchHook makes the Writer call f with each record batch before it
// commits it. Call it before the first Commit.
func (w *Writer) SetBatchHook(f func(*pebble.Batch)) { w.batchHook = f }

// QueueLen returns how many requests wait for the committer (tests use it
// to know that requests are queued behind a commit in flight).
func (w *Writer) QueueLen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.mu.queue)
}
