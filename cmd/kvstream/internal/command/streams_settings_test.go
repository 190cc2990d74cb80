//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package command

import (
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// TestDescribeLocalKinesisSettings: streams describe on a data directory
// shows the capacity mode and encryption that the Kinesis API set (kept
// by the server as stream attributes), as it does through the API.
func TestDescribeLocalKinesisSettings(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "streams", "create", "orders", "--shards", "1")
	out := mustRun(t, dir, "streams", "describe", "orders")
	require.Contains(t, out, "Mode:         PROVISIONED")
	out = mustRun(t, dir, "streams", "describe", "orders", "--json")
	var info streamInfoJSON
	require.NoError(t, json.Unmarshal([]byte(out), &info))
	require.Equal(t, "PROVISIONED", info.Mode)
	require.Equal(t, "NONE", info.Encryption)

	// Change both through the Kinesis API (the directory's socket, served
	// by this process), then describe the directory itself.
	db, err := engine.Open(dir, nil)
	require.NoError(t, err)
	sock, err := startSocket(dir, db, nil)
	require.NoError(t, err)
	p, err := socketPath(dir)
	require.NoError(t, err)
	ss := newSocketStore(dir, p)
	ctx := t.Context()
	sum, err := ss.client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("orders")})
	require.NoError(t, err)
	_, err = ss.client.UpdateStreamMode(ctx, &kinesis.UpdateStreamModeInput{
		StreamARN:         sum.StreamDescriptionSummary.StreamARN,
		StreamModeDetails: &types.StreamModeDetails{StreamMode: types.StreamModeOnDemand},
	})
	require.NoError(t, err)
	_, err = ss.client.StartStreamEncryption(ctx, &kinesis.StartStreamEncryptionInput{
		StreamName: aws.String("orders"), EncryptionType: types.EncryptionTypeKms, KeyId: aws.String("alias/aws/kinesis"),
	})
	require.NoError(t, err)
	require.NoError(t, ss.Close())
	sock.close()
	require.NoError(t, db.Close())

	out = mustRun(t, dir, "streams", "describe", "orders")
	require.Contains(t, out, "Mode:         ON_DEMAND")
	out = mustRun(t, dir, "streams", "describe", "orders", "--json")
	info = streamInfoJSON{}
	require.NoError(t, json.Unmarshal([]byte(out), &info))
	require.Equal(t, "ON_DEMAND", info.Mode)
	require.Equal(t, "KMS", info.Encryption)
}
