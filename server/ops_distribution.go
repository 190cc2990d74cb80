package server

import (
	"math/big"
	"math/rand/v2"
)

// UpdateStreamRecordDistributionStrategy: a stream's record distribution
// strategy, USER_PARTITION_KEY (the default: a record's partition key, or
// its ExplicitHashKey, picks its shard) or AUTO (the service spreads
// records evenly over the shards and ignores both). AUTO is for on-demand
// streams only. The strategy is a stream attribute, so it persists and
// goes with the stream.
//
// Under AUTO, PutRecord and PutRecords place each record at a uniformly
// random hash key, whatever partition key and ExplicitHashKey it carries
// (the partition key is still stored and returned), and PutRecord refuses
// SequenceNumberForOrdering, as AWS does. Records already in the stream
// keep their shards.

// distributionAttr is the stream attribute holding "AUTO" (absent:
// USER_PARTITION_KEY).
const distributionAttr = "kinesis/record-distribution-strategy"

var distributionStrategies = []string{"AUTO", "USER_PARTITION_KEY"}

type updateDistributionInput struct {
	StreamARN                  *string `json:"StreamARN"`
	StreamId                   *string `json:"StreamId"`
	RecordDistributionStrategy *string `json:"RecordDistributionStrategy"`
}

func (s *Server) updateRecordDistribution(rq *request) (any, *apiError) {
	var in updateDistributionInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.reqStr("streamARN", in.StreamARN, 1, maxARNLen, isStreamARN, streamARNText)
	c.streamID(in.StreamId)
	if c.required("recordDistributionStrategy", in.RecordDistributionStrategy != nil) {
		c.enum("recordDistributionStrategy", in.RecordDistributionStrategy, distributionStrategies)
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	name, aerr := s.resolveStream(nil, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	// The mode check and the change are one step (UpdateAttrs), so an
	// UpdateStreamMode to PROVISIONED cannot slip in between and leave a
	// provisioned stream with AUTO.
	auto := *in.RecordDistributionStrategy == "AUTO"
	var refused *apiError
	err := s.db.UpdateAttrs(name, func(a map[string][]byte) error {
		if !auto { // USER_PARTITION_KEY: the default, stored as no attribute
			delete(a, distributionAttr)
			return nil
		}
		if mode, ok := a[modeAttr]; !ok || string(mode) != modeOnDemand {
			refused = newAPIError(errInvalidArgument, "The AUTO record distribution strategy is only supported for streams in ON_DEMAND capacity mode; stream "+
				name+" under account "+s.cfg.Account+" is PROVISIONED.")
			return refused
		}
		a[distributionAttr] = []byte("AUTO")
		return nil
	})
	if refused != nil {
		return nil, refused
	}
	if err != nil {
		return nil, s.engineError(err, name)
	}
	return nil, nil
}

// leavingOnDemand resets, in a stream's attributes a, the settings that
// only an ON_DEMAND stream has, when its mode becomes mode; setMode calls
// it in the same step as the mode change.
//
// The record distribution strategy goes back to USER_PARTITION_KEY on a
// change to PROVISIONED. AWS documents that provisioned streams do not
// support the setting and refuse AUTO on them, but not what a change of
// mode does to a stream that has it; resetting keeps the invariant (no
// provisioned stream places records with AUTO) without refusing a mode
// change AWS may allow, and the strategy is never silently lost on a
// stream that stays on-demand. Records already written keep their shards.
func leavingOnDemand(a map[string][]byte, mode string) {
	if mode != modeOnDemand {
		delete(a, distributionAttr)
	}
}

// autoDistributed reports whether stream uses the AUTO strategy.
func (s *Server) autoDistributed(stream string) bool {
	v, ok, err := s.db.Attr(stream, distributionAttr)
	return err == nil && ok && string(v) == "AUTO"
}

// randomHashKey returns a uniformly random 128-bit hash key (decimal).
func randomHashKey() string {
	var x big.Int
	x.SetUint64(rand.Uint64())
	x.Lsh(&x, 64)
	x.Or(&x, new(big.Int).SetUint64(rand.Uint64()))
	return x.String()
}

// autoPlacementError is AWS's refusal of SequenceNumberForOrdering on an
// AUTO stream.
func (s *Server) autoPlacementError(stream string) *apiError {
	return newAPIError(errInvalidArgument, "SequenceNumberForOrdering is not supported on stream "+stream+" under account "+
		s.cfg.Account+": its record distribution strategy is AUTO.")
}
