package server

import (
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvstream/kvstream/engine"
)

// Channels: CreateChannel, DescribeChannel, ListChannels, UpdateChannel
// and DeleteChannel. A Kinesis channel delivers a stream's records to
// Amazon S3 or S3 Tables; kvstream has no S3, so a channel here is its
// configuration and lifecycle, kept exactly as AWS keeps them: it is
// CREATING for Config.CreateDelay and then ACTIVE, UPDATING for
// Config.UpdateDelay after UpdateChannel, DELETING for Config.DeleteDelay
// after DeleteChannel, its name is unique in the account, its source
// stream must be an on-demand stream, and a stream with channels cannot be
// deleted. Nothing is delivered.
//
// A channel is stored as an engine attribute of its source stream (AWS
// allows one stream per channel), under channelAttrPrefix+<channel id>: it
// persists, and a stream deleted and created again starts with none.
// Lookups by ARN scan the streams' attributes, which the engine holds in
// memory.
//
// Model constraints: the required members and enums are the model's (as
// aws-sdk-go-v2's validators and enums carry them); the stream and
// channel ARN patterns, list and MaxResults ranges are those of AWS's API
// reference. Lengths and patterns of the other strings (bucket ARNs,
// names of tables and log groups) are not in either and are not checked.
// The ChannelName rule is not either; kvstream applies the stream-name
// rule ([a-zA-Z0-9_.-]+, 1–128).

// channelAttrPrefix prefixes a stream's channel attributes.
const channelAttrPrefix = "kinesis/channel/"

const (
	channelARNText       = "arn:aws.*:kinesis:.*:\\d{12}:channel/\\S+"
	maxChannelNameLen    = 128
	maxChannelListLen    = 10000 // StreamFilter, StreamConfigurationList, S3TablesConfigurationList
	defaultChannelPage   = 100
	defaultFreshnessSecs = 300 // DataFreshnessInSeconds when not given, as AWS
)

var channelARNRe = regexp.MustCompile(`^(?:arn:aws.*:kinesis:.*:\d{12}:channel/\S+)$`)

func isChannelARN(s string) bool { return channelARNRe.MatchString(s) }

// Enums of the model, in its order.
var (
	recordFormatTypes     = []string{"GSR_JSON", "JSON", "STRING", "BYTE_ARRAY"}
	s3CompressionTypes    = []string{"NONE", "GZIP", "ZSTD"}
	s3StorageClasses      = []string{"STANDARD", "INTELLIGENT_TIERING", "GLACIER_IR"}
	s3TablesCompressions  = []string{"NONE", "ZSTD", "SNAPPY"}
	partitionTransforms   = []string{"TIME_HOUR"}
	channelEncryptionType = []string{"KMS"}
)

// Wire shapes (requests and responses share them; the model's member
// names).

type recordConfiguration struct {
	RecordFormatType *string `json:"RecordFormatType"`
	GSRSchemaARN     *string `json:"GSRSchemaARN,omitempty"`
}

type channelStreamConfiguration struct {
	StreamARN           *string              `json:"StreamARN"`
	RecordConfiguration *recordConfiguration `json:"RecordConfiguration"`
}

type deadLetterQueueS3 struct {
	BucketARN           *string `json:"BucketARN"`
	ExpectedBucketOwner *string `json:"ExpectedBucketOwner"`
	ErrorOutputPrefix   *string `json:"ErrorOutputPrefix,omitempty"`
}

type s3StorageConfiguration struct {
	BucketARN           *string `json:"BucketARN"`
	ExpectedBucketOwner *string `json:"ExpectedBucketOwner"`
	CompressionType     *string `json:"CompressionType"`
	OutputKeyTemplate   *string `json:"OutputKeyTemplate,omitempty"`
	StorageClass        *string `json:"StorageClass,omitempty"`
}

type s3Destination struct {
	DataFreshnessInSeconds         *int64                  `json:"DataFreshnessInSeconds,omitempty"`
	DeadLetterQueueS3Configuration *deadLetterQueueS3      `json:"DeadLetterQueueS3Configuration,omitempty"`
	StorageConfiguration           *s3StorageConfiguration `json:"StorageConfiguration"`
}

type partitionField struct {
	Transform  *string `json:"Transform"`
	SourceName *string `json:"SourceName"`
}

type partitionSpec struct {
	PartitionFields []partitionField `json:"PartitionFields"`
}

type s3TablesConfiguration struct {
	TableBucketARN  *string        `json:"TableBucketARN"`
	Namespace       *string        `json:"Namespace"`
	TableName       *string        `json:"TableName"`
	CompressionType *string        `json:"CompressionType"`
	PartitionSpec   *partitionSpec `json:"PartitionSpec,omitempty"`
}

type s3TablesDestination struct {
	DataFreshnessInSeconds         *int64                  `json:"DataFreshnessInSeconds,omitempty"`
	DeadLetterQueueS3Configuration *deadLetterQueueS3      `json:"DeadLetterQueueS3Configuration"`
	S3TablesConfigurationList      []s3TablesConfiguration `json:"S3TablesConfigurationList"`
}

type channelEncryption struct {
	EncryptionType *string `json:"EncryptionType"`
	KeyId          *string `json:"KeyId"`
}

type cloudWatchLogs struct {
	Enabled       *bool   `json:"Enabled"`
	LogGroupName  *string `json:"LogGroupName,omitempty"`
	LogStreamName *string `json:"LogStreamName,omitempty"`
}

type channelLogging struct {
	CloudWatchLogs *cloudWatchLogs `json:"CloudWatchLogs"`
}

type freshnessUpdate struct {
	DataFreshnessInSeconds *int64 `json:"DataFreshnessInSeconds"`
}

// channelRecord is a channel as stored (JSON, in the stream's attribute).
type channelRecord struct {
	Name         string               `json:"name"`
	ID           string               `json:"id"`
	CreatedMs    int64                `json:"created_ms"`
	ActiveAtMs   int64                `json:"active_at_ms"`             // CREATING before
	UpdatedTilMs int64                `json:"updated_til_ms,omitempty"` // UPDATING before
	GoneAtMs     int64                `json:"gone_at_ms,omitempty"`     // DELETING before, gone after
	Role         string               `json:"role"`
	StreamARN    string               `json:"stream_arn"`
	StreamMs     int64                `json:"stream_ms"` // the stream's creation time
	Record       recordConfiguration  `json:"record"`
	S3           *s3Destination       `json:"s3,omitempty"`
	S3Tables     *s3TablesDestination `json:"s3tables,omitempty"`
	Encryption   *channelEncryption   `json:"encryption,omitempty"`
	Logging      *channelLogging      `json:"logging,omitempty"`
	Tags         map[string]string    `json:"tags,omitempty"`
}

// status returns the channel's status at nowMs; gone is true once a
// deleted channel's DELETING time has passed.
func (r *channelRecord) status(nowMs int64) (status string, gone bool) {
	switch {
	case r.GoneAtMs != 0 && nowMs >= r.GoneAtMs:
		return "", true
	case r.GoneAtMs != 0:
		return "DELETING", false
	case nowMs < r.ActiveAtMs:
		return "CREATING", false
	case nowMs < r.UpdatedTilMs:
		return "UPDATING", false
	}
	return "ACTIVE", false
}

func (r *channelRecord) destinationType() string {
	if r.S3Tables != nil {
		return "S3_TABLES"
	}
	return "S3"
}

func (s *Server) channelARN(id string) string {
	return "arn:aws:kinesis:" + s.cfg.Region + ":" + s.cfg.Account + ":channel/" + id
}

type channelStreamDescription struct {
	StreamARN               string              `json:"StreamARN"`
	StreamCreationTimestamp *timestamp          `json:"StreamCreationTimestamp"`
	RecordConfiguration     recordConfiguration `json:"RecordConfiguration"`
}

type channelDescription struct {
	ChannelName                      string                     `json:"ChannelName"`
	ChannelARN                       string                     `json:"ChannelARN"`
	ChannelId                        string                     `json:"ChannelId"`
	ChannelStatus                    string                     `json:"ChannelStatus"`
	ChannelCreationTimestamp         *timestamp                 `json:"ChannelCreationTimestamp"`
	ServiceExecutionRoleARN          string                     `json:"ServiceExecutionRoleARN"`
	StreamConfigurationList          []channelStreamDescription `json:"StreamConfigurationList"`
	S3DestinationConfiguration       *s3Destination             `json:"S3DestinationConfiguration,omitempty"`
	S3TablesDestinationConfiguration *s3TablesDestination       `json:"S3TablesDestinationConfiguration,omitempty"`
	EncryptionConfiguration          *channelEncryption         `json:"EncryptionConfiguration,omitempty"`
	LoggingConfiguration             *channelLogging            `json:"LoggingConfiguration,omitempty"`
}

type channelDescriptionOutput struct {
	ChannelDescription channelDescription `json:"ChannelDescription"`
}

func (s *Server) describeChannelRecord(r *channelRecord, status string) channelDescription {
	return channelDescription{
		ChannelName: r.Name, ChannelARN: s.channelARN(r.ID), ChannelId: r.ID, ChannelStatus: status,
		ChannelCreationTimestamp: ts(time.UnixMilli(r.CreatedMs)),
		ServiceExecutionRoleARN:  r.Role,
		StreamConfigurationList: []channelStreamDescription{{
			StreamARN: r.StreamARN, StreamCreationTimestamp: ts(time.UnixMilli(r.StreamMs)), RecordConfiguration: r.Record,
		}},
		S3DestinationConfiguration: r.S3, S3TablesDestinationConfiguration: r.S3Tables,
		EncryptionConfiguration: r.Encryption, LoggingConfiguration: r.Logging,
	}
}

// storedChannel is a channel and the stream holding it.
type storedChannel struct {
	stream string
	rec    channelRecord
}

// allChannels returns every channel of the account not yet gone, by name.
func (s *Server) allChannels() ([]storedChannel, *apiError) {
	names, err := s.db.ListStreams()
	if err != nil {
		return nil, s.engineError(err, "")
	}
	now := s.now().UnixMilli()
	var out []storedChannel
	for _, name := range names {
		attrs, err := s.db.Attrs(name, channelAttrPrefix)
		if err != nil {
			continue // deleted meanwhile
		}
		for _, v := range attrs {
			var r channelRecord
			if json.Unmarshal(v, &r) != nil {
				continue
			}
			if _, gone := r.status(now); !gone {
				out = append(out, storedChannel{stream: name, rec: r})
			}
		}
	}
	slices.SortFunc(out, func(a, b storedChannel) int { return strings.Compare(a.rec.Name, b.rec.Name) })
	return out, nil
}

// streamChannelCount returns how many channels (not yet gone) read from
// stream; DeleteStream refuses a stream that has any.
func (s *Server) streamChannelCount(stream string) int {
	attrs, err := s.db.Attrs(stream, channelAttrPrefix)
	if err != nil {
		return 0
	}
	now, n := s.now().UnixMilli(), 0
	for _, v := range attrs {
		var r channelRecord
		if json.Unmarshal(v, &r) == nil {
			if _, gone := r.status(now); !gone {
				n++
			}
		}
	}
	return n
}

// findChannel resolves a (valid) channel ARN to its channel.
func (s *Server) findChannel(arn string) (storedChannel, *apiError) {
	notFound := newAPIError(errResourceNotFound, "Channel "+arn+" under account "+s.cfg.Account+" not found.")
	parts := strings.SplitN(arn, ":", 6)
	id, ok := strings.CutPrefix(parts[5], "channel/")
	if !ok || parts[3] != s.cfg.Region || parts[4] != s.cfg.Account || len(id) > engine.MaxAttrKeyBytes-len(channelAttrPrefix) {
		return storedChannel{}, notFound
	}
	names, err := s.db.ListStreams()
	if err != nil {
		return storedChannel{}, s.engineError(err, "")
	}
	for _, name := range names {
		v, ok, err := s.db.Attr(name, channelAttrPrefix+id)
		if err != nil || !ok {
			continue
		}
		var r channelRecord
		if json.Unmarshal(v, &r) != nil {
			continue
		}
		if _, gone := r.status(s.now().UnixMilli()); gone {
			return storedChannel{}, notFound
		}
		return storedChannel{stream: name, rec: r}, nil
	}
	return storedChannel{}, notFound
}

func (s *Server) saveChannel(stream string, r *channelRecord) *apiError {
	b, _ := json.Marshal(r)
	if err := s.db.SetAttr(stream, channelAttrPrefix+r.ID, b); err != nil {
		return s.engineError(err, stream)
	}
	return nil
}

// Validation of the nested shapes, in the model's member order.

func (c *check) channelARN(v *string) {
	c.reqStr("channelARN", v, 1, maxARNLen, isChannelARN, channelARNText)
}

func (c *check) deadLetterQueue(path string, d *deadLetterQueueS3) {
	c.required(path+".bucketARN", d.BucketARN != nil)
	c.required(path+".expectedBucketOwner", d.ExpectedBucketOwner != nil)
}

func (c *check) s3Destination(d *s3Destination) {
	const p = "s3DestinationConfiguration"
	if d.DeadLetterQueueS3Configuration != nil {
		c.deadLetterQueue(p+".deadLetterQueueS3Configuration", d.DeadLetterQueueS3Configuration)
	}
	if c.required(p+".storageConfiguration", d.StorageConfiguration != nil) {
		sc := d.StorageConfiguration
		c.required(p+".storageConfiguration.bucketARN", sc.BucketARN != nil)
		c.required(p+".storageConfiguration.expectedBucketOwner", sc.ExpectedBucketOwner != nil)
		if c.required(p+".storageConfiguration.compressionType", sc.CompressionType != nil) {
			c.enum(p+".storageConfiguration.compressionType", sc.CompressionType, s3CompressionTypes)
		}
		c.enum(p+".storageConfiguration.storageClass", sc.StorageClass, s3StorageClasses)
	}
}

func (c *check) s3TablesDestination(d *s3TablesDestination) {
	const p = "s3TablesDestinationConfiguration"
	if c.required(p+".deadLetterQueueS3Configuration", d.DeadLetterQueueS3Configuration != nil) {
		c.deadLetterQueue(p+".deadLetterQueueS3Configuration", d.DeadLetterQueueS3Configuration)
	}
	if c.required(p+".s3TablesConfigurationList", d.S3TablesConfigurationList != nil) {
		l := d.S3TablesConfigurationList
		c.listLen(p+".s3TablesConfigurationList", len(l), func() string { return "'[...]'" }, 1, maxChannelListLen)
		for i := range min(len(l), maxListedViolations) {
			t, q := &l[i], p+".s3TablesConfigurationList."+strconv.Itoa(i+1)+".member"
			c.required(q+".tableBucketARN", t.TableBucketARN != nil)
			c.required(q+".namespace", t.Namespace != nil)
			c.required(q+".tableName", t.TableName != nil)
			if c.required(q+".compressionType", t.CompressionType != nil) {
				c.enum(q+".compressionType", t.CompressionType, s3TablesCompressions)
			}
			if t.PartitionSpec != nil && c.required(q+".partitionSpec.partitionFields", t.PartitionSpec.PartitionFields != nil) {
				for j, f := range t.PartitionSpec.PartitionFields {
					fq := q + ".partitionSpec.partitionFields." + strconv.Itoa(j+1) + ".member"
					if c.required(fq+".transform", f.Transform != nil) {
						c.enum(fq+".transform", f.Transform, partitionTransforms)
					}
					c.required(fq+".sourceName", f.SourceName != nil)
				}
			}
		}
	}
}

func (c *check) channelLogging(path string, l *channelLogging) {
	if c.required(path+".cloudWatchLogs", l.CloudWatchLogs != nil) {
		cw := l.CloudWatchLogs
		c.required(path+".cloudWatchLogs.enabled", cw.Enabled != nil)
	}
}

type createChannelInput struct {
	ChannelName                      *string                      `json:"ChannelName"`
	ServiceExecutionRoleARN          *string                      `json:"ServiceExecutionRoleARN"`
	StreamConfigurationList          []channelStreamConfiguration `json:"StreamConfigurationList"`
	S3DestinationConfiguration       *s3Destination               `json:"S3DestinationConfiguration"`
	S3TablesDestinationConfiguration *s3TablesDestination         `json:"S3TablesDestinationConfiguration"`
	EncryptionConfiguration          *channelEncryption           `json:"EncryptionConfiguration"`
	Tags                             tagMapIn                     `json:"Tags"`
	LoggingConfiguration             *channelLogging              `json:"LoggingConfiguration"`
}

func (s *Server) createChannel(rq *request) (any, *apiError) {
	var in createChannelInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.reqStr("channelName", in.ChannelName, 1, maxChannelNameLen, isName, namePatternText)
	c.required("serviceExecutionRoleARN", in.ServiceExecutionRoleARN != nil)
	if c.required("streamConfigurationList", in.StreamConfigurationList != nil) {
		l := in.StreamConfigurationList
		c.listLen("streamConfigurationList", len(l), func() string { return "'[...]'" }, 1, maxChannelListLen)
		for i := range min(len(l), maxListedViolations) {
			q := "streamConfigurationList." + strconv.Itoa(i+1) + ".member"
			c.reqStr(q+".streamARN", l[i].StreamARN, 1, maxARNLen, isStreamARN, streamARNText)
			if rc := l[i].RecordConfiguration; c.required(q+".recordConfiguration", rc != nil) {
				if c.required(q+".recordConfiguration.recordFormatType", rc.RecordFormatType != nil) {
					c.enum(q+".recordConfiguration.recordFormatType", rc.RecordFormatType, recordFormatTypes)
				}
			}
		}
	}
	if in.S3DestinationConfiguration != nil {
		c.s3Destination(in.S3DestinationConfiguration)
	}
	if in.S3TablesDestinationConfiguration != nil {
		c.s3TablesDestination(in.S3TablesDestinationConfiguration)
	}
	if e := in.EncryptionConfiguration; e != nil {
		if c.required("encryptionConfiguration.encryptionType", e.EncryptionType != nil) {
			c.enum("encryptionConfiguration.encryptionType", e.EncryptionType, channelEncryptionType)
		}
		c.required("encryptionConfiguration.keyId", e.KeyId != nil)
	}
	if in.Tags != nil {
		c.tagMap("tags", in.Tags, true)
	}
	if in.LoggingConfiguration != nil {
		c.channelLogging("loggingConfiguration", in.LoggingConfiguration)
	}
	if err := c.err(); err != nil {
		return nil, err
	}

	// The rules beyond the model, as AWS states them.
	name := *in.ChannelName
	switch {
	case (in.S3DestinationConfiguration == nil) == (in.S3TablesDestinationConfiguration == nil):
		return nil, newAPIError(errInvalidArgument, "Exactly one of S3DestinationConfiguration and S3TablesDestinationConfiguration must be specified for channel "+name+".")
	case len(in.StreamConfigurationList) != 1:
		return nil, newAPIError(errInvalidArgument, "StreamConfigurationList must contain exactly one stream: a channel reads from one stream.")
	case in.S3TablesDestinationConfiguration != nil && len(in.S3TablesDestinationConfiguration.S3TablesConfigurationList) != 1:
		return nil, newAPIError(errInvalidArgument, "S3TablesConfigurationList must contain exactly one table: a channel delivers to one table.")
	}
	if !tagsCharsOK(in.Tags) {
		return nil, newAPIError(errInvalidArgument, "Failed to add tags to channel "+name+" under account "+s.cfg.Account+
			" because some tags contained illegal characters. The allowed characters are Unicode letters, white space, numbers and _ . / = + - % @.")
	}
	sc := in.StreamConfigurationList[0]
	stream, aerr := s.resolveStream(nil, sc.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	d, err := s.db.DescribeStream(stream)
	if err != nil {
		return nil, s.engineError(err, stream)
	}
	if st := s.statusOf(d.Name, d.Status); st != engine.StatusActive {
		return nil, newAPIError(errResourceInUse, "Stream "+stream+" under account "+s.cfg.Account+" is not ACTIVE (it is "+string(st)+").")
	}
	if mode, err := s.modeOfStream(stream); err != nil {
		return nil, s.engineError(err, stream)
	} else if mode != modeOnDemand {
		return nil, newAPIError(errInvalidArgument, "Channels are only supported for streams in ON_DEMAND capacity mode; stream "+
			stream+" under account "+s.cfg.Account+" is PROVISIONED.")
	}

	s.accountMu.Lock() // the name check and the write are one step
	defer s.accountMu.Unlock()
	all, aerr := s.allChannels()
	if aerr != nil {
		return nil, aerr
	}
	for _, ch := range all {
		if ch.rec.Name == name {
			return nil, newAPIError(errResourceInUse, "Channel "+name+" under account "+s.cfg.Account+" already exists.")
		}
	}
	now := s.now()
	r := channelRecord{
		Name: name, ID: requestID(), CreatedMs: now.UnixMilli(), ActiveAtMs: now.Add(s.cfg.CreateDelay).UnixMilli(),
		Role: *in.ServiceExecutionRoleARN, StreamARN: s.streamARN(stream), StreamMs: d.CreatedAt.UnixMilli(),
		Record: *sc.RecordConfiguration, S3: in.S3DestinationConfiguration, S3Tables: in.S3TablesDestinationConfiguration,
		Encryption: in.EncryptionConfiguration, Logging: in.LoggingConfiguration, Tags: in.Tags,
	}
	defaultFreshness := func(p **int64) {
		if *p == nil {
			v := int64(defaultFreshnessSecs)
			*p = &v
		}
	}
	if r.S3 != nil {
		defaultFreshness(&r.S3.DataFreshnessInSeconds)
	} else {
		defaultFreshness(&r.S3Tables.DataFreshnessInSeconds)
	}
	if aerr := s.saveChannel(stream, &r); aerr != nil {
		return nil, aerr
	}
	st, _ := r.status(now.UnixMilli())
	return channelDescriptionOutput{ChannelDescription: s.describeChannelRecord(&r, st)}, nil
}

type channelARNInput struct {
	ChannelARN *string `json:"ChannelARN"`
}

func (s *Server) decodeChannelARN(rq *request) (storedChannel, *apiError) {
	var in channelARNInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return storedChannel{}, err
	}
	var c check
	c.channelARN(in.ChannelARN)
	if err := c.err(); err != nil {
		return storedChannel{}, err
	}
	return s.findChannel(*in.ChannelARN)
}

func (s *Server) describeChannel(rq *request) (any, *apiError) {
	ch, aerr := s.decodeChannelARN(rq)
	if aerr != nil {
		return nil, aerr
	}
	st, _ := ch.rec.status(s.now().UnixMilli())
	return channelDescriptionOutput{ChannelDescription: s.describeChannelRecord(&ch.rec, st)}, nil
}

// deleteChannel deletes a channel: at once, or after DELETING for
// Config.DeleteDelay. Deleting a channel already DELETING is
// ResourceNotFoundException, as for streams.
func (s *Server) deleteChannel(rq *request) (any, *apiError) {
	s.accountMu.Lock()
	defer s.accountMu.Unlock()
	ch, aerr := s.decodeChannelARN(rq)
	if aerr != nil {
		return nil, aerr
	}
	if ch.rec.GoneAtMs != 0 {
		return nil, newAPIError(errResourceNotFound, "Channel "+s.channelARN(ch.rec.ID)+" under account "+s.cfg.Account+" not found.")
	}
	if s.cfg.DeleteDelay <= 0 {
		if err := s.db.SetAttr(ch.stream, channelAttrPrefix+ch.rec.ID, nil); err != nil {
			return nil, s.engineError(err, ch.stream)
		}
		return nil, nil
	}
	ch.rec.GoneAtMs = s.now().Add(s.cfg.DeleteDelay).UnixMilli()
	return nil, s.saveChannel(ch.stream, &ch.rec)
}

type updateChannelInput struct {
	ChannelARN                       *string          `json:"ChannelARN"`
	S3DestinationConfiguration       *freshnessUpdate `json:"S3DestinationConfiguration"`
	S3TablesDestinationConfiguration *freshnessUpdate `json:"S3TablesDestinationConfiguration"`
	LoggingConfiguration             *channelLogging  `json:"LoggingConfiguration"`
}

// updateChannel changes a channel's data freshness or logging; the channel
// is UPDATING for Config.UpdateDelay after.
func (s *Server) updateChannel(rq *request) (any, *apiError) {
	var in updateChannelInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.channelARN(in.ChannelARN)
	if u := in.S3DestinationConfiguration; u != nil {
		c.required("s3DestinationConfiguration.dataFreshnessInSeconds", u.DataFreshnessInSeconds != nil)
	}
	if u := in.S3TablesDestinationConfiguration; u != nil {
		c.required("s3TablesDestinationConfiguration.dataFreshnessInSeconds", u.DataFreshnessInSeconds != nil)
	}
	if in.LoggingConfiguration != nil {
		c.channelLogging("loggingConfiguration", in.LoggingConfiguration)
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	s.accountMu.Lock()
	defer s.accountMu.Unlock()
	ch, aerr := s.findChannel(*in.ChannelARN)
	if aerr != nil {
		return nil, aerr
	}
	arn, r := s.channelARN(ch.rec.ID), &ch.rec
	now := s.now()
	if st, _ := r.status(now.UnixMilli()); st != "ACTIVE" {
		return nil, newAPIError(errResourceInUse, "Channel "+arn+" under account "+s.cfg.Account+" is not ACTIVE (it is "+st+").")
	}
	switch {
	case in.S3DestinationConfiguration == nil && in.S3TablesDestinationConfiguration == nil && in.LoggingConfiguration == nil:
		return nil, newAPIError(errInvalidArgument, "UpdateChannel needs S3DestinationConfiguration, S3TablesDestinationConfiguration or LoggingConfiguration.")
	case in.S3DestinationConfiguration != nil && r.S3 == nil:
		return nil, newAPIError(errInvalidArgument, "Channel "+arn+" delivers to S3 Tables; S3DestinationConfiguration does not apply to it.")
	case in.S3TablesDestinationConfiguration != nil && r.S3Tables == nil:
		return nil, newAPIError(errInvalidArgument, "Channel "+arn+" delivers to an S3 bucket; S3TablesDestinationConfiguration does not apply to it.")
	}
	if u := in.S3DestinationConfiguration; u != nil {
		r.S3.DataFreshnessInSeconds = u.DataFreshnessInSeconds
	}
	if u := in.S3TablesDestinationConfiguration; u != nil {
		r.S3Tables.DataFreshnessInSeconds = u.DataFreshnessInSeconds
	}
	if in.LoggingConfiguration != nil {
		r.Logging = in.LoggingConfiguration
	}
	r.UpdatedTilMs = now.Add(s.cfg.UpdateDelay).UnixMilli()
	if aerr := s.saveChannel(ch.stream, r); aerr != nil {
		return nil, aerr
	}
	st, _ := r.status(now.UnixMilli())
	return channelDescriptionOutput{ChannelDescription: s.describeChannelRecord(r, st)}, nil
}

type streamFilter struct {
	StreamARN               *string    `json:"StreamARN"`
	StreamCreationTimestamp *timestamp `json:"StreamCreationTimestamp"`
}

type listChannelsInput struct {
	StreamFilter []streamFilter `json:"StreamFilter"`
	MaxResults   *int64         `json:"MaxResults"`
	NextToken    *string        `json:"NextToken"`
}

type channelStreamIdentifier struct {
	StreamARN               string     `json:"StreamARN"`
	StreamCreationTimestamp *timestamp `json:"StreamCreationTimestamp"`
}

type channelSummary struct {
	ChannelName              string                    `json:"ChannelName"`
	ChannelARN               string                    `json:"ChannelARN"`
	ChannelId                string                    `json:"ChannelId"`
	ChannelStatus            string                    `json:"ChannelStatus"`
	ChannelCreationTimestamp *timestamp                `json:"ChannelCreationTimestamp"`
	ChannelDestinationType   string                    `json:"ChannelDestinationType"`
	Streams                  []channelStreamIdentifier `json:"Streams"`
}

type listChannelsOutput struct {
	ChannelSummaries []channelSummary `json:"ChannelSummaries"`
	NextToken        *string          `json:"NextToken,omitempty"`
}

// listChannels lists the account's channels by name, at most 100 a page
// (MaxResults above 100 is accepted and capped, as AWS documents),
// optionally only those reading from the filter's streams.
func (s *Server) listChannels(rq *request) (any, *apiError) {
	var in listChannelsInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	if in.StreamFilter != nil {
		c.listLen("streamFilter", len(in.StreamFilter), func() string { return "'[...]'" }, 1, maxChannelListLen)
		for i := range min(len(in.StreamFilter), maxListedViolations) {
			q := "streamFilter." + strconv.Itoa(i+1) + ".member.streamARN"
			c.reqStr(q, in.StreamFilter[i].StreamARN, 1, maxARNLen, isStreamARN, streamARNText)
		}
	}
	c.intRange("maxResults", in.MaxResults, 1, maxChannelListLen)
	c.str("nextToken", in.NextToken, 1, maxNextTokenLen, nil, "")
	if err := c.err(); err != nil {
		return nil, err
	}
	now := s.now().UnixMilli()
	after := ""
	if in.NextToken != nil {
		t, aerr := decodePageToken(*in.NextToken, now)
		if aerr != nil {
			return nil, aerr
		}
		after = t.After
	}
	limit := defaultChannelPage
	if in.MaxResults != nil {
		limit = int(min(*in.MaxResults, defaultChannelPage))
	}
	all, aerr := s.allChannels()
	if aerr != nil {
		return nil, aerr
	}
	out := listChannelsOutput{ChannelSummaries: []channelSummary{}}
	for _, ch := range all {
		r := &ch.rec
		if r.Name <= after || !matchesFilter(r, in.StreamFilter) {
			continue
		}
		if len(out.ChannelSummaries) == limit {
			tok := encodePageToken(pageToken{After: out.ChannelSummaries[limit-1].ChannelName, IssuedMs: now})
			out.NextToken = &tok
			break
		}
		st, _ := r.status(now)
		out.ChannelSummaries = append(out.ChannelSummaries, channelSummary{
			ChannelName: r.Name, ChannelARN: s.channelARN(r.ID), ChannelId: r.ID, ChannelStatus: st,
			ChannelCreationTimestamp: ts(time.UnixMilli(r.CreatedMs)), ChannelDestinationType: r.destinationType(),
			Streams: []channelStreamIdentifier{{StreamARN: r.StreamARN, StreamCreationTimestamp: ts(time.UnixMilli(r.StreamMs))}},
		})
	}
	return out, nil
}

// matchesFilter reports whether r reads from one of the filter's streams
// (any channel when there is no filter). A filter's creation timestamp,
// when given, must be the stream's, to the millisecond.
func matchesFilter(r *channelRecord, f []streamFilter) bool {
	if len(f) == 0 {
		return true
	}
	for _, x := range f {
		if *x.StreamARN != r.StreamARN {
			continue
		}
		if x.StreamCreationTimestamp == nil || x.StreamCreationTimestamp.UnixMilli() == r.StreamMs {
			return true
		}
	}
	return false
}

// tagsCharsOK reports whether every tag key and value has only the
// characters AWS allows (tagCharsOK).
func tagsCharsOK(tags map[string]string) bool {
	for k, v := range tags {
		if !tagCharsOK(k) || !tagCharsOK(v) {
			return false
		}
	}
	return true
}

// Tags of a channel: TagResource, UntagResource and ListTagsForResource
// take a channel ARN as well as a stream's. The tags live in the channel's
// record (so they persist and go with it), with the limits and the order
// of checks of a stream's tags (addTags, removeTags): the channel exists,
// the characters, at most maxStreamTags tags. Each change is one
// read-modify-write of the record under the stream's attribute lock
// (DB.UpdateAttrs), and under accountMu, which orders it with
// UpdateChannel and DeleteChannel (they rewrite the whole record).

// channelTagsError is AWS's InvalidArgumentException for a channel's tags,
// worded as for a stream's (illegalTags, tooManyTags).
func (s *Server) channelTagsError(channel string, remove, tooMany bool) *apiError {
	if tooMany {
		return newAPIError(errInvalidArgument, "Failed to add tags to channel "+channel+" under account "+s.cfg.Account+
			" because a given channel cannot have more than "+strconv.Itoa(maxStreamTags)+" tags associated with it.")
	}
	verb := "add tags to"
	if remove {
		verb = "remove tags from"
	}
	return newAPIError(errInvalidArgument, "Failed to "+verb+" channel "+channel+" under account "+s.cfg.Account+
		" because some tags contained illegal characters. "+tagAllowedText)
}

// updateChannelRecord applies change to the channel arn names, atomically:
// the record is read again under the stream's attribute lock, and is not
// found if it went meanwhile. An *apiError from change aborts the update
// and is returned.
func (s *Server) updateChannelRecord(arn string, change func(r *channelRecord) *apiError) *apiError {
	ch, aerr := s.findChannel(arn)
	if aerr != nil {
		return aerr
	}
	key := channelAttrPrefix + ch.rec.ID
	var changeErr *apiError
	err := s.db.UpdateAttrs(ch.stream, func(a map[string][]byte) error {
		var r channelRecord
		v, ok := a[key]
		if !ok || json.Unmarshal(v, &r) != nil {
			changeErr = newAPIError(errResourceNotFound, "Channel "+arn+" under account "+s.cfg.Account+" not found.")
			return changeErr
		}
		if _, gone := r.status(s.now().UnixMilli()); gone {
			changeErr = newAPIError(errResourceNotFound, "Channel "+arn+" under account "+s.cfg.Account+" not found.")
			return changeErr
		}
		if changeErr = change(&r); changeErr != nil {
			return changeErr
		}
		a[key], _ = json.Marshal(&r)
		return nil
	})
	if changeErr != nil {
		return changeErr
	}
	if err != nil {
		return s.engineError(err, ch.stream)
	}
	return nil
}

// tagChannel adds tags to the channel arn names (TagResource).
func (s *Server) tagChannel(arn string, tags map[string]string) *apiError {
	s.accountMu.Lock()
	defer s.accountMu.Unlock()
	return s.updateChannelRecord(arn, func(r *channelRecord) *apiError {
		if !tagsCharsOK(tags) {
			return s.channelTagsError(r.Name, false, false)
		}
		n := len(r.Tags)
		for k := range tags {
			if _, ok := r.Tags[k]; !ok {
				n++
			}
		}
		if n > maxStreamTags {
			return s.channelTagsError(r.Name, false, true)
		}
		if r.Tags == nil {
			r.Tags = make(map[string]string, len(tags))
		}
		maps.Copy(r.Tags, tags)
		return nil
	})
}

// untagChannel removes tag keys from the channel arn names
// (UntagResource); keys it does not have are ignored, as for streams.
func (s *Server) untagChannel(arn string, keys []string) *apiError {
	s.accountMu.Lock()
	defer s.accountMu.Unlock()
	return s.updateChannelRecord(arn, func(r *channelRecord) *apiError {
		for _, k := range keys {
			if !tagCharsOK(k) {
				return s.channelTagsError(r.Name, true, false)
			}
		}
		for _, k := range keys {
			delete(r.Tags, k)
		}
		if len(r.Tags) == 0 {
			r.Tags = nil
		}
		return nil
	})
}

// channelTags returns the tags of the channel arn names
// (ListTagsForResource), sorted by key.
func (s *Server) channelTags(arn string) ([]tagOut, *apiError) {
	ch, aerr := s.findChannel(arn)
	if aerr != nil {
		return nil, aerr
	}
	return sortedTags(ch.rec.Tags, ""), nil
}
