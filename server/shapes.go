package server

import (
	"slices"

	"github.com/kvstream/kvstream/engine"
)

// Wire shapes shared by several operations, named as in the Kinesis model.
// Field names are the model's member names; the same structs encode JSON
// and CBOR (fxamacker/cbor reads the json tags).

type streamModeDetails struct {
	StreamMode *string `json:"StreamMode"`
}

type hashKeyRange struct {
	StartingHashKey string `json:"StartingHashKey"`
	EndingHashKey   string `json:"EndingHashKey"`
}

type sequenceNumberRange struct {
	StartingSequenceNumber string `json:"StartingSequenceNumber"`
	EndingSequenceNumber   string `json:"EndingSequenceNumber,omitempty"`
}

type shardOut struct {
	ShardId               string              `json:"ShardId"`
	ParentShardId         string              `json:"ParentShardId,omitempty"`
	AdjacentParentShardId string              `json:"AdjacentParentShardId,omitempty"`
	HashKeyRange          hashKeyRange        `json:"HashKeyRange"`
	SequenceNumberRange   sequenceNumberRange `json:"SequenceNumberRange"`
}

type enhancedMetrics struct {
	ShardLevelMetrics []string `json:"ShardLevelMetrics"`
}

type tagOut struct {
	Key   string `json:"Key"`
	Value string `json:"Value"`
}

type childShardOut struct {
	ShardId      string       `json:"ShardId"`
	ParentShards []string     `json:"ParentShards"`
	HashKeyRange hashKeyRange `json:"HashKeyRange"`
}

func toShard(d engine.ShardDescription) shardOut {
	o := shardOut{
		ShardId:      d.ShardID.String(),
		HashKeyRange: hashKeyRange{StartingHashKey: d.HashKeyRange.Start.String(), EndingHashKey: d.HashKeyRange.End.String()},
		SequenceNumberRange: sequenceNumberRange{
			StartingSequenceNumber: d.StartingSequenceNumber.String(),
		},
	}
	if d.ParentShardID != nil {
		o.ParentShardId = d.ParentShardID.String()
	}
	if d.AdjacentParentShardID != nil {
		o.AdjacentParentShardId = d.AdjacentParentShardID.String()
	}
	if !d.Open() {
		o.SequenceNumberRange.EndingSequenceNumber = d.EndingSequenceNumber.String()
	}
	return o
}

func toShards(ds []engine.ShardDescription) []shardOut {
	out := make([]shardOut, len(ds))
	for i, d := range ds {
		out[i] = toShard(d)
	}
	return out
}

func modeOf(ks StreamSettings) *streamModeDetails {
	m := ks.Mode
	return &streamModeDetails{StreamMode: &m}
}

// metricsOf returns the enhanced-monitoring list Kinesis reports: one
// entry, whose metric list is empty when monitoring is off.
func metricsOf(ks StreamSettings) []enhancedMetrics {
	m := slices.Clone(ks.Metrics)
	if m == nil {
		m = []string{}
	}
	return []enhancedMetrics{{ShardLevelMetrics: m}}
}

func childShards(cs []engine.ChildShard) []childShardOut {
	if len(cs) == 0 {
		return nil
	}
	out := make([]childShardOut, len(cs))
	for i, c := range cs {
		ps := make([]string, len(c.ParentShards))
		for j, p := range c.ParentShards {
			ps[j] = p.String()
		}
		out[i] = childShardOut{
			ShardId:      c.ShardID.String(),
			ParentShards: ps,
			HashKeyRange: hashKeyRange{StartingHashKey: c.HashKeyRange.Start.String(), EndingHashKey: c.HashKeyRange.End.String()},
		}
	}
	return out
}
