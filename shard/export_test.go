package shard

// QueueLen returns how many requests wait for the committer (tests use it
// to know that requests are queued behind a commit in flight).
func (w *Writer) QueueLen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.mu.queue)
}
