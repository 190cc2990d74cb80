package kvstreamtest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/kvstream/kvstream/kvstreamtest"
	"github.com/stretchr/testify/require"
)

// NewServer's endpoint serves a subprocess: boto3 puts a record the Go
// test reads back. Skipped if python3 or boto3 is missing, and with
// -short (starting boto3 takes seconds).
func TestNewServerWithBoto3(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no subprocess")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	if err := exec.Command("python3", "-c", "import boto3").Run(); err != nil {
		t.Skip("boto3 is not installed")
	}
	noLeaks(t)
	endpoint := kvstreamtest.NewServer(t, kvstreamtest.WithInMemory())
	kc := endpointClient(t, endpoint, "us-east-1")
	createStream(t, kc, "s", 1)

	script := `
import sys, boto3
kc = boto3.client("kinesis", endpoint_url=sys.argv[1])
out = kc.put_record(StreamName="s", PartitionKey="py", Data=b"from boto3")
print(out["ShardId"])
`
	c, cancel := context.WithTimeout(ctx, time.Minute) // a guard against a hang, not a timing
	defer cancel()
	cmd := exec.CommandContext(c, "python3", "-c", script, endpoint)
	cmd.Env = awsEnv(t)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "shardId-000000000000", strings.TrimSpace(string(out)))

	it := iterator(t, kc, "s", "shardId-000000000000", "TRIM_HORIZON")
	require.Equal(t, []string{"from boto3"}, readAll(t, kc, it))
	_, err = kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("s")})
	require.NoError(t, err)
}

// awsEnv is the environment with test credentials and none of the host's
// AWS configuration.
func awsEnv(t *testing.T) []string {
	dir := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=secret",
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_CONFIG_FILE="+filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
	)
}
