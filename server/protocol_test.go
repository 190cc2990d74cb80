package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"
)

// Protocol edges, answered as AWS answers them (texts and bytes recorded
// from AWS in kinesalite's conformance tests).

// rawReq is one hand-made HTTP request.
type rawReq struct {
	method, path string
	headers      map[string]string
	body         string
	sign         bool // SigV4-sign it (after the headers are set)
}

type rawResp struct {
	code int
	h    http.Header
	body []byte
}

func (e *testEnv) raw(r rawReq) rawResp {
	e.t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.path == "" {
		r.path = "/"
	}
	var body io.Reader = http.NoBody
	if r.body != "" {
		body = bytes.NewReader([]byte(r.body))
	}
	req, err := http.NewRequestWithContext(context.Background(), r.method, e.url+r.path, body)
	require.NoError(e.t, err)
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	if r.sign {
		signTest(e.t, req, []byte(r.body))
	}
	resp, err := e.hs.Client().Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return rawResp{code: resp.StatusCode, h: resp.Header, body: b}
}

var uuidRe = regexp.MustCompile(`^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$`)

// requireBody checks status, Content-Type (absent when contentType is ""),
// the exact body, Content-Length and the request id headers.
func requireBody(t *testing.T, r rawResp, code int, contentType, body string) {
	t.Helper()
	require.Equal(t, code, r.code, "%q", r.body)
	require.Equal(t, body, string(r.body))
	if contentType == "" {
		_, has := r.h["Content-Type"]
		require.False(t, has, "no Content-Type, got %q", r.h.Get("Content-Type"))
	} else {
		require.Equal(t, contentType, r.h.Get("Content-Type"))
	}
	require.Equal(t, strconv.Itoa(len(r.body)), r.h.Get("Content-Length"))
	require.Regexp(t, uuidRe, r.h.Get("X-Amzn-Requestid"))
	id2, err := base64.StdEncoding.DecodeString(r.h.Get("X-Amz-Id-2"))
	require.NoError(t, err)
	require.Len(t, id2, 72)
}

const (
	cborUnknown       = "\xbf\x66__type\x78\x19UnknownOperationException\xff"
	cborSerialization = "\xbf\x66__type\x76SerializationException\xff"
	xmlAccessDenied   = "<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized</Message>\n</AccessDeniedException>\n"
	jsonUnknown       = `{"__type":"UnknownOperationException"}`
	jsonSerialization = `{"__type":"SerializationException"}`
	listStreamsTarget = "Kinesis_20131202.ListStreams"
)

func TestProtocolBasic(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	for _, tc := range []struct {
		name     string
		req      rawReq
		code     int
		ct, body string
	}{
		{"POST without auth", rawReq{}, 400, contentTypeCBOR, cborUnknown},
		{"GET", rawReq{method: http.MethodGet, sign: true}, 403, "", xmlAccessDenied},
		{"GET without auth", rawReq{method: http.MethodGet}, 403, "", xmlAccessDenied},
		{"PUT", rawReq{method: http.MethodPut, sign: true}, 403, "", xmlAccessDenied},
		{"DELETE", rawReq{method: http.MethodDelete, sign: true}, 403, "", xmlAccessDenied},
		{"OPTIONS without Origin", rawReq{method: http.MethodOptions}, 403, "", xmlAccessDenied},
		{"POST without body", rawReq{sign: true}, 400, contentTypeCBOR, cborUnknown},
		{"body without Content-Type", rawReq{body: "{}", sign: true}, 403, "", xmlAccessDenied},
		{"x-amz-json-1.0", rawReq{headers: map[string]string{"Content-Type": "application/x-amz-json-1.0"}, sign: true}, 400, contentTypeCBOR, cborUnknown},
		{"random Content-Type", rawReq{headers: map[string]string{"Content-Type": "application/x-amz-json-1.1asdf"}, sign: true}, 400, contentTypeCBOR, cborUnknown},
		{"random target", rawReq{headers: map[string]string{"X-Amz-Target": "Whatever"}, sign: true}, 400, contentTypeCBOR, cborUnknown},
		{"empty action", rawReq{headers: map[string]string{"X-Amz-Target": "Kinesis_20131202."}, sign: true}, 400, contentTypeCBOR, cborUnknown},
		{"random action", rawReq{headers: map[string]string{"X-Amz-Target": "Kinesis_20131202.Whatever"}, sign: true}, 400, contentTypeCBOR, cborUnknown},
		{"random service and action", rawReq{headers: map[string]string{"X-Amz-Target": "Whatever.Whatever"}, sign: true}, 400, contentTypeCBOR, cborUnknown},
		{"incomplete action", rawReq{headers: map[string]string{"X-Amz-Target": "Kinesis_20131202.ListStream"}, sign: true}, 400, contentTypeCBOR, cborUnknown},
		{"no Content-Type", rawReq{headers: map[string]string{"X-Amz-Target": listStreamsTarget}, sign: true}, 400, contentTypeCBOR, cborSerialization},
		// A body in an unknown content type: what the target names decides.
		{"other service", rawReq{body: "{}", headers: map[string]string{"X-Amz-Target": "whatever.ListStreams"}, sign: true}, 403, "",
			"<UnrecognizedClientException>\n  <Message>No authorization strategy was found for service: whatever, operation: ListStreams</Message>\n</UnrecognizedClientException>\n"},
		{"unknown Kinesis op", rawReq{body: "{}", headers: map[string]string{"X-Amz-Target": "Kinesis_20131202.whatever"}, sign: true}, 500, "", "<InternalFailure/>\n"},
		{"known op", rawReq{body: "{}", headers: map[string]string{"X-Amz-Target": listStreamsTarget}, sign: true}, 404, "", "<UnknownOperationException/>\n"},
		{"known op unsigned", rawReq{body: "{}", headers: map[string]string{"X-Amz-Target": listStreamsTarget}}, 403, "",
			"<MissingAuthenticationTokenException>\n  <Message>Missing Authentication Token</Message>\n</MissingAuthenticationTokenException>\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireBody(t, env.raw(tc.req), tc.code, tc.ct, tc.body)
		})
	}
}

func TestProtocolCORS(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	// A request with an Origin gets the CORS headers and the usual answer.
	r := env.raw(rawReq{headers: map[string]string{"Origin": "whatever"}, sign: true})
	requireBody(t, r, 400, contentTypeCBOR, cborUnknown)
	require.Equal(t, "*", r.h.Get("Access-Control-Allow-Origin"))
	require.Equal(t, corsExposeHeaders, r.h.Get("Access-Control-Expose-Headers"))

	// Preflights, signed or not.
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    map[string]string
	}{
		{"origin", map[string]string{"Origin": "whatever"}, nil},
		{"headers", map[string]string{"Origin": "whatever", "Access-Control-Request-Headers": "a, b, c"},
			map[string]string{"Access-Control-Allow-Headers": "a, b, c"}},
		{"headers and method", map[string]string{"Origin": "whatever", "Access-Control-Request-Headers": "a, b, c", "Access-Control-Request-Method": "d"},
			map[string]string{"Access-Control-Allow-Headers": "a, b, c", "Access-Control-Allow-Methods": "d"}},
	} {
		for _, sign := range []bool{false, true} {
			t.Run(tc.name+"/signed="+strconv.FormatBool(sign), func(t *testing.T) {
				r := env.raw(rawReq{method: http.MethodOptions, headers: tc.headers, sign: sign})
				require.Equal(t, http.StatusOK, r.code)
				require.Empty(t, r.body)
				require.Equal(t, "0", r.h.Get("Content-Length"))
				_, hasCT := r.h["Content-Type"]
				require.False(t, hasCT)
				_, hasID2 := r.h["X-Amz-Id-2"]
				require.False(t, hasID2, "no x-amz-id-2 on a preflight")
				require.Regexp(t, uuidRe, r.h.Get("X-Amzn-Requestid"))
				require.Equal(t, "*", r.h.Get("Access-Control-Allow-Origin"))
				require.Equal(t, "172800", r.h.Get("Access-Control-Max-Age"))
				for k, v := range tc.want {
					require.Equal(t, v, r.h.Get(k))
				}
			})
		}
	}
}

func TestProtocolJSON(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	const incomplete = "Authorization header requires 'Credential' parameter. " +
		"Authorization header requires 'Signature' parameter. " +
		"Authorization header requires 'SignedHeaders' parameter. " +
		"Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. " +
		"Authorization=X"
	const incompleteQuery = "AWS query-string parameters must include 'X-Amz-Algorithm'. " +
		"AWS query-string parameters must include 'X-Amz-Credential'. " +
		"AWS query-string parameters must include 'X-Amz-Signature'. " +
		"AWS query-string parameters must include 'X-Amz-SignedHeaders'. " +
		"AWS query-string parameters must include 'X-Amz-Date'. " +
		"Re-examine the query-string parameters."
	jsonErrBody := func(typ, msg string) string { return `{"__type":"` + typ + `","message":` + strconv.Quote(msg) + `}` }
	json11 := func(extra map[string]string) map[string]string {
		h := map[string]string{"Content-Type": contentTypeJSON, "X-Amz-Target": listStreamsTarget}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	for _, tc := range []struct {
		name     string
		req      rawReq
		code     int
		ct, body string
	}{
		{"no target", rawReq{headers: map[string]string{"Content-Type": contentTypeJSON}, sign: true}, 400, contentTypeJSON, jsonUnknown},
		{"no target no auth", rawReq{headers: map[string]string{"Content-Type": contentTypeJSON}}, 400, contentTypeJSON, jsonUnknown},
		{"no target application/json", rawReq{headers: map[string]string{"Content-Type": "application/json"}, sign: true}, 400, contentTypeCBOR, cborUnknown},
		{"target application/json", rawReq{headers: map[string]string{"Content-Type": "application/json", "X-Amz-Target": listStreamsTarget}, sign: true},
			400, contentTypeCBOR, cborSerialization},
		{"no body", rawReq{headers: json11(nil), sign: true}, 400, contentTypeJSON, jsonSerialization},
		{"no body no auth", rawReq{headers: json11(nil)}, 400, contentTypeJSON, jsonSerialization},
		{"not JSON", rawReq{headers: json11(nil), body: "hello"}, 400, contentTypeJSON, jsonSerialization},
		{"not an object", rawReq{headers: json11(nil), body: "[1]", sign: true}, 400, contentTypeJSON, jsonSerialization},
		{"application/json", rawReq{headers: map[string]string{"Content-Type": "application/json", "X-Amz-Target": listStreamsTarget}, body: "{}"},
			404, "application/json", `{"Output":{"__type":"com.amazon.coral.service#UnknownOperationException"},"Version":"1.0"}`},
		{"application/json not JSON", rawReq{headers: map[string]string{"Content-Type": "application/json", "X-Amz-Target": listStreamsTarget}, body: "hello"},
			200, "application/json", `{"Output":{"__type":"com.amazon.coral.service#SerializationException","Message":null},"Version":"1.0"}`},
		{"application/json with spaces", rawReq{headers: map[string]string{"Content-Type": "     application/json     ;", "X-Amz-Target": listStreamsTarget}, body: "hello"},
			200, "application/json", `{"Output":{"__type":"com.amazon.coral.service#SerializationException","Message":null},"Version":"1.0"}`},
		{"no auth", rawReq{headers: json11(nil), body: "{}"}, 400, contentTypeJSON, jsonErrBody(errMissingAuthToken, "Missing Authentication Token")},
		{"no auth, content type with spaces", rawReq{headers: json11(map[string]string{"Content-Type": "   application/x-amz-json-1.1   ;whatever"}), body: "{}"},
			400, contentTypeJSON, jsonErrBody(errMissingAuthToken, "Missing Authentication Token")},
		{"invalid auth", rawReq{headers: json11(map[string]string{"Authorization": "X"}), body: "{}"}, 400, contentTypeJSON, jsonErrBody(errIncompleteSignature, incomplete)},
		{"invalid auth and incomplete query", rawReq{path: "/?X-Amz-Algorith", headers: json11(map[string]string{"Authorization": "X"}), body: "{}"},
			400, contentTypeJSON, jsonErrBody(errIncompleteSignature, incomplete)},
		{"query without algorithm", rawReq{path: "/?X-Amz-Credential=a&X-Amz-Signature=b&X-Amz-SignedHeaders=c&X-Amz-Date=d", headers: json11(nil), body: "{}"},
			400, contentTypeJSON, jsonErrBody(errMissingAuthToken, "Missing Authentication Token")},
		{"header and query", rawReq{path: "/?X-Amz-Algorithm", headers: json11(map[string]string{"Authorization": "X"}), body: "{}"},
			400, contentTypeJSON, jsonErrBody(errInvalidSignature, "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.")},
		{"spaces", rawReq{headers: json11(map[string]string{"Authorization": "AWS4- Signature=b Credential=a", "Date": "a"}), body: "{}"},
			400, contentTypeJSON, jsonErrBody(errIncompleteSignature, "Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4- Signature=b Credential=a")},
		{"comma", rawReq{headers: json11(map[string]string{"Authorization": "AWS4- Signature=b,Credential=a", "Date": "a"}), body: "{}"},
			400, contentTypeJSON, jsonErrBody(errIncompleteSignature, "Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4- Signature=b,Credential=a")},
		{"comma and space", rawReq{headers: json11(map[string]string{"Authorization": "AWS4- Signature=b, Credential=a", "Date": "a"}), body: "{}"},
			400, contentTypeJSON, jsonErrBody(errIncompleteSignature, "Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4- Signature=b, Credential=a")},
		{"empty algorithm query", rawReq{path: "/?X-Amz-Algorithm", headers: json11(nil), body: "{}"}, 400, contentTypeJSON, jsonErrBody(errIncompleteSignature, incompleteQuery)},
		{"query without signed headers", rawReq{path: "/?X-Amz-Algorithm=a&X-Amz-Credential=b&X-Amz-Signature=c&X-Amz-Date=d", headers: json11(nil), body: "{}"},
			400, contentTypeJSON, jsonErrBody(errIncompleteSignature, "AWS query-string parameters must include 'X-Amz-SignedHeaders'. Re-examine the query-string parameters.")},
		{"signed", rawReq{headers: json11(nil), body: "{}", sign: true}, 200, contentTypeJSON, `{"StreamNames":[],"HasMoreStreams":false,"StreamSummaries":[]}`},
		{"any signature without configured keys", rawReq{headers: json11(map[string]string{"Authorization": "AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=c", "X-Amz-Date": "x"}), body: "{}"},
			200, contentTypeJSON, `{"StreamNames":[],"HasMoreStreams":false,"StreamSummaries":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireBody(t, env.raw(tc.req), tc.code, tc.ct, tc.body)
		})
	}
}

// TestProtocolSDK checks what SDK users see: an unsigned call fails with
// MissingAuthenticationTokenException, and every response carries the
// request id headers.
func TestProtocolSDK(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	ctx := context.Background()
	anon := env.client(func(o *kinesis.Options) { o.Credentials = aws.AnonymousCredentials{} })
	_, err := anon.ListStreams(ctx, &kinesis.ListStreamsInput{})
	var ae smithy.APIError
	require.True(t, errors.As(err, &ae), "%v", err)
	require.Equal(t, errMissingAuthToken, ae.ErrorCode())
	require.Equal(t, "Missing Authentication Token", ae.ErrorMessage())
	var re *awshttp.ResponseError
	require.True(t, errors.As(err, &re))
	require.Equal(t, http.StatusBadRequest, re.HTTPStatusCode())

	var got http.Header
	kc := env.client(func(o *kinesis.Options) {
		o.HTTPClient = headerSpy{env.hs.Client(), &got}
	})
	_, err = kc.ListStreams(ctx, &kinesis.ListStreamsInput{})
	require.NoError(t, err)
	require.Regexp(t, uuidRe, got.Get("X-Amzn-Requestid"))
	require.NotEmpty(t, got.Get("X-Amz-Id-2"))

	// kvstream's own endpoints answer as before.
	for _, p := range []string{"/healthz", "/metrics"} {
		r := env.raw(rawReq{method: http.MethodGet, path: p})
		require.Equal(t, http.StatusOK, r.code, p)
	}
	r := env.raw(rawReq{method: http.MethodGet})
	requireBody(t, r, http.StatusForbidden, "", xmlAccessDenied)
}

// headerSpy keeps the headers of the last response.
type headerSpy struct {
	c *http.Client
	h *http.Header
}

func (s headerSpy) Do(r *http.Request) (*http.Response, error) {
	resp, err := s.c.Do(r)
	if err == nil {
		*s.h = resp.Header.Clone()
	}
	return resp, err
}
