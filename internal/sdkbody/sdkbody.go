// Package sdkbody works around aws-sdk-go-v2's request-body race: the SDK
// (smithy-go v1.28.9) closes a request body as soon as the response head
// arrives; over plain-HTTP TCP, net/http may still be checking that body
// for extra bytes, fails, and closes the connection, and the SDK retries
// (or, without retries, fails) a call the server already served, so a
// PutRecords may be applied twice. Handing net/http an in-memory body
// avoids it.
//
// kvstream's own clients use it (internal/awsclient), and so do the
// repository's tests. The cost is one copy of each request body, made
// before the request is sent: Kinesis request bodies are bounded (a
// PutRecords is at most a few MiB) and none is streamed, so holding a
// body in memory is what the SDK does already. Do not use it for
// operations that stream large or unbounded request bodies.
package sdkbody

import (
	"bytes"
	"io"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// Transport returns an http.RoundTripper that reads each request body
// into memory before passing the request to rt (http.DefaultTransport if
// nil). Safe for concurrent use.
func Transport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return bufferBodies{rt}
}

type bufferBodies struct{ rt http.RoundTripper }

func (b bufferBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	r, err := inMemory(r)
	if err != nil {
		return nil, err
	}
	return b.rt.RoundTrip(r)
}

// CloseIdleConnections closes rt's idle connections, if rt can, so that
// http.Client.CloseIdleConnections reaches it.
func (b bufferBodies) CloseIdleConnections() {
	if c, ok := b.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Doer is the AWS SDK's HTTP client interface (aws.HTTPClient).
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Client returns a Doer, for aws.Config.HTTPClient or a service client's
// Options.HTTPClient, that reads each request body into memory before
// passing the request to c (the SDK's default client,
// awshttp.NewBuildableClient(), if nil). Wrapped, a BuildableClient no
// longer takes the timeouts of aws.Config.DefaultsMode; the default mode
// ("legacy") sets none. Safe for concurrent use if c is.
func Client(c Doer) Doer {
	if c == nil {
		c = awshttp.NewBuildableClient()
	}
	return bufferingClient{c}
}

type bufferingClient struct{ c Doer }

func (b bufferingClient) Do(r *http.Request) (*http.Response, error) {
	r, err := inMemory(r)
	if err != nil {
		return nil, err
	}
	return b.c.Do(r)
}

// inMemory returns r with its body read into memory (and closed), or r
// itself if it has no body.
func inMemory(r *http.Request) (*http.Request, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return r, nil
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead) // one allocation
	}
	_, err := buf.ReadFrom(r.Body)
	_ = r.Body.Close()
	if err != nil {
		return nil, err
	}
	body := buf.Bytes()
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.ContentLength = int64(len(body))
	return r, nil
}
