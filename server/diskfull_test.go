package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// get returns the status and body of a GET on the server.
func (e *testEnv) get(path string) (int, string) {
	e.t.Helper()
	resp, err := e.hs.Client().Get(e.url + path)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp.StatusCode, string(b)
}

// waitHealth waits until /healthz answers status (the engine reads free
// space at most every 250 ms); the deadline only guards against a hang.
func (e *testEnv) waitHealth(status int) string {
	e.t.Helper()
	deadline := time.Now().Add(efoHangGuard)
	for {
		code, body := e.get("/healthz")
		if code == status {
			return body
		}
		require.True(e.t, time.Now().Before(deadline), "/healthz still answers %d %q", code, body)
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDiskFullServer: with the disk under MinFreeBytes, puts get HTTP 503
// ServiceUnavailable, which the AWS SDKs retry; /healthz answers 503 with
// the reason; /metrics counts the refusals; DeleteStream still works; and
// puts resume when space returns.
func TestDiskFullServer(t *testing.T) {
	mem := vfs.NewMem()
	usage := func(avail uint64) vfs.DiskUsage {
		return vfs.DiskUsage{AvailBytes: avail, TotalBytes: 4 << 30, UsedBytes: 4<<30 - avail}
	}
	mem.TestingSetDiskUsage(usage(1 << 30))
	env := newEnv(t, Config{}, &engine.Options{FS: mem, MinFreeBytes: 100 << 20, BallastBytes: -1})
	c := env.client()
	ctx := context.Background()
	for _, name := range []string{"s", "other"} {
		_, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(1)})
		require.NoError(t, err)
	}
	put := func() error {
		_, err := c.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("k"), Data: []byte("x")})
		return err
	}
	require.NoError(t, put())
	env.waitHealth(http.StatusOK)

	mem.TestingSetDiskUsage(usage(10 << 20))
	body := env.waitHealth(http.StatusServiceUnavailable)
	require.Contains(t, body, "disk full")
	require.Contains(t, body, "MinFreeBytes")

	err := put()
	var ae smithy.APIError
	require.True(t, errors.As(err, &ae), "%v", err)
	require.Equal(t, "ServiceUnavailable", ae.ErrorCode())
	require.Contains(t, ae.ErrorMessage(), "below MinFreeBytes")
	var re *awshttp.ResponseError
	require.True(t, errors.As(err, &re))
	require.Equal(t, http.StatusServiceUnavailable, re.HTTPStatusCode())
	require.Equal(t, aws.TrueTernary, retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err),
		"aws-sdk-go-v2's default retryer retries it")
	_, err = c.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("s"),
		Records: []types.PutRecordsRequestEntry{{PartitionKey: aws.String("k"), Data: []byte("y")}}})
	require.True(t, errors.As(err, &ae))
	require.Equal(t, "ServiceUnavailable", ae.ErrorCode())

	_, metrics := env.get("/metrics")
	for _, want := range []string{
		"kvstream_storage_disk_full 1",
		"kvstream_storage_disk_full_rejections_total 2",
		"kvstream_storage_writable 0",
		"kvstream_storage_available_bytes 1.048576e+07",
		"kvstream_storage_background_errors_total 0",
		"kvstream_storage_write_stalls_total 0",
		"kvstream_recovery_lost_records 0",
		"kvstream_recovery_consumer_gaps 0",
		`kvstream_server_requests_total{error="ServiceUnavailable",op="PutRecord"} 1`,
	} {
		require.Contains(t, metrics, want)
	}

	// Reads and deletions keep working.
	_, err = c.ListStreams(ctx, &kinesis.ListStreamsInput{})
	require.NoError(t, err)
	_, err = c.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String("other")})
	require.NoError(t, err)

	mem.TestingSetDiskUsage(usage(1 << 30))
	require.Equal(t, "ok\n", env.waitHealth(http.StatusOK))
	require.NoError(t, put())
	_, metrics = env.get("/metrics")
	require.True(t, strings.Contains(metrics, "kvstream_storage_disk_full 0"))
}
