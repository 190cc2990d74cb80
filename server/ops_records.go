package server

import (
	"errors"
	"strconv"
	"strings"
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
	Data                      blob    `json:"Data"`
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
	if rq.codec != codecJSON || !decodePutRecordJSON(rq.body, &in) {
		in = putRecordInput{}
		if err := rq.codec.decode(rq.body, &in); err != nil {
			return nil, err
		}
	}
	// AWS's member order: sequenceNumberForOrdering, partitionKey,
	// explicitHashKey, data, streamName (then streamARN).
	var c check
	c.str("sequenceNumberForOrdering", in.SequenceNumberForOrdering, 0, 0, isSeqNum, seqPatternText)
	c.reqStr("partitionKey", in.PartitionKey, 1, 256, nil, "")
	c.str("explicitHashKey", in.ExplicitHashKey, 0, 0, isHashKey, hashKeyPatternText)
	if limit := s.dataLimit(in.StreamName, in.StreamARN); c.required("data", in.Data != nil) && len(in.Data) > limit {
		c.add(blobValue(len(in.Data)), "data", "have length less than or equal to "+strconv.Itoa(limit))
	}
	c.streamRef(in.StreamName, in.StreamARN)
	name, aerr := s.checkedStream(&c, in.StreamName, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	e := engine.Entry{PartitionKey: *in.PartitionKey, Data: in.Data}
	if in.ExplicitHashKey != nil {
		e.ExplicitHashKey = *in.ExplicitHashKey
	}
	if s.autoDistributed(name) { // ops_distribution.go
		if in.SequenceNumberForOrdering != nil {
			return nil, s.autoPlacementError(name)
		}
		e.ExplicitHashKey = randomHashKey()
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
	encType := s.enc.get(s, name)
	if rq.codec == codecJSON {
		return rq.built(appendPutRecordJSON(rq.scratch.AvailableBuffer(), &res, encType)), nil
	}
	return putRecordOutput{ShardId: res.ShardID.String(), SequenceNumber: res.SequenceNumber.String(), EncryptionType: encType}, nil
}

type putRecordsEntry struct {
	Data            blob    `json:"Data"`
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
	c.listLen("records", len(b.entries), func() string { return printEntries(len(b.entries)) }, 1, maxPutRecordsEntries)
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

// putEntry records the violations of one entry (i is 0-based), in AWS's
// member order: partitionKey, explicitHashKey, data.
func (c *check) putEntry(i int, e *engine.Entry, f entryFlags, limit int) {
	p := "records." + strconv.Itoa(i+1) + ".member."
	if c.required(p+"partitionKey", f&hasPartitionKey != 0) {
		c.length(p+"partitionKey", e.PartitionKey, 1, 256)
	}
	if f&hasExplicitHashKey != 0 && !isHashKey(e.ExplicitHashKey) {
		c.pattern(p+"explicitHashKey", e.ExplicitHashKey, isHashKey, hashKeyPatternText)
	}
	if c.required(p+"data", f&hasData != 0) && len(e.Data) > limit {
		c.add(blobValue(len(e.Data)), p+"data", "have length less than or equal to "+strconv.Itoa(limit))
	}
}

// printEntries prints a list of n PutRecords entries as AWS does (Java's
// Object.toString of each entry, as recorded), stopping once it is past
// entriesValueText bytes (the printed value is cut there).
func printEntries(n int) string {
	const entry = printedEntry
	var b strings.Builder
	b.WriteString("'[")
	for i := range n {
		if b.Len() > entriesValueText {
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(entry)
	}
	b.WriteString("]'")
	return b.String()
}

// entriesValueText bounds a printed Records list: AWS prints every entry;
// lists of up to about 900 entries are printed whole.
const entriesValueText = 60 << 10

// printedEntry is an entry as AWS prints it in a Records list.
const printedEntry = "com.amazonaws.kinesis.v20131202.PutRecordsRequestEntry@c965e310"

// entriesCounted bounds the count of a too-long Records list: printEntries
// prints no more entries than this (it stops past entriesValueText), so a
// longer list is printed the same and counting on would only cost time (a
// 6.9 MB body of 2.3 M entries took 14 ms to count).
const entriesCounted = entriesValueText/len(printedEntry) + 1

// tooManyEntries returns AWS's ValidationException for a JSON PutRecords
// whose decoding stopped at the 501st entry: the Records list printed
// whole (its entries counted in the body), then the violations of the
// entries decoded and of the stream's name, as AWS lists them. ok is false
// when the body's entries cannot be counted.
func (s *Server) tooManyEntries(b *putBatch, body []byte) (*apiError, bool) {
	total, ok := countRecords(body, entriesCounted)
	if !ok || total <= maxPutRecordsEntries {
		return nil, false
	}
	var c check
	c.addTextLimit(printEntries(total), "records", "Member must have length less than or equal to "+strconv.Itoa(maxPutRecordsEntries), entriesValueText)
	streamName, streamARN := optString(b.hasStreamName, b.streamName), optString(b.hasStreamARN, b.streamARN)
	limit := s.dataLimit(streamName, streamARN)
	for i := range b.entries {
		c.putEntry(i, &b.entries[i], b.flags[i], limit)
	}
	c.streamRef(streamName, streamARN)
	c.streamARN(streamARN)
	return c.err(), true
}

// countRecords counts the entries of the top-level Records array of a JSON
// body without decoding them, stopping at limit (what follows is then not
// looked at).
func countRecords(body []byte, limit int) (int, bool) {
	sc := jsonScanner{b: body}
	if !sc.consume('{') {
		return 0, false
	}
	for !sc.consume('}') {
		key, ok := sc.str()
		if !ok || !sc.consume(':') {
			return 0, false
		}
		if string(key) != "Records" {
			if !skipValue(&sc) {
				return 0, false
			}
			sc.consume(',')
			continue
		}
		if !sc.consume('[') {
			return 0, false
		}
		n := 0
		for !sc.consume(']') {
			if n == limit {
				return n, true
			}
			if !skipValue(&sc) {
				return 0, false
			}
			n++
			sc.consume(',')
		}
		return n, true
	}
	return 0, false
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
			if err.Type == errInvalidArgument { // over the request size (limits.go)
				var name, arn *string
				if rq.codec == codecJSON {
					name, arn = streamOfBody(rq.body)
				}
				return nil, recordsTooLargeFor(s.dataLimit(name, arn))
			}
			return nil, err
		}
		b.fromInput(&in)
	}
	if b.limitErr != nil {
		if b.limitErr.Type == errValidation && rq.codec == codecJSON {
			if aerr, ok := s.tooManyEntries(b, rq.body); ok {
				return nil, aerr
			}
		}
		if b.limitErr.Type == errInvalidArgument { // over the request size: worded for its stream
			name, arn := optString(b.hasStreamName, b.streamName), optString(b.hasStreamARN, b.streamARN)
			if rq.codec == codecJSON && name == nil && arn == nil {
				name, arn = streamOfBody(rq.body) // after Records: not decoded
			}
			return nil, recordsTooLargeFor(s.dataLimit(name, arn))
		}
		return nil, b.limitErr
	}
	var c check
	streamName, streamARN := optString(b.hasStreamName, b.streamName), optString(b.hasStreamARN, b.streamARN)
	limit := s.dataLimit(streamName, streamARN)
	c.putBatch(b, limit)
	c.streamRef(streamName, streamARN)
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
	if total > max(maxPutRecordsBytes, limit) {
		return nil, recordsTooLargeFor(limit)
	}
	if s.autoDistributed(name) { // ops_distribution.go
		for i := range b.entries {
			b.entries[i].ExplicitHashKey = randomHashKey()
		}
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
		rq.scratch.Grow(putRecordsJSONSize(results, failures))
		return rq.built(appendPutRecordsJSON(rq.scratch.AvailableBuffer(), len(failures), results, failures, encType)), nil
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

// iteratorTypes are the ShardIteratorType values in the order AWS lists
// them.
var iteratorTypes = []string{"AFTER_SEQUENCE_NUMBER", "LATEST", "AT_TIMESTAMP", "AT_SEQUENCE_NUMBER", "TRIM_HORIZON"}

func (s *Server) getShardIterator(rq *request) (any, *apiError) {
	var in getShardIteratorInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.shardID("shardId", in.ShardId, true)
	if c.required("shardIteratorType", in.ShardIteratorType != nil) {
		c.enum("shardIteratorType", in.ShardIteratorType, iteratorTypes)
	}
	c.str("startingSequenceNumber", in.StartingSequenceNumber, 0, 0, isSeqNum, seqPatternText)
	c.streamRef(in.StreamName, in.StreamARN)
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
		return nil, s.shardIteratorError(err, name, id)
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
		if op == "GetShardIterator" {
			// The shard must exist before its number is looked at, and
			// the number is read as AWS reads it (startseq.go).
			return s.startingSequence(stream, id, typ, *seq)
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
	return engine.AtTimestamp(atTimestamp(ts.Time)), nil
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
	c.intRange("limit", in.Limit, 1, 10000)
	c.reqStr("shardIterator", in.ShardIterator, 1, maxShardIteratorLen, nil, "")
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
		// The token names its stream (even one deleted since): messages
		// about it say "under account N", as Kinesis' do.
		stream := s.db.IteratorStream(*in.ShardIterator)
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
		rq.scratch.Grow(getRecordsJSONSize(&res))
		return rq.built(appendGetRecordsJSON(rq.scratch.AvailableBuffer(), &res)), nil
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
