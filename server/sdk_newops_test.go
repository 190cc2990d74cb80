package server

import (
	"bytes"
	"context"
	"errors"
	"math/big"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// clockedEnv starts a test server whose server clock (Config.Clock) and
// engine clock are one fake clock, moved by the returned function (which
// also wakes waiting SubscribeToShard subscriptions to see the new time).
func clockedEnv(t *testing.T, cfg Config) (*testEnv, func(time.Duration)) {
	t.Helper()
	var off atomic.Int64
	base := time.Now()
	clock := func() time.Time { return base.Add(time.Duration(off.Load())) }
	cfg.Clock = clock
	env := newEnv(t, cfg, &engine.Options{Clock: clock})
	return env, func(d time.Duration) {
		off.Add(int64(d))
		env.srv.ClockMoved()
	}
}

// apiErr returns err's error code and message (fails if err is not an
// API error).
func apiErr(t *testing.T, err error) (string, string) {
	t.Helper()
	var ae smithy.APIError
	require.True(t, errors.As(err, &ae), "want an API error, got %v", err)
	return ae.ErrorCode(), ae.ErrorMessage()
}

func TestSDKAccountSettings(t *testing.T) {
	env, advance := clockedEnv(t, Config{})
	kc := env.client()
	ctx := context.Background()

	out, err := kc.DescribeAccountSettings(ctx, &kinesis.DescribeAccountSettingsInput{})
	require.NoError(t, err)
	require.Equal(t, types.MinimumThroughputBillingCommitmentOutputStatusDisabled, out.MinimumThroughputBillingCommitment.Status)
	require.Nil(t, out.MinimumThroughputBillingCommitment.StartedAt)

	up, err := kc.UpdateAccountSettings(ctx, &kinesis.UpdateAccountSettingsInput{MinimumThroughputBillingCommitment: &types.MinimumThroughputBillingCommitmentInput{
		Status: types.MinimumThroughputBillingCommitmentInputStatusEnabled}})
	require.NoError(t, err)
	c := up.MinimumThroughputBillingCommitment
	require.Equal(t, types.MinimumThroughputBillingCommitmentOutputStatusEnabled, c.Status)
	require.Equal(t, 24*time.Hour, c.EarliestAllowedEndAt.Sub(*c.StartedAt))
	started := *c.StartedAt

	// Disabling within the 24-hour minimum schedules the end.
	advance(time.Hour)
	up, err = kc.UpdateAccountSettings(ctx, &kinesis.UpdateAccountSettingsInput{MinimumThroughputBillingCommitment: &types.MinimumThroughputBillingCommitmentInput{
		Status: types.MinimumThroughputBillingCommitmentInputStatusDisabled}})
	require.NoError(t, err)
	require.Equal(t, types.MinimumThroughputBillingCommitmentOutputStatusEnabledUntilEarliestAllowedEnd, up.MinimumThroughputBillingCommitment.Status)
	// Enabling again cancels it; disabling again schedules it again.
	up, err = kc.UpdateAccountSettings(ctx, &kinesis.UpdateAccountSettingsInput{MinimumThroughputBillingCommitment: &types.MinimumThroughputBillingCommitmentInput{
		Status: types.MinimumThroughputBillingCommitmentInputStatusEnabled}})
	require.NoError(t, err)
	require.Equal(t, types.MinimumThroughputBillingCommitmentOutputStatusEnabled, up.MinimumThroughputBillingCommitment.Status)
	require.Equal(t, started, *up.MinimumThroughputBillingCommitment.StartedAt)
	_, err = kc.UpdateAccountSettings(ctx, &kinesis.UpdateAccountSettingsInput{MinimumThroughputBillingCommitment: &types.MinimumThroughputBillingCommitmentInput{
		Status: types.MinimumThroughputBillingCommitmentInputStatusDisabled}})
	require.NoError(t, err)

	// At EarliestAllowedEndAt the commitment ends.
	advance(23 * time.Hour)
	out, err = kc.DescribeAccountSettings(ctx, &kinesis.DescribeAccountSettingsInput{})
	require.NoError(t, err)
	c = out.MinimumThroughputBillingCommitment
	require.Equal(t, types.MinimumThroughputBillingCommitmentOutputStatusDisabled, c.Status)
	require.Equal(t, *c.EarliestAllowedEndAt, *c.EndedAt)

	// Validation.
	st, _, body := env.postJSON("UpdateAccountSettings", `{"MinimumThroughputBillingCommitment":{"Status":"MAYBE"}}`)
	require.Equal(t, 400, st)
	msg := string(body)
	require.Contains(t, msg, "ValidationException")
	require.Contains(t, msg, "Value 'MAYBE' at 'minimumThroughputBillingCommitment.status' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED]")
	_, _, body = env.postJSON("UpdateAccountSettings", `{}`)
	require.JSONEq(t, `{"__type":"ValidationException","message":"1 validation error detected: Value null at 'minimumThroughputBillingCommitment' failed to satisfy constraint: Member must not be null"}`, string(body))
}

func TestSDKMaxRecordSize(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("s"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	arn := aws.String("arn:aws:kinesis:us-east-1:000000000000:stream/s")
	big := bytes.Repeat([]byte{'x'}, 2<<20)

	sum, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")})
	require.NoError(t, err)
	require.Equal(t, int32(1024), *sum.StreamDescriptionSummary.MaxRecordSizeInKiB)
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("k"), Data: big})
	typ, msg := apiErr(t, err)
	require.Equal(t, "ValidationException", typ)
	require.Contains(t, msg, "Member must have length less than or equal to 1048576")

	// Out of range, then 3 MiB.
	_, err = kc.UpdateMaxRecordSize(ctx, &kinesis.UpdateMaxRecordSizeInput{StreamARN: arn, MaxRecordSizeInKiB: aws.Int32(10241)})
	typ, msg = apiErr(t, err)
	require.Equal(t, "ValidationException", typ)
	require.Equal(t, "1 validation error detected: Value '10241' at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must have value less than or equal to 10240", msg)
	_, err = kc.UpdateMaxRecordSize(ctx, &kinesis.UpdateMaxRecordSizeInput{StreamARN: aws.String("arn:aws:kinesis:us-east-1:000000000000:stream/nope"), MaxRecordSizeInKiB: aws.Int32(2048)})
	typ, _ = apiErr(t, err)
	require.Equal(t, "ResourceNotFoundException", typ)
	_, err = kc.UpdateMaxRecordSize(ctx, &kinesis.UpdateMaxRecordSizeInput{StreamARN: arn, MaxRecordSizeInKiB: aws.Int32(3072)})
	require.NoError(t, err)

	// The new limit is real: 2 MiB records go in and come back.
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("k"), Data: big})
	require.NoError(t, err)
	pr, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamARN: arn, Records: []types.PutRecordsRequestEntry{{PartitionKey: aws.String("k"), Data: big}}})
	require.NoError(t, err)
	require.Equal(t, int32(0), *pr.FailedRecordCount)
	it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String("shardId-000000000000"),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	require.NoError(t, err)
	gr, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	require.NoError(t, err)
	require.Len(t, gr.Records, 2)
	require.Equal(t, big, gr.Records[1].Data)
	// Over the new limit: the message names it.
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("k"), Data: make([]byte, 3<<20+1)})
	typ, msg = apiErr(t, err)
	require.Equal(t, "ValidationException", typ)
	require.Contains(t, msg, "Member must have length less than or equal to 3145728")
	sum, err = kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")})
	require.NoError(t, err)
	require.Equal(t, int32(3072), *sum.StreamDescriptionSummary.MaxRecordSizeInKiB)

	// CreateStream takes it too.
	_, err = kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("t"), ShardCount: aws.Int32(1), MaxRecordSizeInKiB: aws.Int32(2048)})
	require.NoError(t, err)
	sum, err = kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("t")})
	require.NoError(t, err)
	require.Equal(t, int32(2048), *sum.StreamDescriptionSummary.MaxRecordSizeInKiB)
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("t"), PartitionKey: aws.String("k"), Data: big[:2<<20-10]})
	require.NoError(t, err)
}

func TestSDKWarmThroughput(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("p"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	_, err = kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("od"),
		StreamModeDetails: &types.StreamModeDetails{StreamMode: types.StreamModeOnDemand}})
	require.NoError(t, err)

	_, err = kc.UpdateStreamWarmThroughput(ctx, &kinesis.UpdateStreamWarmThroughputInput{StreamName: aws.String("p"), WarmThroughputMiBps: aws.Int32(10)})
	typ, msg := apiErr(t, err)
	require.Equal(t, "InvalidArgumentException", typ)
	require.Contains(t, msg, "ON_DEMAND")
	_, err = kc.UpdateStreamWarmThroughput(ctx, &kinesis.UpdateStreamWarmThroughputInput{StreamName: aws.String("od"), WarmThroughputMiBps: aws.Int32(10)})
	typ, msg = apiErr(t, err)
	require.Equal(t, "InvalidArgumentException", typ)
	require.Contains(t, msg, "MinimumThroughputBillingCommitment")

	_, err = kc.UpdateAccountSettings(ctx, &kinesis.UpdateAccountSettingsInput{MinimumThroughputBillingCommitment: &types.MinimumThroughputBillingCommitmentInput{
		Status: types.MinimumThroughputBillingCommitmentInputStatusEnabled}})
	require.NoError(t, err)
	_, err = kc.UpdateStreamWarmThroughput(ctx, &kinesis.UpdateStreamWarmThroughputInput{StreamName: aws.String("od"), WarmThroughputMiBps: aws.Int32(10241)})
	typ, _ = apiErr(t, err)
	require.Equal(t, "LimitExceededException", typ)
	out, err := kc.UpdateStreamWarmThroughput(ctx, &kinesis.UpdateStreamWarmThroughputInput{StreamName: aws.String("od"), WarmThroughputMiBps: aws.Int32(200)})
	require.NoError(t, err)
	require.Equal(t, "od", *out.StreamName)
	require.Equal(t, int32(200), *out.WarmThroughput.TargetMiBps)
	sum, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("od")})
	require.NoError(t, err)
	require.Equal(t, int32(200), *sum.StreamDescriptionSummary.WarmThroughput.CurrentMiBps)
	sum, err = kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("p")})
	require.NoError(t, err)
	require.Nil(t, sum.StreamDescriptionSummary.WarmThroughput)

	_, _, body := env.postJSON("UpdateStreamWarmThroughput", `{"StreamName":"od","WarmThroughputMiBps":-1}`)
	require.JSONEq(t, `{"__type":"ValidationException","message":"1 validation error detected: Value '-1' at 'warmThroughputMiBps' failed to satisfy constraint: Member must have value greater than or equal to 0"}`, string(body))
	_, _, body = env.postJSON("UpdateStreamWarmThroughput", `{"StreamName":"od"}`)
	require.JSONEq(t, `{"__type":"ValidationException","message":"1 validation error detected: Value null at 'warmThroughputMiBps' failed to satisfy constraint: Member must not be null"}`, string(body))
}

func TestSDKResourcePolicy(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("s"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	arn := "arn:aws:kinesis:us-east-1:000000000000:stream/s"
	reg, err := kc.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: aws.String(arn), ConsumerName: aws.String("c")})
	require.NoError(t, err)
	carn := *reg.Consumer.ConsumerARN
	policy := `{"Version":"2012-10-17","Statement":[{"Sid":"x","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},` +
		`"Action":["kinesis:GetRecords","kinesis:DescribeStreamSummary"],"Resource":"` + arn + `"}]}`

	get := func(res string) string {
		t.Helper()
		out, err := kc.GetResourcePolicy(ctx, &kinesis.GetResourcePolicyInput{ResourceARN: aws.String(res)})
		require.NoError(t, err)
		return *out.Policy
	}
	require.Equal(t, "{}", get(arn))
	_, err = kc.PutResourcePolicy(ctx, &kinesis.PutResourcePolicyInput{ResourceARN: aws.String(arn), Policy: aws.String(policy)})
	require.NoError(t, err)
	require.Equal(t, policy, get(arn))
	require.Equal(t, "{}", get(carn)) // the consumer's is its own
	cpol := strings.Replace(policy, `"Resource":"`+arn+`"`, `"Resource":"`+carn+`"`, 1)
	_, err = kc.PutResourcePolicy(ctx, &kinesis.PutResourcePolicyInput{ResourceARN: aws.String(carn), Policy: aws.String(cpol)})
	require.NoError(t, err)
	require.Equal(t, cpol, get(carn))

	// Invalid documents.
	for _, bad := range []string{
		`not json`, `[]`, `{}`, `{"Statement":[]}`, `{"Version":"2020-01-01","Statement":{"Effect":"Allow","Principal":"*","Action":"kinesis:*"}}`,
		`{"Statement":{"Effect":"Maybe","Principal":"*","Action":"kinesis:*"}}`,
		`{"Statement":{"Effect":"Allow","Action":"kinesis:*"}}`,
		`{"Statement":{"Effect":"Allow","Principal":"*"}}`,
		`{"Statement":{"Effect":"Allow","Principal":"*","Action":"kinesis:*","Bogus":1}}`,
		`{"Statement":{"Effect":"Allow","Principal":{"Nobody":"x"},"Action":"kinesis:*"}}`,
		`{"Statement":{"Effect":"Allow","Principal":"*","Action":[]}}`,
		`{"Statement":{"Effect":"Allow","Principal":"*","Action":"kinesis:*"}} trailing`,
		`{"Statement":{"Effect":"Allow","Principal":"*","Action":"kinesis:*","Sid":"` + strings.Repeat("a", maxPolicyBytes) + `"}}`,
	} {
		_, err = kc.PutResourcePolicy(ctx, &kinesis.PutResourcePolicyInput{ResourceARN: aws.String(arn), Policy: aws.String(bad)})
		typ, msg := apiErr(t, err)
		require.Equal(t, "InvalidArgumentException", typ, bad)
		require.True(t, strings.HasPrefix(msg, "Invalid policy document: "), msg)
	}
	require.Equal(t, policy, get(arn)) // unchanged
	_, err = kc.PutResourcePolicy(ctx, &kinesis.PutResourcePolicyInput{ResourceARN: aws.String(arn),
		Policy: aws.String(`{"Statement":{"Effect":"Deny","Principal":"*","NotAction":"kinesis:PutRecord"}}`)})
	require.NoError(t, err)

	// Unknown resources and model constraints.
	_, err = kc.GetResourcePolicy(ctx, &kinesis.GetResourcePolicyInput{ResourceARN: aws.String("arn:aws:kinesis:us-east-1:000000000000:stream/nope")})
	typ, msg := apiErr(t, err)
	require.Equal(t, "ResourceNotFoundException", typ)
	require.Equal(t, "Stream nope under account 000000000000 not found.", msg)
	_, _, body := env.postJSON("PutResourcePolicy", `{"ResourceARN":"`+arn+`"}`)
	require.JSONEq(t, `{"__type":"ValidationException","message":"1 validation error detected: Value null at 'policy' failed to satisfy constraint: Member must not be null"}`, string(body))
	_, err = kc.GetResourcePolicy(ctx, &kinesis.GetResourcePolicyInput{ResourceARN: aws.String("arn:aws:s3:::bucket")})
	typ, _ = apiErr(t, err)
	require.Equal(t, "ValidationException", typ)

	// Delete; a deregistered consumer's policy goes with it.
	_, err = kc.DeleteResourcePolicy(ctx, &kinesis.DeleteResourcePolicyInput{ResourceARN: aws.String(arn)})
	require.NoError(t, err)
	require.Equal(t, "{}", get(arn))
	_, err = kc.DeleteResourcePolicy(ctx, &kinesis.DeleteResourcePolicyInput{ResourceARN: aws.String(arn)})
	require.NoError(t, err)
	_, err = kc.DeregisterStreamConsumer(ctx, &kinesis.DeregisterStreamConsumerInput{ConsumerARN: aws.String(carn)})
	require.NoError(t, err)
	_, err = kc.GetResourcePolicy(ctx, &kinesis.GetResourcePolicyInput{ResourceARN: aws.String(carn)})
	typ, _ = apiErr(t, err)
	require.Equal(t, "ResourceNotFoundException", typ)
	attrs, err := env.db.Attrs("s", policyAttrPrefix)
	require.NoError(t, err)
	require.Empty(t, attrs)
}

func TestSDKDeleteDelay(t *testing.T) {
	env, advance := clockedEnv(t, Config{DeleteDelay: time.Minute})
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("s"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	_, err = kc.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("s")})
	require.NoError(t, err)

	d, err := kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("s")})
	require.NoError(t, err)
	require.Equal(t, types.StreamStatusDeleting, d.StreamDescription.StreamStatus)
	ls, err := kc.ListStreams(ctx, &kinesis.ListStreamsInput{})
	require.NoError(t, err)
	require.Equal(t, types.StreamStatusDeleting, ls.StreamSummaries[0].StreamStatus)
	_, err = kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("s"), ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String("1000")})
	typ, msg := apiErr(t, err)
	require.Equal(t, "ResourceInUseException", typ)
	require.Equal(t, "Stream s under account 000000000000 not ACTIVE, instead in state DELETING", msg)
	_, err = kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("s"), ShardCount: aws.Int32(1)})
	typ, msg = apiErr(t, err)
	require.Equal(t, "ResourceInUseException", typ)
	require.Equal(t, "Stream s under account 000000000000 already exists.", msg)
	_, err = kc.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("s")})
	typ, _ = apiErr(t, err)
	require.Equal(t, "ResourceNotFoundException", typ)

	advance(time.Minute)
	_, err = kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("s")})
	typ, msg = apiErr(t, err)
	require.Equal(t, "ResourceNotFoundException", typ)
	require.Equal(t, "Stream s under account 000000000000 not found.", msg)
	_, err = env.db.DescribeStream("s") // gone from the engine too
	require.ErrorIs(t, err, engine.ErrStreamNotFound)
	_, err = kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("s"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
}

func TestSDKUpdateDelay(t *testing.T) {
	env, advance := clockedEnv(t, Config{UpdateDelay: 30 * time.Second})
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("s"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	_, err = kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("s"), ShardToSplit: aws.String("shardId-000000000000"),
		NewStartingHashKey: aws.String("170141183460469231731687303715884105728")})
	require.NoError(t, err)

	// UPDATING with the old shard, which still takes the records.
	d, err := kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("s")})
	require.NoError(t, err)
	require.Equal(t, types.StreamStatusUpdating, d.StreamDescription.StreamStatus)
	require.Len(t, d.StreamDescription.Shards, 1)
	require.Nil(t, d.StreamDescription.Shards[0].SequenceNumberRange.EndingSequenceNumber)
	pr, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("k"), Data: []byte("x")})
	require.NoError(t, err)
	require.Equal(t, "shardId-000000000000", *pr.ShardId)
	_, err = kc.UpdateShardCount(ctx, &kinesis.UpdateShardCountInput{StreamName: aws.String("s"), TargetShardCount: aws.Int32(2), ScalingType: types.ScalingTypeUniformScaling})
	typ, msg := apiErr(t, err)
	require.Equal(t, "ResourceInUseException", typ)
	require.Equal(t, "Stream s under account 000000000000 not ACTIVE, instead in state UPDATING", msg)

	// A server restarted meanwhile keeps the pending split.
	srv2, err := New(env.db, Config{UpdateDelay: 30 * time.Second, Clock: env.srv.cfg.Clock})
	require.NoError(t, err)
	defer srv2.Close()
	hs2 := httptest.NewServer(srv2)
	defer hs2.Close()
	kc2 := kinesis.New(kinesis.Options{BaseEndpoint: aws.String(hs2.URL), Region: "us-east-1", Credentials: env.client().Options().Credentials, Retryer: aws.NopRetryer{}})
	d, err = kc2.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("s")})
	require.NoError(t, err)
	require.Equal(t, types.StreamStatusUpdating, d.StreamDescription.StreamStatus)

	advance(30 * time.Second)
	d, err = kc2.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("s")})
	require.NoError(t, err)
	require.Equal(t, types.StreamStatusActive, d.StreamDescription.StreamStatus)
	require.Len(t, d.StreamDescription.Shards, 3)
	require.NotNil(t, d.StreamDescription.Shards[0].SequenceNumberRange.EndingSequenceNumber)
	env.srv.settle() // the first server finds nothing left to apply
	d, err = kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("s")})
	require.NoError(t, err)
	require.Len(t, d.StreamDescription.Shards, 3)

	// Merge and UpdateShardCount are delayed the same way.
	_, err = kc.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String("s"), ShardToMerge: aws.String("shardId-000000000001"),
		AdjacentShardToMerge: aws.String("shardId-000000000002")})
	require.NoError(t, err)
	sum, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")})
	require.NoError(t, err)
	require.Equal(t, types.StreamStatusUpdating, sum.StreamDescriptionSummary.StreamStatus)
	require.Equal(t, int32(2), *sum.StreamDescriptionSummary.OpenShardCount)
	advance(30 * time.Second)
	us, err := kc.UpdateShardCount(ctx, &kinesis.UpdateShardCountInput{StreamName: aws.String("s"), TargetShardCount: aws.Int32(2), ScalingType: types.ScalingTypeUniformScaling})
	require.NoError(t, err)
	require.Equal(t, int32(1), *us.CurrentShardCount)
	sum, err = kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")})
	require.NoError(t, err)
	require.Equal(t, int32(1), *sum.StreamDescriptionSummary.OpenShardCount)
	advance(30 * time.Second)
	sum, err = kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")})
	require.NoError(t, err)
	require.Equal(t, types.StreamStatusActive, sum.StreamDescriptionSummary.StreamStatus)
	require.Equal(t, int32(2), *sum.StreamDescriptionSummary.OpenShardCount)
}

func TestSDKShardLimit(t *testing.T) {
	env := newEnv(t, Config{ShardLimit: 3}, nil)
	kc := env.client()
	ctx := context.Background()
	lim, err := kc.DescribeLimits(ctx, &kinesis.DescribeLimitsInput{})
	require.NoError(t, err)
	require.Equal(t, int32(3), *lim.ShardLimit)
	_, err = kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("a"), ShardCount: aws.Int32(2)})
	require.NoError(t, err)
	_, err = kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("b"), ShardCount: aws.Int32(2)})
	typ, msg := apiErr(t, err)
	require.Equal(t, "LimitExceededException", typ)
	require.Equal(t, "This request would exceed the shard limit for the account 000000000000 in us-east-1. Current shard count for the account: 2. "+
		"Limit: 3. Number of additional shards that would have resulted from this request: 2. Refer to the AWS Service Limits page "+
		"(http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.", msg)
	_, err = kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("a"), ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String("1000")})
	require.NoError(t, err)
	_, err = kc.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("a"), ShardToSplit: aws.String("shardId-000000000001"),
		NewStartingHashKey: aws.String("200000000000000000000000000000000000000")})
	typ, msg = apiErr(t, err)
	require.Equal(t, "LimitExceededException", typ)
	require.Contains(t, msg, "Current shard count for the account: 3. Limit: 3. Number of additional shards that would have resulted from this request: 1.")
	_, err = kc.UpdateShardCount(ctx, &kinesis.UpdateShardCountInput{StreamName: aws.String("a"), TargetShardCount: aws.Int32(4), ScalingType: types.ScalingTypeUniformScaling})
	typ, msg = apiErr(t, err)
	require.Equal(t, "LimitExceededException", typ)
	require.Equal(t, "Target shard count or number of open shards cannot be greater than 3. Current open shard count: 3, Target shard count: 4", msg)
	_, err = kc.UpdateShardCount(ctx, &kinesis.UpdateShardCountInput{StreamName: aws.String("a"), TargetShardCount: aws.Int32(1), ScalingType: types.ScalingTypeUniformScaling})
	typ, msg = apiErr(t, err)
	require.Equal(t, "LimitExceededException", typ)
	require.Equal(t, "UpdateShardCount cannot scale down below half your current open shard count. Current open shard count: 3, Target shard count: 1", msg)
}

func TestSDKMergeShardsOrder(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("s"), ShardCount: aws.Int32(3)})
	require.NoError(t, err)
	for _, pair := range [][2]string{{"1", "0"}, {"0", "2"}, {"2", "1"}} {
		_, err = kc.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String("s"), ShardToMerge: aws.String("shardId-00000000000" + pair[0]),
			AdjacentShardToMerge: aws.String("shardId-00000000000" + pair[1])})
		typ, msg := apiErr(t, err)
		require.Equal(t, "InvalidArgumentException", typ)
		require.Equal(t, "Shards shardId-00000000000"+pair[0]+" and shardId-00000000000"+pair[1]+
			" in stream s under account 000000000000 are not an adjacent pair of shards eligible for merging", msg)
	}
	_, err = kc.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String("s"), ShardToMerge: aws.String("shardId-000000000001"),
		AdjacentShardToMerge: aws.String("shardId-000000000002")})
	require.NoError(t, err)
}

// TestSequenceNumberForOrdering: the cases AWS was recorded answering.
func TestSequenceNumberForOrdering(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("s"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	hexNum := func(h string) string { n, _ := new(big.Int).SetString(h, 16); return n.String() }
	nowHex := func(d int64) string { return new(big.Int).SetInt64(time.Now().Unix() + d).Text(16) }
	for _, tc := range []struct {
		name, seq, want string
	}{
		{"version 0", hexNum("20000000000000000000000000000000000000000000000"), "InvalidArgumentException"},
		{"version 4", hexNum("20000000000000000000000000000000000000000000004"), "InvalidArgumentException"},
		{"version 3", hexNum("20000000000000000000000000000000000000000000003"), "InternalFailure"},
		{"initial 3", hexNum("30000000000000000000000000000000000000000000001"), "InvalidArgumentException"},
		{"initial 1", hexNum("1ffffffffff7fffffffffffffff000000000007fffffff2"), "InvalidArgumentException"},
		{"8 in the counter", hexNum("20000000000800000000000000000000000000000000002"), "InvalidArgumentException"},
		{"8 in the shard index", hexNum("20000000000000000000000000000000000000800000002"), "InvalidArgumentException"},
		{"future write time", hexNum("200000000000000000000000000000" + nowHex(100) + "000000002"), "InvalidArgumentException"},
		{"large date", hexNum("13bb2cc3d80000000000000000000000"), "InvalidArgumentException"},
		{"all f", hexNum("2ffffffffff7fffffffffffffff000000000007fffffff2"), ""},
		{"all 0", hexNum("20000000000000000000000000000000000000000000002"), ""},
		{"all 0 version 1", hexNum("20000000000000000000000000000000000000000000001"), ""},
		{"time now", hexNum("2ffffffffff7fffffff7fffffff000" + nowHex(-2) + "7fffffff2"), ""},
		{"small", "1", ""},
	} {
		_, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("a"), Data: []byte{},
			SequenceNumberForOrdering: aws.String(tc.seq)})
		if tc.want == "" {
			require.NoError(t, err, tc.name)
			continue
		}
		typ, msg := apiErr(t, err)
		require.Equal(t, tc.want, typ, tc.name)
		if tc.want == "InvalidArgumentException" {
			require.Equal(t, "ExclusiveMinimumSequenceNumber "+tc.seq+" used in PutRecord on stream s under account 000000000000 is invalid.", msg, tc.name)
		}
	}
	// A number the shard issued still orders the next record after it.
	pr, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("a"), Data: []byte{}})
	require.NoError(t, err)
	pr2, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("a"), Data: []byte{},
		SequenceNumberForOrdering: pr.SequenceNumber})
	require.NoError(t, err)
	a, _ := new(big.Int).SetString(*pr.SequenceNumber, 10)
	b, _ := new(big.Int).SetString(*pr2.SequenceNumber, 10)
	require.Equal(t, 1, b.Cmp(a))
}
