package sdkbody_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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

// http.Client.CloseIdleConnections reaches the wrapped transport: a
// kept-alive connection is closed.
func TestTransportClosesIdleConnections(t *testing.T) {
	closed := make(chan struct{})
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	hs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			close(closed)
		}
	}
	hs.Start()
	defer hs.Close()
	tr := &http.Transport{}
	c := &http.Client{Transport: sdkbody.Transport(tr)}
	resp, err := c.Post(hs.URL, "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.CloseIdleConnections()
	select {
	case <-closed:
	case <-time.After(time.Minute): // a hang guard: the close is immediate
		t.Fatal("the idle connection was not closed")
	}
}
