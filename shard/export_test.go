package shard

import "github.com/cockroachdb/pebble/v2"

// SetBatchHook makes the Writer call f with each record batch before it
// commits it. Call it before the first Commit.
func (w *Writer) SetBatchHook(f func(*pebble.Batch)) { w.batchHook = f }
