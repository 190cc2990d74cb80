package server

import (
	"errors"
	"strconv"
	"sync"

	"github.com/fxamacker/cbor/v2"
	"github.com/kvstream/kvstream/engine"
)

// The data plane: PutRecord, PutRecords, GetShardIterator, GetRecords.

// A record's Data is checked against its stream's record limit (1 MiB
// unless UpdateMaxRecordSize or CreateStream's MaxRecordSizeInKiB raised
// it, up to 10 MiB): see Server.dataLimit.

type putRecordInput struct {
	StreamName                *string `json:"StreamName"`
	Data                      []byte  `json:"Data"`
	PartitionKey              *string `json:"PartitionKey"`
	ExplicitHashKey           *string `json:"ExplicitHashKey"`
	SequenceNumberForOrdering *string `json:"SequenceNumberForOrdering"`
	StreamARN                 *string `json:"StreamARN"`
}

type putRecordOutput struct {
	ShardId        string `json:"ShardId"`
	SequenceNumber string `json:"SequenceNumber"`
	EncryptionType string `json:"EncryptionType"`
}

func (s *Server) putRecord(rq *request) (any, *apiError) {
	var in putRecordInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.streamName(in.StreamName)
	if limit := s.dataLimit(in.StreamName, in.StreamARN); c.required("data", in.Data != nil) && len(in.Data) > limit {
		c.add(blobValue(len(in.Data)), "data", "have length less than or equal to "+strconv.Itoa(limit))
	}
	c.reqStr("partitionKey", in.PartitionKey, 1, 256, nil, "")
	c.str("explicitHashKey", in.ExplicitHashKey, 0, 0, isHashKey, hashKeyPatternText)
	c.str("sequenceNumberForOrdering", in.SequenceNumberForOrdering, 0, 0, isSeqNum, seqPatternText)
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	e := engine.Entry{PartitionKey: *in.PartitionKey, Data: in.Data}
	if in.ExplicitHashKey != nil {
		e.ExplicitHashKey = *in.ExplicitHashKey
	}
	if in.SequenceNumberForOrdering != nil {
		sn := *in.SequenceNumberForOrdering
		switch checkOrderingNumber(sn, s.now()) {
		case orderingInvalid:
			return nil, newAPIError(errInvalidArgument, "ExclusiveMinimumSequenceNumber "+sn+
				" used in PutRecord on stream "+name+" under account "+s.cfg.Account+" is invalid.")
		case orderingInternal:
			return nil, newAPIError(errInternalFailure, "")
		}
		// A number of kvstream's own shape orders the record after it
		// (the engine checks it belongs to the shard); other valid
		// numbers do not constrain the new one.
		if n, ok := engine.ParseSequenceNumber(sn); ok {
			e.SequenceNumberForOrdering = n
		}
	}
	res, err := s.db.PutRecord(rq.ctx, name, e)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	s.metrics.recordsIn.Inc()
	s.metrics.bytesIn.Add(float64(len(in.Data)))
	return putRecordOutput{ShardId: res.ShardID.String(), SequenceNumber: res.SequenceNumber.String(), EncryptionType: s.enc.get(s, name)}, nil
}

type putRecordsEntry struct {
	Data            []byte  `json:"Data"`
	ExplicitHashKey *string `json:"ExplicitHashKey"`
	PartitionKey    *string `json:"PartitionKey"`
}

type putRecordsInput struct {
	Records    putRecordsList `json:"Records"`
	StreamName *string        `json:"StreamName"`
	StreamARN  *string        `json:"StreamARN"`
}

type putRecordsResultEntry struct {
	SequenceNumber string `json:"SequenceNumber,omitempty"`
	ShardId        string `json:"ShardId,omitempty"`
	ErrorCode      string `json:"ErrorCode,omitempty"`
	ErrorMessage   string `json:"ErrorMessage,omitempty"`
}

type putRecordsOutput struct {
	FailedRecordCount int                     `json:"FailedRecordCount"`
	Records           []putRecordsResultEntry `json:"Records"`
	EncryptionType    string                  `json:"EncryptionType"`
}

// checkPutBatch checks PutRecords' model constraints on a decoded batch;
// limit is the stream's record limit for Data. Paths are only built for
// violations, so a valid batch costs nothing.
func (c *check) putBatch(b *putBatch, limit int) {
	if !c.required("records", b.hasRecords) {
		return
	}
	if len(b.entries) < 1 {
		c.add("'[…]'", "records", "have length greater than or equal to 1")
	}
	for i := range b.entries {
		e, f := &b.entries[i], b.flags[i]
		if f&hasData == 0 || len(e.Data) > limit || f&hasPartitionKey == 0 ||
			(f&hasExplicitHashKey != 0 && !isHashKey(e.ExplicitHashKey)) || !validPartitionKey(e.PartitionKey) {
			c.putEntry(i, e, f, limit)
		}
	}
}

// validPartitionKey reports whether pk has 1 to 256 characters (UTF-16
// code units).
func validPartitionKey(pk string) bool {
	if len(pk) >= 1 && len(pk) <= 256 {
		return true // the UTF-8 length bounds the UTF-16 length from above
	}
	return len(pk) > 256 && javaLen(pk) <= 256
}

// putEntry records the violations of one entry (i is 0-based).
func (c *check) putEntry(i int, e *engine.Entry, f entryFlags, limit int) {
	p := "records." + strconv.Itoa(i+1) + ".member."
	if c.required(p+"data", f&hasData != 0) && len(e.Data) > limit {
		c.add(blobValue(len(e.Data)), p+"data", "have length less than or equal to "+strconv.Itoa(limit))
	}
	if f&hasExplicitHashKey != 0 && !isHashKey(e.ExplicitHashKey) {
		c.pattern(p+"explicitHashKey", e.ExplicitHashKey, isHashKey, hashKeyPatternText)
	}
	if c.required(p+"partitionKey", f&hasPartitionKey != 0) {
		c.length(p+"partitionKey", e.PartitionKey, 1, 256)
	}
}

// fromInput fills b from a generically decoded request.
func (b *putBatch) fromInput(in *putRecordsInput) {
	b.reset()
	if in.StreamName != nil {
		b.streamName, b.hasStreamName = *in.StreamName, true
	}
	if in.StreamARN != nil {
		b.streamARN, b.hasStreamARN = *in.StreamARN, true
	}
	b.hasRecords = in.Records != nil
	for _, r := range in.Records {
		var e engine.Entry
		var f entryFlags
		if r.Data != nil {
			e.Data, f = r.Data, f|hasData
		}
		if r.PartitionKey != nil {
			e.PartitionKey, f = *r.PartitionKey, f|hasPartitionKey
		}
		if r.ExplicitHashKey != nil {
			e.ExplicitHashKey, f = *r.ExplicitHashKey, f|hasExplicitHashKey
		}
		b.entries = append(b.entries, e)
		b.flags = append(b.flags, f)
	}
}

var batchPool = sync.Pool{New: func() any { return new(putBatch) }}

// maxPooledArena keeps batches with huge arenas out of the pool.
const maxPooledArena = 8 << 20

func releaseBatch(b *putBatch) {
	if cap(b.arena) > maxPooledArena {
		return
	}
	clear(b.entries) // drop references to data and keys
	b.reset()
	batchPool.Put(b)
}

// optString returns &v if has, else nil.
func optString(has bool, v string) *string {
	if !has {
		return nil
	}
	return &v
}

func (s *Server) putRecords(rq *request) (any, *apiError) {
	b := batchPool.Get().(*putBatch)
	defer releaseBatch(b)
	if rq.codec != codecJSON || !decodePutRecordsJSON(rq.body, b) {
		var in putRecordsInput
		if err := rq.codec.decode(rq.body, &in); err != nil {
			var mae *cbor.MaxArrayElementsError
			if errors.As(err.cause, &mae) {
				return nil, tooManyRecords() // the only array of the request
			}
			return nil, err
		}
		b.fromInput(&in)
	}
	if b.limitErr != nil {
		return nil, b.limitErr
	}
	var c check
	streamName, streamARN := optString(b.hasStreamName, b.streamName), optString(b.hasStreamARN, b.streamARN)
	limit := s.dataLimit(streamName, streamARN)
	c.putBatch(b, limit)
	c.streamName(streamName)
	c.streamARN(streamARN)
	if err := c.err(); err != nil {
		return nil, err
	}
	name, aerr := s.resolveStream(streamName, streamARN)
	if aerr != nil {
		return nil, aerr
	}
	total := 0
	for i := range b.entries {
		total += len(b.entries[i].Data) + len(b.entries[i].PartitionKey)
	}
	// 5 MiB, or one record of the stream's limit when that is more.
	if maxTotal := max(maxPutRecordsBytes, limit); total > maxTotal {
		return nil, newAPIError(errInvalidArgument, "Records size exceeds "+strconv.Itoa(maxTotal>>20)+" MB limit")
	}
	results, err := s.db.PutRecords(rq.ctx, name, b.entries)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	var failures []putRecordsResultEntry
	okBytes := 0
	for i, r := range results {
		if r.Err != nil {
			failures = append(failures, s.putRecordsFailure(r.Err, name))
			continue
		}
		okBytes += len(b.entries[i].Data)
	}
	s.countPut(len(results)-len(failures), okBytes, len(failures))
	encType := s.enc.get(s, name)
	if rq.codec == codecJSON {
		dst := appendPutRecordsJSON(rq.scratch.AvailableBuffer(), len(failures), results, failures, encType)
		rq.scratch.Write(dst)
		return rawBody(rq.scratch.Bytes()), nil
	}
	out := putRecordsOutput{FailedRecordCount: len(failures), Records: make([]putRecordsResultEntry, len(results)), EncryptionType: encType}
	fi := 0
	for i, r := range results {
		if r.Err != nil {
			out.Records[i] = failures[fi]
			fi++
			continue
		}
		out.Records[i] = putRecordsResultEntry{SequenceNumber: r.SequenceNumber.String(), ShardId: r.ShardID.String()}
	}
	return out, nil
}

// putRecordsFailure renders one failed PutRecords entry: Kinesis only
// ever reports ProvisionedThroughputExceededException or InternalFailure.
func (s *Server) putRecordsFailure(err error, stream string) putRecordsResultEntry {
	if errors.Is(err, engine.ErrThroughputExceeded) || errors.Is(err, engine.ErrStreamFull) {
		return putRecordsResultEntry{ErrorCode: errThroughputExceeded, ErrorMessage: s.renderError(err, call{stream: stream}).Msg}
	}
	s.cfg.Logger.Error("kvstream server: PutRecords entry failed", "stream", stream, "err", err)
	return putRecordsResultEntry{ErrorCode: errInternalFailure, ErrorMessage: "Internal Service Failure"}
}

// countPut records accepted and throttled PutRecords entries.
func (s *Server) countPut(records, bytes, failed int) {
	s.metrics.recordsIn.Add(float64(records))
	s.metrics.bytesIn.Add(float64(bytes))
	if failed > 0 {
		s.metrics.throttles.WithLabelValues("PutRecords").Add(float64(failed))
	}
}

type getShardIteratorInput struct {
	StreamName             *string    `json:"StreamName"`
	ShardId                *string    `json:"ShardId"`
	ShardIteratorType      *string    `json:"ShardIteratorType"`
	StartingSequenceNumber *string    `json:"StartingSequenceNumber"`
	Timestamp              *timestamp `json:"Timestamp"`
	StreamARN              *string    `json:"StreamARN"`
}

type getShardIteratorOutput struct {
	ShardIterator string `json:"ShardIterator"`
}

var iteratorTypes = []string{"AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"}

func (s *Server) getShardIterator(rq *request) (any, *apiError) {
	var in getShardIteratorInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.streamName(in.StreamName)
	c.shardID("shardId", in.ShardId, true)
	if c.required("shardIteratorType", in.ShardIteratorType != nil) {
		c.enum("shardIteratorType", in.ShardIteratorType, iteratorTypes)
	}
	c.str("startingSequenceNumber", in.StartingSequenceNumber, 0, 0, isSeqNum, seqPatternText)
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	id, aerr := s.parseShard(*in.ShardId, name)
	if aerr != nil {
		return nil, aerr
	}
	pos, aerr := s.startPosition("GetShardIterator", *in.ShardIteratorType, in.StartingSequenceNumber, in.Timestamp, id, name)
	if aerr != nil {
		return nil, aerr
	}
	tok, err := s.db.GetShardIterator(name, id, pos)
	if err != nil {
		return nil, s.engineError(err, name)
	}
	return getShardIteratorOutput{ShardIterator: tok}, nil
}

// startPosition turns a Kinesis ShardIteratorType (typ, already
// validated) with its sequence number and timestamp into an engine
// position, with Kinesis' rules and messages for op: GetShardIterator
// names the number StartingSequenceNumber, SubscribeToShard's
// StartingPosition names it SequenceNumber.
func (s *Server) startPosition(op, typ string, seq *string, ts *timestamp, id engine.ShardID, stream string) (engine.StartPosition, *apiError) {
	member := "StartingSequenceNumber"
	if op == "SubscribeToShard" {
		member = "SequenceNumber"
	}
	combination := func(what string) *apiError {
		return newAPIError(errInvalidArgument, "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and "+member+" or "+
			"(2) TRIM_HORIZON or LATEST and no "+member+". Request specified "+typ+" and "+what+" "+member+".")
	}
	switch typ {
	case "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER":
		if seq == nil {
			return engine.StartPosition{}, combination("no")
		}
		n, ok := engine.ParseSequenceNumber(*seq)
		if !ok {
			return engine.StartPosition{}, newAPIError(errInvalidArgument, "StartingSequenceNumber "+*seq+" used in "+op+" on shard "+
				id.String()+" in stream "+stream+" under account "+s.cfg.Account+" is invalid.")
		}
		if typ == "AT_SEQUENCE_NUMBER" {
			return engine.AtSequenceNumber(n), nil
		}
		return engine.AfterSequenceNumber(n), nil
	case "TRIM_HORIZON", "LATEST":
		if seq != nil {
			return engine.StartPosition{}, combination("also a")
		}
		if typ == "TRIM_HORIZON" {
			return engine.TrimHorizon(), nil
		}
		return engine.Latest(), nil
	}
	if ts == nil { // AT_TIMESTAMP
		return engine.StartPosition{}, newAPIError(errInvalidArgument, "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.")
	}
	return engine.AtTimestamp(ts.Time), nil
}

type getRecordsInput struct {
	ShardIterator *string `json:"ShardIterator"`
	Limit         *int64  `json:"Limit"`
	StreamARN     *string `json:"StreamARN"`
}

type recordOut struct {
	SequenceNumber              string     `json:"SequenceNumber"`
	ApproximateArrivalTimestamp *timestamp `json:"ApproximateArrivalTimestamp"`
	Data                        []byte     `json:"Data"`
	PartitionKey                string     `json:"PartitionKey"`
}

type getRecordsOutput struct {
	Records            []recordOut     `json:"Records"`
	NextShardIterator  string          `json:"NextShardIterator,omitempty"`
	MillisBehindLatest int64           `json:"MillisBehindLatest"`
	ChildShards        []childShardOut `json:"ChildShards,omitempty"`
}

func (s *Server) getRecords(rq *request) (any, *apiError) {
	var in getRecordsInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.reqStr("shardIterator", in.ShardIterator, 1, maxShardIteratorLen, nil, "")
	c.intRange("limit", in.Limit, 1, 10000)
	c.streamARN(in.StreamARN)
	if err := c.err(); err != nil {
		return nil, err
	}
	limit := 0
	if in.Limit != nil {
		limit = int(*in.Limit)
	}
	if in.StreamARN != nil {
		// The ARN must name the iterator's stream, in this region and
		// account.
		stream, err := s.db.ShardIteratorStream(*in.ShardIterator)
		if err != nil {
			return nil, s.engineError(err, "")
		}
		if region, account, name, ok := parseStreamARN(*in.StreamARN); !ok || region != s.cfg.Region || account != s.cfg.Account || name != stream {
			return nil, newAPIError(errInvalidArgument, "StreamARN "+*in.StreamARN+" does not name the stream of the shard iterator ("+
				s.streamARN(stream)+").")
		}
	}
	res, err := s.db.GetRecords(rq.ctx, *in.ShardIterator, limit)
	if err != nil {
		stream := "" // the token names the stream; messages are qualified when the ARN says which
		if in.StreamARN != nil {
			if _, _, n, ok := parseStreamARN(*in.StreamARN); ok {
				stream = n
			}
		}
		return nil, s.engineError(err, stream)
	}
	bytes := 0
	for i := range res.Records {
		bytes += len(res.Records[i].Data)
	}
	// The records and their encoding count against the memory budget;
	// without room, the client retries with the same iterator.
	if rq.hold != nil && !rq.hold.add(bodyCharge*int64(bytes)) {
		return nil, s.throttleError(rq.op)
	}
	s.metrics.recordsOut.Add(float64(len(res.Records)))
	s.metrics.bytesOut.Add(float64(bytes))
	if rq.codec == codecJSON {
		dst := appendGetRecordsJSON(rq.scratch.AvailableBuffer(), &res)
		rq.scratch.Write(dst)
		return rawBody(rq.scratch.Bytes()), nil
	}
	out := getRecordsOutput{
		Records:            make([]recordOut, len(res.Records)),
		NextShardIterator:  res.NextShardIterator,
		MillisBehindLatest: res.MillisBehindLatest,
		ChildShards:        childShards(res.ChildShards),
	}
	for i, r := range res.Records {
		out.Records[i] = recordOut{
			SequenceNumber:              r.SequenceNumber.String(),
			ApproximateArrivalTimestamp: ts(r.Timestamp),
			Data:                        r.Data,
			PartitionKey:                r.PartitionKey,
		}
		if out.Records[i].Data == nil {
			out.Records[i].Data = []byte{}
		}
	}
	return out, nil
}
