package server

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/kvstream/kvstream/engine"
)

// Capacity settings added to Kinesis since 2020: the account's minimum
// throughput billing commitment (DescribeAccountSettings,
// UpdateAccountSettings), a stream's maximum record size
// (UpdateMaxRecordSize, CreateStream's MaxRecordSizeInKiB) and an
// on-demand stream's warm throughput (UpdateStreamWarmThroughput,
// CreateStream's WarmThroughputMiBps).
//
// The record size is real: it is the engine's per-stream record limit
// (engine.StreamConfig.MaxRecordBytes), so PutRecord and PutRecords on the
// stream accept records up to it. The commitment and the warm throughput
// have no local meaning beyond their rules; they are persisted (engine
// attributes) and reported as AWS reports them.

// accountSettingsAttr is the DB-wide attribute holding the commitment.
const accountSettingsAttr = "kinesis/account/minimum-throughput-billing-commitment"

// warmThroughputAttr is the stream attribute holding its warm throughput
// target in MiB/s (decimal).
const warmThroughputAttr = "kinesis/warm-throughput-mibps"

// commitmentMinimum is how long a billing commitment must last before it
// can end (24 hours, as AWS).
const commitmentMinimum = 24 * time.Hour

// maxWarmThroughputMiBps is AWS's default cap on an on-demand stream's
// warm throughput (10 GiB/s).
const maxWarmThroughputMiBps = 10240

// commitment is the persisted state of the account's commitment.
type commitment struct {
	Status        string `json:"status"` // ENABLED, DISABLED or ENABLED_UNTIL_EARLIEST_ALLOWED_END
	StartedMs     int64  `json:"started_ms,omitempty"`
	EndedMs       int64  `json:"ended_ms,omitempty"`
	EarliestEndMs int64  `json:"earliest_end_ms,omitempty"`
}

// at returns c as seen at nowMs: a scheduled end that has come is DISABLED.
func (c commitment) at(nowMs int64) commitment {
	if c.Status == "" {
		c.Status = "DISABLED"
	}
	if c.Status == "ENABLED_UNTIL_EARLIEST_ALLOWED_END" && nowMs >= c.EarliestEndMs {
		c.Status, c.EndedMs = "DISABLED", c.EarliestEndMs
	}
	return c
}

type commitmentOut struct {
	Status               string     `json:"Status"`
	StartedAt            *timestamp `json:"StartedAt,omitempty"`
	EndedAt              *timestamp `json:"EndedAt,omitempty"`
	EarliestAllowedEndAt *timestamp `json:"EarliestAllowedEndAt,omitempty"`
}

func (c commitment) out() *commitmentOut {
	o := &commitmentOut{Status: c.Status}
	opt := func(ms int64) *timestamp {
		if ms == 0 {
			return nil
		}
		return ts(time.UnixMilli(ms))
	}
	o.StartedAt, o.EndedAt, o.EarliestAllowedEndAt = opt(c.StartedMs), opt(c.EndedMs), opt(c.EarliestEndMs)
	return o
}

type accountSettingsOutput struct {
	MinimumThroughputBillingCommitment *commitmentOut `json:"MinimumThroughputBillingCommitment"`
}

func (s *Server) loadCommitment() (commitment, *apiError) {
	var c commitment
	v, ok, err := s.db.Attr("", accountSettingsAttr)
	if err != nil {
		return c, s.engineError(err, "")
	}
	if ok && json.Unmarshal(v, &c) != nil {
		s.cfg.Logger.Error("kvstream server: undecodable account settings; reporting DISABLED")
		c = commitment{}
	}
	return c.at(s.now().UnixMilli()), nil
}

func (s *Server) describeAccountSettings(rq *request) (any, *apiError) {
	var in struct{}
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	c, aerr := s.loadCommitment()
	if aerr != nil {
		return nil, aerr
	}
	return accountSettingsOutput{MinimumThroughputBillingCommitment: c.out()}, nil
}

type updateAccountSettingsInput struct {
	MinimumThroughputBillingCommitment *struct {
		Status *string `json:"Status"`
	} `json:"MinimumThroughputBillingCommitment"`
}

var commitmentStatuses = []string{"ENABLED", "DISABLED"}

// updateAccountSettings enables or disables the commitment with AWS's
// rules: it lasts at least 24 hours; disabling it earlier schedules its end
// at EarliestAllowedEndAt (ENABLED_UNTIL_EARLIEST_ALLOWED_END), and
// enabling it again before then cancels the scheduled end.
func (s *Server) updateAccountSettings(rq *request) (any, *apiError) {
	var in updateAccountSettingsInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	if c.required("minimumThroughputBillingCommitment", in.MinimumThroughputBillingCommitment != nil) {
		st := in.MinimumThroughputBillingCommitment.Status
		if c.required("minimumThroughputBillingCommitment.status", st != nil) {
			c.enum("minimumThroughputBillingCommitment.status", st, commitmentStatuses)
		}
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	s.accountMu.Lock() // read-modify-write of the account settings
	defer s.accountMu.Unlock()
	cur, aerr := s.loadCommitment()
	if aerr != nil {
		return nil, aerr
	}
	now := s.now().UnixMilli()
	switch want := *in.MinimumThroughputBillingCommitment.Status; {
	case want == "ENABLED" && cur.Status == "DISABLED":
		cur = commitment{Status: "ENABLED", StartedMs: now, EarliestEndMs: now + commitmentMinimum.Milliseconds()}
	case want == "ENABLED":
		cur.Status, cur.EndedMs = "ENABLED", 0 // cancels a scheduled end
	case want == "DISABLED" && cur.Status == "DISABLED":
	case want == "DISABLED" && now < cur.EarliestEndMs:
		cur.Status, cur.EndedMs = "ENABLED_UNTIL_EARLIEST_ALLOWED_END", 0
	default: // DISABLED after the minimum
		cur.Status, cur.EndedMs = "DISABLED", now
	}
	b, _ := json.Marshal(cur)
	if err := s.db.SetAttr("", accountSettingsAttr, b); err != nil {
		return nil, s.engineError(err, "")
	}
	return accountSettingsOutput{MinimumThroughputBillingCommitment: cur.out()}, nil
}

type updateMaxRecordSizeInput struct {
	StreamARN          *string `json:"StreamARN"`
	StreamId           *string `json:"StreamId"`
	MaxRecordSizeInKiB *int64  `json:"MaxRecordSizeInKiB"`
}

// Bounds of MaxRecordSizeInKiB (1 MiB to 10 MiB).
const (
	minRecordSizeKiB = 1024
	maxRecordSizeKiB = 10240
)

// updateMaxRecordSize changes the stream's record limit in the engine:
// later PutRecord and PutRecords calls accept records (data plus partition
// key) up to the new size.
func (s *Server) updateMaxRecordSize(rq *request) (any, *apiError) {
	var in updateMaxRecordSizeInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.streamARN(in.StreamARN)
	c.streamID(in.StreamId)
	if c.required("maxRecordSizeInKiB", in.MaxRecordSizeInKiB != nil) {
		c.intRange("maxRecordSizeInKiB", in.MaxRecordSizeInKiB, minRecordSizeKiB, maxRecordSizeKiB)
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	if in.StreamARN == nil {
		return nil, newAPIError(errInvalidArgument, "StreamARN must be provided.")
	}
	name, aerr := s.resolveStream(nil, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.requireActive(name); aerr != nil {
		return nil, aerr
	}
	err := s.db.SetMaxRecordBytes(name, int(*in.MaxRecordSizeInKiB)*1024)
	s.recordLimits.forget(name)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	return nil, nil
}

type updateStreamWarmThroughputInput struct {
	StreamARN           *string `json:"StreamARN"`
	StreamName          *string `json:"StreamName"`
	StreamId            *string `json:"StreamId"`
	WarmThroughputMiBps *int64  `json:"WarmThroughputMiBps"`
}

type warmThroughputOut struct {
	TargetMiBps  *int64 `json:"TargetMiBps,omitempty"`
	CurrentMiBps *int64 `json:"CurrentMiBps,omitempty"`
}

type updateStreamWarmThroughputOutput struct {
	StreamARN      string             `json:"StreamARN"`
	StreamName     string             `json:"StreamName"`
	WarmThroughput *warmThroughputOut `json:"WarmThroughput"`
}

// updateStreamWarmThroughput records an ON_DEMAND stream's warm
// throughput. AWS allows it only for ON_DEMAND streams, in accounts with
// the minimum throughput billing commitment enabled, up to 10 GiB/s. The
// warm-up is instant here: CurrentMiBps equals the target at once.
func (s *Server) updateStreamWarmThroughput(rq *request) (any, *apiError) {
	var in updateStreamWarmThroughputInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.streamARN(in.StreamARN)
	c.streamName(in.StreamName)
	c.streamID(in.StreamId)
	if c.required("warmThroughputMiBps", in.WarmThroughputMiBps != nil) {
		c.intRange("warmThroughputMiBps", in.WarmThroughputMiBps, 0, maxInt)
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	name, aerr := s.resolveStream(in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	d, err := s.db.DescribeStream(name)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	mode, err := s.modeOfStream(name)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	if aerr := s.checkWarmThroughput(name, mode, *in.WarmThroughputMiBps, true); aerr != nil {
		return nil, aerr
	}
	if st := s.statusOf(name, d.Status); st != engine.StatusActive {
		return nil, s.notActive(name, st)
	}
	mibps := *in.WarmThroughputMiBps
	if err := s.db.SetAttr(name, warmThroughputAttr, []byte(strconv.FormatInt(mibps, 10))); err != nil {
		return nil, s.engineError(err, name)
	}
	return updateStreamWarmThroughputOutput{StreamARN: s.streamARN(name), StreamName: name,
		WarmThroughput: &warmThroughputOut{TargetMiBps: &mibps, CurrentMiBps: &mibps}}, nil
}

// checkWarmThroughput applies AWS's rules for a warm throughput of mibps
// on a stream of the given mode; needCommitment also requires the
// account's billing commitment (UpdateStreamWarmThroughput).
func (s *Server) checkWarmThroughput(name string, mode string, mibps int64, needCommitment bool) *apiError {
	if mode != modeOnDemand {
		return newAPIError(errInvalidArgument, "Warm throughput is only supported for streams in ON_DEMAND mode; stream "+name+
			" under account "+s.cfg.Account+" is in "+mode+" mode.")
	}
	if mibps > maxWarmThroughputMiBps {
		return newAPIError(errLimitExceeded, "WarmThroughputMiBps "+strconv.FormatInt(mibps, 10)+" for stream "+name+" under account "+
			s.cfg.Account+" exceeds the limit of "+strconv.Itoa(maxWarmThroughputMiBps)+" MiBps.")
	}
	if needCommitment {
		c, aerr := s.loadCommitment()
		if aerr != nil {
			return aerr
		}
		if c.Status == "DISABLED" {
			return newAPIError(errInvalidArgument, "Warm throughput requires the MinimumThroughputBillingCommitment of account "+
				s.cfg.Account+" to be enabled (UpdateAccountSettings).")
		}
	}
	return nil
}

// warmThroughputOf returns the stream's warm throughput for
// DescribeStreamSummary (nil when none was set).
func (s *Server) warmThroughputOf(name string) *warmThroughputOut {
	v, ok, err := s.db.Attr(name, warmThroughputAttr)
	if err != nil || !ok {
		return nil
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return nil
	}
	return &warmThroughputOut{TargetMiBps: &n, CurrentMiBps: &n}
}

// recordLimitCache remembers each stream's record limit (the engine's
// per-stream MaxRecordBytes), which PutRecord and PutRecords check at
// validation, so the hot path does not describe the stream. Entries are
// dropped whenever the server creates, changes or deletes a stream.
type recordLimitCache struct{ m sync.Map } // name → int

// defaultRecordBytes is a stream's record limit unless changed (1 MiB).
const defaultRecordBytes = 1 << 20

func (c *recordLimitCache) get(s *Server, name string) int {
	if v, ok := c.m.Load(name); ok {
		return v.(int)
	}
	d, err := s.db.DescribeStream(name)
	if err != nil {
		return defaultRecordBytes // the stream's absence is reported later
	}
	c.m.Store(name, d.MaxRecordBytes)
	return d.MaxRecordBytes
}

func (c *recordLimitCache) forget(name string) { c.m.Delete(name) }

// streamID checks the StreamId member newer requests carry (not used:
// streams are named by name or ARN here).
func (c *check) streamID(v *string) {
	c.str("streamId", v, 1, 24, isStreamID, streamIDText)
}

const streamIDText = "[a-z0-9]{20}-[a-z0-9]{3}"

// isStreamID matches [a-z0-9]{20}-[a-z0-9]{3}.
func isStreamID(s string) bool {
	if len(s) != 24 || s[20] != '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i == 20 {
			continue
		}
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// dataLimit returns the Data limit of the stream a data-plane request
// names (by name, else by ARN): the stream's record limit, or 1 MiB when
// the stream is not known (its absence is reported after validation).
func (s *Server) dataLimit(name, arn *string) int {
	switch {
	case name != nil:
		return s.recordLimits.get(s, *name)
	case arn != nil:
		if _, _, n, ok := parseStreamARN(*arn); ok {
			return s.recordLimits.get(s, n)
		}
	}
	return defaultRecordBytes
}
