package server

import (
	"strconv"

	"github.com/kvstream/kvstream/engine"
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
	// AWS's member order: newStartingHashKey, streamName, shardToSplit.
	var c check
	c.reqStr("newStartingHashKey", in.NewStartingHashKey, 0, 0, isHashKey, hashKeyPatternText)
	c.streamRef(in.StreamName, in.StreamARN)
	c.shardID("shardToSplit", in.ShardToSplit, true)
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	id, aerr := s.parseShard(*in.ShardToSplit, name)
	if aerr != nil {
		return nil, aerr
	}
	d, aerr := s.reshardable(name)
	if aerr != nil {
		return nil, aerr
	}
	sd, aerr := s.openShardOf(name, d, id)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.checkShardLimit(1); aerr != nil {
		return nil, aerr
	}
	k, ok := engine.ParseHashKey(*in.NewStartingHashKey)
	r := sd.HashKeyRange
	if !ok || k.Cmp(r.Start.Add(1)) <= 0 || k.Cmp(r.End) >= 0 {
		return nil, newAPIError(errInvalidArgument, "NewStartingHashKey "+*in.NewStartingHashKey+" used in SplitShard() on shard "+id.String()+
			" in stream "+name+" under account "+s.cfg.Account+" is not both greater than one plus the shard's StartingHashKey "+
			r.Start.String()+" and less than the shard's EndingHashKey "+r.End.String()+".")
	}
	if st := s.statusOf(name, d.Status); st != engine.StatusActive {
		return nil, s.notActive(name, st)
	}
	return nil, s.reshardOrDefer(name, pendingChange{Op: "split", Shard: id, HashKey: *in.NewStartingHashKey})
}

// reshardable describes a stream that SplitShard or MergeShards may
// change: not CREATING or DELETING (whose shards are not there to check),
// and PROVISIONED. Whether it is UPDATING is checked after the shards, as
// AWS does.
func (s *Server) reshardable(name string) (engine.StreamDescription, *apiError) {
	d, err := s.db.DescribeStream(name)
	if err != nil {
		return d, s.engineError(err, name)
	}
	if st := s.statusOf(name, d.Status); st == engine.StatusCreating || st == engine.StatusDeleting {
		return d, s.notActive(name, st)
	}
	if aerr := s.requireProvisioned(name); aerr != nil {
		return d, aerr
	}
	return d, nil
}

// openShardOf returns shard id of the stream d describes, which must exist
// and be open.
func (s *Server) openShardOf(name string, d engine.StreamDescription, id engine.ShardID) (engine.ShardDescription, *apiError) {
	for _, sd := range d.Shards {
		if sd.ShardID != id {
			continue
		}
		if !sd.Open() {
			return sd, newAPIError(errResourceInUse, "Shard "+id.String()+" in stream "+name+" under account "+s.cfg.Account+" is closed and cannot be resharded.")
		}
		return sd, nil
	}
	// AWS's text for a shard SplitShard or MergeShards cannot find.
	return engine.ShardDescription{}, newAPIError(errResourceNotFound, "Could not find shard "+id.String()+" in stream "+name+" under account "+s.cfg.Account+".")
}

// reshardOrDefer applies a reshard now, or, with Config.UpdateDelay,
// leaves the stream UPDATING with its old shards and applies it once the
// delay has passed (lifecycle.go).
func (s *Server) reshardOrDefer(name string, p pendingChange) *apiError {
	if s.cfg.UpdateDelay > 0 {
		p.DueMs = s.now().Add(s.cfg.UpdateDelay).UnixMilli()
		return s.schedule(name, p)
	}
	var err error
	switch p.Op {
	case "split":
		err = s.db.SplitShard(name, p.Shard, p.HashKey)
	case "merge":
		err = s.db.MergeShards(name, p.Shard, p.Adjacent)
	case "scale":
		err = s.db.UpdateShardCount(name, p.Target)
	}
	if err != nil {
		return s.engineError(err, name)
	}
	return nil
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
	c.shardID("shardToMerge", in.ShardToMerge, true)
	c.shardID("adjacentShardToMerge", in.AdjacentShardToMerge, true)
	c.streamRef(in.StreamName, in.StreamARN)
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
	d, aerr := s.reshardable(name)
	if aerr != nil {
		return nil, aerr
	}
	sa, aerr := s.openShardOf(name, d, a)
	if aerr != nil {
		return nil, aerr
	}
	sb, aerr := s.openShardOf(name, d, b)
	if aerr != nil {
		return nil, aerr
	}
	// AWS's rule: ShardToMerge's range ends just below
	// AdjacentShardToMerge's (the order matters).
	if end := sa.HashKeyRange.End; end == engine.MaxHashKey || end.Add(1) != sb.HashKeyRange.Start {
		return nil, newAPIError(errInvalidArgument, "Shards "+a.String()+" and "+b.String()+" in stream "+name+" under account "+
			s.cfg.Account+" are not an adjacent pair of shards eligible for merging")
	}
	if st := s.statusOf(name, d.Status); st != engine.StatusActive {
		return nil, s.notActive(name, st)
	}
	return nil, s.reshardOrDefer(name, pendingChange{Op: "merge", Shard: a, Adjacent: b})
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
	// AWS's member order: scalingType, streamName, targetShardCount.
	var c check
	if c.required("scalingType", in.ScalingType != nil) {
		c.enum("scalingType", in.ScalingType, scalingTypes)
	}
	c.streamRef(in.StreamName, in.StreamARN)
	if c.required("targetShardCount", in.TargetShardCount != nil) {
		c.intRange("targetShardCount", in.TargetShardCount, 1, maxShardCount)
	}
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	d, err := s.db.DescribeStream(name)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	if st := s.statusOf(name, d.Status); st != engine.StatusActive {
		return nil, s.notActive(name, st)
	}
	if aerr := s.requireProvisioned(name); aerr != nil {
		return nil, aerr
	}
	cur, target := d.OpenShardCount, int(min(*in.TargetShardCount, 1<<30))
	counts := " Current open shard count: " + strconv.Itoa(cur) + ", Target shard count: " + strconv.Itoa(target)
	// AWS answers LimitExceededException for these scaling bounds.
	if limit := s.shardLimit(); target > limit {
		return nil, newAPIError(errLimitExceeded, "Target shard count or number of open shards cannot be greater than "+strconv.Itoa(limit)+"."+counts)
	}
	if target > 2*cur {
		return nil, newAPIError(errLimitExceeded, "UpdateShardCount cannot scale up over double your current open shard count."+counts)
	}
	if 2*target < cur {
		return nil, newAPIError(errLimitExceeded, "UpdateShardCount cannot scale down below half your current open shard count."+counts)
	}
	if aerr := s.checkShardLimit(target - cur); aerr != nil {
		return nil, aerr
	}
	if aerr := s.reshardOrDefer(name, pendingChange{Op: "scale", Target: target}); aerr != nil {
		return nil, aerr
	}
	return updateShardCountOutput{StreamName: name, StreamARN: s.streamARN(name), CurrentShardCount: cur, TargetShardCount: target}, nil
}

// requireProvisioned refuses a reshard of an ON_DEMAND stream.
func (s *Server) requireProvisioned(name string) *apiError {
	mode, err := s.modeOfStream(name)
	if err != nil {
		return s.engineError(err, name)
	}
	if mode == modeOnDemand {
		return newAPIError(errValidation, "Stream "+name+" under account "+s.cfg.Account+" is in ON_DEMAND mode; resharding needs PROVISIONED mode")
	}
	return nil
}
