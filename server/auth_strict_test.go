package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/stretchr/testify/require"
)

// sdkSign signs req (with body) by aws-sdk-go-v2's signer for region.
func sdkSign(t *testing.T, req *http.Request, body []byte, region string) {
	t.Helper()
	sum := sha256.Sum256(body)
	require.NoError(t, v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey},
		req, hex.EncodeToString(sum[:]), "kinesis", region, time.Now()))
}

// signOver signs req over exactly the headers named (lower case, in
// order), the way a client that picks its own header set (the JavaScript
// SDK v3 over HTTP/2 signs :authority) does, using the server's canonical
// request; TestSigV4 checks that canonical form against the SDK's signer.
func signOver(req *http.Request, body []byte, headers ...string) {
	now := time.Now().UTC()
	date := now.Format(amzDateFormat)
	req.Header.Set("X-Amz-Date", date)
	list := strings.Join(headers, ";")
	canon := canonicalRequest(req, headers, list)
	sum := sha256.Sum256(body)
	h := sha256.Sum256(append(canon, hex.EncodeToString(sum[:])...))
	scope := date[:8] + "/us-east-1/kinesis/aws4_request"
	sts := sigAlgorithm + "\n" + date + "\n" + scope + "\n" + hex.EncodeToString(h[:])
	mac := hmac.New(sha256.New, newVerifier(testAccessKey, testSecretKey, "us-east-1").signingKey(date[:8]))
	mac.Write([]byte(sts))
	req.Header.Set("Authorization", sigAlgorithm+" Credential="+testAccessKey+"/"+scope+", SignedHeaders="+list+", Signature="+hex.EncodeToString(mac.Sum(nil)))
}

// TestSigV4AsAWSChecksIt covers the rules past the signature itself:
// every x-amz-* header signed, host or :authority signed (HTTP/2 clients
// sign :authority), the payload hash header, and no body read before the
// headers check out.
func TestSigV4AsAWSChecksIt(t *testing.T) {
	env := newEnv(t, Config{AccessKey: testAccessKey, SecretKey: testSecretKey}, nil)
	body := []byte(`{}`)
	newReq := func() *http.Request {
		req, err := http.NewRequest(http.MethodPost, env.url+"/", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", contentTypeJSON)
		req.Header.Set("X-Amz-Target", targetPrefix+"ListStreams")
		return req
	}
	do := func(c *http.Client, req *http.Request) (int, errorBody) {
		t.Helper()
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK {
			return resp.StatusCode, errorBody{}
		}
		return resp.StatusCode, jsonErr(t, b)
	}
	c := env.hs.Client()

	// X-Amz-Target added after signing: the signature over the other
	// headers is still right, but an x-amz-* header is unsigned.
	req := newReq()
	req.Header.Del("X-Amz-Target")
	sdkSign(t, req, body, "us-east-1")
	req.Header.Set("X-Amz-Target", targetPrefix+"DeleteStream")
	code, e := do(c, req)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, errIncompleteSignature, e.Type)
	require.Contains(t, e.Message, "There were headers present in the request which were not signed: x-amz-target")

	// Signed over :authority instead of host, over h2c as Node.js does.
	h2c := &http.Client{Transport: &http.Transport{Protocols: func() *http.Protocols {
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		return p
	}()}}
	req = newReq()
	signOver(req, body, ":authority", "content-type", "x-amz-date", "x-amz-target")
	code, e = do(h2c, req)
	require.Equal(t, http.StatusOK, code, "%+v", e)
	req = newReq()
	signOver(req, body, ":authority", "content-type", "x-amz-date", "x-amz-target")
	req.Host = "elsewhere:1" // the signed authority no longer matches
	code, e = do(h2c, req)
	require.Equal(t, errInvalidSignature, e.Type, code)

	// Neither host nor :authority signed.
	req = newReq()
	signOver(req, body, "content-type", "x-amz-date", "x-amz-target")
	_, e = do(c, req)
	require.Equal(t, errIncompleteSignature, e.Type)
	require.Contains(t, e.Message, "'Host' or ':authority' must be a 'SignedHeader'")

	// X-Amz-Content-Sha256: checked before the body, and the body
	// against it as it streams.
	req = newReq()
	sum := sha256.Sum256(body)
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	sdkSign(t, req, body, "us-east-1")
	code, e = do(c, req)
	require.Equal(t, http.StatusOK, code, "%+v", e)
	other := []byte(`{"Limit":1}`)
	req = newReq()
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	sdkSign(t, req, body, "us-east-1")
	req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(other)), int64(len(other))
	req.Header.Set("Content-Length", "11")
	_, e = do(c, req)
	require.Equal(t, errInvalidSignature, e.Type)
}

// TestSigV4HeadersCheckedBeforeBody checks a request whose headers fail
// is answered without its body being read: a client declaring 7 MiB and
// sending nothing gets its answer at once.
func TestSigV4HeadersCheckedBeforeBody(t *testing.T) {
	env := newEnv(t, Config{AccessKey: testAccessKey, SecretKey: testSecretKey}, nil)
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest(http.MethodPost, env.url+"/", pr)
	require.NoError(t, err)
	req.ContentLength = DefaultMaxBodyBytes
	req.Header.Set("X-Amz-Target", targetPrefix+"PutRecords")
	req.Header.Set("Content-Type", contentTypeJSON)
	req.Header.Set("Authorization", sigAlgorithm+" Credential=AKIAWRONG/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=00")
	req.Header.Set("X-Amz-Date", time.Now().UTC().Format(amzDateFormat))
	resp, err := env.hs.Client().Do(req) // returns once the response head arrives
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, errUnrecognizedClient, jsonErr(t, b).Type)
	require.Zero(t, env.srv.budget.inUse.Load())
}

// TestMetricsNeedSignatureWhenRemote checks /metrics on a non-loopback
// address with SigV4 on takes only signed requests, and stays open on
// loopback.
func TestMetricsNeedSignatureWhenRemote(t *testing.T) {
	env := newEnv(t, Config{AccessKey: testAccessKey, SecretKey: testSecretKey}, nil)
	srv, err := New(env.db, Config{Addr: "0.0.0.0:4567", AccessKey: testAccessKey, SecretKey: testSecretKey})
	require.NoError(t, err)
	get := func(s *Server, signed bool) int {
		req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:4567/metrics", nil)
		require.NoError(t, err)
		if signed {
			sdkSign(t, req, nil, "us-east-1")
		}
		rec := newRecorder()
		s.ServeHTTP(rec, req)
		return rec.Code
	}
	require.Equal(t, http.StatusForbidden, get(srv, false))
	require.Equal(t, http.StatusOK, get(srv, true))
	require.Equal(t, http.StatusOK, get(env.srv, false), "loopback")
}

// FuzzParseAuthorization feeds arbitrary Authorization and X-Amz-Date
// headers to the SigV4 parser and the header checks: never a panic, and a
// parsed header has its parts.
func FuzzParseAuthorization(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKIAKVSTREAMTEST0001/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc", "20260101T000000Z")
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request,SignedHeaders=;;,Signature=", "2026")
	f.Add("Basic x", "")
	v := newVerifier(testAccessKey, testSecretKey, "us-east-1")
	v.now = func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
	f.Fuzz(func(t *testing.T, authz, date string) {
		a, aerr := parseAuthorization(authz)
		if aerr == nil && (a.credential == "" || a.signature == "" || a.signedHeaders == "" || a.accessKey == "") {
			t.Fatalf("parsed %q into %+v", authz, a)
		}
		if aerr != nil && len(aerr.Msg) > 4*maxEchoed+512 {
			t.Fatalf("message of %d bytes for %q", len(aerr.Msg), authz)
		}
		req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header["Authorization"] = []string{authz}
		req.Header["X-Amz-Date"] = []string{date}
		p, aerr := v.begin(req)
		if aerr == nil {
			if p.check(emptySHA256) == nil && !strings.Contains(authz, "Signature=") {
				t.Fatalf("verified %q", authz)
			}
		}
	})
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
