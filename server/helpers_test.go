package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/internal/sdkbody"
	"github.com/stretchr/testify/require"
)

// testEnv is a Server over a fresh DB behind an httptest server on
// 127.0.0.1 (HTTP/1.1 and h2c). Everything stops when the test ends.
type testEnv struct {
	t   testing.TB
	db  *engine.DB
	srv *Server
	hs  *httptest.Server
	url string
	// clock is the engine's clock; tests move it with advance.
	off atomic.Int64
}

// newEnv starts a test server. opts may be nil.
func newEnv(t testing.TB, cfg Config, opts *engine.Options) *testEnv {
	t.Helper()
	return newEnvSync(t, cfg, opts, false)
}

// newEnvSync is newEnv with the engine's durability chosen by sync (newEnv
// turns fsync off to keep tests fast).
func newEnvSync(t testing.TB, cfg Config, opts *engine.Options, sync bool) *testEnv {
	t.Helper()
	env := &testEnv{t: t}
	o := opts.Clone()
	o.NoSync = !sync
	if o.Clock == nil {
		o.Clock = func() time.Time { return time.Now().Add(time.Duration(env.off.Load())) }
	}
	db, err := engine.Open(t.TempDir(), o)
	require.NoError(t, err)
	env.db = db
	srv, err := New(db, cfg)
	require.NoError(t, err)
	env.srv = srv
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.Protocols = Protocols()
	hs.Start()
	env.hs = hs
	env.url = hs.URL
	t.Cleanup(func() {
		hs.Close()
		require.NoError(t, db.Close())
	})
	return env
}

// advance moves the engine's clock forward.
func (e *testEnv) advance(d time.Duration) { e.off.Add(int64(d)) }

// client returns an aws-sdk-go-v2 Kinesis client for the server with
// static credentials and no retries, so error tests see the first answer.
// Its request bodies go to net/http as in-memory readers (internal/sdkbody):
// without retries, the SDK's request-body race (see efoClient) would fail
// a call now and then with "use of closed network connection".
func (e *testEnv) client(optFns ...func(*kinesis.Options)) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		BaseEndpoint: aws.String(e.url),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		Retryer:      aws.NopRetryer{},
		HTTPClient:   &http.Client{Transport: sdkbody.Transport(nil)},
	}, optFns...)
}

// plainClient is client without the request-body workaround: the SDK's
// own transport, as users run it.
func (e *testEnv) plainClient(optFns ...func(*kinesis.Options)) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		BaseEndpoint: aws.String(e.url),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		Retryer:      aws.NopRetryer{},
	}, optFns...)
}

// testCreds are the credentials test clients sign with.
var testCreds = aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}

// signTest signs req (whose body is body) with SigV4 as an SDK would, with
// testCreds: the server answers unsigned calls with
// MissingAuthenticationTokenException, as AWS does.
func signTest(t testing.TB, req *http.Request, body []byte) {
	t.Helper()
	sum := sha256.Sum256(body)
	require.NoError(t, v4.NewSigner().SignHTTP(context.Background(), testCreds, req, hex.EncodeToString(sum[:]), "kinesis", "us-east-1", time.Now()))
}

// fakeSign gives req a well-formed SigV4 Authorization header whose
// signature is not computed: enough for a server without configured keys,
// and cheap for benchmarks and fuzzing.
func fakeSign(req *http.Request) {
	req.Header.Set("X-Amz-Date", "20250101T000000Z")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDTEST/20250101/us-east-1/kinesis/aws4_request, "+
		"SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00")
}

// post sends a signed raw API request and returns status, headers and body.
func (e *testEnv) post(op, contentType string, body []byte) (int, http.Header, []byte) {
	e.t.Helper()
	return e.postWith(op, contentType, body, func(req *http.Request) { signTest(e.t, req, body) })
}

// postUnsigned sends a raw API request without a signature.
func (e *testEnv) postUnsigned(op, contentType string, body []byte) (int, http.Header, []byte) {
	e.t.Helper()
	return e.postWith(op, contentType, body, func(*http.Request) {})
}

// postWith sends a raw API request that prepare finishes.
func (e *testEnv) postWith(op, contentType string, body []byte, prepare func(*http.Request)) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, e.url+"/", bytes.NewReader(body))
	require.NoError(e.t, err)
	if op != "" {
		req.Header.Set("X-Amz-Target", targetPrefix+op)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	prepare(req)
	resp, err := e.hs.Client().Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp.StatusCode, resp.Header, b
}

// postJSON sends a JSON 1.1 request.
func (e *testEnv) postJSON(op, body string) (int, http.Header, []byte) {
	return e.post(op, contentTypeJSON, []byte(body))
}
