package server

import (
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode"

	"github.com/kvstream/kvstream/engine"
)

// Stream settings: retention, tags, encryption, enhanced monitoring and
// capacity mode.

type retentionInput struct {
	StreamName           *string `json:"StreamName"`
	RetentionPeriodHours *int64  `json:"RetentionPeriodHours"`
	StreamARN            *string `json:"StreamARN"`
}

// Kinesis' retention bounds, in hours.
const (
	minRetentionHours = 24
	maxRetentionHours = 8760
)

func (s *Server) increaseRetention(rq *request) (any, *apiError) {
	return s.changeRetention(rq, s.db.IncreaseRetention)
}

func (s *Server) decreaseRetention(rq *request) (any, *apiError) {
	return s.changeRetention(rq, s.db.DecreaseRetention)
}

func (s *Server) changeRetention(rq *request, apply func(string, time.Duration) error) (any, *apiError) {
	var in retentionInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.streamName(in.StreamName)
	c.required("retentionPeriodHours", in.RetentionPeriodHours != nil)
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	h := *in.RetentionPeriodHours
	if h < minRetentionHours {
		return nil, newAPIError(errInvalidArgument, "Minimum allowed retention period is 24 hours. Requested retention period ("+
			hours(h)+" hours) is too short.")
	}
	if h > maxRetentionHours {
		return nil, newAPIError(errInvalidArgument, "Maximum allowed retention period is 8760 hours. Requested retention period ("+
			hours(h)+" hours) is too long.")
	}
	if err := apply(name, time.Duration(h)*time.Hour); err != nil {
		return nil, s.engineError(err, name)
	}
	return nil, nil
}

// checkTagChars applies Kinesis' tag character rule: Unicode letters,
// digits, white space and _ . / = + - @.
func checkTagChars(tags map[string]string) *apiError {
	ok := func(s string) bool {
		for _, r := range s {
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsSpace(r) && !slices.Contains([]rune("_./=+-@"), r) {
				return false
			}
		}
		return true
	}
	for k, v := range tags {
		if !ok(k) || !ok(v) {
			return newAPIError(errInvalidArgument, "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - @.")
		}
	}
	return nil
}

type addTagsInput struct {
	StreamName *string  `json:"StreamName"`
	Tags       tagMapIn `json:"Tags"`
	StreamARN  *string  `json:"StreamARN"`
}

func (s *Server) addTagsToStream(rq *request) (any, *apiError) {
	var in addTagsInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.streamName(in.StreamName)
	c.tagMap("tags", in.Tags, in.Tags != nil)
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	return nil, s.addTags(name, in.Tags)
}

func (s *Server) addTags(name string, tags map[string]string) *apiError {
	if aerr := checkTagChars(tags); aerr != nil {
		return aerr
	}
	if err := s.db.AddTags(name, tags); err != nil {
		return s.engineError(err, name)
	}
	return nil
}

type removeTagsInput struct {
	StreamName *string  `json:"StreamName"`
	TagKeys    []string `json:"TagKeys"`
	StreamARN  *string  `json:"StreamARN"`
}

func (c *check) tagKeys(keys []string) {
	if !c.required("tagKeys", keys != nil) {
		return
	}
	if len(keys) < 1 || len(keys) > 50 {
		bound := "greater than or equal to 1"
		if len(keys) > 50 {
			bound = "less than or equal to 50"
		}
		c.add(printList(keys), "tagKeys", "have length "+bound)
	}
	for i, k := range keys {
		c.length("tagKeys."+strconv.Itoa(i+1)+".member", k, 1, 128)
	}
}

func (s *Server) removeTagsFromStream(rq *request) (any, *apiError) {
	var in removeTagsInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.streamName(in.StreamName)
	c.tagKeys(in.TagKeys)
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	if err := s.db.RemoveTags(name, in.TagKeys); err != nil {
		return nil, s.engineError(err, name)
	}
	return nil, nil
}

type listTagsInput struct {
	StreamName           *string `json:"StreamName"`
	ExclusiveStartTagKey *string `json:"ExclusiveStartTagKey"`
	Limit                *int64  `json:"Limit"`
	StreamARN            *string `json:"StreamARN"`
}

type listTagsOutput struct {
	Tags        []tagOut `json:"Tags"`
	HasMoreTags bool     `json:"HasMoreTags"`
}

// sortedTags returns tags sorted by key, after start (if non-empty).
func sortedTags(tags map[string]string, start string) []tagOut {
	keys := slices.Sorted(maps.Keys(tags))
	out := make([]tagOut, 0, len(keys))
	for _, k := range keys {
		if start != "" && k <= start {
			continue
		}
		out = append(out, tagOut{Key: k, Value: tags[k]})
	}
	return out
}

func (s *Server) listTagsForStream(rq *request) (any, *apiError) {
	var in listTagsInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.streamName(in.StreamName)
	c.str("exclusiveStartTagKey", in.ExclusiveStartTagKey, 1, 128, nil, "")
	c.intRange("limit", in.Limit, 1, 50)
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	tags, err := s.db.Tags(name)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	start := ""
	if in.ExclusiveStartTagKey != nil {
		start = *in.ExclusiveStartTagKey
	}
	out := listTagsOutput{Tags: sortedTags(tags, start)}
	limit := 50
	if in.Limit != nil {
		limit = int(*in.Limit)
	}
	if len(out.Tags) > limit {
		out.Tags, out.HasMoreTags = out.Tags[:limit], true
	}
	return out, nil
}

type resourceInput struct {
	ResourceARN *string  `json:"ResourceARN"`
	Tags        tagMapIn `json:"Tags"`
	TagKeys     []string `json:"TagKeys"`
}

func (c *check) resourceARN(v *string) {
	c.reqStr("resourceARN", v, 1, maxARNLen, isResourceARN, resourceARNText)
}

func (s *Server) tagResource(rq *request) (any, *apiError) {
	var in resourceInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.tagMap("tags", in.Tags, in.Tags != nil)
	c.resourceARN(in.ResourceARN)
	if err := c.err(); err != nil {
		return nil, err
	}
	name, aerr := s.resolveResource(*in.ResourceARN)
	if aerr != nil {
		return nil, aerr
	}
	return nil, s.addTags(name, in.Tags)
}

func (s *Server) untagResource(rq *request) (any, *apiError) {
	var in resourceInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.tagKeys(in.TagKeys)
	c.resourceARN(in.ResourceARN)
	if err := c.err(); err != nil {
		return nil, err
	}
	name, aerr := s.resolveResource(*in.ResourceARN)
	if aerr != nil {
		return nil, aerr
	}
	if err := s.db.RemoveTags(name, in.TagKeys); err != nil {
		return nil, s.engineError(err, name)
	}
	return nil, nil
}

type listTagsForResourceOutput struct {
	Tags []tagOut `json:"Tags"`
}

func (s *Server) listTagsForResource(rq *request) (any, *apiError) {
	var in resourceInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.resourceARN(in.ResourceARN)
	if err := c.err(); err != nil {
		return nil, err
	}
	name, aerr := s.resolveResource(*in.ResourceARN)
	if aerr != nil {
		return nil, aerr
	}
	tags, err := s.db.Tags(name)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	return listTagsForResourceOutput{Tags: sortedTags(tags, "")}, nil
}

// requireActive answers Kinesis' ResourceInUseException unless the stream
// is ACTIVE (for calls that start an UPDATING phase on AWS).
func (s *Server) requireActive(name string) *apiError {
	d, err := s.db.DescribeStream(name)
	if err != nil {
		return s.engineError(err, name)
	}
	if st := s.statusOf(name, d.Status); st != engine.StatusActive {
		return s.notActive(name, st)
	}
	return nil
}

type encryptionInput struct {
	StreamName     *string `json:"StreamName"`
	EncryptionType *string `json:"EncryptionType"`
	KeyId          *string `json:"KeyId"`
	StreamARN      *string `json:"StreamARN"`
}

var encryptionTypes = []string{"NONE", "KMS"}

func (s *Server) startStreamEncryption(rq *request) (any, *apiError) {
	return s.setEncryption(rq, true)
}

func (s *Server) stopStreamEncryption(rq *request) (any, *apiError) {
	return s.setEncryption(rq, false)
}

// setEncryption records KMS encryption (start) or its removal (stop).
// kvstream does not encrypt; the setting is reported as Kinesis would.
func (s *Server) setEncryption(rq *request, start bool) (any, *apiError) {
	var in encryptionInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.streamName(in.StreamName)
	if c.required("encryptionType", in.EncryptionType != nil) {
		c.enum("encryptionType", in.EncryptionType, encryptionTypes)
	}
	c.reqStr("keyId", in.KeyId, 1, 2048, nil, "")
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	if *in.EncryptionType != "KMS" {
		return nil, newAPIError(errInvalidArgument, "Encryption type "+*in.EncryptionType+" is not supported; use KMS.")
	}
	if aerr := s.requireActive(name); aerr != nil {
		return nil, aerr
	}
	typ, key := "KMS", *in.KeyId
	if !start {
		typ, key = "NONE", ""
	}
	err := s.db.SetEncryption(name, typ, key)
	s.enc.forget(name)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	return nil, nil
}

type monitoringInput struct {
	StreamName        *string  `json:"StreamName"`
	ShardLevelMetrics []string `json:"ShardLevelMetrics"`
	StreamARN         *string  `json:"StreamARN"`
}

type monitoringOutput struct {
	StreamName               string   `json:"StreamName"`
	StreamARN                string   `json:"StreamARN"`
	CurrentShardLevelMetrics []string `json:"CurrentShardLevelMetrics"`
	DesiredShardLevelMetrics []string `json:"DesiredShardLevelMetrics"`
}

// shardLevelMetrics are the metric names Kinesis knows; ALL means all.
var shardLevelMetrics = []string{
	"IncomingBytes", "IncomingRecords", "OutgoingBytes", "OutgoingRecords",
	"WriteProvisionedThroughputExceeded", "ReadProvisionedThroughputExceeded", "IteratorAgeMilliseconds",
}

func (s *Server) enableEnhancedMonitoring(rq *request) (any, *apiError) {
	return s.changeMonitoring(rq, true)
}

func (s *Server) disableEnhancedMonitoring(rq *request) (any, *apiError) {
	return s.changeMonitoring(rq, false)
}

func (s *Server) changeMonitoring(rq *request, enable bool) (any, *apiError) {
	var in monitoringInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.streamName(in.StreamName)
	if c.required("shardLevelMetrics", in.ShardLevelMetrics != nil) {
		if n := len(in.ShardLevelMetrics); n < 1 || n > 7 {
			bound := "greater than or equal to 1"
			if n > 7 {
				bound = "less than or equal to 7"
			}
			c.add(printList(in.ShardLevelMetrics), "shardLevelMetrics", "have length "+bound)
		}
		all := append(slices.Clone(shardLevelMetrics), "ALL")
		for _, m := range in.ShardLevelMetrics {
			if !slices.Contains(all, m) {
				c.add(printList(in.ShardLevelMetrics), "shardLevelMetrics", "satisfy constraint: [Member must satisfy enum value set: ["+
					"IncomingBytes, OutgoingRecords, IteratorAgeMilliseconds, IncomingRecords, ReadProvisionedThroughputExceeded, "+
					"WriteProvisionedThroughputExceeded, OutgoingBytes, ALL]]")
				break
			}
		}
	}
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	d, err := s.db.DescribeStream(name)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	change := in.ShardLevelMetrics
	if slices.Contains(change, "ALL") {
		change = shardLevelMetrics
	}
	want := slices.Clone(d.ShardLevelMetrics)
	if enable {
		want = append(want, change...)
	} else {
		want = slices.DeleteFunc(want, func(m string) bool { return slices.Contains(change, m) })
	}
	before, after, err := s.db.SetShardLevelMetrics(name, want)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	if before == nil {
		before = []string{}
	}
	if after == nil {
		after = []string{}
	}
	return monitoringOutput{StreamName: name, StreamARN: s.streamARN(name), CurrentShardLevelMetrics: before, DesiredShardLevelMetrics: after}, nil
}

type updateStreamModeInput struct {
	StreamARN           *string            `json:"StreamARN"`
	StreamModeDetails   *streamModeDetails `json:"StreamModeDetails"`
	WarmThroughputMiBps *int64             `json:"WarmThroughputMiBps"`
}

func (s *Server) updateStreamMode(rq *request) (any, *apiError) {
	var in updateStreamModeInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.reqStr("streamARN", in.StreamARN, 1, maxARNLen, isStreamARN, streamARNText)
	c.modeDetails(in.StreamModeDetails, true)
	c.intRange("warmThroughputMiBps", in.WarmThroughputMiBps, 0, maxInt)
	if err := c.err(); err != nil {
		return nil, err
	}
	name, aerr := s.resolveStream(nil, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.requireActive(name); aerr != nil {
		return nil, aerr
	}
	if err := s.db.SetStreamMode(name, engine.StreamMode(*in.StreamModeDetails.StreamMode)); err != nil {
		return nil, s.engineError(err, name)
	}
	return nil, nil
}
