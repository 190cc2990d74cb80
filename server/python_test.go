package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Tests with the Python clients present on these machines: boto3 (the
// tutorial flow) and the AWS CLI. They skip only if the tools are missing.

const (
	testAccessKey = "AKIAKVSTREAMTEST0001"
	testSecretKey = "kvstream/test/secret/key/0123456789abcdef"
)

// Scripts poll while streams and consumers are CREATING, on their own
// (wall) clock. A stepped server's fake clock moves by scriptStep as each
// request comes in, and scriptCreateDelay lies between one and two
// steps: a script sees CREATING on exactly the first call after the
// create, however slow the machine.
const (
	scriptStep        = 100 * time.Millisecond
	scriptCreateDelay = 150 * time.Millisecond
)

// steppedEnv is clockedEnv served through a handler that advances the
// clock by scriptStep before each request. Its subscriptions end before
// its listener closes.
func steppedEnv(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	env, advance := clockedEnv(t, cfg)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		advance(scriptStep)
		env.srv.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	t.Cleanup(env.srv.Close) // runs before hs.Close, which waits for running requests
	env.url = hs.URL
	return env
}

// awsEnv returns an environment with the given credentials and no shared
// config or credentials files, so the host's AWS setup cannot interfere.
func awsEnv(t *testing.T, accessKey, secretKey string) []string {
	dir := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"AWS_ACCESS_KEY_ID="+accessKey,
		"AWS_SECRET_ACCESS_KEY="+secretKey,
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE="+filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PAGER=",
	)
}

func requireBoto3(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	if err := exec.Command("python3", "-c", "import boto3").Run(); err != nil {
		t.Skip("boto3 is not installed")
	}
}

// TestBoto3Tutorial runs testdata/tutorial.py with boto3 against a server
// that verifies SigV4 and keeps new streams CREATING for a moment, so the
// script's wait loop and botocore's signatures are both exercised.
func TestBoto3Tutorial(t *testing.T) {
	requireBoto3(t)
	env := steppedEnv(t, Config{AccessKey: testAccessKey, SecretKey: testSecretKey, CreateDelay: scriptCreateDelay})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for run := range 2 { // the second run finds "myStream" already there
		cmd := exec.CommandContext(ctx, "python3", "testdata/tutorial.py", env.url, "30")
		cmd.Env = awsEnv(t, testAccessKey, testSecretKey)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "run %d:\n%s", run, out)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		require.Equal(t, "OK 30", lines[len(lines)-1], "%s", out)
		if run == 0 {
			require.Contains(t, string(out), "status CREATING")
		} else {
			require.Contains(t, string(out), "myStream already exists")
		}
	}
	d, err := env.db.DescribeStream("myStream")
	require.NoError(t, err)
	require.Equal(t, int64(60), d.Records)
}

// TestAWSCLI drives the server with `aws kinesis …` (with SigV4
// verification on) and checks a wrong secret key is refused.
func TestAWSCLI(t *testing.T) {
	if _, err := exec.LookPath("aws"); err != nil {
		t.Skip("the AWS CLI is not installed")
	}
	env := newEnv(t, Config{AccessKey: testAccessKey, SecretKey: testSecretKey}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := func(secret string, args ...string) (map[string]any, string, error) {
		cmd := exec.CommandContext(ctx, "aws", append([]string{"kinesis", "--endpoint-url", env.url, "--output", "json"}, args...)...)
		cmd.Env = awsEnv(t, testAccessKey, secret)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var m map[string]any
		if err == nil && len(strings.TrimSpace(string(out))) > 0 {
			require.NoError(t, json.Unmarshal(out, &m), "%s", out)
		}
		return m, stderr.String(), err
	}
	ok := func(args ...string) map[string]any {
		m, stderr, err := run(testSecretKey, args...)
		require.NoError(t, err, "aws kinesis %v: %s", args, stderr)
		return m
	}

	ok("create-stream", "--stream-name", "cli", "--shard-count", "2")
	sum := ok("describe-stream-summary", "--stream-name", "cli")["StreamDescriptionSummary"].(map[string]any)
	require.Equal(t, "ACTIVE", sum["StreamStatus"])
	require.EqualValues(t, 2, sum["OpenShardCount"])

	put := ok("put-record", "--stream-name", "cli", "--partition-key", "a", "--data", "hello from the cli")
	require.Equal(t, "shardId-000000000000", put["ShardId"])
	streams := ok("list-streams")
	require.Equal(t, []any{"cli"}, streams["StreamNames"])
	shards := ok("list-shards", "--stream-name", "cli")["Shards"].([]any)
	require.Len(t, shards, 2)
	it := ok("get-shard-iterator", "--stream-name", "cli", "--shard-id", "shardId-000000000000", "--shard-iterator-type", "TRIM_HORIZON")
	recs := ok("get-records", "--shard-iterator", it["ShardIterator"].(string))["Records"].([]any)
	require.Len(t, recs, 1)
	rec := recs[0].(map[string]any)
	data, err := base64.StdEncoding.DecodeString(rec["Data"].(string))
	require.NoError(t, err)
	require.Equal(t, "hello from the cli", string(data))
	require.Equal(t, put["SequenceNumber"], rec["SequenceNumber"])

	ok("add-tags-to-stream", "--stream-name", "cli", "--tags", "team=data")
	tags := ok("list-tags-for-stream", "--stream-name", "cli")["Tags"].([]any)
	require.Equal(t, "team", tags[0].(map[string]any)["Key"])

	// Typed errors reach the CLI with Kinesis' names.
	_, stderr, err := run(testSecretKey, "describe-stream", "--stream-name", "missing")
	require.Error(t, err)
	require.Contains(t, stderr, "ResourceNotFoundException")
	require.Contains(t, stderr, "Stream missing under account 000000000000 not found.")

	// A wrong secret key: the signature does not verify.
	_, stderr, err = run("wrong-secret", "list-streams")
	require.Error(t, err)
	require.Contains(t, stderr, "InvalidSignatureException")

	ok("delete-stream", "--stream-name", "cli")
	require.Empty(t, ok("list-streams")["StreamNames"])
}
