package forward

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/kvstream/kvstream/engine"
)

// run is one Run: a reader goroutine (the caller's) ranging over the
// consumer and handing records to one sender per local shard.
type run struct {
	f       *Forwarder
	c       *engine.Consumer
	senders map[engine.ShardID]*sender

	wg     sync.WaitGroup
	cancel context.CancelCauseFunc
	once   sync.Once
	err    error
}

// fail stops the Run with err (the first error wins).
func (r *run) fail(err error) {
	r.once.Do(func() { r.err = err })
	r.cancel(err)
}

func (r *run) run(parent context.Context) error {
	ctx, cancel := context.WithCancelCause(parent)
	r.cancel = cancel
	r.read(ctx)
	cancel(nil)
	r.wg.Wait()
	return r.err
}

// read ranges over the consumer until ctx ends or reading fails.
func (r *run) read(ctx context.Context) {
	var lastKey *string
	for rec, err := range r.c.Records(ctx) {
		if err != nil {
			if ctx.Err() == nil {
				r.fail(fmt.Errorf("forward: reading stream %s: %w", r.f.cfg.Stream, err))
			}
			return
		}
		s := r.senders[rec.ShardID]
		if s == nil {
			var err error
			if s, err = r.start(ctx, rec.ShardID); err != nil {
				r.fail(err)
				return
			}
		}
		p := newPending(rec, lastKey)
		lastKey = p.entry.PartitionKey
		if s.q.push(ctx, p, func() { s.pos.advance(rec.SequenceNumber.Counter) }) != nil {
			return
		}
	}
}

// start creates the sender of shard id. If id has ancestors (it was
// created by a split or merge) whose records this Run has read, the new
// sender waits until those are acknowledged: the consumer yields a parent
// to its end before its children, so a barrier queued behind the parent's
// records marks exactly that point. Senders of shards no longer in the
// catalog (expired parents) are waited for too.
func (r *run) start(ctx context.Context, id engine.ShardID) (*sender, error) {
	var gates []<-chan struct{}
	if len(r.senders) > 0 {
		descs, err := r.f.db.ListShards(r.f.cfg.Stream)
		if err != nil {
			return nil, fmt.Errorf("forward: listing shards of %s: %w", r.f.cfg.Stream, err)
		}
		byID := make(map[engine.ShardID]engine.ShardDescription, len(descs))
		for _, d := range descs {
			byID[d.ShardID] = d
		}
		wait := make(map[engine.ShardID]bool)
		for todo := []engine.ShardID{id}; len(todo) > 0; {
			d, ok := byID[todo[len(todo)-1]]
			todo = todo[:len(todo)-1]
			if !ok {
				continue
			}
			for _, p := range []*engine.ShardID{d.ParentShardID, d.AdjacentParentShardID} {
				if p != nil && !wait[*p] {
					wait[*p] = true
					todo = append(todo, *p)
				}
			}
		}
		for sid, s := range r.senders {
			if _, listed := byID[sid]; wait[sid] || !listed {
				gates = append(gates, s.q.pushBarrier())
			}
		}
	}
	cfg := &r.f.cfg
	s := &sender{
		f:     r.f,
		c:     r.c,
		id:    id,
		pos:   r.f.position(id),
		q:     newQueue(2*cfg.MaxBatchRecords, 2*cfg.MaxBatchBytes),
		gates: gates,
	}
	r.senders[id] = s
	r.f.mu.Lock()
	if r.f.mu.queues == nil {
		r.f.mu.queues = make(map[engine.ShardID]*queue)
	}
	r.f.mu.queues[id] = s.q
	r.f.mu.Unlock()
	r.wg.Go(func() {
		if err := s.loop(ctx); err != nil && ctx.Err() == nil {
			r.fail(err)
		}
	})
	return s, nil
}

// sender forwards one local shard: one PutRecords in flight at a time.
type sender struct {
	f     *Forwarder
	c     *engine.Consumer
	id    engine.ShardID
	pos   *position
	q     *queue
	gates []<-chan struct{} // closed when the ancestors' records are acknowledged
}

// loop batches, sends and checkpoints until ctx ends (nil) or an error
// that Run must return.
func (s *sender) loop(ctx context.Context) error {
	for _, g := range s.gates {
		select {
		case <-g:
		case <-ctx.Done():
			return nil
		}
	}
	cfg := &s.f.cfg
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var batch []pending
	for {
		clear(batch)
		batch = batch[:0]
		bytes := 0
		var first time.Time
		for {
			var cut bool
			var barrier chan struct{}
			batch, bytes, cut, barrier = s.q.take(batch, bytes, cfg.MaxBatchRecords, cfg.MaxBatchBytes)
			if barrier != nil {
				close(barrier)
				continue
			}
			if cut {
				break
			}
			if len(batch) == 0 {
				select {
				case <-s.q.ready:
				case <-ctx.Done():
					return nil
				}
				continue
			}
			if first.IsZero() {
				first = time.Now()
			}
			wait := cfg.Linger - time.Since(first)
			if wait <= 0 {
				break
			}
			timer.Reset(wait)
			select {
			case <-s.q.ready:
			case <-timer.C:
			case <-ctx.Done():
				return nil
			}
		}
		if err := s.send(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		last := batch[len(batch)-1].seq
		if err := s.c.CheckpointAt(s.id, last); err != nil {
			return fmt.Errorf("forward: checkpoint %s of consumer %s at %s: %w", s.id, cfg.Consumer, last, err)
		}
		s.pos.mu.Lock()
		s.pos.acked = max(s.pos.acked, last.Counter)
		s.pos.mu.Unlock()
		// Count before the batch leaves the lag, so a Stats that sees no
		// lag sees it forwarded.
		s.f.forwardedRecords.Add(int64(len(batch)))
		s.f.forwardedBytes.Add(int64(bytes))
		s.q.acked()
		kick(s.f.changed)
	}
}

// send puts batch upstream until every entry is acknowledged, retrying
// what failed with backoff. It returns an error only when ctx ends or the
// upstream rejects the batch as invalid.
func (s *sender) send(ctx context.Context, batch []pending) error {
	f := s.f
	cfg := &f.cfg
	todo := batch
	entries := make([]types.PutRecordsRequestEntry, 0, len(batch))
	attempt := 0
	for {
		entries = entries[:0]
		for _, p := range todo {
			entries = append(entries, p.entry)
		}
		in := &kinesis.PutRecordsInput{Records: entries}
		if strings.HasPrefix(cfg.TargetStream, "arn:") {
			in.StreamARN = aws.String(cfg.TargetStream)
		} else {
			in.StreamName = aws.String(cfg.TargetStream)
		}
		rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
		out, err := f.client.PutRecords(rctx, in)
		cancel()
		f.requests.Add(1)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err == nil && (out == nil || len(out.Records) != len(todo)) {
			n := 0
			if out != nil {
				n = len(out.Records)
			}
			err = fmt.Errorf("forward: PutRecords answered %d entries for %d", n, len(todo))
		}
		if err != nil {
			kind := classify(err)
			switch kind {
			case fatal:
				return fmt.Errorf("%w: %d records of %s from %s: %w", ErrRejected, len(todo), s.id, todo[0].seq, err)
			case notFound:
				if err := f.ensureTarget(ctx, err); err != nil {
					return err
				}
				attempt = 0
				continue
			}
			f.failedRequests.Add(1)
			if kind == throttle {
				f.throttled.Add(1)
			}
			f.noteFailure(err)
			if err := sleep(ctx, f.backoff(attempt)); err != nil {
				return err
			}
			attempt++
			continue
		}
		f.noteAnswer()
		retry, throttled := retrySet(todo, out.Records)
		if len(retry) == 0 {
			return nil
		}
		f.retried.Add(int64(len(retry)))
		f.throttled.Add(int64(throttled))
		if len(retry) == len(todo) {
			attempt++ // no progress at all: back off further
		} else {
			attempt = 0
		}
		if err := sleep(ctx, f.backoff(attempt)); err != nil {
			return err
		}
		todo = retry
	}
}

// retrySet returns the entries of todo to send again after a PutRecords
// answered res: every failed entry, and every later entry with the
// partition key of an earlier failed one, accepted or not. Re-sending
// those keeps the last copy of each record in key order upstream, even
// though the upstream already holds an accepted later record before the
// failed earlier one. throttled counts the entries failed by throttling.
func retrySet(todo []pending, res []types.PutRecordsResultEntry) (retry []pending, throttled int) {
	var failedKeys map[string]bool
	for i, r := range res {
		key := aws.ToString(todo[i].entry.PartitionKey)
		if code := aws.ToString(r.ErrorCode); code != "" {
			if isThrottle(code) {
				throttled++
			}
			if failedKeys == nil {
				failedKeys = make(map[string]bool)
			}
			failedKeys[key] = true
			retry = append(retry, todo[i])
			continue
		}
		if failedKeys[key] {
			retry = append(retry, todo[i])
		}
	}
	return retry, throttled
}

type failure int

const (
	retryable failure = iota // connection errors, timeouts, 5xx, ...
	throttle                 // the upstream asked us to slow down
	fatal                    // the request or the credentials are refused
	notFound                 // the target stream does not exist
)

func isThrottle(code string) bool {
	switch code {
	case "ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException",
		"KMSThrottlingException", "RequestLimitExceeded", "TooManyRequestsException", "SlowDown":
		return true
	}
	return false
}

// classify sorts a failed call. The upstream's answers that retrying
// cannot change are fatal: a malformed request, and credentials or keys
// it refuses. A missing stream is notFound (created, or fatal). Everything
// else, including unknown errors, is retried: connection errors,
// timeouts, 5xx, expired tokens (the credential chain refreshes them).
func classify(err error) failure {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return retryable
	}
	code := ae.ErrorCode()
	switch {
	case isThrottle(code):
		return throttle
	case code == "ResourceNotFoundException":
		return notFound
	case code == "InvalidArgumentException", code == "ValidationException", code == "SerializationException",
		code == "RequestEntityTooLargeException",
		code == "AccessDeniedException", code == "UnrecognizedClientException", code == "InvalidClientTokenId",
		code == "InvalidSignatureException", code == "IncompleteSignature", code == "IncompleteSignatureException",
		code == "MissingAuthenticationToken", code == "MissingAuthenticationTokenException",
		code == "KMSAccessDeniedException", code == "KMSDisabledException", code == "KMSNotFoundException",
		code == "KMSInvalidStateException", code == "KMSOptInRequired":
		return fatal
	}
	return retryable
}

// ensureTarget handles a call that failed with notFound (err): unless
// CreateTarget applies, it returns ErrRejected with ErrTargetNotFound.
// Otherwise it makes sure the target stream exists and is ACTIVE, creating
// it with the local stream's open shard count if the upstream does not
// know it, and returns nil for the caller to send again; it returns an
// error only when ctx ends or the upstream refuses for good. One sender
// at a time runs it; the others wait and then find the stream there.
func (f *Forwarder) ensureTarget(ctx context.Context, err error) error {
	cfg := &f.cfg
	sc, ok := f.client.(StreamCreator)
	if !cfg.CreateTarget || !ok || strings.HasPrefix(cfg.TargetStream, "arn:") {
		return fmt.Errorf("%w: %w: %s: %w", ErrRejected, ErrTargetNotFound, cfg.TargetStream, err)
	}
	f.createMu.Lock()
	defer f.createMu.Unlock()
	name := aws.String(cfg.TargetStream)
	for attempt := 0; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
		out, err := sc.DescribeStreamSummary(rctx, &kinesis.DescribeStreamSummaryInput{StreamName: name})
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			switch out.StreamDescriptionSummary.StreamStatus {
			case types.StreamStatusActive, types.StreamStatusUpdating:
				f.noteAnswer()
				return nil
			}
			// CREATING (or DELETING, after which it is created again): wait.
		} else if classify(err) == notFound {
			desc, lerr := f.db.DescribeStream(cfg.Stream)
			if lerr != nil {
				return fmt.Errorf("forward: creating the target stream: local stream %s: %w", cfg.Stream, lerr)
			}
			rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
			_, err = sc.CreateStream(rctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(int32(desc.OpenShardCount))})
			cancel()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var inUse *types.ResourceInUseException
			switch {
			case err == nil:
				cfg.Logger.Info("forward: created the target stream upstream", "target", cfg.TargetStream, "shards", desc.OpenShardCount)
			case errors.As(err, &inUse): // created meanwhile by someone else
			case classify(err) == fatal, isLimit(err):
				return fmt.Errorf("%w: creating stream %s with %d shards: %w", ErrRejected, cfg.TargetStream, desc.OpenShardCount, err)
			default:
				f.noteFailure(err)
			}
		} else if classify(err) == fatal {
			return fmt.Errorf("%w: describing stream %s: %w", ErrRejected, cfg.TargetStream, err)
		} else {
			f.noteFailure(err)
		}
		if err := sleep(ctx, f.backoff(attempt)); err != nil {
			return err
		}
	}
}

// isLimit reports a LimitExceededException: for CreateStream, the
// account's stream or shard quota, which waiting does not raise.
func isLimit(err error) bool {
	var le *types.LimitExceededException
	return errors.As(err, &le)
}

// backoff returns the wait before retry number attempt+1: drawn from
// [d/2, d] with d = min(MaxBackoff, MinBackoff·2^attempt).
func (f *Forwarder) backoff(attempt int) time.Duration {
	d := f.cfg.MinBackoff
	for i := 0; i < attempt && d < f.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, f.cfg.MaxBackoff)
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d-d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// noteFailure records a call that failed as a whole.
func (f *Forwarder) noteFailure(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.mu.failing {
		f.cfg.Logger.Warn("forward: upstream failing; retrying with backoff", "stream", f.cfg.Stream, "target", f.cfg.TargetStream, "err", err)
		f.mu.failingSince = time.Now()
	}
	f.mu.failing = true
	f.mu.lastErr, f.mu.lastErrAt = err, time.Now()
	kick(f.changed)
}

// noteAnswer records a call the upstream answered (fully or partly
// accepted).
func (f *Forwarder) noteAnswer() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.failing {
		f.cfg.Logger.Info("forward: upstream answering again", "stream", f.cfg.Stream, "target", f.cfg.TargetStream)
	}
	f.mu.failing = false
	f.mu.failingSince = time.Time{}
	f.mu.lastOK = time.Now()
	kick(f.changed)
}
