package awsclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseEndpoint(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:4567", "https://kinesis.us-east-1.amazonaws.com", "http://localhost:1"} {
		_, err := ParseEndpoint(ok)
		require.NoError(t, err, ok)
	}
	for _, bad := range []string{"", "127.0.0.1:4567", "ftp://x", "http://", "::"} {
		_, err := ParseEndpoint(bad)
		require.True(t, errors.Is(err, ErrEndpoint), bad)
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{"localhost": true, "127.0.0.1": true, "127.8.9.1": true, "::1": true,
		"": false, "0.0.0.0": false, "10.0.0.1": false, "example.com": false} {
		require.Equal(t, want, IsLoopback(host), host)
	}
}

// A loopback endpoint needs no AWS configuration: the environment's keys
// if set, placeholders otherwise, and a region even when none is set.
func TestConfigLoopback(t *testing.T) {
	ctx := context.Background()
	for _, k := range []string{"AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	cfg, err := Config(ctx, "http://127.0.0.1:4567", "")
	require.NoError(t, err)
	require.Equal(t, DefaultRegion, cfg.Region)
	creds, err := cfg.Credentials.Retrieve(ctx)
	require.NoError(t, err)
	require.Equal(t, "kvstream", creds.AccessKeyID)

	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_DEFAULT_REGION", "eu-west-1")
	cfg, err = Config(ctx, "http://localhost:4567", "")
	require.NoError(t, err)
	require.Equal(t, "eu-west-1", cfg.Region)
	creds, err = cfg.Credentials.Retrieve(ctx)
	require.NoError(t, err)
	require.Equal(t, "AKIDEXAMPLE", creds.AccessKeyID)
	require.Equal(t, "secret", creds.SecretAccessKey)

	cfg, err = Config(ctx, "http://localhost:4567", "ap-south-1")
	require.NoError(t, err)
	require.Equal(t, "ap-south-1", cfg.Region, "an explicit region wins")

	_, err = Config(ctx, "localhost:4567", "")
	require.ErrorIs(t, err, ErrEndpoint)
}

// Elsewhere the default chain is used, and the region falls back in order.
func TestConfigChain(t *testing.T) {
	ctx := context.Background()
	for _, k := range []string{"AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDCHAIN")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	cfg, err := Config(ctx, "https://kinesis.example.com", "")
	require.NoError(t, err)
	require.Equal(t, DefaultRegion, cfg.Region)
	creds, err := cfg.Credentials.Retrieve(ctx)
	require.NoError(t, err)
	require.Equal(t, "AKIDCHAIN", creds.AccessKeyID)
	t.Setenv("AWS_REGION", "eu-central-1")
	cfg, err = Config(ctx, "", "")
	require.NoError(t, err)
	require.Equal(t, "eu-central-1", cfg.Region)
}

// Config's HTTP client, on both paths, hands net/http request bodies in
// memory (internal/sdkbody): a body of unknown length reaches the server
// with its length (not chunked), read and closed before the request is
// sent, so the SDK's request-body race cannot cut the connection.
func TestConfigBuffersBodies(t *testing.T) {
	ctx := context.Background()
	for _, k := range []string{"AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN", "AWS_CA_BUNDLE"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDBODY")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.ContentLength != int64(len(b)) || len(r.TransferEncoding) > 0 {
			http.Error(w, "streamed body", http.StatusBadRequest)
			return
		}
		_, _ = w.Write(b)
	}))
	defer hs.Close()
	for _, endpoint := range []string{hs.URL, "https://kinesis.example.com"} {
		cfg, err := Config(ctx, endpoint, "")
		require.NoError(t, err, endpoint)
		body := &closeTracker{Reader: strings.NewReader(`{"StreamName":"s"}`)}
		req, err := http.NewRequest(http.MethodPost, hs.URL, body)
		require.NoError(t, err)
		req.ContentLength = -1 // unknown, as a streamed SDK body may be
		resp, err := cfg.HTTPClient.Do(req)
		require.NoError(t, err, endpoint)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", endpoint, got)
		require.Equal(t, `{"StreamName":"s"}`, string(got))
		require.True(t, body.closed, "%s: the caller's body is read and closed before sending", endpoint)
	}
}

type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }
