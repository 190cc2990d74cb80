package server

import (
	"maps"
	"slices"
	"strings"
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
	if c.required("retentionPeriodHours", in.RetentionPeriodHours != nil) {
		c.intRange("retentionPeriodHours", in.RetentionPeriodHours, 1, maxInt)
	}
	c.streamRef(in.StreamName, in.StreamARN)
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

// maxStreamTags is AWS's limit of tags per stream.
const maxStreamTags = 50

// tagCharsOK applies AWS's tag character rule: Unicode letters, white
// space (separators: not tabs or newlines), numbers and _ . / = + - % @.
func tagCharsOK(s string) bool {
	for _, r := range s {
		if !unicode.In(r, unicode.L, unicode.Z, unicode.N) && !strings.ContainsRune("_./=+-%@", r) {
			return false
		}
	}
	return true
}

// checkTagChars answers AWS's illegal-character error for tags to be added
// to stream.
func (s *Server) checkTagChars(stream string, tags map[string]string) *apiError {
	for k, v := range tags {
		if !tagCharsOK(k) || !tagCharsOK(v) {
			return s.illegalTags(stream, false)
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
	c.tagMap("tags", in.Tags, in.Tags != nil)
	c.streamRef(in.StreamName, in.StreamARN)
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	return nil, s.addTags(name, in.Tags)
}

// addTags adds tags to a stream in AWS's order of checks: the stream
// exists, the characters, the number of tags.
func (s *Server) addTags(name string, tags map[string]string) *apiError {
	have, err := s.db.Tags(name)
	if err != nil {
		return s.engineError(err, name)
	}
	if aerr := s.checkTagChars(name, tags); aerr != nil {
		return aerr
	}
	n := len(have)
	for k := range tags {
		if _, ok := have[k]; !ok {
			n++
		}
	}
	if n > maxStreamTags {
		return s.tooManyTags(name)
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
	if c.required("tagKeys", keys != nil) {
		c.strList("tagKeys", keys, 1, 50, 1, 128)
	}
}

func (s *Server) removeTagsFromStream(rq *request) (any, *apiError) {
	var in removeTagsInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.tagKeys(in.TagKeys)
	c.streamRef(in.StreamName, in.StreamARN)
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	return nil, s.removeTags(name, in.TagKeys)
}

// removeTags removes tag keys from a stream, after checking the stream
// exists and the keys' characters, as AWS does.
func (s *Server) removeTags(name string, keys []string) *apiError {
	if _, err := s.db.Tags(name); err != nil {
		return s.engineError(err, name)
	}
	for _, k := range keys {
		if !tagCharsOK(k) {
			return s.illegalTags(name, true)
		}
	}
	if err := s.db.RemoveTags(name, keys); err != nil {
		return s.engineError(err, name)
	}
	return nil
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
	c.intRange("limit", in.Limit, 1, 50)
	c.str("exclusiveStartTagKey", in.ExclusiveStartTagKey, 1, 128, nil, "")
	c.streamRef(in.StreamName, in.StreamARN)
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

// resourceARN checks a ResourceARN: a stream's or consumer's (the
// model's pattern, which its text shows) or a channel's.
func (c *check) resourceARN(v *string) {
	c.reqStr("resourceARN", v, 1, maxARNLen, func(s string) bool { return isResourceARN(s) || isChannelARN(s) }, resourceARNText)
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
	if isChannelARN(*in.ResourceARN) {
		return nil, s.tagChannel(*in.ResourceARN, in.Tags)
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
	if isChannelARN(*in.ResourceARN) {
		return nil, s.untagChannel(*in.ResourceARN, in.TagKeys)
	}
	name, aerr := s.resolveResource(*in.ResourceARN)
	if aerr != nil {
		return nil, aerr
	}
	return nil, s.removeTags(name, in.TagKeys)
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
	if isChannelARN(*in.ResourceARN) {
		tags, aerr := s.channelTags(*in.ResourceARN)
		if aerr != nil {
			return nil, aerr
		}
		return listTagsForResourceOutput{Tags: tags}, nil
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
	c.streamRef(in.StreamName, in.StreamARN)
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
	err := s.setEncryptionSetting(name, typ, key)
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
	c.streamRef(in.StreamName, in.StreamARN)
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
	change := in.ShardLevelMetrics
	if slices.Contains(change, "ALL") {
		change = shardLevelMetrics
	}
	before, after, err := s.updateMetrics(name, func(want []string) []string {
		if enable {
			return append(want, change...)
		}
		return slices.DeleteFunc(want, func(m string) bool { return slices.Contains(change, m) })
	})
	if err != nil {
		return nil, s.engineError(err, name)
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
	if err := s.setMode(name, *in.StreamModeDetails.StreamMode); err != nil {
		return nil, s.engineError(err, name)
	}
	return nil, nil
}
