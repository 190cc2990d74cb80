package server

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
)

// TestSDKLargeRecords raises a stream's record limit to 10 MiB
// (UpdateMaxRecordSize) and puts 9 MiB records with PutRecord and
// PutRecords, through the SDK (JSON, base64 over 12 MiB on the wire), and
// reads them back byte for byte; a record over the stream's limit gets
// AWS's validation text.
func TestSDKLargeRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("moves about 100 MiB through the server")
	}
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("big"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)

	nine := make([]byte, 9<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range nine {
		nine[i] = byte(r.Uint32())
	}
	// At the default 1 MiB limit the record is refused at validation.
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("big"), PartitionKey: aws.String("k"), Data: nine})
	code, msg := apiErr(t, err)
	require.Equal(t, "ValidationException", code)
	require.Equal(t, "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=9437184 cap=9437184]' at 'data' failed to satisfy constraint: "+
		"Member must have length less than or equal to 1048576", msg)

	_, err = kc.UpdateMaxRecordSize(ctx, &kinesis.UpdateMaxRecordSizeInput{StreamARN: aws.String(env.srv.streamARN("big")), MaxRecordSizeInKiB: aws.Int32(10240)})
	require.NoError(t, err)

	put, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("big"), PartitionKey: aws.String("k"), Data: nine})
	require.NoError(t, err)
	second := append([]byte{1}, nine[:8<<20]...)
	puts, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("big"), Records: []types.PutRecordsRequestEntry{
		{PartitionKey: aws.String("k"), Data: second}}})
	require.NoError(t, err)
	require.Zero(t, *puts.FailedRecordCount)

	// Over the raised limit: AWS's text with the new limit.
	over := make([]byte, 10<<20+1)
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("big"), PartitionKey: aws.String("k"), Data: over})
	code, msg = apiErr(t, err)
	require.Equal(t, "ValidationException", code)
	require.Contains(t, msg, "lim=10485761 cap=10485761]' at 'data' failed to satisfy constraint: Member must have length less than or equal to 10485760")
	// 10.5 MiB in one PutRecords: over the 10 MiB request limit (a body
	// larger than the largest legal request is refused before decoding:
	// 413).
	_, err = kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("big"), Records: []types.PutRecordsRequestEntry{
		{PartitionKey: aws.String("k"), Data: nine[:5<<20+512<<10]}, {PartitionKey: aws.String("k"), Data: nine[:5<<20]}}})
	code, msg = apiErr(t, err)
	require.Equal(t, "InvalidArgumentException", code)
	require.Equal(t, "Records size exceeds 10 MB limit", msg)

	it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("big"), ShardId: put.ShardId,
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	require.NoError(t, err)
	var got [][]byte
	iter := it.ShardIterator
	for len(got) < 2 {
		out, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
		require.NoError(t, err)
		for _, rec := range out.Records {
			got = append(got, rec.Data)
		}
		require.NotNil(t, out.NextShardIterator)
		iter = out.NextShardIterator
	}
	require.Len(t, got, 2)
	require.True(t, bytes.Equal(nine, got[0]), "the 9 MiB record differs")
	require.True(t, bytes.Equal(second, got[1]), "the PutRecords record differs")
}
