package server

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

func TestSDKReshardingAndListShards(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("r"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("r"), PartitionKey: aws.String("a"), Data: []byte("old")})
	require.NoError(t, err)
	it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("r"),
		ShardId: aws.String("shardId-000000000000"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	require.NoError(t, err)

	// Split at 2^127: children 1 = [0, 2^127-1], 2 = [2^127, max].
	var ia *types.InvalidArgumentException
	_, err = kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("r"), ShardToSplit: aws.String("shardId-000000000000"),
		NewStartingHashKey: aws.String("1")})
	require.ErrorAs(t, err, &ia)
	require.Equal(t, "NewStartingHashKey 1 used in SplitShard() on shard shardId-000000000000 in stream r under account 000000000000 is not both greater than one plus the shard's StartingHashKey 0 and less than the shard's EndingHashKey 340282366920938463463374607431768211455.", ia.ErrorMessage())
	_, err = kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("r"), ShardToSplit: aws.String("shardId-000000000000"),
		NewStartingHashKey: aws.String("170141183460469231731687303715884105728")})
	require.NoError(t, err)

	ls, err := kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("r")})
	require.NoError(t, err)
	require.Len(t, ls.Shards, 3)
	require.NotNil(t, ls.Shards[0].SequenceNumberRange.EndingSequenceNumber)
	require.Equal(t, "shardId-000000000000", *ls.Shards[1].ParentShardId)
	require.Equal(t, "170141183460469231731687303715884105727", *ls.Shards[1].HashKeyRange.EndingHashKey)

	// The parent reads to its end, then reports its children.
	out, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	require.NoError(t, err)
	require.Len(t, out.Records, 1)
	for out.NextShardIterator != nil {
		out, err = kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: out.NextShardIterator})
		require.NoError(t, err)
	}
	require.Len(t, out.ChildShards, 2)
	require.Equal(t, []string{"shardId-000000000000"}, out.ChildShards[0].ParentShards)

	// Merge the children back: 1 and 2 are adjacent; 2 then 0 is not open.
	_, err = kc.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String("r"), ShardToMerge: aws.String("shardId-000000000001"),
		AdjacentShardToMerge: aws.String("shardId-000000000002")})
	require.NoError(t, err)
	ls, err = kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("r"), ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeAtLatest}})
	require.NoError(t, err)
	require.Len(t, ls.Shards, 1)
	require.Equal(t, "shardId-000000000003", *ls.Shards[0].ShardId)
	require.Equal(t, "shardId-000000000002", *ls.Shards[0].AdjacentParentShardId)

	// ShardFilter types.
	ls, err = kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("r"), ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeAtTrimHorizon}})
	require.NoError(t, err)
	require.Len(t, ls.Shards, 1)
	require.Equal(t, "shardId-000000000000", *ls.Shards[0].ShardId)
	ls, err = kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("r"),
		ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeAfterShardId, ShardId: aws.String("shardId-000000000001")}})
	require.NoError(t, err)
	require.Len(t, ls.Shards, 2)
	now := time.Now()
	ls, err = kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("r"),
		ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeFromTimestamp, Timestamp: &now}})
	require.NoError(t, err)
	require.NotEmpty(t, ls.Shards)
	_, err = kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("r"), ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeAtTimestamp}})
	require.ErrorAs(t, err, &ia)

	// UpdateShardCount 1 → 2 and its scaling bounds.
	usc, err := kc.UpdateShardCount(ctx, &kinesis.UpdateShardCountInput{StreamName: aws.String("r"), TargetShardCount: aws.Int32(2), ScalingType: types.ScalingTypeUniformScaling})
	require.NoError(t, err)
	require.Equal(t, int32(1), *usc.CurrentShardCount)
	require.Equal(t, int32(2), *usc.TargetShardCount)
	var le *types.LimitExceededException
	_, err = kc.UpdateShardCount(ctx, &kinesis.UpdateShardCountInput{StreamName: aws.String("r"), TargetShardCount: aws.Int32(5), ScalingType: types.ScalingTypeUniformScaling})
	require.ErrorAs(t, err, &le)

	// ListShards pagination with NextToken, via the SDK's paginator.
	var ids []string
	in := &kinesis.ListShardsInput{StreamName: aws.String("r"), MaxResults: aws.Int32(2)}
	for {
		page, err := kc.ListShards(ctx, in)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Shards), 2)
		for _, s := range page.Shards {
			ids = append(ids, *s.ShardId)
		}
		if page.NextToken == nil {
			break
		}
		in = &kinesis.ListShardsInput{NextToken: page.NextToken, MaxResults: aws.Int32(2)}
	}
	all, err := kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("r")})
	require.NoError(t, err)
	require.Len(t, ids, len(all.Shards))
	require.Greater(t, len(ids), 4)
	_, err = kc.ListShards(ctx, &kinesis.ListShardsInput{})
	require.ErrorAs(t, err, &ia)
	require.Equal(t, "Either NextToken or StreamName should be provided.", ia.ErrorMessage())
	_, err = kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("r"), NextToken: aws.String("x")})
	require.ErrorAs(t, err, &ia)
	require.Equal(t, "NextToken and StreamName cannot be provided together.", ia.ErrorMessage())

	_, err = kc.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String("r"), ShardToMerge: aws.String("shardId-000000000000"),
		AdjacentShardToMerge: aws.String("shardId-000000000003")})
	var riu *types.ResourceInUseException
	require.ErrorAs(t, err, &riu)

	// ON_DEMAND streams cannot be resharded.
	_, err = kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("od"),
		StreamModeDetails: &types.StreamModeDetails{StreamMode: types.StreamModeOnDemand}})
	require.NoError(t, err)
	_, err = kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("od"), ShardToSplit: aws.String("shardId-000000000000"),
		NewStartingHashKey: aws.String("1000")})
	var ve *types.ValidationException
	require.ErrorAs(t, err, &ve)
}

func TestSDKStreamSettings(t *testing.T) {
	env := newEnv(t, Config{Region: "eu-west-1", Account: "123456789012"}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("st"), ShardCount: aws.Int32(1),
		Tags: map[string]string{"team": "data"}})
	require.NoError(t, err)
	arn := "arn:aws:kinesis:eu-west-1:123456789012:stream/st"

	// Retention.
	var ia *types.InvalidArgumentException
	_, err = kc.IncreaseStreamRetentionPeriod(ctx, &kinesis.IncreaseStreamRetentionPeriodInput{StreamName: aws.String("st"), RetentionPeriodHours: aws.Int32(12)})
	require.ErrorAs(t, err, &ia)
	require.Equal(t, "Minimum allowed retention period is 24 hours. Requested retention period (12 hours) is too short.", ia.ErrorMessage())
	_, err = kc.IncreaseStreamRetentionPeriod(ctx, &kinesis.IncreaseStreamRetentionPeriodInput{StreamARN: aws.String(arn), RetentionPeriodHours: aws.Int32(8761)})
	require.ErrorAs(t, err, &ia)
	require.Equal(t, "Maximum allowed retention period is 8760 hours. Requested retention period (8761 hours) is too long.", ia.ErrorMessage())
	_, err = kc.IncreaseStreamRetentionPeriod(ctx, &kinesis.IncreaseStreamRetentionPeriodInput{StreamName: aws.String("st"), RetentionPeriodHours: aws.Int32(48)})
	require.NoError(t, err)
	_, err = kc.IncreaseStreamRetentionPeriod(ctx, &kinesis.IncreaseStreamRetentionPeriodInput{StreamName: aws.String("st"), RetentionPeriodHours: aws.Int32(30)})
	require.ErrorAs(t, err, &ia)
	require.Equal(t, "Requested retention period (30 hours) for stream st can not be shorter than existing retention period (48 hours). Use DecreaseRetentionPeriod API.", ia.ErrorMessage())
	_, err = kc.DecreaseStreamRetentionPeriod(ctx, &kinesis.DecreaseStreamRetentionPeriodInput{StreamName: aws.String("st"), RetentionPeriodHours: aws.Int32(72)})
	require.ErrorAs(t, err, &ia)
	_, err = kc.DecreaseStreamRetentionPeriod(ctx, &kinesis.DecreaseStreamRetentionPeriodInput{StreamName: aws.String("st"), RetentionPeriodHours: aws.Int32(36)})
	require.NoError(t, err)
	sum, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("st")})
	require.NoError(t, err)
	require.Equal(t, int32(36), *sum.StreamDescriptionSummary.RetentionPeriodHours)
	require.Equal(t, arn, *sum.StreamDescriptionSummary.StreamARN)

	// Tags, by stream and by resource ARN.
	_, err = kc.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: aws.String("st"), Tags: map[string]string{"env": "test", "a": "1"}})
	require.NoError(t, err)
	lt, err := kc.ListTagsForStream(ctx, &kinesis.ListTagsForStreamInput{StreamName: aws.String("st"), Limit: aws.Int32(2)})
	require.NoError(t, err)
	require.True(t, *lt.HasMoreTags)
	require.Equal(t, "a", *lt.Tags[0].Key)
	require.Equal(t, "env", *lt.Tags[1].Key)
	lt, err = kc.ListTagsForStream(ctx, &kinesis.ListTagsForStreamInput{StreamName: aws.String("st"), ExclusiveStartTagKey: aws.String("env")})
	require.NoError(t, err)
	require.False(t, *lt.HasMoreTags)
	require.Len(t, lt.Tags, 1)
	require.Equal(t, "data", *lt.Tags[0].Value)
	_, err = kc.RemoveTagsFromStream(ctx, &kinesis.RemoveTagsFromStreamInput{StreamName: aws.String("st"), TagKeys: []string{"a", "missing"}})
	require.NoError(t, err)
	_, err = kc.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: aws.String(arn), Tags: map[string]string{"x": "y"}})
	require.NoError(t, err)
	_, err = kc.UntagResource(ctx, &kinesis.UntagResourceInput{ResourceARN: aws.String(arn), TagKeys: []string{"env"}})
	require.NoError(t, err)
	ltr, err := kc.ListTagsForResource(ctx, &kinesis.ListTagsForResourceInput{ResourceARN: aws.String(arn)})
	require.NoError(t, err)
	require.Len(t, ltr.Tags, 2)
	require.Equal(t, "team", *ltr.Tags[0].Key)
	require.Equal(t, "x", *ltr.Tags[1].Key)
	_, err = kc.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: aws.String("st"), Tags: map[string]string{"bad;": "1"}}) // % is allowed; ; is not
	require.ErrorAs(t, err, &ia)

	// Encryption is recorded and reported.
	_, err = kc.StartStreamEncryption(ctx, &kinesis.StartStreamEncryptionInput{StreamName: aws.String("st"), EncryptionType: types.EncryptionTypeKms, KeyId: aws.String("alias/aws/kinesis")})
	require.NoError(t, err)
	d, err := kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("st")})
	require.NoError(t, err)
	require.Equal(t, types.EncryptionTypeKms, d.StreamDescription.EncryptionType)
	require.Equal(t, "alias/aws/kinesis", *d.StreamDescription.KeyId)
	pr, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("st"), PartitionKey: aws.String("k"), Data: []byte("x")})
	require.NoError(t, err)
	require.Equal(t, types.EncryptionTypeKms, pr.EncryptionType)
	_, err = kc.StopStreamEncryption(ctx, &kinesis.StopStreamEncryptionInput{StreamName: aws.String("st"), EncryptionType: types.EncryptionTypeKms, KeyId: aws.String("alias/aws/kinesis")})
	require.NoError(t, err)
	pr, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("st"), PartitionKey: aws.String("k"), Data: []byte("x")})
	require.NoError(t, err)
	require.Equal(t, types.EncryptionTypeNone, pr.EncryptionType)

	// Enhanced monitoring.
	em, err := kc.EnableEnhancedMonitoring(ctx, &kinesis.EnableEnhancedMonitoringInput{StreamName: aws.String("st"),
		ShardLevelMetrics: []types.MetricsName{types.MetricsNameIncomingBytes}})
	require.NoError(t, err)
	require.Empty(t, em.CurrentShardLevelMetrics)
	require.Equal(t, []types.MetricsName{types.MetricsNameIncomingBytes}, em.DesiredShardLevelMetrics)
	em, err = kc.EnableEnhancedMonitoring(ctx, &kinesis.EnableEnhancedMonitoringInput{StreamName: aws.String("st"),
		ShardLevelMetrics: []types.MetricsName{types.MetricsNameAll}})
	require.NoError(t, err)
	require.Len(t, em.DesiredShardLevelMetrics, 7)
	dm, err := kc.DisableEnhancedMonitoring(ctx, &kinesis.DisableEnhancedMonitoringInput{StreamARN: aws.String(arn),
		ShardLevelMetrics: []types.MetricsName{types.MetricsNameIncomingBytes, types.MetricsNameOutgoingBytes}})
	require.NoError(t, err)
	require.Len(t, dm.CurrentShardLevelMetrics, 7)
	require.Len(t, dm.DesiredShardLevelMetrics, 5)
	require.Equal(t, "st", *dm.StreamName)
	d, err = kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("st")})
	require.NoError(t, err)
	require.Len(t, d.StreamDescription.EnhancedMonitoring[0].ShardLevelMetrics, 5)

	// Stream mode.
	_, err = kc.UpdateStreamMode(ctx, &kinesis.UpdateStreamModeInput{StreamARN: aws.String(arn),
		StreamModeDetails: &types.StreamModeDetails{StreamMode: types.StreamModeOnDemand}})
	require.NoError(t, err)
	sum, err = kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("st")})
	require.NoError(t, err)
	require.Equal(t, types.StreamModeOnDemand, sum.StreamDescriptionSummary.StreamModeDetails.StreamMode)
}

func TestSDKCreateDelayAndLimits(t *testing.T) {
	env, advance := clockedEnv(t, Config{CreateDelay: 300 * time.Millisecond, KinesisLimits: true})
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("slow"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	d, err := kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("slow")})
	require.NoError(t, err)
	require.Equal(t, types.StreamStatusCreating, d.StreamDescription.StreamStatus)
	require.Empty(t, d.StreamDescription.Shards)
	var rnf *types.ResourceNotFoundException
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("slow"), PartitionKey: aws.String("k"), Data: []byte("x")})
	require.ErrorAs(t, err, &rnf)
	var riu *types.ResourceInUseException
	_, err = kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("slow"), ShardToSplit: aws.String("shardId-000000000000"),
		NewStartingHashKey: aws.String("1000")})
	require.ErrorAs(t, err, &riu)
	require.Equal(t, "Stream slow under account 000000000000 not ACTIVE, instead in state CREATING", riu.ErrorMessage())

	advance(299 * time.Millisecond)
	d, err = kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("slow")})
	require.NoError(t, err)
	require.Equal(t, types.StreamStatusCreating, d.StreamDescription.StreamStatus, "CREATING for CreateDelay")
	advance(time.Millisecond)
	require.NoError(t, kinesis.NewStreamExistsWaiter(kc).Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("slow")}, time.Minute,
		func(o *kinesis.StreamExistsWaiterOptions) {
			o.MinDelay, o.MaxDelay = 50*time.Millisecond, 100*time.Millisecond
		}))

	desc, err := env.db.DescribeStream("slow")
	require.NoError(t, err)
	require.Equal(t, engine.KinesisLimits, desc.Limits)

	// Streams that existed before the server get the limits too; streams
	// with limits of their own keep them.
	custom := engine.Limits{WriteRecordsPerSec: 7}
	require.NoError(t, env.db.CreateStream("embedded", engine.StreamConfig{ShardCount: 1}))
	require.NoError(t, env.db.CreateStream("custom", engine.StreamConfig{ShardCount: 1, Limits: custom}))
	_, err = New(env.db, Config{KinesisLimits: true})
	require.NoError(t, err)
	desc, err = env.db.DescribeStream("embedded")
	require.NoError(t, err)
	require.Equal(t, engine.KinesisLimits, desc.Limits)
	desc, err = env.db.DescribeStream("custom")
	require.NoError(t, err)
	require.Equal(t, custom, desc.Limits)
}

func TestSDKThrottling(t *testing.T) {
	// A frozen clock: the token buckets never refill during the test.
	frozen := time.Now()
	env := newEnv(t, Config{KinesisLimits: true}, &engine.Options{Clock: func() time.Time { return frozen }})
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("t"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)

	// 1000 records/s per shard: a burst of 2000 cannot all get in.
	entries := make([]types.PutRecordsRequestEntry, 500)
	for i := range entries {
		entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String("k"), Data: []byte("0123456789")}
	}
	failed := 0
	for range 4 {
		out, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("t"), Records: entries})
		require.NoError(t, err, "PutRecords is partial-success: HTTP 200 even when entries are throttled")
		failed += int(*out.FailedRecordCount)
		for _, r := range out.Records {
			if r.ErrorCode != nil {
				require.Equal(t, "ProvisionedThroughputExceededException", *r.ErrorCode)
				require.Equal(t, "Rate exceeded for shard shardId-000000000000 in stream t under account 000000000000.", *r.ErrorMessage)
				require.Nil(t, r.SequenceNumber)
			}
		}
	}
	require.Equal(t, 1000, failed)

	var pte *types.ProvisionedThroughputExceededException
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("t"), PartitionKey: aws.String("k"), Data: []byte("x")})
	require.ErrorAs(t, err, &pte)
	require.Equal(t, "Rate exceeded for shard shardId-000000000000 in stream t under account 000000000000.", pte.ErrorMessage())

	// 5 GetRecords calls per second per shard.
	it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("t"), ShardId: aws.String("shardId-000000000000"),
		ShardIteratorType: types.ShardIteratorTypeLatest})
	require.NoError(t, err)
	for range 5 {
		_, err = kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
		require.NoError(t, err)
	}
	_, err = kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	require.ErrorAs(t, err, &pte)
	require.Equal(t, "Rate exceeded for Shard - 000000000000/t/shardId-000000000000.", pte.ErrorMessage())

	code, body := func() (int, string) {
		resp, err := env.hs.Client().Get(env.url + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = io.Copy(&b, resp.Body)
		return resp.StatusCode, b.String()
	}()
	require.Equal(t, 200, code)
	require.Contains(t, body, `kvstream_server_throttles_total{op="PutRecord"} 1`)
	require.Contains(t, body, `kvstream_server_throttles_total{op="GetRecords"} 1`)
	require.Contains(t, body, `kvstream_server_throttles_total{op="PutRecords"} 1000`)
}
