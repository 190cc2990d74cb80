package server

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvstream/kvstream/engine"
	"golang.org/x/time/rate"
)

// Enhanced fan-out: RegisterStreamConsumer, DescribeStreamConsumer,
// ListStreamConsumers, DeregisterStreamConsumer and SubscribeToShard.
// Consumers are stream attributes the server keeps (kinesisattrs.go); the
// server gives them Kinesis ARNs and pushes records to subscribers as
// they commit (engine.Iterator.Wait, no polling).

// consumerARN returns the ARN of consumer name of stream, registered at
// createdSecs (Unix seconds): …:stream/<stream>/consumer/<name>:<secs>.
func (s *Server) consumerARN(stream, name string, created time.Time) string {
	return s.streamARN(stream) + "/consumer/" + name + ":" + strconv.FormatInt(created.Unix(), 10)
}

// parseConsumerARN splits
// arn:aws…:kinesis:<region>:<account>:stream/<stream>/consumer/<name>:<secs>.
func parseConsumerARN(arn string) (region, account, stream, name string, secs int64, ok bool) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || !strings.HasPrefix(parts[1], "aws") || parts[2] != "kinesis" {
		return "", "", "", "", 0, false
	}
	rest, ok := strings.CutPrefix(parts[5], "stream/")
	if !ok {
		return "", "", "", "", 0, false
	}
	stream, rest, ok = strings.Cut(rest, "/consumer/")
	if !ok {
		return "", "", "", "", 0, false
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return "", "", "", "", 0, false
	}
	name = rest[:i]
	secs, err := strconv.ParseInt(rest[i+1:], 10, 64)
	if err != nil || !isName(stream) || !isName(name) {
		return "", "", "", "", 0, false
	}
	return parts[3], parts[4], stream, name, secs, true
}

const consumerARNText = "^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+"

var consumerARNRe = regexp.MustCompile(`^(?:(arn):aws.*:kinesis:.*:\d{12}:.*stream/[a-zA-Z0-9_.-]+/consumer/[a-zA-Z0-9_.-]+:[0-9]+)$`)

func isConsumerARN(s string) bool { return consumerARNRe.MatchString(s) }

func (c *check) consumerARN(v *string, required bool) {
	if required {
		c.reqStr("consumerARN", v, 1, maxARNLen, isConsumerARN, consumerARNText)
		return
	}
	c.str("consumerARN", v, 1, maxARNLen, isConsumerARN, consumerARNText)
}

func (c *check) consumerName(v *string, required bool) {
	if required {
		c.reqStr("consumerName", v, 1, 128, isName, namePatternText)
		return
	}
	c.str("consumerName", v, 1, 128, isName, namePatternText)
}

// resolveConsumer returns the consumer a request names by ConsumerARN, or
// by StreamARN and ConsumerName (when all three are given they must
// agree). An ARN whose creation second is not the current consumer's
// names a consumer that no longer exists. Call it after the model
// constraints were checked.
func (s *Server) resolveConsumer(consumerARN, streamARN, consumerName *string) (streamConsumer, *apiError) {
	if consumerARN == nil {
		if streamARN == nil || consumerName == nil {
			return streamConsumer{}, newAPIError(errInvalidArgument,
				"ConsumerARN or both ConsumerName and StreamARN are required for this request.")
		}
		stream, aerr := s.resolveStream(nil, streamARN)
		if aerr != nil {
			return streamConsumer{}, aerr
		}
		c, found, err := s.describeConsumer(stream, *consumerName)
		if err != nil {
			return streamConsumer{}, s.engineError(err, stream)
		}
		if !found {
			return streamConsumer{}, s.consumerNotFound(stream, *consumerName)
		}
		return c, nil
	}
	arn := *consumerARN
	region, account, stream, name, secs, ok := parseConsumerARN(arn)
	if !ok {
		return streamConsumer{}, newAPIError(errInvalidArgument, "ConsumerARN "+arn+" is not a valid Kinesis consumer ARN.")
	}
	if streamARN != nil {
		if _, _, sn, ok := parseStreamARN(*streamARN); !ok || sn != stream {
			return streamConsumer{}, newAPIError(errInvalidArgument, "StreamARN "+*streamARN+" and ConsumerARN "+arn+" do not name the same stream.")
		}
	}
	if consumerName != nil && *consumerName != name {
		return streamConsumer{}, newAPIError(errInvalidArgument, "ConsumerName "+*consumerName+" and ConsumerARN "+arn+" do not name the same consumer.")
	}
	notFound := newAPIError(errResourceNotFound, "Consumer "+arn+" not found.")
	if region != s.cfg.Region || account != s.cfg.Account {
		return streamConsumer{}, notFound
	}
	c, found, err := s.describeConsumer(stream, name)
	if err != nil {
		return streamConsumer{}, s.engineError(err, stream)
	}
	if !found || c.CreatedAt.Unix() != secs {
		return streamConsumer{}, notFound
	}
	return c, nil
}

// consumerOut is the Consumer and ConsumerDescription shapes (StreamARN
// only in the latter).
type consumerOut struct {
	ConsumerName              string     `json:"ConsumerName"`
	ConsumerARN               string     `json:"ConsumerARN"`
	ConsumerStatus            string     `json:"ConsumerStatus"`
	ConsumerCreationTimestamp *timestamp `json:"ConsumerCreationTimestamp"`
	StreamARN                 string     `json:"StreamARN,omitempty"`
}

func (s *Server) toConsumer(c streamConsumer) consumerOut {
	return consumerOut{
		ConsumerName:              c.Name,
		ConsumerARN:               s.consumerARN(c.Stream, c.Name, c.CreatedAt),
		ConsumerStatus:            c.Status,
		ConsumerCreationTimestamp: ts(c.CreatedAt),
	}
}

// registerStreamConsumerInput is RegisterStreamConsumer's request. Tags
// are validated but not kept: the tagging operations take stream ARNs
// only.
type registerStreamConsumerInput struct {
	StreamARN    *string  `json:"StreamARN"`
	ConsumerName *string  `json:"ConsumerName"`
	StreamId     *string  `json:"StreamId"`
	Tags         tagMapIn `json:"Tags"`
}

type registerStreamConsumerOutput struct {
	Consumer consumerOut `json:"Consumer"`
}

func (s *Server) registerStreamConsumer(rq *request) (any, *apiError) {
	var in registerStreamConsumerInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.reqStr("streamARN", in.StreamARN, 1, maxARNLen, isStreamARN, streamARNText)
	c.consumerName(in.ConsumerName, true)
	if in.Tags != nil {
		c.tagMap("tags", in.Tags, true)
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	stream, aerr := s.resolveStream(nil, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	if err := s.checkTagChars(stream, in.Tags); err != nil {
		return nil, err
	}
	cons, aerr := s.registerConsumer(stream, *in.ConsumerName)
	if aerr != nil {
		return nil, aerr
	}
	return registerStreamConsumerOutput{Consumer: s.toConsumer(cons)}, nil
}

type consumerRefInput struct {
	StreamARN    *string `json:"StreamARN"`
	ConsumerName *string `json:"ConsumerName"`
	ConsumerARN  *string `json:"ConsumerARN"`
	StreamId     *string `json:"StreamId"`
}

// decodeConsumerRef decodes and resolves a request naming one consumer.
func (s *Server) decodeConsumerRef(rq *request) (streamConsumer, *apiError) {
	var in consumerRefInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return streamConsumer{}, err
	}
	var c check
	c.streamARN(in.StreamARN)
	c.consumerName(in.ConsumerName, false)
	c.consumerARN(in.ConsumerARN, false)
	if err := c.err(); err != nil {
		return streamConsumer{}, err
	}
	return s.resolveConsumer(in.ConsumerARN, in.StreamARN, in.ConsumerName)
}

type describeStreamConsumerOutput struct {
	ConsumerDescription consumerOut `json:"ConsumerDescription"`
}

func (s *Server) describeStreamConsumer(rq *request) (any, *apiError) {
	cons, aerr := s.decodeConsumerRef(rq)
	if aerr != nil {
		return nil, aerr
	}
	d := s.toConsumer(cons)
	d.StreamARN = s.streamARN(cons.Stream)
	return describeStreamConsumerOutput{ConsumerDescription: d}, nil
}

func (s *Server) deregisterStreamConsumer(rq *request) (any, *apiError) {
	cons, aerr := s.decodeConsumerRef(rq)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.deregisterConsumer(cons.Stream, cons.Name); aerr != nil {
		return nil, aerr
	}
	s.forgetConsumerPolicy(cons)
	arn := s.consumerARN(cons.Stream, cons.Name, cons.CreatedAt)
	s.subs.end(func(k subKey) bool { return k.consumer == arn },
		newAPIError(errResourceNotFound, "Consumer "+arn+" was deregistered."))
	return nil, nil
}

type listStreamConsumersInput struct {
	StreamARN               *string    `json:"StreamARN"`
	NextToken               *string    `json:"NextToken"`
	MaxResults              *int64     `json:"MaxResults"`
	StreamCreationTimestamp *timestamp `json:"StreamCreationTimestamp"`
	StreamId                *string    `json:"StreamId"`
}

type listStreamConsumersOutput struct {
	Consumers []consumerOut `json:"Consumers"`
	NextToken string        `json:"NextToken,omitempty"`
}

// listStreamConsumersLimit caps ListStreamConsumers' page, as Kinesis does.
const listStreamConsumersLimit = 100

func (s *Server) listStreamConsumers(rq *request) (any, *apiError) {
	var in listStreamConsumersInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return nil, err
	}
	var c check
	c.reqStr("streamARN", in.StreamARN, 1, maxARNLen, isStreamARN, streamARNText)
	c.str("nextToken", in.NextToken, 1, maxNextTokenLen, nil, "")
	c.intRange("maxResults", in.MaxResults, 1, 10000)
	if err := c.err(); err != nil {
		return nil, err
	}
	stream, aerr := s.resolveStream(nil, in.StreamARN)
	if aerr != nil {
		return nil, aerr
	}
	now := s.cfg.Clock().UnixMilli()
	after := ""
	if in.NextToken != nil {
		if in.StreamCreationTimestamp != nil {
			return nil, newAPIError(errInvalidArgument, "NextToken and StreamCreationTimestamp cannot be provided together.")
		}
		t, aerr := decodePageToken(*in.NextToken, now)
		if aerr != nil {
			return nil, aerr
		}
		if t.Stream != stream {
			return nil, newAPIError(errInvalidArgument, "The NextToken was issued for another stream.")
		}
		after = t.After
	}
	consumers, err := s.listConsumers(stream)
	if err != nil {
		return nil, s.engineError(err, stream)
	}
	if in.StreamCreationTimestamp != nil {
		// Tells stream incarnations apart: compared at second precision,
		// as clients may have truncated the timestamp.
		d, err := s.db.DescribeStream(stream)
		if err != nil {
			return nil, s.engineError(err, stream)
		}
		if d.CreatedAt.Unix() != in.StreamCreationTimestamp.Unix() {
			return nil, s.streamNotFound(stream)
		}
	}
	limit := listStreamConsumersLimit
	if in.MaxResults != nil && *in.MaxResults < int64(limit) {
		limit = int(*in.MaxResults)
	}
	out := listStreamConsumersOutput{Consumers: []consumerOut{}}
	for _, cons := range consumers {
		if cons.Name <= after {
			continue
		}
		if len(out.Consumers) == limit {
			out.NextToken = encodePageToken(pageToken{Stream: stream, After: out.Consumers[limit-1].ConsumerName, IssuedMs: now})
			break
		}
		out.Consumers = append(out.Consumers, s.toConsumer(cons))
	}
	return out, nil
}

// consumerCount returns how many consumers are registered with stream
// (DescribeStreamSummary's ConsumerCount).
func (s *Server) consumerCount(stream string) int {
	cs, err := s.listConsumers(stream)
	if err != nil {
		return 0
	}
	return len(cs)
}

// SubscribeToShard.

// streamOpFunc serves an operation whose response is a stream. It returns
// an error only if the stream has not started (the caller answers it as
// usual); once it has, errors are exception messages in the stream.
// started is called when the stream starts.
type streamOpFunc func(s *Server, w http.ResponseWriter, rq *request, started func()) *apiError

// streamingOperations are the operations served by a streamOpFunc.
var streamingOperations = map[string]streamOpFunc{
	"SubscribeToShard": (*Server).subscribeToShard,
}

type startingPosition struct {
	Type           *string    `json:"Type"`
	SequenceNumber *string    `json:"SequenceNumber"`
	Timestamp      *timestamp `json:"Timestamp"`
}

type subscribeToShardInput struct {
	ConsumerARN      *string           `json:"ConsumerARN"`
	ShardId          *string           `json:"ShardId"`
	StartingPosition *startingPosition `json:"StartingPosition"`
	StreamId         *string           `json:"StreamId"`
}

// Limits of one SubscribeToShardEvent: records, and data plus partition
// keys (the last record may go over by one record). Events stay under
// the 2 MiB/s budget's burst with Kinesis limits on, and within a
// subscription's share of the memory budget (subscriptionCharge: the
// event, base64 in JSON, and its encoded frame) always.
const (
	maxEventRecords        = 10000
	maxEventBytes          = 1 << 20
	maxEventBytesLimited   = 1 << 20
	subscriptionReadLimit  = 2 << 20 // bytes/s per consumer and shard
	subscribeCallsInterval = time.Second
)

func (s *Server) subscribeToShard(w http.ResponseWriter, rq *request, started func()) *apiError {
	var in subscribeToShardInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return err
	}
	var c check
	c.consumerARN(in.ConsumerARN, true)
	c.shardID("shardId", in.ShardId, true)
	if c.required("startingPosition", in.StartingPosition != nil) {
		sp := in.StartingPosition
		if c.required("startingPosition.type", sp.Type != nil) {
			c.enum("startingPosition.type", sp.Type, iteratorTypes)
		}
		c.str("startingPosition.sequenceNumber", sp.SequenceNumber, 0, 0, isSeqNum, seqPatternText)
	}
	if err := c.err(); err != nil {
		return err
	}
	cons, aerr := s.resolveConsumer(in.ConsumerARN, nil, nil)
	if aerr != nil {
		return aerr
	}
	arn := *in.ConsumerARN
	if cons.Status != consumerActive {
		return newAPIError(errResourceInUse, "Consumer "+arn+" is not in ACTIVE state; it is "+cons.Status+".")
	}
	stream := cons.Stream
	id, aerr := s.parseShard(*in.ShardId, stream)
	if aerr != nil {
		return aerr
	}
	sp := in.StartingPosition
	pos, aerr := s.startPosition("SubscribeToShard", *sp.Type, sp.SequenceNumber, sp.Timestamp, id, stream)
	if aerr != nil {
		return aerr
	}
	it, err := s.db.Iterate(stream, id, pos)
	if err != nil {
		return s.renderError(err, call{op: "SubscribeToShard", stream: stream})
	}
	p := &pump{s: s, it: it}
	defer func() { _ = p.it.Close() }()
	created, aerr := s.shardCreated(stream, id)
	if aerr != nil {
		return aerr
	}
	// The subscription's share replaces the request's (its body is
	// decoded) for the minutes it runs.
	if rq.hold != nil {
		rq.hold.release()
	}
	if !s.budget.acquireSubscription() {
		return newAPIError(errLimitExceeded, "Rate exceeded: the server's memory budget ("+mib(s.budget.total)+
			") has no room for another subscription; retry with backoff.")
	}
	defer s.budget.releaseSubscription()
	sub, aerr := s.subs.acquire(rq.ctx, subKey{consumer: arn, shard: id}, s.cfg.Clock(), s.cfg.SubscriptionTakeover, s.cfg.KinesisLimits)
	if aerr != nil {
		return aerr
	}
	defer s.subs.release(sub)
	ew := newEventWriter(w, rq.codec)
	if err := ew.start(); err != nil {
		return nil // the client went away
	}
	started()
	s.metrics.subscriptions.Inc()
	defer s.metrics.subscriptions.Dec()
	p.sub, p.ew, p.cons, p.arn, p.shard, p.shardCreated = sub, ew, cons, arn, id, created
	p.b, p.clock = eventBuilder{codec: rq.codec}, s.db.Options().Clock
	p.feed = s.feeds.acquire(feedKey{stream: stream, shard: id, created: created, codec: rq.codec})
	defer s.feeds.release(p.feed)
	if pos.Kind == engine.KindAfterSequenceNumber {
		p.cont, p.haveCont = pos.Sequence, true
	}
	p.run()
	return nil
}

// shardCreated returns the creation second of shard id (part of its
// sequence numbers), for continuation numbers of positions where no
// record was read.
func (s *Server) shardCreated(stream string, id engine.ShardID) (uint64, *apiError) {
	shards, err := s.db.ListShards(stream)
	if err != nil {
		return 0, s.engineError(err, stream)
	}
	for _, d := range shards {
		if d.ShardID == id {
			return d.StartingSequenceNumber.ShardCreated, nil
		}
	}
	return 0, newAPIError(errResourceNotFound, "Shard "+id.String()+" in stream "+stream+" under account "+s.cfg.Account+" does not exist")
}

// pump pushes one subscription's events until it ends: its lifetime is
// over, the shard ended, it was taken over, or the client went away.
type pump struct {
	s            *Server
	sub          *subscription
	ew           *eventWriter
	it           *engine.Iterator
	cons         streamConsumer
	arn          string
	shard        engine.ShardID
	shardCreated uint64
	b            eventBuilder
	feed         *feed
	clock        func() time.Time
	// cont is the last record sent (or the AFTER_SEQUENCE_NUMBER start).
	cont     engine.SequenceNumber
	haveCont bool
}

func (p *pump) run() {
	cfg := &p.s.cfg
	ctx := p.sub.ctx
	end := p.sub.started.Add(cfg.SubscriptionLifetime)
	maxBytes := maxEventBytes
	if p.sub.limiter != nil {
		maxBytes = maxEventBytesLimited
	}
	var lastEvent time.Time // zero: the first event goes out at once
	for {
		if ctx.Err() != nil {
			p.stopped()
			return
		}
		if !cfg.Clock().Before(end) {
			return // the subscription's lifetime is over; the client subscribes again
		}
		p.b.reset()
		n, size := 0, 0
		var lastArrival time.Time
		first := p.it.NextCounter()
		if seg, ok := p.feed.lookup(first); ok && p.skip(seg) {
			// Another subscription encoded these records already.
			p.s.metrics.subscribeShared.Inc()
			p.b.addEncoded(seg.data, seg.n)
			n, size, lastArrival = seg.n, seg.size, seg.lastArrival
			p.cont, p.haveCont = seg.last, true
		} else {
			for n < maxEventRecords && size < maxBytes && p.it.Next() {
				r := p.it.Record()
				p.b.add(&r)
				n++
				size += len(r.Data) + len(r.PartitionKey)
				p.cont, p.haveCont = r.SequenceNumber, true
				lastArrival = r.Timestamp
			}
			if n > 0 && p.feed.shared() {
				p.feed.publish(segment{first: first, next: p.it.NextCounter(), data: p.b.records(), n: n, size: size, last: p.cont, lastArrival: lastArrival})
			}
		}
		if err := p.it.Err(); err != nil {
			p.fail(p.s.engineError(err, p.cons.Stream))
			return
		}
		if p.it.ShardEnded() {
			p.shardEnd(n, size)
			return
		}
		idle := n == 0
		// The event is stamped with the time it is decided on, before it is
		// sent: a client that saw it and then moved a fake clock has moved
		// the clock after this reading.
		now := cfg.Clock()
		if !idle || lastEvent.IsZero() || now.Sub(lastEvent) >= cfg.SubscriptionHeartbeat {
			if idle && !lastEvent.IsZero() {
				if aerr := p.checkConsumer(); aerr != nil {
					p.fail(aerr)
					return
				}
			}
			var behind int64
			if !idle && !p.it.CaughtUp() {
				behind = max(0, p.clock().Sub(lastArrival).Milliseconds())
			}
			cont := p.continuation()
			payload, err := p.b.finish(&cont, behind, nil)
			if err != nil || !p.send(payload, n, size) {
				return
			}
			lastEvent = now
		}
		if n == maxEventRecords || size >= maxBytes {
			continue // more is visible: no wait
		}
		deadline := lastEvent.Add(cfg.SubscriptionHeartbeat)
		if end.Before(deadline) {
			deadline = end
		}
		// A timeout, not a deadline: deadline is on cfg.Clock, which
		// need not be the wall clock. A test's fake clock also wakes the
		// wait when it moves (moved is taken before the clock is read, so
		// no move is missed).
		moved := p.s.clockMoves.next()
		wctx, cancel := context.WithTimeout(ctx, deadline.Sub(cfg.Clock()))
		if moved != nil {
			go func() {
				select {
				case <-moved:
					cancel()
				case <-wctx.Done():
				}
			}()
		}
		_ = p.it.Wait(wctx) // woken by a commit, the shard's end, the deadline, ctx or a clock move
		cancel()
	}
}

// skip moves the subscription past a feed segment it is about to send, with
// an iterator positioned after the segment's last record. It reports
// false (the subscription reads the records itself) if that fails.
func (p *pump) skip(seg segment) bool {
	it, err := p.s.db.Iterate(p.cons.Stream, p.shard, engine.AfterSequenceNumber(seg.last))
	if err != nil {
		return false
	}
	if it.NextCounter() != seg.next {
		_ = it.Close()
		return false
	}
	_ = p.it.Close()
	p.it = it
	return true
}

// continuation returns the ContinuationSequenceNumber: the number of the
// last record read, or one naming the same position (counter) when the
// reader moved without reading (a new subscription, trimmed records).
func (p *pump) continuation() engine.SequenceNumber {
	c := max(p.it.NextCounter(), 1) - 1
	if p.haveCont && p.cont.Counter == c {
		return p.cont
	}
	return engine.SequenceNumber{ShardCreated: p.shardCreated, Shard: uint32(p.shard), Counter: c, Written: p.shardCreated}
}

// shardEnd sends the last event of a closed shard: the records left (n
// of them), no ContinuationSequenceNumber, and the ChildShards. A shard
// that ended because its stream was deleted (or the DB closed) gets the
// matching exception instead.
func (p *pump) shardEnd(n, size int) {
	children, err := p.s.db.ChildShards(p.cons.Stream, p.shard)
	if err != nil {
		p.fail(p.s.engineError(err, p.cons.Stream))
		return
	}
	payload, err := p.b.finish(nil, 0, children)
	if err == nil {
		p.send(payload, n, size)
	}
}

// send applies the read limit, writes one event and counts it. It
// reports whether the subscription goes on.
func (p *pump) send(payload []byte, records, size int) bool {
	if lim := p.sub.limiter; lim != nil {
		for rem := size; rem > 0; {
			k := min(rem, lim.Burst())
			if err := lim.WaitN(p.sub.ctx, k); err != nil {
				p.stopped()
				return false
			}
			rem -= k
		}
	}
	if err := p.ew.event(eventSubscribe, payload); err != nil {
		return false // the client went away
	}
	if records > 0 {
		p.s.metrics.subscribeRecords.Add(float64(records))
		p.s.metrics.subscribeBytes.Add(float64(size))
	}
	return true
}

// checkConsumer reports the exception that ends the subscription if its
// consumer was deregistered (or its stream deleted) meanwhile.
func (p *pump) checkConsumer() *apiError {
	c, found, err := p.s.describeConsumer(p.cons.Stream, p.cons.Name)
	switch {
	case err != nil:
		return p.s.engineError(err, p.cons.Stream)
	case !found, !c.CreatedAt.Equal(p.cons.CreatedAt):
		return newAPIError(errResourceNotFound, "Consumer "+p.arn+" not found.")
	case c.Status != consumerActive:
		return newAPIError(errResourceInUse, "Consumer "+p.arn+" is not in ACTIVE state; it is "+c.Status+".")
	}
	return nil
}

// stopped ends a subscription whose context ended: with the exception
// that ended it (a takeover, a deregistration), or silently when the
// client went away or the server is closing.
func (p *pump) stopped() {
	var ae *apiError
	if errors.As(context.Cause(p.sub.ctx), &ae) {
		p.fail(ae)
	}
}

// fail ends the subscription with an exception message.
func (p *pump) fail(aerr *apiError) {
	_ = p.ew.exception(aerr)
}

// subscriptions tracks the running SubscribeToShard subscriptions per
// consumer and shard, to apply Kinesis' rules: one subscription per
// consumer and shard (a new one takes over after SubscriptionTakeover),
// and, with Kinesis limits on, 1 call/s and 2 MiB/s per consumer and
// shard.
type subscriptions struct {
	mu     sync.Mutex
	slots  map[subKey]*subSlot
	closed bool
}

type subKey struct {
	consumer string // consumer ARN
	shard    engine.ShardID
}

// subSlot is the state of one consumer and shard. It outlives its
// subscriptions only when limits are on (the call time and the read
// budget carry over to the next subscription).
type subSlot struct {
	cur      *subscription
	lastCall time.Time
	limiter  *rate.Limiter
}

// subscription is one running SubscribeToShard.
type subscription struct {
	key     subKey
	started time.Time
	ctx     context.Context
	cancel  context.CancelCauseFunc
	limiter *rate.Limiter // nil without limits
}

func newSubscriptions() *subscriptions {
	return &subscriptions{slots: make(map[subKey]*subSlot)}
}

// errServerClosing ends subscriptions when the server closes (silently:
// the client subscribes again elsewhere or later).
var errServerClosing = errors.New("server: closing")

// acquire starts a subscription for key at now, as a child of parent, or
// answers why not: ResourceInUse while another subscription for the key
// is younger than takeover (an older one is ended with ResourceInUse),
// and with limits, LimitExceeded within a second of the previous call.
func (r *subscriptions) acquire(parent context.Context, key subKey, now time.Time, takeover time.Duration, limits bool) (*subscription, *apiError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, newAPIError(errInternalFailure, "The server is shutting down.")
	}
	slot := r.slots[key]
	if slot == nil {
		slot = &subSlot{}
		r.slots[key] = slot
	}
	if cur := slot.cur; cur != nil && now.Sub(cur.started) < takeover {
		return nil, newAPIError(errResourceInUse, "Another active subscription exists for consumer "+key.consumer+" and shard "+key.shard.String()+".")
	}
	if limits {
		if !slot.lastCall.IsZero() && now.Sub(slot.lastCall) < subscribeCallsInterval {
			slot.lastCall = now
			return nil, newAPIError(errLimitExceeded, "Rate exceeded for consumer "+key.consumer+" and shard "+key.shard.String()+".")
		}
		slot.lastCall = now
		if slot.limiter == nil {
			slot.limiter = rate.NewLimiter(rate.Limit(subscriptionReadLimit), subscriptionReadLimit)
		}
	}
	if cur := slot.cur; cur != nil {
		cur.cancel(newAPIError(errResourceInUse, "Another subscription for consumer "+key.consumer+" and shard "+key.shard.String()+" took over."))
	}
	ctx, cancel := context.WithCancelCause(parent)
	sub := &subscription{key: key, started: now, ctx: ctx, cancel: cancel, limiter: slot.limiter}
	slot.cur = sub
	return sub, nil
}

// release ends sub's hold on its slot.
func (r *subscriptions) release(sub *subscription) {
	sub.cancel(context.Canceled)
	r.mu.Lock()
	defer r.mu.Unlock()
	slot := r.slots[sub.key]
	if slot == nil || slot.cur != sub {
		return
	}
	slot.cur = nil
	if slot.limiter == nil {
		delete(r.slots, sub.key)
	}
}

// end ends the subscriptions whose key matches with cause and forgets
// their slots.
func (r *subscriptions) end(match func(subKey) bool, cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, slot := range r.slots {
		if match(k) {
			if slot.cur != nil {
				slot.cur.cancel(cause)
			}
			delete(r.slots, k)
		}
	}
}

// close ends every subscription and refuses new ones.
func (r *subscriptions) close() {
	r.end(func(subKey) bool { return true }, errServerClosing)
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// Close ends every running SubscribeToShard subscription (their clients
// see the stream end and may subscribe again elsewhere) and refuses new
// ones, and stops the server's timers. It does not close the DB. Serve
// calls it when it shuts down; call it before http.Server.Shutdown when
// serving a Server yourself, or Shutdown waits for the subscriptions to
// run out (up to 5 minutes).
func (s *Server) Close() {
	s.stopPending()
	s.admit.close()
	s.readers.close()
	s.subs.close()
}
