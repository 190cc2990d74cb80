package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"
)

func apiCode(t *testing.T, err error) string {
	t.Helper()
	var ae smithy.APIError
	require.True(t, errors.As(err, &ae), "not an API error: %v", err)
	return ae.ErrorCode()
}

func TestSigV4(t *testing.T) {
	env := newEnv(t, Config{AccessKey: testAccessKey, SecretKey: testSecretKey}, nil)
	ctx := context.Background()
	signed := func(ak, sk string) *kinesis.Client {
		return env.client(func(o *kinesis.Options) {
			o.Credentials = credentials.NewStaticCredentialsProvider(ak, sk, "")
		})
	}

	// The right credentials, in the server's region only.
	_, err := signed(testAccessKey, testSecretKey).CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("a"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	_, err = signed(testAccessKey, testSecretKey).ListStreams(ctx, &kinesis.ListStreamsInput{}, func(o *kinesis.Options) { o.Region = "ap-south-1" })
	require.Equal(t, errInvalidSignature, apiCode(t, err))
	require.ErrorContains(t, err, "Credential should be scoped to a valid region, not 'ap-south-1'.")
	_, err = signed(testAccessKey, testSecretKey).PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("a"), PartitionKey: aws.String("k"), Data: []byte("signed")})
	require.NoError(t, err)

	// Wrong secret, unknown key.
	_, err = signed(testAccessKey, "not-the-secret").ListStreams(ctx, &kinesis.ListStreamsInput{})
	require.Equal(t, errInvalidSignature, apiCode(t, err))
	_, err = signed("AKIAUNKNOWN", testSecretKey).ListStreams(ctx, &kinesis.ListStreamsInput{})
	require.Equal(t, errUnrecognizedClient, apiCode(t, err))

	// No Authorization header at all.
	code, h, body := env.postUnsigned("ListStreams", contentTypeJSON, []byte(`{}`))
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, errMissingAuthToken, h.Get("X-Amzn-ErrorType"))
	require.Equal(t, "Missing Authentication Token", jsonErr(t, body).Message)

	// Hand-signed requests: a tampered body, a stale date, missing parts.
	sign := func(body string, at time.Time) *http.Request {
		req, err := http.NewRequest(http.MethodPost, env.url+"/", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-Amz-Target", targetPrefix+"ListStreams")
		req.Header.Set("Content-Type", contentTypeJSON)
		sum := sha256.Sum256([]byte(body))
		require.NoError(t, v4.NewSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey},
			req, hex.EncodeToString(sum[:]), "kinesis", "us-east-1", at))
		return req
	}
	do := func(req *http.Request) (int, string, string) {
		resp, err := env.hs.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		e := jsonErr(t, append([]byte(nil), b.Bytes()...))
		return resp.StatusCode, e.Type, e.Message
	}
	req := sign(`{}`, time.Now())
	resp, err := env.hs.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	req = sign(`{}`, time.Now())
	req.Body = io.NopCloser(strings.NewReader(`{ }`))
	req.ContentLength = 3
	_, typ, _ := do(req)
	require.Equal(t, errInvalidSignature, typ, "the body is covered by the signature")

	_, typ, msg := do(sign(`{}`, time.Now().Add(-20*time.Minute)))
	require.Equal(t, errInvalidSignature, typ)
	require.Contains(t, msg, "Signature expired:")

	req = sign(`{}`, time.Now())
	req.Header.Set("X-Amz-Target", targetPrefix+"DeleteStream") // a signed header changed
	_, typ, _ = do(req)
	require.Equal(t, errInvalidSignature, typ)

	req = sign(`{}`, time.Now())
	req.Header.Set("Authorization", strings.Split(req.Header.Get("Authorization"), ", Signature=")[0])
	_, typ, msg = do(req)
	require.Equal(t, errIncompleteSignature, typ)
	require.Contains(t, msg, "Authorization header requires 'Signature' parameter.")

	req = sign(`{}`, time.Now())
	req.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
	_, typ, _ = do(req)
	require.Equal(t, errIncompleteSignature, typ)

	// Health and metrics need no signature.
	hr, err := env.hs.Client().Get(env.url + "/healthz")
	require.NoError(t, err)
	hr.Body.Close()
	require.Equal(t, http.StatusOK, hr.StatusCode)
}

func TestConfigValidation(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	_, err := New(env.db, Config{AccessKey: "only-the-key"})
	require.Error(t, err)
	_, err = New(env.db, Config{Account: "12"})
	require.Error(t, err)
	_, err = New(nil, Config{})
	require.Error(t, err)
}
