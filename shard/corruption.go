package shard

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// CorruptionError is the error of a read that met damaged data in a
// shard: a block whose checksum does not match, a missing sstable, a
// record that does not decode. It wraps ErrCorruption (and the cause), so
// errors.Is(err, ErrCorruption) holds; use errors.As to get the position.
// Only this shard's reads at or after the position fail; other shards and
// earlier records stay readable.
type CorruptionError struct {
	// Stream is the stream's name (empty if the reader did not know it)
	// and StreamID its numeric id.
	Stream   string
	StreamID uint32
	// Shard is the shard being read.
	Shard ShardID
	// Counter is the per-shard counter the read was positioned at when it
	// failed: the first record that could not be read is at or after it.
	Counter uint64
	// After is the sequence number of the last record read before the
	// damage, if the read returned one (After.Counter == 0: none).
	After SequenceNumber
	// Cause is the underlying error (Pebble's checksum or missing-file
	// error, or a decoding failure).
	Cause error
}

// Error implements error.
func (e *CorruptionError) Error() string {
	cause := "unknown cause"
	if e.Cause != nil {
		// Pebble appends a marker line to its corruption errors.
		cause = strings.ReplaceAll(e.Cause.Error(), "\n<corruption detail carrier>", "")
	}
	return fmt.Sprintf("%v: %s: %s", ErrCorruption, e.Message(), cause)
}

// Message is the human-readable description without the cause.
func (e *CorruptionError) Message() string {
	name := e.Stream
	if name == "" {
		name = fmt.Sprintf("#%d", e.StreamID)
	}
	msg := fmt.Sprintf("stream %s, %s: stored data is damaged at record counter %d", name, e.Shard, e.Counter)
	if e.After.Counter != 0 {
		msg += fmt.Sprintf(" (after sequence number %s)", e.After)
	}
	return msg + "; other shards are not affected; run kvstream check for details"
}

// Unwrap lets errors.Is match ErrCorruption and the cause.
func (e *CorruptionError) Unwrap() []error {
	if e.Cause != nil {
		return []error{ErrCorruption, e.Cause}
	}
	return []error{ErrCorruption}
}

// IsPebbleCorruption reports whether err is a Pebble corruption error
// (a checksum mismatch, a malformed block, an sstable the MANIFEST lists
// but the directory lacks). Pebble marks these with cockroachdb/errors
// marks, which the standard errors.Is does not see.
func IsPebbleCorruption(err error) bool {
	return err != nil && pebble.IsCorruptionError(err)
}

// ReadError classifies an error from reading l's records at counter c:
// Pebble corruption becomes a *CorruptionError naming the stream, shard
// and position; errors already classified and other errors (I/O, closed)
// are returned unchanged. nil stays nil.
func ReadError(l *Log, c uint64, err error) error {
	if err == nil || errors.Is(err, ErrCorruption) || !IsPebbleCorruption(err) {
		return err
	}
	return &CorruptionError{Stream: l.StreamName, StreamID: l.Stream, Shard: l.ID, Counter: c, Cause: err}
}
