package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
)

// onDemandStream creates an ON_DEMAND stream through the SDK and returns
// its ARN.
func onDemandStream(t *testing.T, kc *kinesis.Client, name string) string {
	t.Helper()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name),
		StreamModeDetails: &types.StreamModeDetails{StreamMode: types.StreamModeOnDemand}})
	require.NoError(t, err)
	d, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
	require.NoError(t, err)
	return *d.StreamDescriptionSummary.StreamARN
}

func s3ChannelInput(name, streamARN string) *kinesis.CreateChannelInput {
	return &kinesis.CreateChannelInput{
		ChannelName:             aws.String(name),
		ServiceExecutionRoleARN: aws.String("arn:aws:iam::000000000000:role/deliver"),
		StreamConfigurationList: []types.ChannelStreamConfiguration{{
			StreamARN:           aws.String(streamARN),
			RecordConfiguration: &types.RecordConfiguration{RecordFormatType: types.RecordFormatTypeJson},
		}},
		S3DestinationConfiguration: &types.S3DestinationConfiguration{StorageConfiguration: &types.S3StorageConfiguration{
			BucketARN: aws.String("arn:aws:s3:::bucket"), ExpectedBucketOwner: aws.String("000000000000"),
			CompressionType: types.S3CompressionTypeGzip,
		}},
		Tags: map[string]string{"team": "data"},
	}
}

func TestSDKChannelLifecycle(t *testing.T) {
	cfg := Config{CreateDelay: time.Second, UpdateDelay: time.Second, DeleteDelay: time.Second}
	env, advance := clockedEnv(t, cfg)
	kc := env.client()
	ctx := context.Background()
	arnA := onDemandStream(t, kc, "src")
	advance(time.Second) // the stream becomes ACTIVE

	out, err := kc.CreateChannel(ctx, s3ChannelInput("ch1", arnA))
	require.NoError(t, err)
	cd := out.ChannelDescription
	require.Equal(t, types.ChannelStatusCreating, cd.ChannelStatus)
	require.Equal(t, "ch1", *cd.ChannelName)
	require.Regexp(t, `^arn:aws:kinesis:us-east-1:000000000000:channel/[0-9a-f-]{36}$`, *cd.ChannelARN)
	require.Equal(t, int32(defaultFreshnessSecs), *cd.S3DestinationConfiguration.DataFreshnessInSeconds)
	require.Equal(t, arnA, *cd.StreamConfigurationList[0].StreamARN)
	require.Equal(t, types.RecordFormatTypeJson, cd.StreamConfigurationList[0].RecordConfiguration.RecordFormatType)
	chARN := cd.ChannelARN

	// The name is unique in the account.
	_, err = kc.CreateChannel(ctx, s3ChannelInput("ch1", arnA))
	code, msg := apiErr(t, err)
	require.Equal(t, "ResourceInUseException", code)
	require.Contains(t, msg, "ch1")

	// CREATING, then ACTIVE; UpdateChannel only on an ACTIVE channel.
	_, err = kc.UpdateChannel(ctx, &kinesis.UpdateChannelInput{ChannelARN: chARN,
		S3DestinationConfiguration: &types.S3DestinationUpdateInput{DataFreshnessInSeconds: aws.Int32(60)}})
	code, _ = apiErr(t, err)
	require.Equal(t, "ResourceInUseException", code)
	advance(time.Second)
	d, err := kc.DescribeChannel(ctx, &kinesis.DescribeChannelInput{ChannelARN: chARN})
	require.NoError(t, err)
	require.Equal(t, types.ChannelStatusActive, d.ChannelDescription.ChannelStatus)

	up, err := kc.UpdateChannel(ctx, &kinesis.UpdateChannelInput{ChannelARN: chARN,
		S3DestinationConfiguration: &types.S3DestinationUpdateInput{DataFreshnessInSeconds: aws.Int32(60)},
		LoggingConfiguration: &types.ChannelLoggingUpdateInput{CloudWatchLogs: &types.CloudWatchLogsUpdateInput{
			Enabled: aws.Bool(true), LogGroupName: aws.String("g")}}})
	require.NoError(t, err)
	require.Equal(t, types.ChannelStatusUpdating, up.ChannelDescription.ChannelStatus)
	require.Equal(t, int32(60), *up.ChannelDescription.S3DestinationConfiguration.DataFreshnessInSeconds)
	advance(time.Second)
	d, err = kc.DescribeChannel(ctx, &kinesis.DescribeChannelInput{ChannelARN: chARN})
	require.NoError(t, err)
	require.Equal(t, types.ChannelStatusActive, d.ChannelDescription.ChannelStatus)
	require.True(t, *d.ChannelDescription.LoggingConfiguration.CloudWatchLogs.Enabled)

	// An S3 channel takes no S3 Tables update.
	_, err = kc.UpdateChannel(ctx, &kinesis.UpdateChannelInput{ChannelARN: chARN,
		S3TablesDestinationConfiguration: &types.S3TablesDestinationUpdateInput{DataFreshnessInSeconds: aws.Int32(60)}})
	code, _ = apiErr(t, err)
	require.Equal(t, "InvalidArgumentException", code)

	// The stream cannot be deleted while it has a channel.
	_, err = kc.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("src")})
	code, msg = apiErr(t, err)
	require.Equal(t, "ResourceInUseException", code)
	require.Contains(t, msg, "1 channels")

	// The channel is the DB's, not the server's: a new server on the
	// same DB has it.
	cfg.Clock = env.srv.cfg.Clock
	srv2, err := New(env.db, cfg)
	require.NoError(t, err)
	hs2 := httptest.NewServer(srv2)
	defer hs2.Close()
	kc = env.client(func(o *kinesis.Options) { o.BaseEndpoint = aws.String(hs2.URL) })
	d, err = kc.DescribeChannel(ctx, &kinesis.DescribeChannelInput{ChannelARN: chARN})
	require.NoError(t, err)
	require.Equal(t, int32(60), *d.ChannelDescription.S3DestinationConfiguration.DataFreshnessInSeconds)

	// DELETING for DeleteDelay, then gone; the stream can go then.
	_, err = kc.DeleteChannel(ctx, &kinesis.DeleteChannelInput{ChannelARN: chARN})
	require.NoError(t, err)
	d, err = kc.DescribeChannel(ctx, &kinesis.DescribeChannelInput{ChannelARN: chARN})
	require.NoError(t, err)
	require.Equal(t, types.ChannelStatusDeleting, d.ChannelDescription.ChannelStatus)
	_, err = kc.DeleteChannel(ctx, &kinesis.DeleteChannelInput{ChannelARN: chARN})
	code, _ = apiErr(t, err)
	require.Equal(t, "ResourceNotFoundException", code)
	advance(time.Second)
	_, err = kc.DescribeChannel(ctx, &kinesis.DescribeChannelInput{ChannelARN: chARN})
	code, _ = apiErr(t, err)
	require.Equal(t, "ResourceNotFoundException", code)
	_, err = kc.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("src")})
	require.NoError(t, err)
}

func TestSDKListChannels(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	arnA, arnB := onDemandStream(t, kc, "a"), onDemandStream(t, kc, "b")
	for i := range 5 {
		src := arnA
		if i%2 == 1 {
			src = arnB
		}
		_, err := kc.CreateChannel(ctx, s3ChannelInput(fmt.Sprintf("ch%d", i), src))
		require.NoError(t, err)
	}
	// Paged by name with the SDK's paginator.
	var names []string
	p := kinesis.NewListChannelsPaginator(kc, &kinesis.ListChannelsInput{MaxResults: aws.Int32(2)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.ChannelSummaries), 2)
		for _, s := range page.ChannelSummaries {
			names = append(names, *s.ChannelName)
			require.Equal(t, types.ChannelStatusActive, s.ChannelStatus)
			require.Equal(t, types.ChannelDestinationTypeS3, s.ChannelDestinationType)
		}
	}
	require.Equal(t, []string{"ch0", "ch1", "ch2", "ch3", "ch4"}, names)

	// Filtered by stream, with and without its creation time.
	out, err := kc.ListChannels(ctx, &kinesis.ListChannelsInput{StreamFilter: []types.StreamFilter{{StreamARN: aws.String(arnB)}}})
	require.NoError(t, err)
	require.Len(t, out.ChannelSummaries, 2)
	require.Equal(t, arnB, *out.ChannelSummaries[0].Streams[0].StreamARN)
	created := *out.ChannelSummaries[0].Streams[0].StreamCreationTimestamp
	out, err = kc.ListChannels(ctx, &kinesis.ListChannelsInput{StreamFilter: []types.StreamFilter{{StreamARN: aws.String(arnB), StreamCreationTimestamp: aws.Time(created)}}})
	require.NoError(t, err)
	require.Len(t, out.ChannelSummaries, 2)
	out, err = kc.ListChannels(ctx, &kinesis.ListChannelsInput{StreamFilter: []types.StreamFilter{{StreamARN: aws.String(arnB), StreamCreationTimestamp: aws.Time(created.Add(-time.Hour))}}})
	require.NoError(t, err)
	require.Empty(t, out.ChannelSummaries)

	_, err = kc.ListChannels(ctx, &kinesis.ListChannelsInput{MaxResults: aws.Int32(0)})
	code, msg := apiErr(t, err)
	require.Equal(t, "ValidationException", code)
	require.Equal(t, "1 validation error detected: Value '0' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 1", msg)
}

func TestSDKChannelValidation(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	arn := onDemandStream(t, kc, "od")
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("prov"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)

	// Model violations, listed together (the SDK's own checks are off:
	// the raw request shows AWS's texts).
	code, msg := rawCall(t, env, "CreateChannel", `{"ChannelName":"bad name","StreamConfigurationList":[{"StreamARN":"nope","RecordConfiguration":{"RecordFormatType":"XML"}}]}`)
	require.Equal(t, "ValidationException", code)
	require.Equal(t, "4 validation errors detected: "+
		"Value 'bad name' at 'channelName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; "+
		"Value null at 'serviceExecutionRoleARN' failed to satisfy constraint: Member must not be null; "+
		"Value 'nope' at 'streamConfigurationList.1.member.streamARN' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+; "+
		"Value 'XML' at 'streamConfigurationList.1.member.recordConfiguration.recordFormatType' failed to satisfy constraint: Member must satisfy enum value set: [GSR_JSON, JSON, STRING, BYTE_ARRAY]", msg)
	code, msg = rawCall(t, env, "DescribeChannel", `{"ChannelARN":"arn:aws:kinesis:us-east-1:000000000000:stream/x"}`)
	require.Equal(t, "ValidationException", code)
	require.Contains(t, msg, "at 'channelARN' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:channel/\\S+")

	// Both destinations, or neither.
	in := s3ChannelInput("c", arn)
	in.S3TablesDestinationConfiguration = &types.S3TablesDestinationConfiguration{
		DeadLetterQueueS3Configuration: &types.DeadLetterQueueS3Configuration{BucketARN: aws.String("arn:aws:s3:::dlq"), ExpectedBucketOwner: aws.String("000000000000")},
		S3TablesConfigurationList: []types.S3TablesConfiguration{{TableBucketARN: aws.String("arn:aws:s3tables:us-east-1:000000000000:bucket/t"),
			Namespace: aws.String("ns"), TableName: aws.String("t"), CompressionType: types.S3TablesCompressionTypeZstd}},
	}
	_, err = kc.CreateChannel(ctx, in)
	code, _ = apiErr(t, err)
	require.Equal(t, "InvalidArgumentException", code)
	in.S3DestinationConfiguration = nil
	out, err := kc.CreateChannel(ctx, in) // S3 Tables only: fine
	require.NoError(t, err)
	require.Equal(t, "t", *out.ChannelDescription.S3TablesDestinationConfiguration.S3TablesConfigurationList[0].TableName)

	// A provisioned stream, an unknown stream, an unknown channel.
	_, err = kc.CreateChannel(ctx, s3ChannelInput("p", "arn:aws:kinesis:us-east-1:000000000000:stream/prov"))
	code, msg = apiErr(t, err)
	require.Equal(t, "InvalidArgumentException", code)
	require.Contains(t, msg, "ON_DEMAND")
	_, err = kc.CreateChannel(ctx, s3ChannelInput("n", "arn:aws:kinesis:us-east-1:000000000000:stream/none"))
	code, _ = apiErr(t, err)
	require.Equal(t, "ResourceNotFoundException", code)
	_, err = kc.DescribeChannel(ctx, &kinesis.DescribeChannelInput{ChannelARN: aws.String("arn:aws:kinesis:us-east-1:000000000000:channel/0f0f0f0f-0000-4000-8000-000000000000")})
	code, _ = apiErr(t, err)
	require.Equal(t, "ResourceNotFoundException", code)

	// Illegal tag characters.
	bad := s3ChannelInput("tagged", arn)
	bad.Tags = map[string]string{"k": "a\tb"}
	_, err = kc.CreateChannel(ctx, bad)
	code, msg = apiErr(t, err)
	require.Equal(t, "InvalidArgumentException", code)
	require.Contains(t, msg, "illegal characters")
}

// rawCall posts a JSON body and returns the error __type and message.
func rawCall(t *testing.T, env *testEnv, op, body string) (string, string) {
	t.Helper()
	st, _, b := env.post(op, contentTypeJSON, []byte(body))
	require.NotEqual(t, 200, st, "%s", b)
	var eb struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
	require.NoError(t, json.Unmarshal(b, &eb))
	return eb.Type, eb.Message
}

func TestSDKRecordDistributionStrategy(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	arn := onDemandStream(t, kc, "od")
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("prov"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)

	_, err = kc.UpdateStreamRecordDistributionStrategy(ctx, &kinesis.UpdateStreamRecordDistributionStrategyInput{
		StreamARN: aws.String("arn:aws:kinesis:us-east-1:000000000000:stream/prov"), RecordDistributionStrategy: types.RecordDistributionStrategyAuto})
	code, _ := apiErr(t, err)
	require.Equal(t, "InvalidArgumentException", code)
	_, err = kc.UpdateStreamRecordDistributionStrategy(ctx, &kinesis.UpdateStreamRecordDistributionStrategyInput{
		StreamARN: aws.String("arn:aws:kinesis:us-east-1:000000000000:stream/none"), RecordDistributionStrategy: types.RecordDistributionStrategyAuto})
	code, _ = apiErr(t, err)
	require.Equal(t, "ResourceNotFoundException", code)
	code, msg := rawCall(t, env, "UpdateStreamRecordDistributionStrategy", `{"StreamARN":"`+arn+`","RecordDistributionStrategy":"RANDOM"}`)
	require.Equal(t, "ValidationException", code)
	require.Contains(t, msg, "Member must satisfy enum value set: [AUTO, USER_PARTITION_KEY]")

	// USER_PARTITION_KEY: one partition key, one shard.
	shardsOf := func() map[string]bool {
		got := map[string]bool{}
		for range 64 {
			out, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamARN: aws.String(arn), PartitionKey: aws.String("same"), Data: []byte("x")})
			require.NoError(t, err)
			got[*out.ShardId] = true
		}
		return got
	}
	require.Len(t, shardsOf(), 1)

	// AUTO: the same key spreads over the shards; ordering is refused.
	_, err = kc.UpdateStreamRecordDistributionStrategy(ctx, &kinesis.UpdateStreamRecordDistributionStrategyInput{
		StreamARN: aws.String(arn), RecordDistributionStrategy: types.RecordDistributionStrategyAuto})
	require.NoError(t, err)
	require.Greater(t, len(shardsOf()), 1)
	var entries []types.PutRecordsRequestEntry
	for range 64 { // all on one of the 4 shards: p = 4^-63
		entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String("same"), Data: []byte("x")})
	}
	pr, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamARN: aws.String(arn), Records: entries})
	require.NoError(t, err)
	prShards := map[string]bool{}
	for _, r := range pr.Records {
		prShards[*r.ShardId] = true
	}
	require.Greater(t, len(prShards), 1)
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamARN: aws.String(arn), PartitionKey: aws.String("k"), Data: []byte("x"),
		SequenceNumberForOrdering: aws.String("1")})
	code, _ = apiErr(t, err)
	require.Equal(t, "InvalidArgumentException", code)

	// Back to USER_PARTITION_KEY.
	_, err = kc.UpdateStreamRecordDistributionStrategy(ctx, &kinesis.UpdateStreamRecordDistributionStrategyInput{
		StreamARN: aws.String(arn), RecordDistributionStrategy: types.RecordDistributionStrategyUserPartitionKey})
	require.NoError(t, err)
	require.Len(t, shardsOf(), 1)
}
