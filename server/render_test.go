package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// Every engine error reason has its Kinesis text here, rendered from the
// error's fields alone (the engine's plain-English Msg is never used for
// these), with the account qualifier only for the stream the call named.
func TestRenderTable(t *testing.T) {
	s := &Server{cfg: Config{Account: "123456789012", Region: "eu-west-1"}}
	seq := engine.SequenceNumber{ShardCreated: 1_796_107_000, Shard: 2, Counter: 5, Written: 1_796_107_100}
	at := time.Date(2026, 12, 1, 6, 43, 51, 0, time.UTC)
	lo, _ := engine.ParseHashKey("0")
	hi, _ := engine.ParseHashKey("170141183460469231731687303715884105727")
	const noMsg = "the engine's message must not be sent"
	cases := []struct {
		e    engine.Error
		c    call
		typ  string
		want string
	}{
		{engine.Error{Kind: engine.ErrStreamNotFound, Stream: "s"}, call{stream: "s"}, errResourceNotFound,
			"Stream s under account 123456789012 not found."},
		{engine.Error{Kind: engine.ErrStreamNotFound, Stream: "s"}, call{}, errResourceNotFound,
			"Stream s not found."},
		{engine.Error{Kind: engine.ErrShardNotFound, Stream: "s", Shard: 7}, call{stream: "s"}, errResourceNotFound,
			"Shard shardId-000000000007 in stream s under account 123456789012 does not exist"},
		{engine.Error{Kind: engine.ErrShardNotFound, Stream: "s", Shard: 7}, call{stream: "other"}, errResourceNotFound,
			"Shard shardId-000000000007 in stream s does not exist"},
		{engine.Error{Kind: engine.ErrStreamExists, Stream: "s"}, call{stream: "s"}, errResourceInUse,
			"Stream s under account 123456789012 already exists."},
		{engine.Error{Kind: engine.ErrConsumerNotFound, Stream: "s", Consumer: "c"}, call{stream: "s"}, errResourceNotFound,
			"Consumer c under stream s under account 123456789012 not found."},
		{engine.Error{Kind: engine.ErrStreamFull, Stream: "s", Actual: 10, Requested: 5, Limit: 12}, call{stream: "s"}, errThroughputExceeded,
			"Stream s under account 123456789012 holds 10 bytes; a record of 5 stored bytes would exceed its MaxBytes of 12."},
		{engine.Error{Kind: engine.ErrResourceInUse, Reason: engine.ReasonStreamNotActive, Stream: "s", State: "CREATING"}, call{stream: "s"}, errResourceInUse,
			"Stream s under account 123456789012 not ACTIVE, instead in state CREATING"},
		{engine.Error{Kind: engine.ErrResourceInUse, Reason: engine.ReasonShardClosed, Stream: "s", Shard: 0}, call{stream: "s"}, errResourceInUse,
			"Shard shardId-000000000000 in stream s under account 123456789012 is closed and cannot be resharded."},
		{engine.Error{Kind: engine.ErrStreamNotFound, Reason: engine.ReasonIteratorStreamGone}, call{}, errResourceNotFound,
			"The stream of this shard iterator no longer exists."},
		{engine.Error{Kind: engine.ErrStreamNotFound, Reason: engine.ReasonIteratorStreamGone, Stream: "s", Shard: 0}, call{stream: "s"}, errResourceNotFound,
			"Shard shardId-000000000000 in stream s under account 123456789012 does not exist"},
		{engine.Error{Kind: engine.ErrLimitExceeded, Reason: engine.ReasonShardLimit, Op: "CreateStream", Stream: "s", Actual: 3, Limit: 4, Requested: 2}, call{stream: "s"}, errLimitExceeded,
			"This request would exceed the shard limit for the account 123456789012 in eu-west-1. Current shard count: 3, limit: 4; requested: 2."},
		{engine.Error{Kind: engine.ErrLimitExceeded, Reason: engine.ReasonShardLimit, Stream: "s", Actual: 5, Limit: 4}, call{stream: "s"}, errLimitExceeded,
			"This request would exceed the shard limit for the account. Limit: 4; the DB would have 5 open shards."},
		{engine.Error{Kind: engine.ErrLimitExceeded, Reason: engine.ReasonShardCountRange, Stream: "s", Actual: 3, Requested: 7}, call{stream: "s"}, errLimitExceeded,
			"UpdateShardCount target 7 for stream s under account 123456789012 must be at least half (2) and at most double (6) the current open shard count 3."},
		{engine.Error{Kind: engine.ErrInvalidArgument, Reason: engine.ReasonSplitHashKey, Stream: "s", Shard: 0, Value: "1", Range: engine.HashRange{Start: lo, End: hi}}, call{stream: "s"}, errInvalidArgument,
			"NewStartingHashKey 1 used in SplitShard() on shard shardId-000000000000 in stream s under account 123456789012 is not both greater than one plus the shard's StartingHashKey 0 and less than the shard's EndingHashKey 170141183460469231731687303715884105727."},
		{engine.Error{Kind: engine.ErrInvalidArgument, Reason: engine.ReasonNotAdjacent, Stream: "s", Shard: 1, Other: 0}, call{stream: "s"}, errInvalidArgument,
			"Shards shardId-000000000001 and shardId-000000000000 in stream s under account 123456789012 are not an adjacent pair of shards eligible for merging"},
		{engine.Error{Kind: engine.ErrInvalidArgument, Reason: engine.ReasonOrderingNumber, Stream: "s", Sequence: seq}, call{stream: "s"}, errInvalidArgument,
			"ExclusiveMinimumSequenceNumber " + seq.String() + " used in PutRecord on stream s under account 123456789012 is invalid."},
		{engine.Error{Kind: engine.ErrInvalidArgument, Reason: engine.ReasonExplicitHashKey, Value: "-1"}, call{stream: "s"}, errInvalidArgument,
			"Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was -1"},
		{engine.Error{Kind: engine.ErrInvalidArgument, Reason: engine.ReasonRetentionRange, Actual: 1000, Limit: 60000, Requested: (8760 * time.Hour).Milliseconds()}, call{stream: "s"}, errInvalidArgument,
			"Retention 1s must be in [1m0s, 8760h0m0s]"},
		{engine.Error{Kind: engine.ErrInvalidArgument, Reason: engine.ReasonRetentionShorter, Stream: "s", Requested: 30, Actual: 48}, call{stream: "s"}, errInvalidArgument,
			"Requested retention period (30 hours) for stream s can not be shorter than existing retention period (48 hours). Use DecreaseRetentionPeriod API."},
		{engine.Error{Kind: engine.ErrInvalidArgument, Reason: engine.ReasonRetentionLonger, Stream: "s", Requested: 72, Actual: 48}, call{stream: "s"}, errInvalidArgument,
			"Requested retention period (72 hours) for stream s can not be longer than existing retention period (48 hours). Use IncreaseRetentionPeriod API."},
		{engine.Error{Kind: engine.ErrInvalidArgument, Reason: engine.ReasonTagLimit, Actual: 51, Limit: 50}, call{stream: "s"}, errInvalidArgument,
			"A stream cannot have more than 50 tags (it would have 51)."},
		{engine.Error{Kind: engine.ErrInvalidArgument, Reason: engine.ReasonSequenceOtherShard, Shard: 0, Other: 5}, call{stream: "s"}, errInvalidArgument,
			"Invalid StartingSequenceNumber. It encodes shardId-000000000005, while it was used in a call to a shard with shardId-000000000000"},
		{engine.Error{Kind: engine.ErrInvalidArgument, Reason: engine.ReasonSequenceOtherStream, Shard: 2, Sequence: seq}, call{stream: "s"}, errInvalidArgument,
			"StartingSequenceNumber " + seq.String() + " used in GetShardIterator on shard shardId-000000000002 in stream s under account 123456789012 is invalid because it did not come from this stream."},
		{engine.Error{Kind: engine.ErrInvalidArgument, Reason: engine.ReasonSequenceOtherStream, Shard: 2, Sequence: seq}, call{op: "SubscribeToShard", stream: "s"}, errInvalidArgument,
			"StartingSequenceNumber " + seq.String() + " used in SubscribeToShard on shard shardId-000000000002 is invalid because it did not come from this stream."},
		{engine.Error{Kind: engine.ErrInvalidArgument, Reason: engine.ReasonTimestampFuture, Time: at.Add(time.Hour), Now: at}, call{stream: "s"}, errInvalidArgument,
			fmt.Sprintf("The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: %d, currentTimestampInMillis: %d", at.Add(time.Hour).UnixMilli(), at.UnixMilli())},
		{engine.Error{Kind: engine.ErrInvalidArgument, Reason: engine.ReasonInvalidToken}, call{}, errInvalidArgument,
			"Invalid ShardIterator."},
		{engine.Error{Kind: engine.ErrExpiredIterator, Reason: engine.ReasonIteratorExpired, Time: at, Now: at.Add(6 * time.Minute), Limit: 300000}, call{}, errExpiredIterator,
			"Iterator expired. The iterator was created at time Tue Dec 01 06:43:51 UTC 2026 while right now it is Tue Dec 01 06:49:51 UTC 2026 which is further in the future than the tolerated delay of 300000 milliseconds."},
		{engine.Error{Kind: engine.ErrThroughputExceeded, Reason: engine.ReasonWriteRate, Stream: "s", Shard: 0}, call{stream: "s"}, errThroughputExceeded,
			"Rate exceeded for shard shardId-000000000000 in stream s under account 123456789012."},
		{engine.Error{Kind: engine.ErrThroughputExceeded, Reason: engine.ReasonReadRate, Stream: "s", Shard: 0}, call{}, errThroughputExceeded,
			"Rate exceeded for Shard - 123456789012/s/shardId-000000000000."},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			e := tc.e
			e.Msg = noMsg
			ae := s.renderError(fmt.Errorf("wrapped: %w", &e), tc.c)
			require.Equal(t, tc.typ, ae.Type)
			require.Equal(t, tc.want, ae.Msg)
		})
	}
	// An error without a Kinesis text keeps its plain message; one of no
	// client-facing kind is an InternalFailure that says nothing more.
	ae := s.renderError(&engine.Error{Kind: engine.ErrValidation, Msg: "Limit 0 must be in [1, 10000]"}, call{})
	require.Equal(t, errValidation, ae.Type)
	require.Equal(t, "Limit 0 must be in [1, 10000]", ae.Msg)
	s.cfg.Logger = slog.New(slog.DiscardHandler)
	ae = s.renderError(&engine.Error{Kind: engine.ErrWriteFailed, Msg: "CreateStream of stream s"}, call{stream: "s"})
	require.Equal(t, errInternalFailure, ae.Type)
	require.Equal(t, "Internal service failure.", ae.Msg)
	require.False(t, errors.Is(ae, engine.ErrWriteFailed))
}

// The storage failure kinds: a stopped DB (fail-stop) is a 500 that says
// nothing of the engine's internals; a full disk is a retryable 503 whose
// message is the engine's (it names the directory and free space).
func TestRenderStorageFailures(t *testing.T) {
	s := &Server{cfg: Config{Account: "123456789012", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	failed := s.renderError(fmt.Errorf("put: %w", engine.ErrFailed), call{op: "PutRecord", stream: "s"})
	require.Equal(t, errInternalFailure, failed.Type)
	require.Equal(t, http.StatusInternalServerError, failed.Status)
	require.Equal(t, "Internal service failure.", failed.Msg)

	full := s.renderError(&engine.Error{Kind: engine.ErrDiskFull, Msg: "data directory /d has 1 MiB free"}, call{op: "PutRecord", stream: "s"})
	require.Equal(t, errServiceUnavailable, full.Type)
	require.Equal(t, http.StatusServiceUnavailable, full.Status)
	require.Contains(t, full.Msg, "1 MiB free")
}
