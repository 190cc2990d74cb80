package shard

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Every error the engine returns wraps exactly one of these,
// so callers test with errors.Is. They are defined here, in the lowest
// package, and re-exported by engine.
var (
	// ErrClosed is returned by every call on a closed DB or iterator.
	ErrClosed = errors.New("kvstream: closed")
	// ErrStreamNotFound means the named stream does not exist (or is not
	// yet ACTIVE, for data-plane calls).
	ErrStreamNotFound = errors.New("kvstream: stream not found")
	// ErrStreamExists means CreateStream was given a name already in use.
	ErrStreamExists = errors.New("kvstream: stream already exists")
	// ErrShardNotFound means the shard id does not name a shard of the stream.
	ErrShardNotFound = errors.New("kvstream: shard not found")
	// ErrConsumerNotFound means the named durable consumer does not exist.
	ErrConsumerNotFound = errors.New("kvstream: consumer not found")
	// ErrValidation means an argument broke a static constraint (a length,
	// a range, a pattern); the message names the field and the limit.
	ErrValidation = errors.New("kvstream: validation failed")
	// ErrInvalidArgument means an argument is well formed but not valid
	// for the stream's current state (a sequence number from another
	// shard, a hash key outside a shard's range, …).
	ErrInvalidArgument = errors.New("kvstream: invalid argument")
	// ErrExpiredIterator means a shard iterator token is older than the
	// configured iterator lifetime.
	ErrExpiredIterator = errors.New("kvstream: iterator expired")
	// ErrThroughputExceeded means a per-shard throughput limit rejected the
	// call; it is safe to retry later.
	ErrThroughputExceeded = errors.New("kvstream: provisioned throughput exceeded")
	// ErrStreamFull means a stream with DiscardNew reached its MaxBytes.
	ErrStreamFull = errors.New("kvstream: stream full")
	// ErrResourceInUse means the stream is not in a state that allows the
	// operation (for example a reshard while another one is running).
	ErrResourceInUse = errors.New("kvstream: resource in use")
	// ErrLimitExceeded means a count limit (shards, consumers) was reached.
	ErrLimitExceeded = errors.New("kvstream: limit exceeded")
	// ErrInvalidOptions means Options or StreamConfig failed validation.
	ErrInvalidOptions = errors.New("kvstream: invalid options")
	// ErrLocked means the data directory is held by another DB, in this
	// process or another one.
	ErrLocked = errors.New("kvstream: data directory in use")
	// ErrCorruption means stored data failed to decode. It is never caused
	// by user input.
	ErrCorruption = errors.New("kvstream: corruption")
	// ErrWriteFailed means a write could not be made durable outside
	// Pebble's WAL (the sequence-number file) or Pebble refused a batch;
	// nothing of the call was applied and the DB keeps running, so the
	// call may be retried.
	ErrWriteFailed = errors.New("kvstream: write failed")
	// ErrFailed means the DB has stopped after a fatal storage failure (a
	// failed WAL write or fsync; see engine.Options.OnFatal). It is sticky:
	// every later call returns it without touching Pebble, until the
	// process reopens the data directory.
	ErrFailed = errors.New("kvstream: storage failed; the DB has stopped")
	// ErrDiskFull means the data directory's filesystem is below its free
	// space floor (engine Options.MinFreeBytes) or a write to it failed with
	// ENOSPC, so puts are refused before they reach the disk. It is
	// retryable: puts succeed again, without a reopen, once space is freed.
	ErrDiskFull = errors.New("kvstream: disk full")
)

// Error is the concrete type behind engine errors. Kind is one of the
// sentinels above; Reason says which condition of that kind it is (zero
// when the kind says it all); the other fields hold the values involved,
// as each Reason documents, so a caller (the server, a CLI) can word the
// error its own way without parsing text. Error() is plain English built
// from Msg.
//
// Fields a Reason does not mention are zero. Shard and Other are only
// meaningful where the Reason says so (shard 0 is a valid shard).
type Error struct {
	Kind   error
	Reason Reason
	// Op is the engine call that failed ("SplitShard", "Resolve", …),
	// where it matters for the wording.
	Op string
	// Stream is the stream the error is about, if any.
	Stream string
	// Shard is the shard the error is about; Other a second shard (the
	// shard a sequence number encodes, the adjacent shard of a merge).
	Shard, Other ShardID
	// Consumer is the consumer the error is about, if any.
	Consumer string
	// Field names the argument at fault (a Go field or parameter name,
	// e.g. "Records[3].Data"), Value its offending value as text.
	Field, Value string
	// Limit is the bound that was broken and Actual the value that broke
	// it (counts, bytes, hours, …, as the Reason says); Requested is a
	// third number some reasons carry (a requested shard count).
	Limit, Actual, Requested int64
	// State is a status the call found ("CREATING").
	State string
	// Sequence is the sequence number at fault.
	Sequence SequenceNumber
	// Range is a shard's hash-key range.
	Range HashRange
	// Time and Now are the instants a time-based error compares
	// (an iterator's issue time, a start timestamp) against the clock.
	Time, Now time.Time
	// Msg is the message in plain English, without the kind's prefix.
	Msg string
	// Cause is an underlying error (I/O, Pebble), if any.
	Cause error
}

// Reason identifies the condition behind an Error within its Kind, for
// callers that render errors in their own words.
type Reason uint8

// Reasons, with the Error fields each one sets.
const (
	// ReasonNone: the Kind says it all; Msg explains.
	ReasonNone Reason = iota
	// ReasonStreamNotActive (ErrResourceInUse): Stream is in State.
	ReasonStreamNotActive
	// ReasonShardClosed (ErrResourceInUse): Shard of Stream is closed
	// and cannot be resharded.
	ReasonShardClosed
	// ReasonIteratorStreamGone (ErrStreamNotFound): the stream a shard
	// iterator token was issued for (Stream, "" when the token does not
	// say) was deleted; Shard is the token's shard.
	ReasonIteratorStreamGone
	// ReasonShardLimit (ErrLimitExceeded): the DB's open-shard limit
	// (Limit). For Op "CreateStream", Actual is the open shards before
	// the call and Requested the stream's shards; otherwise Actual is the
	// open shards the change would leave.
	ReasonShardLimit
	// ReasonShardCountRange (ErrLimitExceeded): UpdateShardCount's target
	// (Requested) is not within half and double of the open shard count
	// (Actual) of Stream.
	ReasonShardCountRange
	// ReasonSplitHashKey (ErrInvalidArgument): the split point Value is
	// not strictly inside Range, the range of Shard of Stream.
	ReasonSplitHashKey
	// ReasonNotAdjacent (ErrInvalidArgument): Shard and Other of Stream
	// are not an adjacent pair, in that order.
	ReasonNotAdjacent
	// ReasonOrderingNumber (ErrInvalidArgument): Sequence, given as the
	// minimum sequence number of a put to Stream, is beyond its shard's
	// last record.
	ReasonOrderingNumber
	// ReasonExplicitHashKey (ErrInvalidArgument): Value is not a hash key.
	ReasonExplicitHashKey
	// ReasonRetentionRange (ErrInvalidArgument): a retention of Actual ms
	// is outside [Limit, Requested] ms.
	ReasonRetentionRange
	// ReasonRetentionShorter / ReasonRetentionLonger (ErrInvalidArgument):
	// an increase (decrease) of Stream's retention asked for Requested
	// hours, below (above) its Actual hours.
	ReasonRetentionShorter
	ReasonRetentionLonger
	// ReasonTagLimit (ErrInvalidArgument): a stream would have Actual tags,
	// more than Limit.
	ReasonTagLimit
	// ReasonSequenceOtherShard (ErrInvalidArgument): Sequence encodes
	// shard Other but was used with Shard.
	ReasonSequenceOtherShard
	// ReasonSequenceOtherStream (ErrInvalidArgument): Sequence, used with
	// Shard of Stream, did not come from this stream.
	ReasonSequenceOtherStream
	// ReasonTimestampFuture (ErrInvalidArgument): a start timestamp (Time)
	// is after the clock (Now).
	ReasonTimestampFuture
	// ReasonInvalidToken (ErrInvalidArgument): a shard iterator token is
	// forged, damaged or not a token.
	ReasonInvalidToken
	// ReasonIteratorExpired (ErrExpiredIterator): a token issued at Time
	// is older at Now than its lifetime of Limit ms.
	ReasonIteratorExpired
	// ReasonWriteRate (ErrThroughputExceeded): Shard of Stream refused a
	// write.
	ReasonWriteRate
	// ReasonReadRate (ErrThroughputExceeded): Shard of Stream refused a
	// read.
	ReasonReadRate
)

// Error implements error: the kind, then Msg, then the cause.
func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%v: %s: %v", e.Kind, e.Msg, e.Cause)
	}
	return fmt.Sprintf("%v: %s", e.Kind, e.Msg)
}

// Unwrap lets errors.Is match both the kind and the cause.
func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Kind, e.Cause}
	}
	return []error{e.Kind}
}

// Errorf returns an *Error of the given kind with a formatted message and
// no reason or fields.
func Errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Message returns err's message without the kind's prefix: Msg for an
// *Error, err.Error() otherwise.
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Msg
	}
	var ce *CorruptionError
	if errors.As(err, &ce) {
		return ce.Message()
	}
	return err.Error()
}

// IsCorruptionError reports whether err means stored data is damaged.
func IsCorruptionError(err error) bool { return errors.Is(err, ErrCorruption) }

// Sentinels of the data directory's state (opening, checking, read-only
// use). Kept in a block of their own so other kinds can be appended above.
var (
	// ErrFormatVersion means the data directory was written in an on-disk
	// format this build does not read (a newer kvstream wrote it).
	ErrFormatVersion = errors.New("kvstream: unsupported format version")
	// ErrNotDataDir means a directory is not a kvstream data directory: a
	// read-only open found none there, or Open refused to initialise a
	// non-empty directory that holds other files.
	ErrNotDataDir = errors.New("kvstream: not a kvstream data directory")
	// ErrReadOnly means a write was attempted on a DB opened with
	// Options.ReadOnly.
	ErrReadOnly = errors.New("kvstream: read-only")
	// ErrStorage means the operating system refused an operation on the
	// data directory (permission denied, not a directory, I/O error, …).
	// The cause is the OS error, with the path: errors.Is(err,
	// fs.ErrPermission) and errors.As(err, **fs.PathError) work. It never
	// means the data is damaged (that is ErrCorruption).
	ErrStorage = errors.New("kvstream: storage error")
)
