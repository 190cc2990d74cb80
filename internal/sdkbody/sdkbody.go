// Package sdkbody works around aws-sdk-go-v2's request-body race for the
// repository's tests: the SDK (smithy-go v1.28.9) closes a request body as
// soon as the response head arrives; over plain-HTTP TCP, net/http may
// still be checking that body for extra bytes, fails, and closes the
// connection, and the SDK retries (or, without retries, fails) a call the
// server already served. Handing net/http an in-memory body avoids it.
package sdkbody

import (
	"bytes"
	"io"
	"net/http"
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
	if r.Body == nil || r.Body == http.NoBody {
		return b.rt.RoundTrip(r)
	}
	body, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.ContentLength = int64(len(body))
	return b.rt.RoundTrip(r)
}
