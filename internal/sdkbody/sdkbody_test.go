package sdkbody_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kvstream/kvstream/internal/sdkbody"
	"github.com/stretchr/testify/require"
)

// The server sees the whole body with its length, and the caller's body
// is consumed and closed before the request is sent.
func TestTransportBuffersBody(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		require.EqualValues(t, len(b), r.ContentLength)
		_, _ = w.Write(b)
	}))
	defer hs.Close()
	body := &closeTracker{Reader: strings.NewReader("hello kinesis")}
	req, err := http.NewRequest(http.MethodPost, hs.URL, body)
	require.NoError(t, err)
	req.ContentLength = -1 // unknown, as a streamed SDK body may be
	resp, err := (&http.Client{Transport: sdkbody.Transport(nil)}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "hello kinesis", string(got))
	require.True(t, body.closed, "the caller's body is closed once read")
}

type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }
