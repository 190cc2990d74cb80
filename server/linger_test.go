package server

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// unreadServer serves every request with answerUnread's throttle.
func unreadServer(t *testing.T) string {
	env := newEnv(t, Config{}, nil)
	s := env.srv
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.answerUnread(w, r, codecJSON, s.metrics.op("PutRecords"), time.Now(), s.throttleError("PutRecords"))
	}))
	t.Cleanup(hs.Close)
	return strings.TrimPrefix(hs.URL, "http://")
}

// postHead writes the head of a POST declaring an n-byte body.
func postHead(t *testing.T, c net.Conn, n int) {
	_, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\n"+
		"Content-Type: application/x-amz-json-1.1\r\nContent-Length: "+strconv.Itoa(n)+"\r\n\r\n")
	require.NoError(t, err)
}

// readThrottle reads one response from br and checks it is the throttle.
func readThrottle(t *testing.T, br *bufio.Reader) *http.Response {
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, string(body), errThroughputExceeded)
	return resp
}

// TestThrottledLargeBodyAnsweredFirst: a throttled request whose large
// body is still being sent is answered at once, before the server has
// read it, and its connection is closed after the answer.
func TestThrottledLargeBodyAnsweredFirst(t *testing.T) {
	addr := unreadServer(t)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second))) // a hang guard
	postHead(t, c, 4<<20)
	_, err = c.Write(bytes.Repeat([]byte{'x'}, 64<<10)) // the rest is withheld
	require.NoError(t, err)
	resp := readThrottle(t, bufio.NewReader(c))
	require.True(t, resp.Close, "the connection closes after the answer")
}

// TestThrottledLargeBodyLingered: a client that sends its whole body
// before it reads gets the answer too: the server discards what it sends.
func TestThrottledLargeBodyLingered(t *testing.T) {
	addr := unreadServer(t)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	postHead(t, c, 256<<10)
	_, err = c.Write(bytes.Repeat([]byte{'x'}, 256<<10))
	require.NoError(t, err)
	readThrottle(t, bufio.NewReader(c))
}

// TestThrottledSmallBodyKeepsConnection: a small throttled body is read
// before the answer and the connection serves the next request.
func TestThrottledSmallBodyKeepsConnection(t *testing.T) {
	addr := unreadServer(t)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	br := bufio.NewReader(c)
	for range 2 {
		postHead(t, c, 1000)
		_, err = c.Write(bytes.Repeat([]byte{'x'}, 1000))
		require.NoError(t, err)
		require.False(t, readThrottle(t, br).Close)
	}
}

// TestConnectionCapWaitsForRefuser: with every refuser busy, a connection
// over the cap waits to be accepted instead of being closed unanswered,
// and gets the throttle once a refuser frees.
func TestConnectionCapWaitsForRefuser(t *testing.T) {
	addr := serveForTest(t, Config{MaxConns: 1}) // one slot, four refusers
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1 := dial() // holds the slot
	_, err := io.WriteString(c1, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c1), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// Four connections that send nothing hold the four refusers (each
	// waits for a request head).
	var idle []net.Conn
	for range 4 {
		idle = append(idle, dial())
	}
	// The next waits in the backlog; once a refuser frees, it is
	// answered, not closed.
	c := dial()
	postHead(t, c, 100)
	_, err = c.Write(bytes.Repeat([]byte{'x'}, 100))
	require.NoError(t, err)
	require.NoError(t, idle[0].Close())
	readThrottle(t, bufio.NewReader(c))
}

// TestConnectionCapReserve: with the cap's slots outside the reserve held
// by one identity, its next connection is refused while another
// identity's is served from the reserve; once the reserve is taken too,
// connections are refused.
func TestConnectionCapReserve(t *testing.T) {
	addr := serveForTest(t, Config{MaxConns: 8}) // a reserve of 1
	call := func(keyID string) (int, string) {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader(`{}`))
		require.NoError(t, err)
		req.Header.Set("X-Amz-Target", targetPrefix+"ListStreams")
		req.Header.Set("Content-Type", contentTypeJSON)
		req.Header.Set("X-Amz-Date", "20250101T000000Z")
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+keyID+"/20250101/us-east-1/kinesis/aws4_request, "+
			"SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00")
		require.NoError(t, req.Write(c))
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	for range 7 {
		code, body := call("AKIDHEAVY")
		require.Equal(t, http.StatusOK, code, body)
	}
	code, body := call("AKIDHEAVY")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "maximum of open connections")
	code, body = call("AKIDLIGHT")
	require.Equal(t, http.StatusOK, code, "a light identity is served from the reserve: %s", body)
	code, body = call("AKIDOTHER")
	require.Equal(t, http.StatusBadRequest, code, "the reserve is taken")
	require.Contains(t, body, "maximum of open connections")
}

// TestBulkKeepsReaderUntilAdmitted: a bulk request waiting for admission
// still holds its reader, so bodies are not read faster than admission
// takes them.
func TestBulkKeepsReaderUntilAdmitted(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	a, readers := env.srv.admit, env.srv.readers
	a.mu.Lock()
	a.used = a.capacity - a.reserve // no room for bulk requests
	a.mu.Unlock()
	body := []byte(`{"StreamName":"s","Records":[{"PartitionKey":"k","Data":"` + strings.Repeat("A", 200<<10) + `"}]}`)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // one bulk request after another, each throttled after admitWait
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, err := http.NewRequest(http.MethodPost, env.url+"/", bytes.NewReader(body))
			if err != nil {
				return
			}
			req.Header.Set("X-Amz-Target", targetPrefix+"PutRecords")
			req.Header.Set("Content-Type", contentTypeJSON)
			fakeSign(req)
			if resp, err := env.hs.Client().Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	readersHeld := -1
	waitFor(t, "a bulk request waiting for admission", func() bool {
		// While a.mu is held, a waiter is still inside acquire: its
		// reader, if kept, cannot have been given back.
		a.mu.Lock()
		defer a.mu.Unlock()
		if len(a.ring) == 0 {
			return false
		}
		readers.mu.Lock()
		readersHeld = readers.used
		readers.mu.Unlock()
		return true
	})
	close(stop)
	<-done
	a.mu.Lock()
	a.used = 0
	a.mu.Unlock()
	require.Equal(t, readerCost(&http.Request{ContentLength: int64(len(body))}), readersHeld, "its reader is held while it waits")
}

// TestConnectionCapClosesTLSAtOnce: a TLS handshake over the cap (the
// refuser speaks no TLS) is closed at once, not held until refuseTimeout.
func TestConnectionCapClosesTLSAtOnce(t *testing.T) {
	addr := serveForTest(t, Config{MaxConns: 1})
	c1, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c1.Close()
	_, err = io.WriteString(c1, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c1), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	c2, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c2.Close()
	hello := append([]byte{0x16, 0x03, 0x01, 0x02, 0x00}, bytes.Repeat([]byte{0}, 40)...) // a ClientHello's start
	_, err = c2.Write(hello)
	require.NoError(t, err)
	require.NoError(t, c2.SetReadDeadline(time.Now().Add(refuseTimeout-time.Second)))
	_, err = c2.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "closed before refuseTimeout")
}
