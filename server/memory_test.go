package server

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/kvstream/kvstream/engine"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// budgetFor returns the MaxMemory that leaves a request budget of n bytes
// with the small profile.
func budgetFor(n int64) int64 { return engineReserve(engine.ProfileSmall) + runtimeReserve + n }

// waitFor polls cond (a state another goroutine reaches) until it holds,
// failing after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(efoHangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// stalledPost starts a POST of op declaring Content-Length n, writes the
// first sent bytes of its body and leaves it hanging. Calling the
// returned func cuts the body off and waits for the answer.
func stalledPost(t *testing.T, c *http.Client, url, op string, n int64, sent []byte) func() {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, url+"/", pr)
	require.NoError(t, err)
	req.ContentLength = n
	req.Header.Set("X-Amz-Target", targetPrefix+op)
	req.Header.Set("Content-Type", contentTypeJSON)
	// Signed (any signature passes without keys): an unsigned big body is
	// refused unread (refuseUnsigned).
	req.Header.Set("X-Amz-Date", "20260101T000000Z")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDSTALLED/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	_, err = pw.Write(sent)
	require.NoError(t, err)
	return func() {
		pw.CloseWithError(errors.New("test: body cut off"))
		<-done
	}
}

// TestBodyNotSizedFromContentLength checks a body declaring 7 MiB and
// sending 10 bytes holds one read step of the budget, not 7 MiB, and that
// the budget comes back when the request ends.
func TestBodyNotSizedFromContentLength(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	stop := stalledPost(t, env.hs.Client(), env.url, "PutRecords", DefaultMaxBodyBytes, []byte(`{"Records":`))
	waitFor(t, "the handler to read", func() bool { return env.srv.budget.inUse.Load() > 0 })
	require.Equal(t, int64(bodyCharge*bodyStep), env.srv.budget.inUse.Load())
	stop()
	waitFor(t, "the budget to come back", func() bool { return env.srv.budget.inUse.Load() == 0 })
}

// TestMemoryBudgetThrottles fills the request budget (less the small
// requests' reserve) with two stalled 4 MiB bodies and checks a third,
// big request is throttled with a retryable error while small ones are
// still served, and the big one is served once the budget comes back.
func TestMemoryBudgetThrottles(t *testing.T) {
	env := newEnv(t, Config{MaxMemory: budgetFor(40 << 20), MaxBodyBytes: 7 << 20}, nil)
	require.Equal(t, int64(40<<20), env.srv.budget.total)
	kc := env.client()
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("b"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)

	chunk := []byte(`{"StreamName":"b","Records":[{"PartitionKey":"k","Data":"` + strings.Repeat("A", 4<<20))
	var stops []func()
	for range 2 {
		stops = append(stops, stalledPost(t, env.hs.Client(), env.url, "PutRecords", 6<<20, chunk))
	}
	waitFor(t, "two bodies to hold their share", func() bool { return env.srv.budget.inUse.Load() >= 2*bodyCharge*(4<<20) })

	put := func() error {
		_, err := kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("b"), PartitionKey: aws.String("k"), Data: make([]byte, 1<<20-10)})
		return err
	}
	err = put()
	require.Equal(t, errThroughputExceeded, apiCode(t, err))
	require.ErrorContains(t, err, "the server is at its limit of requests in flight (memory budget 40 MiB")
	_, err = kc.ListStreams(ctx, &kinesis.ListStreamsInput{})
	require.NoError(t, err, "small requests still fit")

	for _, stop := range stops {
		stop()
	}
	waitFor(t, "the budget to come back", func() bool { return env.srv.budget.inUse.Load() == 0 })
	require.NoError(t, put())
}

// TestUnverifiedAllowance checks bodies not yet verified share a quarter
// of the budget, and give it back once verified.
func TestUnverifiedAllowance(t *testing.T) {
	b := newMemBudget(64<<20, true) // 16 MiB allowance, 56 MiB + 8 MiB reserve
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no waiting
	h1 := b.newHold(ctx)
	require.True(t, h1.grow(bodyCharge*(12<<20), true))
	h2 := b.newHold(ctx)
	require.False(t, h2.grow(bodyCharge*(5<<20), true), "over the 16 MiB allowance")
	require.True(t, h2.grow(bodyCharge*(1<<20), false), "verified bodies use the rest")
	h1.verified()
	h3 := b.newHold(ctx)
	require.True(t, h3.grow(bodyCharge*(512<<10), true), "verified bodies gave their allowance back")
	h3.release()
	h2.release()
	h1.release()
	require.Zero(t, b.inUse.Load())
	require.True(t, b.sem.TryAcquire(56<<20), "everything came back")
	require.True(t, b.small.TryAcquire(8<<20), "everything came back")
}

// TestSmallRequestReserve checks small requests are served from their
// reserve when big bodies hold the rest of the budget.
func TestSmallRequestReserve(t *testing.T) {
	b := newMemBudget(64<<20, false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no waiting
	big := b.newHold(ctx)
	require.True(t, big.grow(56<<20, false)) // all but the 8 MiB reserve
	require.False(t, b.newHold(ctx).grow(smallCharge+1, false), "a big request waits")
	var small []*hold
	for range 8 << 20 / smallCharge {
		h := b.newHold(ctx)
		h.small = true // a small declared body (readBody)
		require.True(t, h.grow(bodyCharge*bodyStep, false))
		require.True(t, h.grow(smallCharge, false))
		small = append(small, h)
	}
	last := b.newHold(ctx)
	last.small = true
	require.False(t, last.grow(bodyCharge*bodyStep, false), "the reserve is used up")
	big.release()
	for _, h := range small {
		h.release()
	}
	require.Zero(t, b.inUse.Load())
	require.True(t, b.small.TryAcquire(8<<20))
}

// serveForTest runs Serve with cfg on a free loopback port and returns its
// address; it stops when the test ends.
func serveForTest(t *testing.T, cfg Config) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Engine = &engine.Options{NoSync: true}
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, cfg, func(a string) { addrc <- a }) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-errc)
	})
	select {
	case a := <-addrc:
		return a
	case err := <-errc:
		t.Fatal(err)
		return ""
	}
}

// TestConnectionCap checks connections past MaxConns are closed at once,
// and that a freed slot takes a new one.
func TestConnectionCap(t *testing.T) {
	addr := serveForTest(t, Config{MaxConns: 2})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		return c
	}
	alive := func(c net.Conn) bool {
		_, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
		if err != nil {
			return false
		}
		require.NoError(t, c.SetReadDeadline(time.Now().Add(efoHangGuard)))
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && strings.HasPrefix(line, "HTTP/1.1 200")
	}
	c1, c2 := dial(), dial()
	defer c2.Close()
	require.True(t, alive(c1))
	require.True(t, alive(c2))
	c3 := dial()
	require.False(t, alive(c3), "a third connection is closed")
	c3.Close()
	c1.Close()
	waitFor(t, "a slot to free", func() bool {
		c := dial()
		defer c.Close()
		return alive(c)
	})
}

// TestH2Settings checks the HTTP/2 limits the server announces: at most
// h2MaxStreams streams and h2StreamWindow per stream.
func TestH2Settings(t *testing.T) {
	addr := serveForTest(t, Config{})
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(efoHangGuard)))
	_, err = c.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0))
	require.NoError(t, err)
	settings := map[uint16]uint32{}
	for {
		var hdr [9]byte
		_, err := io.ReadFull(c, hdr[:])
		require.NoError(t, err)
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		payload := make([]byte, n)
		_, err = io.ReadFull(c, payload)
		require.NoError(t, err)
		if hdr[3] == 4 && hdr[4]&1 == 0 { // SETTINGS, not an ACK
			for i := 0; i+6 <= n; i += 6 {
				settings[binary.BigEndian.Uint16(payload[i:])] = binary.BigEndian.Uint32(payload[i+2:])
			}
			break
		}
	}
	require.Equal(t, uint32(h2MaxStreams), settings[3], "SETTINGS_MAX_CONCURRENT_STREAMS")
	require.Equal(t, uint32(h2StreamWindow), settings[4], "SETTINGS_INITIAL_WINDOW_SIZE")
}

// TestTLS serves HTTPS with a self-signed certificate: HTTP/2 by ALPN and
// the SDK client work, and plain HTTP is not answered as the API.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kvstream test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))

	addr := serveForTest(t, Config{TLSCertFile: certFile, TLSKeyFile: keyFile, AccessKey: testAccessKey, SecretKey: testSecretKey})
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	resp, err := hc.Get("https://" + addr + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 2, resp.ProtoMajor, "HTTP/2 by ALPN")

	kc := kinesis.New(kinesis.Options{BaseEndpoint: aws.String("https://" + addr), Region: "us-east-1", HTTPClient: hc,
		Credentials: aws.NewCredentialsCache(staticCreds{}), Retryer: aws.NopRetryer{}})
	_, err = kc.CreateStream(context.Background(), &kinesis.CreateStreamInput{StreamName: aws.String("tls"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)

	resp, err = http.Get("http://" + addr + "/healthz")
	if err == nil {
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP to the TLS port")
	}
}

type staticCreds struct{}

func (staticCreds) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey, Source: "test"}, nil
}

// TestSubscriptionBudget checks subscriptions take their share of the
// budget (half of it at most, in subscriptionCharge steps), the one past
// it is refused with LimitExceededException, and the share and the gauges
// come back when clients leave.
func TestSubscriptionBudget(t *testing.T) {
	e := newEFOEnv(t, Config{MaxMemory: budgetFor(32 << 20), MaxBodyBytes: 7 << 20}, 5) // room for 4 subscriptions
	shard := func(i int) string { return "shardId-00000000000" + string(rune('0'+i)) }
	var subs []*subReader
	for i := range 4 {
		r := subscribe(t, e.kc, e.consumerARN, shard(i), latest())
		r.next(efoHangGuard) // the first event: it runs
		subs = append(subs, r)
	}
	require.Equal(t, int64(4*subscriptionCharge), e.srv.budget.inUse.Load())
	_, err := trySubscribe(t, e.kc, e.consumerARN, shard(4), latest())
	require.Equal(t, errLimitExceeded, apiCode(t, err))
	require.ErrorContains(t, err, "has no room for another subscription")

	gauge := func() float64 {
		var m dto.Metric
		require.NoError(t, e.srv.metrics.subscriptions.Write(&m))
		return m.GetGauge().GetValue()
	}
	require.Equal(t, float64(4), gauge())
	subs[0].close()
	waitFor(t, "the subscription to end", func() bool { return gauge() == 3 && e.srv.budget.inUse.Load() == 3*subscriptionCharge })
	r := subscribe(t, e.kc, e.consumerARN, shard(4), latest())
	r.next(efoHangGuard)
	for _, r := range append(subs[1:], r) {
		r.close()
	}
	waitFor(t, "every subscription to end", func() bool { return gauge() == 0 && e.srv.budget.inUse.Load() == 0 })
}
