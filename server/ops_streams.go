package server

import (
	"slices"
	"strconv"
	"time"

	"github.com/kvstream/kvstream/engine"
)

// Stream lifecycle and listing operations: CreateStream, DeleteStream,
// DescribeStream(Summary), ListStreams, ListShards, DescribeLimits.

type createStreamInput struct {
	StreamName          *string            `json:"StreamName"`
	ShardCount          *int64             `json:"ShardCount"`
	StreamModeDetails   *streamModeDetails `json:"StreamModeDetails"`
	Tags                tagMapIn           `json:"Tags"`
	WarmThroughputMiBps *int64             `json:"WarmThroughputMiBps"`
	MaxRecordSizeInKiB  *int64             `json:"MaxRecordSizeInKiB"`
}

var streamModes = []string{modeProvisioned, modeOnDemand}

// onDemandShards is the shard count of a new ON_DEMAND stream (AWS starts
// them at 4 MiB/s of write capacity).
const onDemandShards = 4

func (c *check) modeDetails(d *streamModeDetails, required bool) {
	if required && !c.required("streamModeDetails", d != nil) {
		return
	}
	if d != nil && c.required("streamModeDetails.streamMode", d.StreamMode != nil) {
		c.enum("streamModeDetails.streamMode", d.StreamMode, streamModes)
	}
}

func (s *Server) createStream(rq *request) (any, *apiError) {
	var in createStreamInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	// AWS's member order: shardCount (required for PROVISIONED
	// streams), streamName, then the members added since.
	var c check
	mode := modeProvisioned
	if in.StreamModeDetails != nil && in.StreamModeDetails.StreamMode != nil {
		mode = *in.StreamModeDetails.StreamMode
	}
	if mode != modeProvisioned || c.required("shardCount", in.ShardCount != nil) {
		c.intRange("shardCount", in.ShardCount, 1, maxShardCount)
	}
	c.reqStr("streamName", in.StreamName, 1, maxStreamNameLen, isName, namePatternText)
	c.modeDetails(in.StreamModeDetails, false)
	if in.Tags != nil {
		c.tagMap("tags", in.Tags, true)
	}
	c.intRange("warmThroughputMiBps", in.WarmThroughputMiBps, 0, maxInt)
	c.intRange("maxRecordSizeInKiB", in.MaxRecordSizeInKiB, 1024, 10240)
	if err := c.err(); err != nil {
		return nil, err
	}
	name := *in.StreamName
	if err := s.checkTagChars(name, in.Tags); err != nil {
		return nil, err
	}
	shards := onDemandShards
	if in.ShardCount != nil {
		shards = int(min(*in.ShardCount, 1<<30))
	}
	if in.WarmThroughputMiBps != nil && *in.WarmThroughputMiBps > 0 {
		if aerr := s.checkWarmThroughput(name, mode, *in.WarmThroughputMiBps, false); aerr != nil {
			return nil, aerr
		}
	}
	if _, err := s.db.DescribeStream(name); err == nil {
		return nil, newAPIError(errResourceInUse, "Stream "+name+" under account "+s.cfg.Account+" already exists.")
	}
	if aerr := s.checkShardLimit(shards); aerr != nil {
		return nil, aerr
	}
	cfg := engine.StreamConfig{
		ShardCount:      shards,
		Partitioner:     engine.PartitionerMD5,
		ActivationDelay: s.cfg.CreateDelay,
		Tags:            in.Tags,
		// The Kinesis settings (kinesisattrs.go) are written with the
		// stream, in its creating commit.
		Attrs: map[string][]byte{},
	}
	if mode != modeProvisioned {
		cfg.Attrs[modeAttr] = []byte(mode)
	}
	if in.WarmThroughputMiBps != nil && *in.WarmThroughputMiBps > 0 {
		cfg.Attrs[warmThroughputAttr] = []byte(strconv.FormatInt(*in.WarmThroughputMiBps, 10))
	}
	if in.MaxRecordSizeInKiB != nil {
		cfg.MaxRecordBytes = int(*in.MaxRecordSizeInKiB) * 1024
	}
	if s.cfg.KinesisLimits {
		cfg.Limits = engine.KinesisLimits
	}
	s.recordLimits.forget(name)
	if err := s.db.CreateStream(name, cfg); err != nil {
		return nil, s.engineError(err, name)
	}
	s.enc.forget(name)
	return nil, nil
}

type streamRefInput struct {
	StreamName              *string `json:"StreamName"`
	StreamARN               *string `json:"StreamARN"`
	EnforceConsumerDeletion *bool   `json:"EnforceConsumerDeletion"`
}

// decodeStreamRef decodes and validates a request naming only a stream.
func (s *Server) decodeStreamRef(rq *request) (string, *apiError) {
	var in streamRefInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return "", err
	}
	var c check
	c.streamRef(in.StreamName, in.StreamARN)
	return s.checkedStream(&c, in.StreamName, in.StreamARN)
}

func (s *Server) deleteStream(rq *request) (any, *apiError) {
	var in streamRefInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.streamRef(in.StreamName, in.StreamARN)
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	if _, err := s.db.DescribeStream(name); err != nil {
		return nil, s.engineError(err, name)
	}
	if p, ok := s.pendingOf(name); ok && p.Op == "delete" {
		return nil, s.streamNotFound(name) // already being deleted
	}
	if in.EnforceConsumerDeletion == nil || !*in.EnforceConsumerDeletion {
		if n := s.consumerCount(name); n > 0 {
			return nil, newAPIError(errResourceInUse, "Stream "+name+" under account "+s.cfg.Account+" has "+strconv.Itoa(n)+
				" registered consumers; deregister them or set EnforceConsumerDeletion.")
		}
	}
	if n := s.streamChannelCount(name); n > 0 { // ops_channels.go
		return nil, newAPIError(errResourceInUse, "Stream "+name+" under account "+s.cfg.Account+" has "+strconv.Itoa(n)+
			" channels; delete them (DeleteChannel) before the stream.")
	}
	if s.cfg.DeleteDelay > 0 {
		// DELETING until the delay has passed (lifecycle.go). A pending
		// reshard is dropped: the stream will not be ACTIVE again.
		return nil, s.schedule(name, pendingChange{Op: "delete", DueMs: s.now().Add(s.cfg.DeleteDelay).UnixMilli()})
	}
	s.dropPending(name)
	if err := s.deleteNow(name); err != nil {
		return nil, s.engineError(err, name)
	}
	return nil, nil
}

type describeStreamInput struct {
	StreamName            *string `json:"StreamName"`
	StreamARN             *string `json:"StreamARN"`
	Limit                 *int64  `json:"Limit"`
	ExclusiveStartShardId *string `json:"ExclusiveStartShardId"`
}

type streamDescription struct {
	StreamName              string             `json:"StreamName"`
	StreamARN               string             `json:"StreamARN"`
	StreamStatus            string             `json:"StreamStatus"`
	StreamModeDetails       *streamModeDetails `json:"StreamModeDetails"`
	Shards                  []shardOut         `json:"Shards"`
	HasMoreShards           bool               `json:"HasMoreShards"`
	RetentionPeriodHours    int64              `json:"RetentionPeriodHours"`
	StreamCreationTimestamp *timestamp         `json:"StreamCreationTimestamp"`
	EnhancedMonitoring      []enhancedMetrics  `json:"EnhancedMonitoring"`
	EncryptionType          string             `json:"EncryptionType"`
	KeyId                   string             `json:"KeyId,omitempty"`
}

type describeStreamOutput struct {
	StreamDescription streamDescription `json:"StreamDescription"`
}

// describeStreamLimit caps DescribeStream's page, as Kinesis does.
const describeStreamLimit = 100

func (s *Server) describeStream(rq *request) (any, *apiError) {
	var in describeStreamInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.intRange("limit", in.Limit, 1, 10000)
	c.shardID("exclusiveStartShardId", in.ExclusiveStartShardId, false)
	c.streamRef(in.StreamName, in.StreamARN)
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	d, err := s.db.DescribeStream(name)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	ks, err := s.settingsOf(name)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	shards := d.Shards
	if in.ExclusiveStartShardId != nil {
		shards = shardsAfter(shards, *in.ExclusiveStartShardId)
	}
	limit := describeStreamLimit
	if in.Limit != nil && *in.Limit < int64(limit) {
		limit = int(*in.Limit)
	}
	more := len(shards) > limit
	if more {
		shards = shards[:limit]
	}
	return describeStreamOutput{StreamDescription: streamDescription{
		StreamName:              d.Name,
		StreamARN:               s.streamARN(d.Name),
		StreamStatus:            string(s.statusOf(d.Name, d.Status)),
		StreamModeDetails:       modeOf(ks),
		Shards:                  toShards(shards),
		HasMoreShards:           more,
		RetentionPeriodHours:    int64(d.Retention / time.Hour),
		StreamCreationTimestamp: ts(d.CreatedAt),
		EnhancedMonitoring:      metricsOf(ks),
		EncryptionType:          ks.EncryptionType,
		KeyId:                   ks.KeyID,
	}}, nil
}

// shardsAfter returns the shards (ordered by id) whose id comes after
// start. start is parsed leniently; one that does not parse is compared
// as a string with the canonical ids.
func shardsAfter(shards []engine.ShardDescription, start string) []engine.ShardDescription {
	id, ok := engine.ParseShardID(start)
	i := slices.IndexFunc(shards, func(d engine.ShardDescription) bool {
		if ok {
			return d.ShardID > id
		}
		return d.ShardID.String() > start
	})
	if i < 0 {
		return nil
	}
	return shards[i:]
}

type streamDescriptionSummary struct {
	StreamName              string             `json:"StreamName"`
	StreamARN               string             `json:"StreamARN"`
	StreamStatus            string             `json:"StreamStatus"`
	StreamModeDetails       *streamModeDetails `json:"StreamModeDetails"`
	RetentionPeriodHours    int64              `json:"RetentionPeriodHours"`
	StreamCreationTimestamp *timestamp         `json:"StreamCreationTimestamp"`
	EnhancedMonitoring      []enhancedMetrics  `json:"EnhancedMonitoring"`
	EncryptionType          string             `json:"EncryptionType"`
	KeyId                   string             `json:"KeyId,omitempty"`
	OpenShardCount          int                `json:"OpenShardCount"`
	ConsumerCount           int                `json:"ConsumerCount"`
	WarmThroughput          *warmThroughputOut `json:"WarmThroughput,omitempty"`
	MaxRecordSizeInKiB      int                `json:"MaxRecordSizeInKiB"`
}

type describeStreamSummaryOutput struct {
	StreamDescriptionSummary streamDescriptionSummary `json:"StreamDescriptionSummary"`
}

func (s *Server) describeStreamSummary(rq *request) (any, *apiError) {
	name, aerr := s.decodeStreamRef(rq)
	if aerr != nil {
		return nil, aerr
	}
	d, err := s.db.DescribeStream(name)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	ks, err := s.settingsOf(name)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	return describeStreamSummaryOutput{StreamDescriptionSummary: streamDescriptionSummary{
		StreamName:              d.Name,
		StreamARN:               s.streamARN(d.Name),
		StreamStatus:            string(s.statusOf(d.Name, d.Status)),
		StreamModeDetails:       modeOf(ks),
		RetentionPeriodHours:    int64(d.Retention / time.Hour),
		StreamCreationTimestamp: ts(d.CreatedAt),
		EnhancedMonitoring:      metricsOf(ks),
		EncryptionType:          ks.EncryptionType,
		KeyId:                   ks.KeyID,
		OpenShardCount:          d.OpenShardCount,
		ConsumerCount:           s.consumerCount(name),
		WarmThroughput:          s.warmThroughputOf(name),
		MaxRecordSizeInKiB:      d.MaxRecordBytes / 1024,
	}}, nil
}

type listStreamsInput struct {
	Limit                    *int64  `json:"Limit"`
	ExclusiveStartStreamName *string `json:"ExclusiveStartStreamName"`
	NextToken                *string `json:"NextToken"`
}

type streamSummary struct {
	StreamName              string             `json:"StreamName"`
	StreamARN               string             `json:"StreamARN"`
	StreamStatus            string             `json:"StreamStatus"`
	StreamModeDetails       *streamModeDetails `json:"StreamModeDetails"`
	StreamCreationTimestamp *timestamp         `json:"StreamCreationTimestamp"`
}

type listStreamsOutput struct {
	StreamNames     []string        `json:"StreamNames"`
	HasMoreStreams  bool            `json:"HasMoreStreams"`
	NextToken       string          `json:"NextToken,omitempty"`
	StreamSummaries []streamSummary `json:"StreamSummaries"`
}

// listStreamsLimit caps ListStreams' page.
const listStreamsLimit = 100

func (s *Server) listStreams(rq *request) (any, *apiError) {
	var in listStreamsInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.intRange("limit", in.Limit, 1, 10000)
	c.str("exclusiveStartStreamName", in.ExclusiveStartStreamName, 1, maxStreamNameLen, isName, namePatternText)
	c.str("nextToken", in.NextToken, 1, maxNextTokenLen, nil, "")
	if err := c.err(); err != nil {
		return nil, err
	}
	now := s.now().UnixMilli()
	after := ""
	if in.ExclusiveStartStreamName != nil {
		after = *in.ExclusiveStartStreamName
	}
	if in.NextToken != nil {
		t, aerr := decodePageToken(*in.NextToken, now)
		if aerr != nil {
			return nil, aerr
		}
		after = max(after, t.After)
	}
	names, err := s.db.ListStreams()
	if err != nil {
		return nil, s.engineError(err, "")
	}
	if after != "" {
		i, found := slices.BinarySearch(names, after)
		if found {
			i++
		}
		names = names[i:]
	}
	limit := listStreamsLimit
	if in.Limit != nil && *in.Limit < int64(limit) {
		limit = int(*in.Limit)
	}
	out := listStreamsOutput{StreamNames: []string{}, StreamSummaries: []streamSummary{}}
	for _, n := range names {
		if len(out.StreamNames) == limit {
			out.HasMoreStreams = true
			break
		}
		d, err := s.db.DescribeStream(n)
		if err != nil {
			continue // deleted meanwhile
		}
		ks, err := s.settingsOf(n)
		if err != nil {
			continue
		}
		out.StreamNames = append(out.StreamNames, n)
		out.StreamSummaries = append(out.StreamSummaries, streamSummary{
			StreamName:              n,
			StreamARN:               s.streamARN(n),
			StreamStatus:            string(s.statusOf(n, d.Status)),
			StreamModeDetails:       modeOf(ks),
			StreamCreationTimestamp: ts(d.CreatedAt),
		})
	}
	if out.HasMoreStreams {
		out.NextToken = encodePageToken(pageToken{After: out.StreamNames[len(out.StreamNames)-1], IssuedMs: now})
	}
	return out, nil
}

type shardFilter struct {
	Type      *string    `json:"Type"`
	ShardId   *string    `json:"ShardId"`
	Timestamp *timestamp `json:"Timestamp"`
}

type listShardsInput struct {
	StreamName              *string      `json:"StreamName"`
	NextToken               *string      `json:"NextToken"`
	ExclusiveStartShardId   *string      `json:"ExclusiveStartShardId"`
	MaxResults              *int64       `json:"MaxResults"`
	StreamCreationTimestamp *timestamp   `json:"StreamCreationTimestamp"`
	ShardFilter             *shardFilter `json:"ShardFilter"`
	StreamARN               *string      `json:"StreamARN"`
}

type listShardsOutput struct {
	Shards    []shardOut `json:"Shards"`
	NextToken string     `json:"NextToken,omitempty"`
}

var shardFilterTypes = []string{"AFTER_SHARD_ID", "AT_TRIM_HORIZON", "FROM_TRIM_HORIZON", "AT_LATEST", "AT_TIMESTAMP", "FROM_TIMESTAMP"}

// listShardsLimit caps ListShards' page, as Kinesis does.
const listShardsLimit = 1000

func (s *Server) listShards(rq *request) (any, *apiError) {
	var in listShardsInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	// AWS's member order: exclusiveStartShardId, maxResults, nextToken,
	// streamName, then the members added since.
	var c check
	c.shardID("exclusiveStartShardId", in.ExclusiveStartShardId, false)
	c.intRange("maxResults", in.MaxResults, 1, 10000)
	c.str("nextToken", in.NextToken, 1, maxNextTokenLen, nil, "")
	c.streamName(in.StreamName)
	if f := in.ShardFilter; f != nil {
		if c.required("shardFilter.type", f.Type != nil) {
			c.enum("shardFilter.type", f.Type, shardFilterTypes)
		}
		c.shardID("shardFilter.shardId", f.ShardId, false)
	}
	c.streamARN(in.StreamARN)
	if err := c.err(); err != nil {
		return nil, err
	}
	now := s.now().UnixMilli()
	var tok pageToken
	hasStream := in.StreamName != nil || in.StreamARN != nil
	switch {
	case in.NextToken == nil && !hasStream:
		return nil, newAPIError(errInvalidArgument, "Either NextToken or StreamName should be provided.")
	case in.NextToken != nil && hasStream:
		return nil, newAPIError(errInvalidArgument, "NextToken and StreamName cannot be provided together.")
	case in.NextToken != nil && in.ExclusiveStartShardId != nil:
		return nil, newAPIError(errInvalidArgument, "NextToken and ExclusiveStartShardId cannot be provided together.")
	case in.NextToken != nil && in.StreamCreationTimestamp != nil:
		return nil, newAPIError(errInvalidArgument, "NextToken and StreamCreationTimestamp cannot be provided together.")
	case in.NextToken != nil:
		t, aerr := decodePageToken(*in.NextToken, now)
		if aerr != nil {
			return nil, aerr
		}
		if t.Stream == "" {
			return nil, newAPIError(errInvalidArgument, "Invalid NextToken.")
		}
		tok = t
	default:
		name, aerr := s.resolveStream(in.StreamName, in.StreamARN)
		if aerr != nil {
			return nil, aerr
		}
		tok = pageToken{Stream: name}
		if in.ExclusiveStartShardId != nil {
			tok.After = *in.ExclusiveStartShardId
		}
		if f := in.ShardFilter; f != nil {
			tok.Filter = *f.Type
			if f.ShardId != nil {
				tok.FilterID = *f.ShardId
			}
			if f.Timestamp != nil {
				tok.FilterTS = f.Timestamp.UnixMilli()
			}
			if aerr := checkShardFilter(f); aerr != nil {
				return nil, aerr
			}
		}
	}
	shards, err := s.db.ListShards(tok.Stream)
	if err != nil {
		return nil, s.engineError(err, tok.Stream)
	}
	if in.StreamCreationTimestamp != nil {
		if d, err := s.db.DescribeStream(tok.Stream); err == nil && d.CreatedAt.Unix() != in.StreamCreationTimestamp.Unix() {
			return nil, s.streamNotFound(tok.Stream)
		}
	}
	shards = filterShards(shards, tok)
	if tok.After != "" {
		shards = shardsAfter(shards, tok.After)
	}
	limit := listShardsLimit
	if in.MaxResults != nil && *in.MaxResults < int64(limit) {
		limit = int(*in.MaxResults)
	}
	out := listShardsOutput{}
	if len(shards) > limit {
		shards = shards[:limit]
		next := tok
		next.After = shards[len(shards)-1].ShardID.String()
		next.IssuedMs = now
		out.NextToken = encodePageToken(next)
	}
	out.Shards = toShards(shards)
	return out, nil
}

// checkShardFilter checks the filter fields each type needs.
func checkShardFilter(f *shardFilter) *apiError {
	switch *f.Type {
	case "AFTER_SHARD_ID":
		if f.ShardId == nil {
			return newAPIError(errInvalidArgument, "ShardFilter of type AFTER_SHARD_ID must specify a ShardId.")
		}
	case "AT_TIMESTAMP", "FROM_TIMESTAMP":
		if f.Timestamp == nil {
			return newAPIError(errInvalidArgument, "ShardFilter of type "+*f.Type+" must specify a Timestamp.")
		}
	}
	if f.ShardId != nil && *f.Type != "AFTER_SHARD_ID" {
		return newAPIError(errInvalidArgument, "ShardFilter of type "+*f.Type+" cannot specify a ShardId.")
	}
	if f.Timestamp != nil && *f.Type != "AT_TIMESTAMP" && *f.Type != "FROM_TIMESTAMP" {
		return newAPIError(errInvalidArgument, "ShardFilter of type "+*f.Type+" cannot specify a Timestamp.")
	}
	return nil
}

// filterShards applies a ListShards ShardFilter. The engine lists every
// shard still holding data (so every shard is unexpired); a shard's open
// interval is [creation second, closing second].
func filterShards(shards []engine.ShardDescription, t pageToken) []engine.ShardDescription {
	if t.Filter == "" || t.Filter == "FROM_TRIM_HORIZON" {
		return shards
	}
	listed := make(map[engine.ShardID]bool, len(shards))
	for _, d := range shards {
		listed[d.ShardID] = true
	}
	tsSecs := uint64(max(t.FilterTS, 0) / 1000)
	out := make([]engine.ShardDescription, 0, len(shards))
	for _, d := range shards {
		keep := false
		switch t.Filter {
		case "AFTER_SHARD_ID":
			keep = len(shardsAfter([]engine.ShardDescription{d}, t.FilterID)) == 1
		case "AT_TRIM_HORIZON":
			// Open at the trim horizon: no parent still holds data.
			keep = (d.ParentShardID == nil || !listed[*d.ParentShardID]) &&
				(d.AdjacentParentShardID == nil || !listed[*d.AdjacentParentShardID])
		case "AT_LATEST":
			keep = d.Open()
		case "AT_TIMESTAMP":
			keep = d.StartingSequenceNumber.ShardCreated <= tsSecs && (d.Open() || d.EndingSequenceNumber.Written >= tsSecs)
		case "FROM_TIMESTAMP":
			keep = d.Open() || d.EndingSequenceNumber.Written >= tsSecs
		}
		if keep {
			out = append(out, d)
		}
	}
	return out
}

type describeLimitsOutput struct {
	ShardLimit               int `json:"ShardLimit"`
	OpenShardCount           int `json:"OpenShardCount"`
	OnDemandStreamCount      int `json:"OnDemandStreamCount"`
	OnDemandStreamCountLimit int `json:"OnDemandStreamCountLimit"`
}

func (s *Server) describeLimits(rq *request) (any, *apiError) {
	var in struct{}
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	names, err := s.db.ListStreams()
	if err != nil {
		return nil, s.engineError(err, "")
	}
	out := describeLimitsOutput{ShardLimit: s.shardLimit(), OnDemandStreamCountLimit: 50}
	for _, n := range names {
		d, err := s.db.DescribeStream(n)
		if err != nil {
			continue
		}
		out.OpenShardCount += d.OpenShardCount
		if mode, _ := s.modeOfStream(n); mode == modeOnDemand {
			out.OnDemandStreamCount++
		}
	}
	return out, nil
}

// hours formats a retention in hours for messages.
func hours(h int64) string { return strconv.FormatInt(h, 10) }
