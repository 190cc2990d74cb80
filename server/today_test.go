package server

import (
	"context"
	"net/http"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
)

// TestTodaysAWS pins the behaviour AWS changed since the older recordings
// (issue 16 item 10): today's limits and response members stay.
func TestTodaysAWS(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("n"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)

	// Retention up to 8,760 hours.
	_, err = kc.IncreaseStreamRetentionPeriod(ctx, &kinesis.IncreaseStreamRetentionPeriodInput{StreamName: aws.String("n"), RetentionPeriodHours: aws.Int32(8760)})
	require.NoError(t, err)
	_, err = kc.IncreaseStreamRetentionPeriod(ctx, &kinesis.IncreaseStreamRetentionPeriodInput{StreamName: aws.String("n"), RetentionPeriodHours: aws.Int32(8761)})
	code, msg, status := sdkErr(t, err)
	require.Equal(t, errInvalidArgument, code)
	require.Equal(t, "Maximum allowed retention period is 8760 hours. Requested retention period (8761 hours) is too long.", msg)
	require.Equal(t, http.StatusBadRequest, status)

	// Up to 50 tags, listed 50 at a time.
	tags := map[string]string{}
	for i := range 50 {
		tags["k"+strconv.Itoa(i)] = "v"
	}
	_, err = kc.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: aws.String("n"), Tags: tags})
	require.NoError(t, err)
	lt, err := kc.ListTagsForStream(ctx, &kinesis.ListTagsForStreamInput{StreamName: aws.String("n"), Limit: aws.Int32(50)})
	require.NoError(t, err)
	require.Len(t, lt.Tags, 50)

	// The members AWS added to its responses.
	d, err := kc.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("n")})
	require.NoError(t, err)
	require.Equal(t, types.StreamModeProvisioned, d.StreamDescription.StreamModeDetails.StreamMode)
	require.Equal(t, types.EncryptionTypeNone, d.StreamDescription.EncryptionType)
	ls, err := kc.ListStreams(ctx, &kinesis.ListStreamsInput{})
	require.NoError(t, err)
	require.Len(t, ls.StreamSummaries, 1)
	require.Equal(t, "n", *ls.StreamSummaries[0].StreamName)
}
