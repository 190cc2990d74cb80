package server

import (
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// TestUpgradeLegacyDataDir serves a data directory written by the build
// that kept stream modes, encryption, shard-level metrics and the
// enhanced fan-out registry in the engine (engine/testdata/legacy-v1, see
// its README): after the upgrade, clients see every setting and every
// registered consumer as before, in the state its delays give it.
func TestUpgradeLegacyDataDir(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join("..", "engine", "testdata", "legacy-v1")
	ents, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range ents {
		in, err := os.Open(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		out, err := os.Create(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		_, err = io.Copy(out, in)
		require.NoError(t, err)
		require.NoError(t, in.Close())
		require.NoError(t, out.Close())
	}
	const t0 = 1764578000000 // the fixture's clock
	clock := func() time.Time { return time.UnixMilli(t0 + 2000) }
	db, err := engine.Open(dir, &engine.Options{Clock: clock, NoSync: true, BallastBytes: -1})
	require.NoError(t, err)
	srv, err := New(db, Config{Clock: clock})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	env := &testEnv{t: t, db: db, srv: srv, hs: hs, url: hs.URL}
	t.Cleanup(func() {
		hs.Close()
		require.NoError(t, db.Close())
	})
	c := env.client()
	ctx := context.Background()

	sum, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("orders")})
	require.NoError(t, err)
	d := sum.StreamDescriptionSummary
	require.Equal(t, types.EncryptionTypeKms, d.EncryptionType)
	require.Equal(t, "alias/aws/kinesis", aws.ToString(d.KeyId))
	require.Equal(t, types.StreamModeProvisioned, d.StreamModeDetails.StreamMode)
	require.Len(t, d.EnhancedMonitoring, 1)
	require.Equal(t, []types.MetricsName{types.MetricsNameIncomingBytes, types.MetricsNameOutgoingBytes}, d.EnhancedMonitoring[0].ShardLevelMetrics)
	require.Equal(t, int32(3), aws.ToInt32(d.ConsumerCount))

	arn := srv.streamARN("orders")
	list, err := c.ListStreamConsumers(ctx, &kinesis.ListStreamConsumersInput{StreamARN: aws.String(arn)})
	require.NoError(t, err)
	got := map[string]types.ConsumerStatus{}
	for _, cons := range list.Consumers {
		got[aws.ToString(cons.ConsumerName)] = cons.ConsumerStatus
	}
	require.Equal(t, map[string]types.ConsumerStatus{
		"audit": types.ConsumerStatusDeleting, "billing": types.ConsumerStatusActive, "slow": types.ConsumerStatusCreating,
	}, got)
	// The ARN clients kept from the old build still names the consumer.
	desc, err := c.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{
		ConsumerARN: aws.String(srv.consumerARN("orders", "billing", time.UnixMilli(t0)))})
	require.NoError(t, err)
	require.Equal(t, types.ConsumerStatusActive, desc.ConsumerDescription.ConsumerStatus)
	require.Equal(t, time.UnixMilli(t0).Unix(), desc.ConsumerDescription.ConsumerCreationTimestamp.Unix())

	od, err := c.DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("ondemand")})
	require.NoError(t, err)
	require.Equal(t, types.StreamModeOnDemand, od.StreamDescription.StreamModeDetails.StreamMode)
	require.Equal(t, types.EncryptionTypeNone, od.StreamDescription.EncryptionType)
	_, err = c.UpdateShardCount(ctx, &kinesis.UpdateShardCountInput{StreamName: aws.String("ondemand"), TargetShardCount: aws.Int32(2),
		ScalingType: types.ScalingTypeUniformScaling})
	var ve *types.ValidationException
	require.ErrorAs(t, err, &ve)
	require.Contains(t, aws.ToString(ve.Message), "ON_DEMAND")
	odc, err := c.ListStreamConsumers(ctx, &kinesis.ListStreamConsumersInput{StreamARN: aws.String(srv.streamARN("ondemand"))})
	require.NoError(t, err)
	require.Len(t, odc.Consumers, 1)
	require.Equal(t, "reader", aws.ToString(odc.Consumers[0].ConsumerName))

	pl, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("plain")})
	require.NoError(t, err)
	require.Equal(t, types.StreamModeProvisioned, pl.StreamDescriptionSummary.StreamModeDetails.StreamMode)
	require.Equal(t, types.EncryptionTypeNone, pl.StreamDescriptionSummary.EncryptionType)
	require.Empty(t, pl.StreamDescriptionSummary.EnhancedMonitoring[0].ShardLevelMetrics)
	require.Equal(t, int32(0), aws.ToInt32(pl.StreamDescriptionSummary.ConsumerCount))
}
