package kvstreamtest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/kvstreamtest"
	"github.com/kvstream/kvstream/server"
	"github.com/stretchr/testify/require"
)

var epoch = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// forEachBackendClocked runs body against each backend, each with a fake
// clock of its own.
func forEachBackendClocked(t *testing.T, body func(t *testing.T, kc *kinesis.Client, clk *kvstreamtest.Clock), opts ...kvstreamtest.Option) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			noLeaks(t)
			clk := kvstreamtest.NewClock(epoch)
			body(t, b.client(t, append([]kvstreamtest.Option{kvstreamtest.WithInMemory(), kvstreamtest.WithClock(clk)}, opts...)...), clk)
		})
	}
}

func put(t testing.TB, kc *kinesis.Client, stream, data string) {
	t.Helper()
	_, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(stream), PartitionKey: aws.String("k"), Data: []byte(data)})
	require.NoError(t, err)
}

func readAll(t testing.TB, kc *kinesis.Client, it *string) []string {
	t.Helper()
	out, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it})
	require.NoError(t, err)
	var got []string
	for _, r := range out.Records {
		got = append(got, string(r.Data))
	}
	return got
}

// Records past the stream's retention are gone as soon as the clock says
// so: 25 hours pass in no time.
func TestRetentionOnFakeClock(t *testing.T) {
	forEachBackendClocked(t, func(t *testing.T, kc *kinesis.Client, clk *kvstreamtest.Clock) {
		createStream(t, kc, "s", 1)
		put(t, kc, "s", "old")
		clk.Advance(23 * time.Hour)
		put(t, kc, "s", "new")
		require.Equal(t, []string{"old", "new"}, readAll(t, kc, iterator(t, kc, "s", "shardId-000000000000", types.ShardIteratorTypeTrimHorizon)))
		clk.Advance(2 * time.Hour) // "old" is 25 hours old: past the default 24-hour retention
		require.Equal(t, []string{"new"}, readAll(t, kc, iterator(t, kc, "s", "shardId-000000000000", types.ShardIteratorTypeTrimHorizon)))
	})
}

// A shard iterator expires after 5 minutes on the clock.
func TestIteratorExpiryOnFakeClock(t *testing.T) {
	forEachBackendClocked(t, func(t *testing.T, kc *kinesis.Client, clk *kvstreamtest.Clock) {
		createStream(t, kc, "s", 1)
		it := iterator(t, kc, "s", "shardId-000000000000", types.ShardIteratorTypeTrimHorizon)
		clk.Advance(4 * time.Minute)
		readAll(t, kc, it)
		clk.Advance(time.Minute + time.Second)
		_, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it})
		var expired *types.ExpiredIteratorException
		require.ErrorAs(t, err, &expired)
	})
}

// A ListStreams NextToken expires after 300 seconds on the server's clock.
func TestNextTokenExpiryOnFakeClock(t *testing.T) {
	forEachBackendClocked(t, func(t *testing.T, kc *kinesis.Client, clk *kvstreamtest.Clock) {
		for _, n := range []string{"a", "b", "c"} {
			createStream(t, kc, n, 1)
		}
		page, err := kc.ListStreams(ctx, &kinesis.ListStreamsInput{Limit: aws.Int32(1)})
		require.NoError(t, err)
		require.NotNil(t, page.NextToken)
		clk.Advance(299 * time.Second)
		_, err = kc.ListStreams(ctx, &kinesis.ListStreamsInput{NextToken: page.NextToken})
		require.NoError(t, err)
		clk.Advance(2 * time.Second)
		_, err = kc.ListStreams(ctx, &kinesis.ListStreamsInput{NextToken: page.NextToken})
		var expired *types.ExpiredNextTokenException
		require.ErrorAs(t, err, &expired)
	})
}

// WithCreateDelay keeps a new stream CREATING (and unwritable) until the
// clock has moved past the delay.
func TestCreateDelayOnFakeClock(t *testing.T) {
	forEachBackendClocked(t, func(t *testing.T, kc *kinesis.Client, clk *kvstreamtest.Clock) {
		_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("s"), ShardCount: aws.Int32(1)})
		require.NoError(t, err)
		d, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")})
		require.NoError(t, err)
		require.Equal(t, types.StreamStatusCreating, d.StreamDescriptionSummary.StreamStatus)
		_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("k"), Data: []byte("x")})
		var notFound *types.ResourceNotFoundException
		require.ErrorAs(t, err, &notFound)
		clk.Advance(30 * time.Second)
		d, err = kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")})
		require.NoError(t, err)
		require.Equal(t, types.StreamStatusActive, d.StreamDescriptionSummary.StreamStatus)
		put(t, kc, "s", "x")
	}, kvstreamtest.WithCreateDelay(30*time.Second))
}

// A subscription acts on the fake clock as soon as it moves: a heartbeat
// arrives when one is due, and the subscription ends when its 5-minute
// lifetime has passed, with no record put to wake it and no real time
// waited. The heartbeat interval is a minute here, so without the wake-up
// neither would come before the guard.
func TestSubscriptionOnFakeClock(t *testing.T) {
	forEachBackendClocked(t, func(t *testing.T, kc *kinesis.Client, clk *kvstreamtest.Clock) {
		arn := createStream(t, kc, "s", 1)
		reg, err := kc.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(arn), ConsumerName: aws.String("app")})
		require.NoError(t, err)
		sub, err := kc.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{
			ConsumerARN: reg.Consumer.ConsumerARN, ShardId: aws.String("shardId-000000000000"),
			StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeLatest},
		})
		require.NoError(t, err)
		es := sub.GetStream()
		defer es.Close()
		guard := time.After(30 * time.Second) // a hang guard only: the events come at once
		next := func() (types.SubscribeToShardEventStream, bool) {
			t.Helper()
			select {
			case ev, ok := <-es.Events():
				return ev, ok
			case <-guard:
				t.Fatal("the subscription did not act on the moved clock")
				return nil, false
			}
		}
		_, ok := next() // the first event (no records)
		require.True(t, ok)
		clk.Advance(time.Minute)
		ev, ok := next()
		require.True(t, ok, "a heartbeat: %v", es.Err())
		require.Empty(t, ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent).Value.Records)
		clk.Advance(4 * time.Minute) // 5 minutes since the subscription began
		for {
			ev, ok := next()
			if !ok {
				break
			}
			require.Empty(t, ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent).Value.Records)
		}
		require.NoError(t, es.Err())
	}, kvstreamtest.WithServerConfig(func(c *server.Config) { c.SubscriptionHeartbeat = time.Minute }))
}

// WithKinesisLimits throttles at Kinesis' per-shard limits; on a fake
// clock the buckets refill only when the clock moves.
func TestKinesisLimitsOnFakeClock(t *testing.T) {
	noLeaks(t)
	clk := kvstreamtest.NewClock(epoch)
	kc := kvstreamtest.NewClient(t, kvstreamtest.WithInMemory(), kvstreamtest.WithClock(clk), kvstreamtest.WithKinesisLimits(),
		kvstreamtest.WithClientOptions(func(o *kinesis.Options) { o.Retryer = aws.NopRetryer{} }))
	createStream(t, kc, "s", 1)
	it := iterator(t, kc, "s", "shardId-000000000000", types.ShardIteratorTypeTrimHorizon)
	calls := 0
	var err error
	for ; calls < 100; calls++ {
		if _, err = kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it}); err != nil {
			break
		}
	}
	var throttled *types.ProvisionedThroughputExceededException
	require.ErrorAs(t, err, &throttled)
	require.Equal(t, 5, calls, "5 reads per second and shard")
	clk.Advance(time.Second)
	_, err = kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it})
	require.NoError(t, err)
}

// With SigV4 keys set through WithServerConfig, NewClient signs with them
// and a client with other credentials is refused.
func TestSigV4Keys(t *testing.T) {
	noLeaks(t)
	keys := kvstreamtest.WithServerConfig(func(c *server.Config) { c.AccessKey, c.SecretKey = "AKIDMINE", "my-secret" })
	kc := kvstreamtest.NewClient(t, kvstreamtest.WithInMemory(), keys)
	createStream(t, kc, "s", 1)

	other := kvstreamtest.NewClient(t, kvstreamtest.WithInMemory(), keys, kvstreamtest.WithClientOptions(func(o *kinesis.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider("AKIDOTHER", "other", "")
	}))
	_, err := other.ListStreams(ctx, &kinesis.ListStreamsInput{})
	var ae smithy.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "UnrecognizedClientException", ae.ErrorCode())
}

// Region and account show in ARNs; the client's region follows.
func TestRegionAndAccount(t *testing.T) {
	noLeaks(t)
	kc := kvstreamtest.NewClient(t, kvstreamtest.WithInMemory(), kvstreamtest.WithRegion("eu-west-1"), kvstreamtest.WithAccount("123456789012"))
	require.Equal(t, "eu-west-1", kc.Options().Region)
	arn := createStream(t, kc, "s", 1)
	require.Equal(t, "arn:aws:kinesis:eu-west-1:123456789012:stream/s", arn)
}

// Open returns the embedded engine, in memory or in a temporary
// directory, with the fake clock.
func TestOpen(t *testing.T) {
	for _, mem := range []bool{true, false} {
		t.Run(map[bool]string{true: "InMemory", false: "TempDir"}[mem], func(t *testing.T) {
			noLeaks(t)
			clk := kvstreamtest.NewClock(epoch)
			opts := []kvstreamtest.Option{kvstreamtest.WithClock(clk)}
			if mem {
				opts = append(opts, kvstreamtest.WithInMemory())
			}
			db := kvstreamtest.Open(t, opts...)
			_, isMem := db.Options().FS.(*vfs.MemFS)
			require.Equal(t, mem, isMem)
			require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 1}))
			res, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("x")})
			require.NoError(t, err)
			it, err := db.Iterate("s", res.ShardID, engine.TrimHorizon())
			require.NoError(t, err)
			defer it.Close()
			require.True(t, it.Next())
			require.Equal(t, "x", string(it.Record().Data))
			require.Equal(t, epoch.UnixMilli(), it.Record().Timestamp.UnixMilli())
		})
	}
}

// WithEngineOptions reaches the engine: a smaller record limit is
// enforced through the API, with the type Kinesis' own limit has.
func TestEngineOptions(t *testing.T) {
	noLeaks(t)
	kc := kvstreamtest.NewClient(t, kvstreamtest.WithInMemory(), kvstreamtest.WithEngineOptions(func(o *engine.Options) { o.MaxRecordBytes = 100 }))
	createStream(t, kc, "s", 1)
	_, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("k"), Data: make([]byte, 200)})
	var invalid *types.ValidationException
	require.ErrorAs(t, err, &invalid)
	require.ErrorContains(t, err, "Member must have length less than or equal to 100")
}

// A client used after its test ended gets an error, not a hang.
func TestCallAfterTestEnded(t *testing.T) {
	noLeaks(t)
	var kc *kinesis.Client
	t.Run("test", func(t *testing.T) { kc = kvstreamtest.NewClient(t, kvstreamtest.WithInMemory()) })
	_, err := kc.ListStreams(ctx, &kinesis.ListStreamsInput{}, func(o *kinesis.Options) { o.Retryer = aws.NopRetryer{} })
	require.ErrorContains(t, err, "kvstreamtest: the test's Kinesis is closed")
}

// Cancelling a subscription's context ends it on both sides.
func TestSubscriptionCancel(t *testing.T) {
	noLeaks(t)
	kc := kvstreamtest.NewClient(t, kvstreamtest.WithInMemory())
	arn := createStream(t, kc, "s", 1)
	reg, err := kc.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(arn), ConsumerName: aws.String("app")})
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	sub, err := kc.SubscribeToShard(sctx, &kinesis.SubscribeToShardInput{
		ConsumerARN: reg.Consumer.ConsumerARN, ShardId: aws.String("shardId-000000000000"),
		StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeLatest},
	})
	require.NoError(t, err)
	es := sub.GetStream()
	defer es.Close()
	<-es.Events()
	cancel()
	for range es.Events() {
	}
	require.True(t, es.Err() == nil || errors.Is(es.Err(), context.Canceled), "%v", es.Err())
}

// A subscription the test leaves open is ended by the cleanup; nothing
// leaks.
func TestCleanupEndsOpenSubscription(t *testing.T) {
	noLeaks(t)
	t.Run("test", func(t *testing.T) {
		kc := kvstreamtest.NewClient(t, kvstreamtest.WithInMemory())
		arn := createStream(t, kc, "s", 1)
		reg, err := kc.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(arn), ConsumerName: aws.String("app")})
		require.NoError(t, err)
		sub, err := kc.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{
			ConsumerARN: reg.Consumer.ConsumerARN, ShardId: aws.String("shardId-000000000000"),
			StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeLatest},
		})
		require.NoError(t, err)
		<-sub.GetStream().Events()
		// No Close: the test ends with the subscription running.
	})
}

// fatalTB records a Fatalf instead of ending the test, and runs its
// cleanups when end is called.
type fatalTB struct {
	scope
	fatal string
}

type fatalled struct{}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	panic(fatalled{})
}

// calls fn and reports the message it failed with, "" if none.
func (f *fatalTB) run(fn func()) (msg string) {
	defer f.end()
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(fatalled); !ok {
				panic(v)
			}
			msg = f.fatal
		}
	}()
	fn()
	return ""
}

// Invalid options fail the test with a message naming the setting.
func TestInvalidOptions(t *testing.T) {
	noLeaks(t)
	for _, c := range []struct {
		opt  kvstreamtest.Option
		want string
	}{
		{kvstreamtest.WithAccount("123"), `Account "123" must be 12 digits`},
		{kvstreamtest.WithCreateDelay(-time.Second), "CreateDelay and MaxBodyBytes must not be negative"},
		{kvstreamtest.WithEngineOptions(func(o *engine.Options) { o.IteratorTTL = -time.Second }), "IteratorTTL -1s must be positive"},
	} {
		f := &fatalTB{scope: scope{TB: t}}
		msg := f.run(func() { kvstreamtest.NewClient(f, kvstreamtest.WithInMemory(), c.opt) })
		require.Contains(t, msg, c.want)
		require.Contains(t, msg, "kvstreamtest:")
	}
}
