package command

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/internal/awsclient"
)

// remotePollInterval is how long a caught-up remote reader waits before
// the next GetRecords: Kinesis shared reads have no push, and 5 reads/s
// per shard is the provisioned limit.
const remotePollInterval = 250 * time.Millisecond

// remoteStore is a store over any Kinesis endpoint.
type remoteStore struct {
	client   *kinesis.Client
	endpoint string
	// dir, if set, is the data directory this endpoint is the socket of
	// (socketStore): messages then name it as localStore's do.
	dir string
}

// newRemoteStore builds a Kinesis client for endpoint, with AWS
// configuration by kvstream's one rule (internal/awsclient): on a loopback
// endpoint (a local kvstream serve) without $AWS_PROFILE, no AWS
// configuration is needed ($AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY if
// set, else placeholder credentials); elsewhere the SDK's default chain.
func newRemoteStore(ctx context.Context, endpoint, region string) (*remoteStore, error) {
	cfg, err := awsclient.Config(ctx, endpoint, region)
	if errors.Is(err, awsclient.ErrEndpoint) {
		return nil, usagef("--endpoint %q must be a URL such as http://127.0.0.1:4567", endpoint)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", endpoint, err)
	}
	if u, _ := awsclient.ParseEndpoint(endpoint); awsclient.IsLoopback(u.Hostname()) {
		cfg.RetryMaxAttempts = 2 // a local server answers at once or not at all
	}
	client := kinesis.NewFromConfig(cfg, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(endpoint) })
	return &remoteStore{client: client, endpoint: endpoint}, nil
}

func (r *remoteStore) Where() string { return r.endpoint }

func (r *remoteStore) Close() error { return nil }

// remoteKinds maps Kinesis error codes to engine sentinels, so callers
// test remote and local errors alike with errors.Is.
var remoteKinds = map[string]error{
	"ResourceNotFoundException":              engine.ErrStreamNotFound,
	"ResourceInUseException":                 engine.ErrResourceInUse,
	"InvalidArgumentException":               engine.ErrInvalidArgument,
	"ValidationException":                    engine.ErrValidation,
	"LimitExceededException":                 engine.ErrLimitExceeded,
	"ProvisionedThroughputExceededException": engine.ErrThroughputExceeded,
	"ExpiredIteratorException":               engine.ErrExpiredIterator,
}

// wrap turns SDK errors into one-line messages that wrap engine sentinels.
func (r *remoteStore) wrap(err error, stream string) error {
	return r.wrapAs(err, stream, nil, nil)
}

// wrapAs is wrap for a call in which the error code that maps to the
// sentinel from can only mean to (a ResourceInUseException from
// CreateStream means the stream exists): the kind comes from the call,
// never from the message's text.
func (r *remoteStore) wrapAs(err error, stream string, from, to error) error {
	if err == nil {
		return nil
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code, msg := ae.ErrorCode(), ae.ErrorMessage()
		kind := remoteKinds[code]
		if from != nil && kind == from {
			kind = to
		}
		inner := err
		if kind != nil {
			inner = &engine.Error{Kind: kind, Msg: msg, Cause: err}
		}
		if r.dir != "" && stream != "" && (kind == engine.ErrStreamNotFound || kind == engine.ErrStreamExists) {
			return localWrap(inner, stream, r.dir)
		}
		if kind == engine.ErrStreamNotFound && stream != "" {
			return &cliError{err: inner, msg: fmt.Sprintf("stream %q not found at %s (%s)", stream, r.endpoint, msg)}
		}
		return &cliError{err: inner, msg: fmt.Sprintf("%s: %s", code, msg)}
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		if r.dir != "" {
			return &cliError{err: err, msg: fmt.Sprintf("lost the process holding %s: %v", r.dir, oe.Err)}
		}
		return &cliError{err: err, msg: fmt.Sprintf("cannot reach %s: %v (is 'kvstream serve' running?)", r.endpoint, oe.Err)}
	}
	return err
}

func (r *remoteStore) CreateStream(ctx context.Context, name string, cfg createConfig) error {
	if cfg.Partitioner != "" {
		return usagef("--partitioner applies to local data directories only (Kinesis endpoints use MD5)")
	}
	if cfg.MaxBytes != 0 {
		return usagef("--max-bytes applies to local data directories only (Kinesis streams have no size bound)")
	}
	_, err := r.client.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(int32(cfg.Shards))})
	if err != nil {
		return r.wrapAs(err, "", engine.ErrResourceInUse, engine.ErrStreamExists)
	}
	// Kinesis creates streams asynchronously; wait until ACTIVE so the
	// next command can use it.
	w := kinesis.NewStreamExistsWaiter(r.client, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 2*time.Second
	})
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, 5*time.Minute); err != nil {
		return fmt.Errorf("waiting for stream %q to become ACTIVE: %w", name, r.wrap(err, name))
	}
	if cfg.Retention != 0 && cfg.Retention != 24*time.Hour {
		return r.SetRetention(ctx, name, cfg.Retention)
	}
	return nil
}

func (r *remoteStore) DeleteStream(ctx context.Context, name string) error {
	_, err := r.client.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(name), EnforceConsumerDeletion: aws.Bool(true)})
	return r.wrap(err, name)
}

func (r *remoteStore) ListStreams(ctx context.Context) ([]string, error) {
	var names []string
	p := kinesis.NewListStreamsPaginator(r.client, &kinesis.ListStreamsInput{})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, r.wrap(err, "")
		}
		names = append(names, out.StreamNames...)
	}
	return names, nil
}

func (r *remoteStore) DescribeStream(ctx context.Context, name string) (streamInfo, error) {
	sum, err := r.client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
	if err != nil {
		return streamInfo{}, r.wrap(err, name)
	}
	d := sum.StreamDescriptionSummary
	info := streamInfo{
		Name:       aws.ToString(d.StreamName),
		Status:     string(d.StreamStatus),
		Created:    aws.ToTime(d.StreamCreationTimestamp),
		Retention:  time.Duration(aws.ToInt32(d.RetentionPeriodHours)) * time.Hour,
		Encryption: string(d.EncryptionType),
		OpenShards: int(aws.ToInt32(d.OpenShardCount)),
	}
	if d.StreamModeDetails != nil {
		info.Mode = string(d.StreamModeDetails.StreamMode)
	}
	shards, err := r.listShards(ctx, name)
	if err != nil {
		return streamInfo{}, err
	}
	info.Shards = shards
	return info, nil
}

func (r *remoteStore) listShards(ctx context.Context, name string) ([]shardInfo, error) {
	var out []shardInfo
	in := &kinesis.ListShardsInput{StreamName: aws.String(name)}
	for {
		page, err := r.client.ListShards(ctx, in)
		if err != nil {
			return nil, r.wrap(err, name)
		}
		for _, s := range page.Shards {
			si := shardInfo{
				ID:             aws.ToString(s.ShardId),
				Parent:         aws.ToString(s.ParentShardId),
				AdjacentParent: aws.ToString(s.AdjacentParentShardId),
			}
			if s.HashKeyRange != nil {
				si.StartingHashKey = aws.ToString(s.HashKeyRange.StartingHashKey)
				si.EndingHashKey = aws.ToString(s.HashKeyRange.EndingHashKey)
			}
			if s.SequenceNumberRange != nil {
				si.StartingSequenceNumber = aws.ToString(s.SequenceNumberRange.StartingSequenceNumber)
				si.EndingSequenceNumber = aws.ToString(s.SequenceNumberRange.EndingSequenceNumber)
			}
			out = append(out, si)
		}
		if page.NextToken == nil {
			return out, nil
		}
		in = &kinesis.ListShardsInput{NextToken: page.NextToken}
	}
}

func (r *remoteStore) Put(ctx context.Context, stream string, entries []engine.Entry) ([]putResult, error) {
	in := &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: make([]types.PutRecordsRequestEntry, len(entries))}
	for i, e := range entries {
		in.Records[i] = types.PutRecordsRequestEntry{Data: e.Data, PartitionKey: aws.String(e.PartitionKey)}
		if e.ExplicitHashKey != "" {
			in.Records[i].ExplicitHashKey = aws.String(e.ExplicitHashKey)
		}
	}
	out, err := r.client.PutRecords(ctx, in)
	if err != nil {
		return nil, r.wrap(err, stream)
	}
	if len(out.Records) != len(entries) {
		return nil, fmt.Errorf("PutRecords on %s returned %d results for %d records", r.endpoint, len(out.Records), len(entries))
	}
	res := make([]putResult, len(entries))
	for i, rr := range out.Records {
		res[i] = putResult{Shard: aws.ToString(rr.ShardId), Seq: aws.ToString(rr.SequenceNumber)}
		if rr.ErrorCode != nil {
			kind := remoteKinds[aws.ToString(rr.ErrorCode)]
			if kind == nil {
				kind = engine.ErrWriteFailed
			}
			res[i].Err = &engine.Error{Kind: kind, Msg: aws.ToString(rr.ErrorCode) + ": " + aws.ToString(rr.ErrorMessage)}
		}
	}
	return res, nil
}

func (r *remoteStore) OpenShard(ctx context.Context, stream, shardID string, pos engine.StartPosition) (shardReader, error) {
	rr := &remoteReader{store: r, stream: stream, shard: shardID}
	if err := rr.iterator(ctx, pos); err != nil {
		return nil, err
	}
	return rr, nil
}

func (r *remoteStore) SplitShard(ctx context.Context, stream, shardID, newStartingHashKey string) error {
	_, err := r.client.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String(stream), ShardToSplit: aws.String(shardID), NewStartingHashKey: aws.String(newStartingHashKey)})
	return r.wrap(err, stream)
}

func (r *remoteStore) MergeShards(ctx context.Context, stream, shardID, adjacentShardID string) error {
	_, err := r.client.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String(stream), ShardToMerge: aws.String(shardID), AdjacentShardToMerge: aws.String(adjacentShardID)})
	return r.wrap(err, stream)
}

func (r *remoteStore) UpdateShardCount(ctx context.Context, stream string, target int) error {
	_, err := r.client.UpdateShardCount(ctx, &kinesis.UpdateShardCountInput{StreamName: aws.String(stream), TargetShardCount: aws.Int32(int32(target)), ScalingType: types.ScalingTypeUniformScaling})
	return r.wrap(err, stream)
}

func (r *remoteStore) SetMaxBytes(context.Context, string, int64, string) error {
	return usagef("a size bound applies to local data directories only (Kinesis streams have no size bound)")
}

// SetRetention uses Increase- or DecreaseStreamRetentionPeriod, whichever
// moves from the current period to d (whole hours, as Kinesis requires).
func (r *remoteStore) SetRetention(ctx context.Context, stream string, d time.Duration) error {
	if d%time.Hour != 0 {
		return usagef("retention %v must be whole hours on a Kinesis endpoint", d)
	}
	sum, err := r.client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
	if err != nil {
		return r.wrap(err, stream)
	}
	hours := int32(d / time.Hour)
	cur := aws.ToInt32(sum.StreamDescriptionSummary.RetentionPeriodHours)
	switch {
	case hours > cur:
		_, err = r.client.IncreaseStreamRetentionPeriod(ctx, &kinesis.IncreaseStreamRetentionPeriodInput{StreamName: aws.String(stream), RetentionPeriodHours: aws.Int32(hours)})
	case hours < cur:
		_, err = r.client.DecreaseStreamRetentionPeriod(ctx, &kinesis.DecreaseStreamRetentionPeriodInput{StreamName: aws.String(stream), RetentionPeriodHours: aws.Int32(hours)})
	}
	return r.wrap(err, stream)
}

// remoteReader reads a shard with GetShardIterator and GetRecords.
type remoteReader struct {
	store  *remoteStore
	stream string
	shard  string
	token  *string
	last   string // sequence number of the last record returned
}

// iterator fetches a shard iterator for pos.
func (rr *remoteReader) iterator(ctx context.Context, pos engine.StartPosition) error {
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String(rr.stream), ShardId: aws.String(rr.shard)}
	// Kind.String is the Kinesis ShardIteratorType name.
	in.ShardIteratorType = types.ShardIteratorType(pos.Kind.String())
	if !pos.Sequence.IsZero() {
		in.StartingSequenceNumber = aws.String(pos.Sequence.String())
	}
	if !pos.Timestamp.IsZero() {
		in.Timestamp = aws.Time(pos.Timestamp)
	}
	out, err := rr.store.client.GetShardIterator(ctx, in)
	if err != nil {
		// ResourceNotFoundException names the stream or the shard: the
		// shard, if the stream is there.
		if werr := rr.store.wrap(err, rr.stream); !errors.Is(werr, engine.ErrStreamNotFound) {
			return werr
		}
		if _, derr := rr.store.client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(rr.stream)}); derr != nil {
			return rr.store.wrap(err, rr.stream)
		}
		return rr.store.wrapAs(err, "", engine.ErrStreamNotFound, engine.ErrShardNotFound)
	}
	rr.token = out.ShardIterator
	return nil
}

func (rr *remoteReader) Next(ctx context.Context, max int) ([]record, readState, error) {
	if rr.token == nil {
		return nil, stateEnded, nil
	}
	out, err := rr.store.client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: rr.token, Limit: aws.Int32(int32(min(max, 10000)))})
	if err != nil {
		err = rr.store.wrap(err, rr.stream)
		switch {
		case errors.Is(err, engine.ErrThroughputExceeded):
			// Over the shard's read limit: back off, then try again.
			if err := sleepCtx(ctx, time.Second); err != nil {
				return nil, stateCaughtUp, err
			}
			return nil, stateMore, nil
		case errors.Is(err, engine.ErrExpiredIterator) && rr.last != "":
			n, _ := engine.ParseSequenceNumber(rr.last)
			if err := rr.iterator(ctx, engine.AfterSequenceNumber(n)); err != nil {
				return nil, stateCaughtUp, err
			}
			return nil, stateMore, nil
		}
		return nil, stateCaughtUp, err
	}
	recs := make([]record, len(out.Records))
	for i, kr := range out.Records {
		recs[i] = record{
			Shard: rr.shard,
			Seq:   aws.ToString(kr.SequenceNumber),
			Key:   aws.ToString(kr.PartitionKey),
			Data:  kr.Data,
			Time:  aws.ToTime(kr.ApproximateArrivalTimestamp),
		}
	}
	if len(recs) > 0 {
		rr.last = recs[len(recs)-1].Seq
	}
	rr.token = out.NextShardIterator
	switch {
	case rr.token == nil:
		return recs, stateEnded, nil
	case len(recs) == max || aws.ToInt64(out.MillisBehindLatest) > 0:
		return recs, stateMore, nil
	}
	return recs, stateCaughtUp, nil
}

func (rr *remoteReader) Wait(ctx context.Context) error { return sleepCtx(ctx, remotePollInterval) }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (rr *remoteReader) Close() error { return nil }
