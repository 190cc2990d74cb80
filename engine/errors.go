package engine

import (
	"fmt"

	"github.com/kvstream/kvstream/iterator"
	"github.com/kvstream/kvstream/shard"
)

// Reason identifies the condition behind an Error within its Kind; see the
// shard package for the fields each one sets.
type Reason = shard.Reason

// Reasons (see shard.Reason).
const (
	ReasonNone                = shard.ReasonNone
	ReasonStreamNotActive     = shard.ReasonStreamNotActive
	ReasonShardClosed         = shard.ReasonShardClosed
	ReasonIteratorStreamGone  = shard.ReasonIteratorStreamGone
	ReasonShardLimit          = shard.ReasonShardLimit
	ReasonShardCountRange     = shard.ReasonShardCountRange
	ReasonSplitHashKey        = shard.ReasonSplitHashKey
	ReasonNotAdjacent         = shard.ReasonNotAdjacent
	ReasonOrderingNumber      = shard.ReasonOrderingNumber
	ReasonExplicitHashKey     = shard.ReasonExplicitHashKey
	ReasonRetentionRange      = shard.ReasonRetentionRange
	ReasonRetentionShorter    = shard.ReasonRetentionShorter
	ReasonRetentionLonger     = shard.ReasonRetentionLonger
	ReasonTagLimit            = shard.ReasonTagLimit
	ReasonSequenceOtherShard  = shard.ReasonSequenceOtherShard
	ReasonSequenceOtherStream = shard.ReasonSequenceOtherStream
	ReasonTimestampFuture     = shard.ReasonTimestampFuture
	ReasonInvalidToken        = shard.ReasonInvalidToken
	ReasonIteratorExpired     = shard.ReasonIteratorExpired
	ReasonWriteRate           = shard.ReasonWriteRate
	ReasonReadRate            = shard.ReasonReadRate
)

// The engine's own error constructors, one per recurring condition.

func notFound(name string) error {
	return &shard.Error{Kind: shard.ErrStreamNotFound, Stream: name, Msg: fmt.Sprintf("stream %s does not exist", name)}
}

func shardNotFound(stream string, id shard.ShardID) error {
	return &shard.Error{Kind: shard.ErrShardNotFound, Stream: stream, Shard: id,
		Msg: fmt.Sprintf("stream %s has no shard %s", stream, id)}
}

func notActive(stream string, st StreamStatus) error {
	return &shard.Error{Kind: shard.ErrResourceInUse, Reason: shard.ReasonStreamNotActive, Stream: stream, State: string(st),
		Msg: fmt.Sprintf("stream %s is %s, not ACTIVE", stream, st)}
}

func consumerNotFound(stream, name string) error {
	return &shard.Error{Kind: shard.ErrConsumerNotFound, Stream: stream, Consumer: name,
		Msg: fmt.Sprintf("stream %s has no consumer %s", stream, name)}
}

// writeFailed wraps the failed commit of op.
func writeFailed(op, stream string, err error) error {
	return &shard.Error{Kind: shard.ErrWriteFailed, Op: op, Stream: stream, Msg: op + " of stream " + stream, Cause: err}
}

// streamGone is the error for a shard iterator token whose stream was
// deleted. Stream is the name the token carries ("" for old tokens).
func streamGone(tok iterator.Token) error {
	return &shard.Error{Kind: shard.ErrStreamNotFound, Reason: shard.ReasonIteratorStreamGone, Stream: tok.Name, Shard: tok.Shard,
		Msg: fmt.Sprintf("the stream %q of the shard iterator was deleted", tok.Name)}
}
