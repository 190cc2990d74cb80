package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
)

// Every operation through the real aws-sdk-go-v2 Kinesis client.

func TestSDKStreamLifecycle(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()

	before := time.Now().Truncate(time.Second)
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("orders"), ShardCount: aws.Int32(3)})
	require.NoError(t, err)
	created := time.Now()
	require.NoError(t, kinesis.NewStreamExistsWaiter(kc).Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("orders")}, time.Minute))

	d, err := kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("orders")})
	require.NoError(t, err)
	sd := d.StreamDescription
	require.Equal(t, "orders", *sd.StreamName)
	require.Equal(t, "arn:aws:kinesis:us-east-1:000000000000:stream/orders", *sd.StreamARN)
	require.Equal(t, types.StreamStatusActive, sd.StreamStatus)
	require.Equal(t, types.StreamModeProvisioned, sd.StreamModeDetails.StreamMode)
	require.Equal(t, int32(24), *sd.RetentionPeriodHours)
	require.Equal(t, types.EncryptionTypeNone, sd.EncryptionType)
	require.False(t, *sd.HasMoreShards)
	requireDuring(t, before, created, *sd.StreamCreationTimestamp)
	require.Len(t, sd.Shards, 3)
	// Kinesis' N=3 ranges (KINESIS.md §3.2).
	require.Equal(t, "shardId-000000000000", *sd.Shards[0].ShardId)
	require.Equal(t, "0", *sd.Shards[0].HashKeyRange.StartingHashKey)
	require.Equal(t, "113427455640312821154458202477256070484", *sd.Shards[0].HashKeyRange.EndingHashKey)
	require.Equal(t, "340282366920938463463374607431768211455", *sd.Shards[2].HashKeyRange.EndingHashKey)
	require.Len(t, *sd.Shards[0].SequenceNumberRange.StartingSequenceNumber, 56)
	require.Nil(t, sd.Shards[0].SequenceNumberRange.EndingSequenceNumber)

	// DescribeStream pages through shards with Limit/ExclusiveStartShardId.
	d, err = kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("orders"), Limit: aws.Int32(2)})
	require.NoError(t, err)
	require.Len(t, d.StreamDescription.Shards, 2)
	require.True(t, *d.StreamDescription.HasMoreShards)
	d, err = kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("orders"), ExclusiveStartShardId: aws.String("shardId-1")})
	require.NoError(t, err)
	require.Len(t, d.StreamDescription.Shards, 1)
	require.Equal(t, "shardId-000000000002", *d.StreamDescription.Shards[0].ShardId)

	// StreamARN works in place of the name.
	sum, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamARN: sd.StreamARN})
	require.NoError(t, err)
	require.Equal(t, int32(3), *sum.StreamDescriptionSummary.OpenShardCount)
	require.Equal(t, int32(0), *sum.StreamDescriptionSummary.ConsumerCount)
	require.Equal(t, "orders", *sum.StreamDescriptionSummary.StreamName)

	// Duplicate create: ResourceInUseException with Kinesis' text.
	_, err = kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("orders"), ShardCount: aws.Int32(1)})
	var riu *types.ResourceInUseException
	require.ErrorAs(t, err, &riu)
	require.Equal(t, "Stream orders under account 000000000000 already exists.", riu.ErrorMessage())

	// Missing stream: ResourceNotFoundException.
	_, err = kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("nope")})
	var rnf *types.ResourceNotFoundException
	require.ErrorAs(t, err, &rnf)
	require.Equal(t, "Stream nope under account 000000000000 not found.", rnf.ErrorMessage())
	_, err = kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamARN: aws.String("arn:aws:kinesis:us-east-1:123456789012:stream/orders")})
	require.ErrorAs(t, err, &rnf)

	// ON_DEMAND streams need no shard count.
	_, err = kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("od"),
		StreamModeDetails: &types.StreamModeDetails{StreamMode: types.StreamModeOnDemand}})
	require.NoError(t, err)
	sum, err = kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("od")})
	require.NoError(t, err)
	require.Equal(t, types.StreamModeOnDemand, sum.StreamDescriptionSummary.StreamModeDetails.StreamMode)
	require.Equal(t, int32(4), *sum.StreamDescriptionSummary.OpenShardCount)

	lim, err := kc.DescribeLimits(ctx, &kinesis.DescribeLimitsInput{})
	require.NoError(t, err)
	require.Equal(t, int32(20000), *lim.ShardLimit)
	require.Equal(t, int32(7), *lim.OpenShardCount)
	require.Equal(t, int32(1), *lim.OnDemandStreamCount)
	require.Equal(t, int32(50), *lim.OnDemandStreamCountLimit)

	_, err = kc.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("orders")})
	require.NoError(t, err)
	require.NoError(t, kinesis.NewStreamNotExistsWaiter(kc).Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("orders")}, time.Minute))
	_, err = kc.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("orders")})
	require.ErrorAs(t, err, &rnf)
}

func TestSDKListStreamsPagination(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	var want []string
	for i := range 7 {
		n := fmt.Sprintf("s%02d", i)
		want = append(want, n)
		_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(n), ShardCount: aws.Int32(1)})
		require.NoError(t, err)
	}
	p := kinesis.NewListStreamsPaginator(kc, &kinesis.ListStreamsInput{Limit: aws.Int32(3)})
	var got []string
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		require.NoError(t, err)
		pages++
		got = append(got, out.StreamNames...)
		require.Len(t, out.StreamSummaries, len(out.StreamNames))
		require.Equal(t, out.HasMoreStreams != nil && *out.HasMoreStreams, out.NextToken != nil)
	}
	require.Equal(t, want, got)
	require.Equal(t, 3, pages)

	out, err := kc.ListStreams(ctx, &kinesis.ListStreamsInput{ExclusiveStartStreamName: aws.String("s04")})
	require.NoError(t, err)
	require.Equal(t, []string{"s05", "s06"}, out.StreamNames)
	require.False(t, *out.HasMoreStreams)

	_, err = kc.ListStreams(ctx, &kinesis.ListStreamsInput{NextToken: aws.String("garbage")})
	var ia *types.InvalidArgumentException
	require.ErrorAs(t, err, &ia)

	// Tokens expire after 300 s.
	first, err := kc.ListStreams(ctx, &kinesis.ListStreamsInput{Limit: aws.Int32(1)})
	require.NoError(t, err)
	tok, aerr := decodePageToken(*first.NextToken, time.Now().UnixMilli())
	require.Nil(t, aerr)
	tok.IssuedMs -= 301_000
	_, err = kc.ListStreams(ctx, &kinesis.ListStreamsInput{NextToken: aws.String(encodePageToken(tok))})
	var exp *types.ExpiredNextTokenException
	require.ErrorAs(t, err, &exp)
}

func TestSDKPutAndGetRecords(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	start := time.Now().Truncate(time.Millisecond) // arrival times have millisecond precision
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("s"), ShardCount: aws.Int32(2)})
	require.NoError(t, err)

	// md5 placement: "a" hashes to 16955237001963240173058271559858726497 < 2^127.
	pr, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("a"), Data: []byte("first")})
	require.NoError(t, err)
	require.Equal(t, "shardId-000000000000", *pr.ShardId)
	require.Len(t, *pr.SequenceNumber, 56)
	require.Equal(t, types.EncryptionTypeNone, pr.EncryptionType)

	// ExplicitHashKey routes to the upper shard; SequenceNumberForOrdering is honoured.
	pr2, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("a"),
		ExplicitHashKey: aws.String("340282366920938463463374607431768211455"), Data: []byte{}})
	require.NoError(t, err)
	require.Equal(t, "shardId-000000000001", *pr2.ShardId)
	pr3, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("a"),
		Data: []byte("second"), SequenceNumberForOrdering: pr.SequenceNumber})
	require.NoError(t, err)
	require.Greater(t, *pr3.SequenceNumber, *pr.SequenceNumber)

	// PutRecords: 100 records, same key → same shard, in order.
	var entries []types.PutRecordsRequestEntry
	for i := range 100 {
		entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String("a"), Data: fmt.Appendf(nil, "rec-%03d", i)})
	}
	prs, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamARN: aws.String("arn:aws:kinesis:us-east-1:000000000000:stream/s"), Records: entries})
	require.NoError(t, err)
	require.Equal(t, int32(0), *prs.FailedRecordCount)
	require.Len(t, prs.Records, 100)
	for i := 1; i < 100; i++ {
		require.Equal(t, "shardId-000000000000", *prs.Records[i].ShardId)
		require.Greater(t, *prs.Records[i].SequenceNumber, *prs.Records[i-1].SequenceNumber)
	}

	it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"),
		ShardId: aws.String("shardId-000000000000"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	require.NoError(t, err)
	var got []string
	iter := it.ShardIterator
	for len(got) < 102 {
		out, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(40)})
		require.NoError(t, err)
		require.NotNil(t, out.NextShardIterator)
		require.NotNil(t, out.MillisBehindLatest)
		for _, r := range out.Records {
			got = append(got, string(r.Data))
			require.Equal(t, "a", *r.PartitionKey)
			requireDuring(t, start, time.Now(), *r.ApproximateArrivalTimestamp)
		}
		iter = out.NextShardIterator
	}
	require.Equal(t, "first", got[0])
	require.Equal(t, "second", got[1])
	require.Equal(t, "rec-099", got[101])
	// Caught up: an empty page that still has a next iterator.
	out, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
	require.NoError(t, err)
	require.Empty(t, out.Records)
	require.NotNil(t, out.NextShardIterator)
	require.Equal(t, int64(0), *out.MillisBehindLatest)

	// Iterator types. Lenient shard ids: "shardId-0" is shardId-000000000000.
	at := func(typ types.ShardIteratorType, seq *string, ts *time.Time) string {
		it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String("shardId-0"),
			ShardIteratorType: typ, StartingSequenceNumber: seq, Timestamp: ts})
		require.NoError(t, err)
		out, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator, Limit: aws.Int32(1)})
		require.NoError(t, err)
		if len(out.Records) == 0 {
			return ""
		}
		return string(out.Records[0].Data)
	}
	require.Equal(t, "first", at(types.ShardIteratorTypeAtSequenceNumber, pr.SequenceNumber, nil))
	require.Equal(t, "second", at(types.ShardIteratorTypeAfterSequenceNumber, pr.SequenceNumber, nil))
	require.Equal(t, "", at(types.ShardIteratorTypeLatest, nil, nil))
	past := time.Now().Add(-time.Hour)
	require.Equal(t, "first", at(types.ShardIteratorTypeAtTimestamp, nil, &past))

	// A record put after LATEST was taken is seen.
	lt, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String("shardId-000000000001"),
		ShardIteratorType: types.ShardIteratorTypeLatest})
	require.NoError(t, err)
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("x"),
		ExplicitHashKey: aws.String("340282366920938463463374607431768211455"), Data: []byte("late")})
	require.NoError(t, err)
	out, err = kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: lt.ShardIterator})
	require.NoError(t, err)
	require.Len(t, out.Records, 1)
	require.Equal(t, "late", string(out.Records[0].Data))

	// Errors.
	var ia *types.InvalidArgumentException
	var rnf *types.ResourceNotFoundException
	var ve *types.ValidationException
	_, err = kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String("shardId-000000000000"),
		ShardIteratorType: types.ShardIteratorTypeAtSequenceNumber})
	require.ErrorAs(t, err, &ia)
	require.Contains(t, ia.ErrorMessage(), "Request specified AT_SEQUENCE_NUMBER and no StartingSequenceNumber.")
	_, err = kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String("shardId-000000000000"),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon, StartingSequenceNumber: pr.SequenceNumber})
	require.ErrorAs(t, err, &ia)
	require.Contains(t, ia.ErrorMessage(), "Request specified TRIM_HORIZON and also a StartingSequenceNumber.")
	_, err = kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String("shardId-000000000001"),
		ShardIteratorType: types.ShardIteratorTypeAtSequenceNumber, StartingSequenceNumber: pr.SequenceNumber})
	require.ErrorAs(t, err, &ia)
	require.Equal(t, "Invalid StartingSequenceNumber. It encodes shardId-000000000000, while it was used in a call to a shard with shardId-000000000001", ia.ErrorMessage())
	_, err = kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String("shardId-000000000000"),
		ShardIteratorType: types.ShardIteratorTypeAtSequenceNumber, StartingSequenceNumber: aws.String("12345")})
	require.ErrorAs(t, err, &ia)
	// AWS reads a small number in its old layout, whose shard index is
	// its last four hex digits.
	require.Equal(t, "Invalid StartingSequenceNumber. It encodes shardId-000000012345, while it was used in a call to a shard with shardId-000000000000", ia.ErrorMessage())
	future := time.Now().Add(time.Hour)
	_, err = kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String("shardId-000000000000"),
		ShardIteratorType: types.ShardIteratorTypeAtTimestamp, Timestamp: &future})
	require.ErrorAs(t, err, &ia)
	require.Contains(t, ia.ErrorMessage(), "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis.")
	_, err = kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String("shardId-000000000007"),
		ShardIteratorType: types.ShardIteratorTypeLatest})
	require.ErrorAs(t, err, &rnf)
	require.Equal(t, "Shard shardId-000000000007 in stream s under account 000000000000 does not exist", rnf.ErrorMessage())
	_, err = kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("s"), ShardId: aws.String("bogus"),
		ShardIteratorType: types.ShardIteratorTypeLatest})
	require.ErrorAs(t, err, &rnf)
	require.Equal(t, "Could not find shard bogus in stream s under account 000000000000.", rnf.ErrorMessage())
	_, err = kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String("not-an-iterator")})
	require.ErrorAs(t, err, &ia)
	require.Equal(t, "Invalid ShardIterator.", ia.ErrorMessage())
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("a"), Data: []byte("x"),
		ExplicitHashKey: aws.String("340282366920938463463374607431768211456")})
	require.ErrorAs(t, err, &ia)
	require.Equal(t, "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was 340282366920938463463374607431768211456", ia.ErrorMessage())
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("nope"), PartitionKey: aws.String("a"), Data: []byte("x")})
	require.ErrorAs(t, err, &rnf)
	require.Equal(t, "Stream nope under account 000000000000 not found.", rnf.ErrorMessage())
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String(strings.Repeat("k", 257)), Data: []byte("x")})
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "1 validation error detected: Value '"+strings.Repeat("k", 257)+"' at 'partitionKey' failed to satisfy constraint: Member must have length less than or equal to 256", ve.ErrorMessage())
	_, err = kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("s"), Records: []types.PutRecordsRequestEntry{
		{PartitionKey: aws.String(""), Data: []byte("x")}, {PartitionKey: aws.String("ok"), Data: make([]byte, 1<<20+1)}}})
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "2 validation errors detected: "+
		"Value '' at 'records.1.member.partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1; "+
		"Value 'java.nio.HeapByteBuffer[pos=0 lim=1048577 cap=1048577]' at 'records.2.member.data' failed to satisfy constraint: Member must have length less than or equal to 1048576",
		ve.ErrorMessage())
	big := make([]types.PutRecordsRequestEntry, 6)
	for i := range big {
		big[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String("k"), Data: make([]byte, 880_000)}
	}
	_, err = kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("s"), Records: big})
	require.ErrorAs(t, err, &ia)
	require.Equal(t, "Records size exceeds 5 MB limit", ia.ErrorMessage())

	// Iterators expire after 5 minutes.
	env.advance(6 * time.Minute)
	_, err = kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
	var ei *types.ExpiredIteratorException
	require.ErrorAs(t, err, &ei)
	require.Contains(t, ei.ErrorMessage(), "Iterator expired.")
}

// requireDuring checks ts is within [from, to]: a time the server took
// during the calls made between from and to, however long they took.
func requireDuring(t *testing.T, from, to, ts time.Time) {
	t.Helper()
	require.False(t, ts.Before(from) || ts.After(to), "%v is not within [%v, %v]", ts, from, to)
}
