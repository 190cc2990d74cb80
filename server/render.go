package server

import (
	"errors"
	"strconv"
	"time"

	"github.com/kvstream/kvstream/engine"
)

// How engine errors reach clients, in one place: the __type of each kind
// (renderError) and the Kinesis text of each reason (kinesisText). The
// engine reports what went wrong as data (engine.Error: a kind, a reason
// and the values involved); this file words it as Kinesis does. Nothing
// here looks at an error's text.

// kinesisDate is how Kinesis prints times in its messages (Java's
// Date.toString: a two-digit day).
const kinesisDate = "Mon Jan 02 15:04:05 MST 2006"

// call is the context an engine error is rendered in.
type call struct {
	// op is the Kinesis operation, where its text names it
	// ("SubscribeToShard"); empty for the usual wording.
	op string
	// stream is the stream the request named ("" if it named none):
	// texts about that stream say "under account N", as Kinesis' do.
	stream string
}

// renderError maps an engine error to the Kinesis error a client sees in
// the context of call c: the __type from the error's kind, the message
// from the table in render.go.
func (s *Server) renderError(err error, c call) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	msg := engine.Message(err)
	typ := errInternalFailure
	switch {
	case errors.Is(err, engine.ErrStreamNotFound), errors.Is(err, engine.ErrShardNotFound),
		errors.Is(err, engine.ErrConsumerNotFound):
		typ = errResourceNotFound
	case errors.Is(err, engine.ErrStreamExists), errors.Is(err, engine.ErrResourceInUse):
		typ = errResourceInUse
	case errors.Is(err, engine.ErrValidation):
		typ = errValidation
	case errors.Is(err, engine.ErrInvalidArgument):
		typ = errInvalidArgument
	case errors.Is(err, engine.ErrExpiredIterator):
		typ = errExpiredIterator
	case errors.Is(err, engine.ErrThroughputExceeded), errors.Is(err, engine.ErrStreamFull):
		typ = errThroughputExceeded
	case errors.Is(err, engine.ErrLimitExceeded):
		typ = errLimitExceeded
	case errors.Is(err, engine.ErrDiskFull):
		// No Kinesis text: the engine's message says how full the disk is.
		return newAPIError(errServiceUnavailable, msg)
	}
	if typ == errInternalFailure {
		if errCanceled(err) { // the client went away; nothing to report
			return newAPIError(errInternalFailure, "The request was cancelled.")
		}
		if errors.Is(err, engine.ErrCorruption) {
			// Damaged stored data: say so (the message names the stream,
			// shard and position), count it, and log it for the operator.
			s.metrics.corruption.Inc()
			s.cfg.Logger.Error("kvstream server: stored data is damaged", "err", err)
			return newAPIError(errInternalFailure, "Internal service failure: corruption: "+msg)
		}
		s.cfg.Logger.Error("kvstream server: internal failure", "err", err)
		return newAPIError(errInternalFailure, "Internal service failure.")
	}
	var e *engine.Error
	if errors.As(err, &e) {
		msg = s.kinesisText(e, c)
	}
	return newAPIError(typ, msg)
}

// kinesisText returns Kinesis' message for e in the context c. Errors
// without a Kinesis text (a Go-level misuse the server's own validation
// keeps clients from) keep the engine's plain message.
func (s *Server) kinesisText(e *engine.Error, c call) string {
	// stream names e's stream, qualified with the account when it is the
	// stream the request named.
	stream := e.Stream
	if c.stream != "" && c.stream == e.Stream {
		stream += " under account " + s.cfg.Account
	}
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	switch e.Reason {
	case engine.ReasonNone:
		switch e.Kind {
		case engine.ErrStreamNotFound:
			return "Stream " + stream + " not found."
		case engine.ErrShardNotFound:
			return "Shard " + e.Shard.String() + " in stream " + stream + " does not exist"
		case engine.ErrStreamExists:
			return "Stream " + stream + " already exists."
		case engine.ErrConsumerNotFound:
			return "Consumer " + e.Consumer + " under stream " + stream + " not found."
		case engine.ErrStreamFull:
			return "Stream " + stream + " holds " + itoa(e.Actual) + " bytes; a record of " + itoa(e.Requested) +
				" stored bytes would exceed its MaxBytes of " + itoa(e.Limit) + "."
		}
		return e.Msg
	case engine.ReasonStreamNotActive:
		return "Stream " + stream + " not ACTIVE, instead in state " + e.State
	case engine.ReasonShardClosed:
		return "Shard " + e.Shard.String() + " in stream " + stream + " is closed and cannot be resharded."
	case engine.ReasonIteratorStreamGone:
		if e.Stream != "" { // Kinesis names the shard of the stream that is gone
			return "Shard " + e.Shard.String() + " in stream " + stream + " does not exist"
		}
		return "The stream of this shard iterator no longer exists."
	case engine.ReasonShardLimit:
		if e.Op == "CreateStream" {
			return "This request would exceed the shard limit for the account " + s.cfg.Account + " in " + s.cfg.Region +
				". Current shard count: " + itoa(e.Actual) + ", limit: " + itoa(e.Limit) + "; requested: " + itoa(e.Requested) + "."
		}
		return "This request would exceed the shard limit for the account. Limit: " + itoa(e.Limit) +
			"; the DB would have " + itoa(e.Actual) + " open shards."
	case engine.ReasonShardCountRange:
		n := e.Actual
		return "UpdateShardCount target " + itoa(e.Requested) + " for stream " + stream + " must be at least half (" + itoa((n+1)/2) +
			") and at most double (" + itoa(2*n) + ") the current open shard count " + itoa(n) + "."
	case engine.ReasonSplitHashKey:
		return "NewStartingHashKey " + e.Value + " used in SplitShard() on shard " + e.Shard.String() + " in stream " + stream +
			" is not both greater than one plus the shard's StartingHashKey " + e.Range.Start.String() +
			" and less than the shard's EndingHashKey " + e.Range.End.String() + "."
	case engine.ReasonNotAdjacent:
		return "Shards " + e.Shard.String() + " and " + e.Other.String() + " in stream " + stream +
			" are not an adjacent pair of shards eligible for merging"
	case engine.ReasonOrderingNumber:
		return "ExclusiveMinimumSequenceNumber " + e.Sequence.String() + " used in PutRecord on stream " + stream + " is invalid."
	case engine.ReasonExplicitHashKey:
		return "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was " + e.Value
	case engine.ReasonRetentionRange:
		ms := func(n int64) string { return (time.Duration(n) * time.Millisecond).String() }
		return "Retention " + ms(e.Actual) + " must be in [" + ms(e.Limit) + ", " + ms(e.Requested) + "]"
	case engine.ReasonRetentionShorter:
		return "Requested retention period (" + itoa(e.Requested) + " hours) for stream " + e.Stream +
			" can not be shorter than existing retention period (" + itoa(e.Actual) + " hours). Use DecreaseRetentionPeriod API."
	case engine.ReasonRetentionLonger:
		return "Requested retention period (" + itoa(e.Requested) + " hours) for stream " + e.Stream +
			" can not be longer than existing retention period (" + itoa(e.Actual) + " hours). Use IncreaseRetentionPeriod API."
	case engine.ReasonTagLimit:
		return "A stream cannot have more than " + itoa(e.Limit) + " tags (it would have " + itoa(e.Actual) + ")."
	case engine.ReasonSequenceOtherShard:
		return "Invalid StartingSequenceNumber. It encodes " + e.Other.String() + ", while it was used in a call to a shard with " + e.Shard.String()
	case engine.ReasonSequenceOtherStream:
		if c.op == "SubscribeToShard" {
			return "StartingSequenceNumber " + e.Sequence.String() + " used in SubscribeToShard on shard " + e.Shard.String() +
				" is invalid because it did not come from this stream."
		}
		return "StartingSequenceNumber " + e.Sequence.String() + " used in GetShardIterator on shard " + e.Shard.String() +
			" in stream " + c.stream + " under account " + s.cfg.Account + " is invalid because it did not come from this stream."
	case engine.ReasonTimestampFuture:
		return "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: " +
			itoa(e.Time.UnixMilli()) + ", currentTimestampInMillis: " + itoa(e.Now.UnixMilli())
	case engine.ReasonInvalidToken:
		return "Invalid ShardIterator."
	case engine.ReasonIteratorExpired:
		return "Iterator expired. The iterator was created at time " + e.Time.UTC().Format(kinesisDate) +
			" while right now it is " + e.Now.UTC().Format(kinesisDate) +
			" which is further in the future than the tolerated delay of " + itoa(e.Limit) + " milliseconds."
	case engine.ReasonWriteRate:
		return "Rate exceeded for shard " + e.Shard.String() + " in stream " + stream + "."
	case engine.ReasonReadRate:
		return "Rate exceeded for Shard - " + s.cfg.Account + "/" + e.Stream + "/" + e.Shard.String() + "."
	}
	return e.Msg
}
