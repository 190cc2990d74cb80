package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// TestTrusted: with SigV4 verification on, a request with a signature
// that does not verify is refused by the Server and served by its Trusted
// handler (for a Unix socket, whose file mode is the access control).
// A signature must still be present, as without verification.
func TestTrusted(t *testing.T) {
	env := newEnv(t, Config{AccessKey: testAccessKey, SecretKey: testSecretKey}, nil)
	code, h, _ := env.postWith("ListStreams", contentTypeJSON, []byte(`{}`), fakeSign)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, errUnrecognizedClient, h.Get("X-Amzn-ErrorType"))

	ts := httptest.NewServer(env.srv.Trusted())
	defer ts.Close()
	trusted := kinesis.New(kinesis.Options{BaseEndpoint: aws.String(ts.URL), Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDOTHER", "wrong", ""), Retryer: aws.NopRetryer{}})
	ctx := context.Background()
	_, err := trusted.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("s"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	_, err = trusted.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("s"), PartitionKey: aws.String("k"), Data: []byte("x")})
	require.NoError(t, err, "any signature, even a wrong one, is accepted")
	out, err := trusted.ListStreams(ctx, &kinesis.ListStreamsInput{})
	require.NoError(t, err)
	require.Equal(t, []string{"s"}, out.StreamNames)
}

// TestServeAttach: Serve calls Config.Attach with the open DB and the
// Server once the directory is open, and its detach before the DB closes.
func TestServeAttach(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	attached := make(chan *Server, 1)
	detached := make(chan error, 1)
	var db *engine.DB
	cfg := Config{Addr: "127.0.0.1:0", DataDir: dir, Engine: &engine.Options{NoSync: true}, Logger: slog.New(slog.DiscardHandler),
		Attach: func(d *engine.DB, s *Server) func() {
			db = d
			attached <- s
			return func() { detached <- d.Health() }
		}}
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, cfg, func(addr string) {
			_, _, err := net.SplitHostPort(addr)
			require.NoError(t, err)
			cancel()
		})
	}()
	s := <-attached
	require.NotNil(t, s)
	require.NoError(t, <-done)
	require.NoError(t, <-detached, "detach runs while the DB is still open")
	require.ErrorIs(t, db.Health(), engine.ErrClosed, "and the DB closes after it")
}
