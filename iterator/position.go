// Package iterator is one of the engine's internals: it turns start
// positions into shard positions, reads a shard's records in order
// (Iterator, tied to its DB's lifetime by a Gate), and encodes the
// stateless, MAC-authenticated shard iterator tokens. Programs use the
// engine package, which re-exports the start positions and the Iterator;
// this package's exported surface exists for engine and may change with
// it.
package iterator

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/shard"
)

// Kind is the type of a StartPosition; the names are Kinesis'
// ShardIteratorType values.
type Kind uint8

const (
	KindTrimHorizon Kind = iota + 1
	KindLatest
	KindAtSequenceNumber
	KindAfterSequenceNumber
	KindAtTimestamp
)

// String returns the Kinesis name (TRIM_HORIZON, LATEST, …).
func (k Kind) String() string {
	switch k {
	case KindTrimHorizon:
		return "TRIM_HORIZON"
	case KindLatest:
		return "LATEST"
	case KindAtSequenceNumber:
		return "AT_SEQUENCE_NUMBER"
	case KindAfterSequenceNumber:
		return "AFTER_SEQUENCE_NUMBER"
	case KindAtTimestamp:
		return "AT_TIMESTAMP"
	}
	return "UNKNOWN"
}

// StartPosition says where in a shard reading starts. Build one with
// TrimHorizon, Latest, AtSequenceNumber, AfterSequenceNumber or
// AtTimestamp; the zero value is invalid.
type StartPosition struct {
	Kind      Kind
	Sequence  shard.SequenceNumber
	Timestamp time.Time
}

// TrimHorizon starts at the oldest record still retained.
func TrimHorizon() StartPosition { return StartPosition{Kind: KindTrimHorizon} }

// Latest starts just after the newest record at the time the position is
// resolved (a fixed point: records put later are read).
func Latest() StartPosition { return StartPosition{Kind: KindLatest} }

// AtSequenceNumber starts at the record with sequence number n.
func AtSequenceNumber(n shard.SequenceNumber) StartPosition {
	return StartPosition{Kind: KindAtSequenceNumber, Sequence: n}
}

// AfterSequenceNumber starts just after the record with sequence number n.
func AfterSequenceNumber(n shard.SequenceNumber) StartPosition {
	return StartPosition{Kind: KindAfterSequenceNumber, Sequence: n}
}

// AtTimestamp starts at the first record that arrived at or after t; a t
// before the trim horizon starts at the trim horizon.
func AtTimestamp(t time.Time) StartPosition {
	return StartPosition{Kind: KindAtTimestamp, Timestamp: t}
}

// Resolve returns the first counter to read in l for pos. cutoffMs is the
// oldest arrival time still retained; nowMs is the current time. Errors
// are *shard.Error of kind shard.ErrInvalidArgument for numbers from
// another shard (shard.ReasonSequenceOtherShard) or stream
// (shard.ReasonSequenceOtherStream) and timestamps in the future
// (shard.ReasonTimestampFuture).
func Resolve(r pebble.Reader, l *shard.Log, pos StartPosition, nowMs, cutoffMs int64) (uint64, error) {
	switch pos.Kind {
	case KindTrimHorizon:
		return l.SeekArrival(r, l.TrimPoint(), cutoffMs)
	case KindLatest:
		return l.Published() + 1, nil
	case KindAtSequenceNumber, KindAfterSequenceNumber:
		n := pos.Sequence
		if n.Shard != uint32(l.ID) {
			return 0, &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonSequenceOtherShard,
				Shard: l.ID, Other: shard.ShardID(n.Shard), Sequence: n,
				Msg: fmt.Sprintf("sequence number %s belongs to %s, not %s", n, shard.ShardID(n.Shard), l.ID)}
		}
		if !l.Owns(n) {
			return 0, &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonSequenceOtherStream,
				Shard: l.ID, Sequence: n,
				Msg: fmt.Sprintf("sequence number %s did not come from %s of this stream", n, l.ID)}
		}
		c := n.Counter
		if pos.Kind == KindAfterSequenceNumber && c < shard.MaxCounter {
			c++
		} else if pos.Kind == KindAfterSequenceNumber {
			c = l.Published() + 1
		}
		if c > l.Published()+1 {
			c = l.Published() + 1
		}
		return c, nil
	case KindAtTimestamp:
		ms := pos.Timestamp.UnixMilli()
		if ms > nowMs {
			return 0, &shard.Error{Kind: shard.ErrInvalidArgument, Reason: shard.ReasonTimestampFuture,
				Time: time.UnixMilli(ms), Now: time.UnixMilli(nowMs),
				Msg: fmt.Sprintf("AtTimestamp %d ms is after the current time %d ms", ms, nowMs)}
		}
		return l.SeekArrival(r, l.TrimPoint(), max(ms, cutoffMs))
	}
	return 0, shard.Errorf(shard.ErrValidation, "start position kind %d is not one of TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, AT_TIMESTAMP", pos.Kind)
}
