package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// TestServe runs Serve on a free loopback port, uses it, cancels its
// context and checks it shut down and closed the engine.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Serve(ctx, Config{Addr: "127.0.0.1:0", DataDir: dir, Engine: &engine.Options{NoSync: true}},
			func(addr string) { addrc <- addr })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not become ready")
	}
	require.True(t, strings.HasPrefix(addr, "127.0.0.1:"))
	kc := kinesis.New(kinesis.Options{BaseEndpoint: aws.String("http://" + addr), Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")})
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("served"), ShardCount: aws.Int32(1)})
	require.NoError(t, err)
	_, err = kc.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("served"), PartitionKey: aws.String("k"), Data: []byte("kept")})
	require.NoError(t, err)
	// h2c with prior knowledge, as the Java SDK v2 speaks on plain http.
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/healthz")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "ok\n", string(b))
	require.Equal(t, 2, resp.ProtoMajor)

	cancel()
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not shut down")
	}
	// The engine was closed: the directory opens again, with the data.
	db, err := engine.Open(dir, nil)
	require.NoError(t, err)
	d, err := db.DescribeStream("served")
	require.NoError(t, err)
	require.Equal(t, int64(1), d.Records)
	require.NoError(t, db.Close())
}

func TestServeRefusesRemoteWithoutAuth(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:4567", ":4567", "192.0.2.1:4567", "example.com:4567"} {
		err := Serve(context.Background(), Config{Addr: addr, DataDir: t.TempDir()}, nil)
		require.ErrorContains(t, err, "refusing to listen on non-loopback address", addr)
	}
	require.ErrorContains(t, checkAddr(Config{Addr: "0.0.0.0:4567", AccessKey: "a", SecretKey: "b"}), "without TLS")
	require.ErrorContains(t, checkAddr(Config{Addr: "0.0.0.0:4567", TLSCertFile: "c", TLSKeyFile: "k"}), "without SigV4 verification")
	require.NoError(t, checkAddr(Config{Addr: "0.0.0.0:4567", AccessKey: "a", SecretKey: "b", TLSCertFile: "c", TLSKeyFile: "k"}))
	require.NoError(t, checkAddr(Config{Addr: "0.0.0.0:4567", InsecureAllowRemote: true}))
	require.NoError(t, checkAddr(Config{Addr: "[::1]:4567"}))
	require.NoError(t, checkAddr(Config{Addr: "localhost:4567"}))
	require.Error(t, Serve(context.Background(), Config{}, nil), "DataDir is required")
}

func TestServeBusyDataDir(t *testing.T) {
	dir := t.TempDir()
	db, err := engine.Open(dir, nil)
	require.NoError(t, err)
	defer db.Close()
	err = Serve(context.Background(), Config{Addr: "127.0.0.1:0", DataDir: dir}, nil)
	require.ErrorIs(t, err, engine.ErrLocked)
}

// TestServeReadTimeout checks a client that never finishes its request is
// cut off after ReadTimeout, and that Serve still shuts down. Without the
// timeout the server would wait for the body forever; the read deadline
// only guards against that hang.
func TestServeReadTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Serve(ctx, Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), ReadTimeout: 200 * time.Millisecond,
			ShutdownTimeout: 2 * time.Second, Engine: &engine.Options{NoSync: true}}, func(a string) { addrc <- a })
	}()
	addr := <-addrc
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(2*time.Minute)))
	_, err = io.ReadAll(conn) // the server closes the connection
	require.NoError(t, err, "the server did not cut the request off")
	cancel()
	require.NoError(t, <-errc)
}
