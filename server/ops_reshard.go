package server

import (
	"strconv"
)

// Resharding: SplitShard, MergeShards, UpdateShardCount.

type splitShardInput struct {
	StreamName         *string `json:"StreamName"`
	ShardToSplit       *string `json:"ShardToSplit"`
	NewStartingHashKey *string `json:"NewStartingHashKey"`
	StreamARN          *string `json:"StreamARN"`
}

func (s *Server) splitShard(rq *request) (any, *apiError) {
	var in splitShardInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.streamName(in.StreamName)
	c.shardID("shardToSplit", in.ShardToSplit, true)
	c.reqStr("newStartingHashKey", in.NewStartingHashKey, 0, 0, isHashKey, hashKeyPatternText)
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	id, aerr := s.parseShard(*in.ShardToSplit, name)
	if aerr != nil {
		return nil, aerr
	}
	if err := s.db.SplitShard(name, id, *in.NewStartingHashKey); err != nil {
		return nil, s.engineError(err, name)
	}
	return nil, nil
}

type mergeShardsInput struct {
	StreamName           *string `json:"StreamName"`
	ShardToMerge         *string `json:"ShardToMerge"`
	AdjacentShardToMerge *string `json:"AdjacentShardToMerge"`
	StreamARN            *string `json:"StreamARN"`
}

func (s *Server) mergeShards(rq *request) (any, *apiError) {
	var in mergeShardsInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.streamName(in.StreamName)
	c.shardID("shardToMerge", in.ShardToMerge, true)
	c.shardID("adjacentShardToMerge", in.AdjacentShardToMerge, true)
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	a, aerr := s.parseShard(*in.ShardToMerge, name)
	if aerr != nil {
		return nil, aerr
	}
	b, aerr := s.parseShard(*in.AdjacentShardToMerge, name)
	if aerr != nil {
		return nil, aerr
	}
	if err := s.db.MergeShards(name, a, b); err != nil {
		return nil, s.engineError(err, name)
	}
	return nil, nil
}

type updateShardCountInput struct {
	StreamName       *string `json:"StreamName"`
	TargetShardCount *int64  `json:"TargetShardCount"`
	ScalingType      *string `json:"ScalingType"`
	StreamARN        *string `json:"StreamARN"`
}

type updateShardCountOutput struct {
	StreamName        string `json:"StreamName"`
	StreamARN         string `json:"StreamARN"`
	CurrentShardCount int    `json:"CurrentShardCount"`
	TargetShardCount  int    `json:"TargetShardCount"`
}

var scalingTypes = []string{"UNIFORM_SCALING"}

func (s *Server) updateShardCount(rq *request) (any, *apiError) {
	var in updateShardCountInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.streamName(in.StreamName)
	if c.required("targetShardCount", in.TargetShardCount != nil) {
		c.intRange("targetShardCount", in.TargetShardCount, 1, maxInt)
	}
	if c.required("scalingType", in.ScalingType != nil) {
		c.enum("scalingType", in.ScalingType, scalingTypes)
	}
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	d, err := s.db.DescribeStream(name)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	cur, target := d.OpenShardCount, int(min(*in.TargetShardCount, 1<<30))
	// AWS answers LimitExceededException for these scaling bounds.
	if target > 2*cur {
		return nil, newAPIError(errLimitExceeded, "UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: "+
			strconv.Itoa(cur)+" Target shard count: "+strconv.Itoa(target))
	}
	if 2*target < cur {
		return nil, newAPIError(errLimitExceeded, "UpdateShardCount cannot scale down below half your current open shard count. Current open shard count: "+
			strconv.Itoa(cur)+" Target shard count: "+strconv.Itoa(target))
	}
	if err := s.db.UpdateShardCount(name, target); err != nil {
		return nil, s.engineError(err, name)
	}
	return updateShardCountOutput{StreamName: name, StreamARN: s.streamARN(name), CurrentShardCount: cur, TargetShardCount: target}, nil
}
