package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/stretchr/testify/require"
)

// The server under hostile load (issue 13): a child process runs Serve
// with default settings (the small profile, fsync on, no --max-memory);
// the test attacks it on loopback and reads the child's peak RSS
// (VmHWM, reset before each attack) from /proc. Under every attack the
// peak must stay under 256 MiB and every bad request be answered; with
// KVSTREAM_HOSTILE_LONG=1 the attacks are the full sizes, every
// bad request must be answered within a second, and a well-behaved
// client's throughput during each is reported against its unloaded rate
// (and must keep half of it under the attacks on memory, 1 and 5).

const hostileChildEnv = "KVSTREAM_HOSTILE_CHILD"

// TestHostileServerChild is the child process: it serves until killed.
func TestHostileServerChild(t *testing.T) {
	dir := os.Getenv(hostileChildEnv)
	if dir == "" {
		t.Skip("runs as TestHostileLoad's child")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err := Serve(ctx, Config{Addr: "127.0.0.1:0", DataDir: dir}, func(addr string) { fmt.Printf("ADDR %s\n", addr) })
	require.NoError(t, err)
}

// hostileChild is the running child server.
type hostileChild struct {
	cmd  *exec.Cmd
	addr string
}

func startHostileChild(t *testing.T) *hostileChild {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHostileServerChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), hostileChildEnv+"="+t.TempDir())
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	c := &hostileChild{cmd: cmd}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			c.addr = a
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return c
		}
	}
	t.Fatal("the child server did not start")
	return nil
}

// peakRSS returns the child's VmHWM in bytes.
func (c *hostileChild) peakRSS(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.cmd.Process.Pid) + "/status")
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// resetPeak resets the child's VmHWM to its current RSS.
func (c *hostileChild) resetPeak(t *testing.T) {
	require.NoError(t, os.WriteFile("/proc/"+strconv.Itoa(c.cmd.Process.Pid)+"/clear_refs", []byte("5"), 0))
}

// goodClient is a well-behaved SDK client: PutRecords of 10 × 100 B,
// retrying throttles as the SDK does.
func goodClient(addr string) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		BaseEndpoint: aws.String("http://" + addr), Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("a", "b", ""),
		Retryer:     retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 20; o.MaxBackoff = 200 * time.Millisecond }),
	})
}

// goodPuts runs n PutRecords calls and returns records per second.
func goodPuts(t *testing.T, kc *kinesis.Client, n int) float64 {
	entries := make([]types.PutRecordsRequestEntry, 10)
	for i := range entries {
		entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(strconv.Itoa(i)), Data: bytes.Repeat([]byte{'g'}, 100)}
	}
	start := time.Now()
	for range n {
		_, err := kc.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String("h"), Records: entries})
		require.NoError(t, err)
	}
	return float64(10*n) / time.Since(start).Seconds()
}

// serverConns returns the server's open connections (its gauge), or a
// large number if it cannot be read.
func serverConns(addr string) int {
	tr := &http.Transport{DisableKeepAlives: true}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		return 1 << 30
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "kvstream_server_connections "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return int(n)
			}
		}
	}
	return 1 << 30
}

// attackResult is one attack's figures.
type attackResult struct {
	name      string
	peak      int64
	slowest   time.Duration // the slowest answer to a bad request
	goodRatio float64       // the good client's rate under attack / unloaded
}

// rawPost sends a POST over a fresh HTTP/1.1 connection and returns the
// status and the time to the answer.
func rawPost(addr, op, contentType string, body []byte) (int, time.Duration, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/", bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("X-Amz-Target", targetPrefix+op)
	req.Header.Set("Content-Type", contentType)
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	start := time.Now()
	resp, err := (&http.Client{Transport: tr, Timeout: time.Minute}).Do(req)
	if err != nil {
		return 0, time.Since(start), err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start), nil
}

func TestHostileLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child server and attacks it")
	}
	if raceEnabled {
		t.Skip("the race detector multiplies the child's memory: its RSS says nothing about the server's")
	}
	long := os.Getenv("KVSTREAM_HOSTILE_LONG") != ""
	scale := func(short, full int) int {
		if long {
			return full
		}
		return short
	}
	child := startHostileChild(t)
	addr := child.addr
	kc := goodClient(addr)
	ctx := context.Background()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("h"), ShardCount: aws.Int32(10)})
	require.NoError(t, err)
	goodN := scale(20, 300)
	unloaded := goodPuts(t, kc, goodN)
	t.Logf("well-behaved client unloaded: %.0f records/s", unloaded)

	var results []attackResult
	// run resets the peak, starts attack (which returns once it is in
	// place, and a func that ends it and returns the slowest answer),
	// measures the good client meanwhile, and checks the bounds.
	run := func(name string, cpuOrDisk bool, attack func() func() time.Duration) {
		t.Helper()
		child.resetPeak(t)
		stop := attack()
		rate := goodPuts(t, kc, goodN)
		slowest := stop()
		// The next attack starts once the server has closed this one's
		// connections (or it would find the connection cap full).
		waitFor(t, "the attack's connections to close", func() bool { return serverConns(addr) <= 8 })
		r := attackResult{name: name, peak: child.peakRSS(t), slowest: slowest, goodRatio: rate / unloaded}
		results = append(results, r)
		t.Logf("%-44s peak RSS %4d MiB, slowest bad answer %v, good client %.0f rec/s (%.2f of unloaded)",
			name, r.peak>>20, r.slowest.Round(time.Millisecond), rate, r.goodRatio)
		require.Less(t, r.peak, int64(256<<20), name)
		// Attack 4's requests are valid writes, answered once the engine
		// has them on disk: their latency is load, reported, not checked.
		if !strings.HasPrefix(name, "4:") {
			require.Less(t, r.slowest, time.Duration(scale(10, 1))*time.Second, name)
		}
		// Attacks on memory must not slow the good client; attacks that
		// make the server do real work (decode megabytes, write to disk)
		// share the CPU and the disk with it, which no memory budget
		// prevents: their ratio is reported, not checked.
		if long && !cpuOrDisk {
			require.GreaterOrEqual(t, r.goodRatio, 0.5, name)
		}
	}

	// 1. Bodies declared (7 MiB) and never sent: h2c streams on one
	// connection, and HTTP/1.1 connections that sent 64 KiB.
	run("1a: 100 h2c streams withholding 7 MiB bodies", false, func() func() time.Duration {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		return withheldBodies(t, &http.Client{Transport: tr}, addr, scale(50, 100), nil)
	})
	run("1b: 100 HTTP/1.1 connections stalled at 64 KiB", false, func() func() time.Duration {
		tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: 200}
		return withheldBodies(t, &http.Client{Transport: tr}, addr, scale(50, 100), bytes.Repeat([]byte{'{'}, 64<<10))
	})

	// 2. PutRecords declaring millions of entries, eight at once.
	run("2: 8 × PutRecords of 1M CBOR maps / 2.3M {}", true, func() func() time.Duration {
		cb := append(appendCBORHead(nil, 5, 2), appendCBORText(nil, "StreamName")...)
		cb = append(cb, appendCBORText(nil, "h")...)
		cb = append(cb, appendCBORText(nil, "Records")...)
		cb = append(append(cb, appendCBORHead(nil, 4, 1<<20)...), bytes.Repeat([]byte{0xa0}, 1<<20)...)
		js := []byte(`{"StreamName":"h","Records":[` + strings.Repeat("{},", 2_300_000) + `{}]}`)
		return badRequests(t, addr, 8, scale(2, 5), func(i int) (string, string, []byte) {
			if i%2 == 0 {
				return "PutRecords", contentTypeCBOR, cb
			}
			return "PutRecords", contentTypeJSON, js
		})
	})

	// 3. Tag maps of 8,000 bad tags (2.4 MB).
	run("3: 8 × AddTagsToStream of 8,000 bad tags", true, func() func() time.Duration {
		var b strings.Builder
		b.WriteString(`{"StreamName":"h","Tags":{`)
		for i := range 8000 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"k%d":"%s"`, i, strings.Repeat("v", 300))
		}
		b.WriteString(`}}`)
		body := []byte(b.String())
		return badRequests(t, addr, 8, scale(2, 5), func(int) (string, string, []byte) { return "AddTagsToStream", contentTypeJSON, body })
	})

	// 4. Many concurrent writers of large PutRecords.
	run("4: 200 concurrent 1 MiB PutRecords writers", true, func() func() time.Duration {
		data := make([]byte, 100<<10)
		var recs []string
		for i := range 10 {
			recs = append(recs, `{"PartitionKey":"`+strconv.Itoa(i)+`","Data":"`+base64.StdEncoding.EncodeToString(data)+`"}`)
		}
		body := []byte(`{"StreamName":"h","Records":[` + strings.Join(recs, ",") + `]}`)
		return badRequests(t, addr, scale(60, 200), scale(2, 5), func(int) (string, string, []byte) { return "PutRecords", contentTypeJSON, body })
	})

	// 5. Subscriptions that never read, on 4 consumers × 10 shards.
	run("5: 40 SubscribeToShard that never read", false, func() func() time.Duration {
		return idleSubscriptions(t, kc, addr, 40)
	})

	for _, r := range results {
		t.Logf("figures: %s | %d MiB | %v | %.2f", r.name, r.peak>>20, r.slowest.Round(time.Millisecond), r.goodRatio)
	}
}

// withheldBodies starts n PutRecords that declare 7 MiB and send only
// sent, waits until the server holds them, and returns the func that cuts
// them off.
func withheldBodies(t *testing.T, c *http.Client, addr string, n int, sent []byte) func() time.Duration {
	var wg sync.WaitGroup
	pipes := make([]*io.PipeWriter, n)
	wrote := make(chan struct{}, n)
	for i := range n {
		pr, pw := io.Pipe()
		pipes[i] = pw
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/", pr)
		require.NoError(t, err)
		req.ContentLength = DefaultMaxBodyBytes
		req.Header.Set("X-Amz-Target", targetPrefix+"PutRecords")
		req.Header.Set("Content-Type", contentTypeJSON)
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		go func() {
			if len(sent) > 0 {
				_, _ = pw.Write(sent)
			}
			wrote <- struct{}{}
		}()
	}
	for range n {
		<-wrote
	}
	return func() time.Duration {
		for _, pw := range pipes {
			pw.CloseWithError(io.ErrUnexpectedEOF)
		}
		wg.Wait()
		c.CloseIdleConnections() // or they hold connection slots until IdleTimeout
		return 0
	}
}

// badRequests sends n requests at once, rounds times, and returns the
// func that waits for them and reports the slowest answer.
func badRequests(t *testing.T, addr string, n, rounds int, req func(i int) (op, contentType string, body []byte)) func() time.Duration {
	var mu sync.Mutex
	var slowest time.Duration
	var wg sync.WaitGroup
	unanswered := 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				op, ct, body := req(i)
				code, took, err := rawPost(addr, op, ct, body)
				if err != nil {
					var ne net.Error
					if !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "EOF") && !errors.As(err, &ne) {
						t.Errorf("%s: %v", op, err)
					}
					mu.Lock()
					unanswered++
					mu.Unlock()
					continue // closed at the connection cap, or reset while sending

				}
				if code == http.StatusInternalServerError {
					t.Errorf("%s answered %d", op, code)
				}
				mu.Lock()
				slowest = max(slowest, took)
				mu.Unlock()
			}
		}()
	}
	return func() time.Duration {
		wg.Wait()
		if unanswered > 0 {
			t.Logf("%d of %d requests had their connection closed or reset instead of an answer", unanswered, n*rounds)
		}
		return slowest
	}
}

// idleSubscriptions registers consumers, subscribes n times over raw
// HTTP/1.1 connections that never read the stream, and returns the func
// that closes them.
func idleSubscriptions(t *testing.T, kc *kinesis.Client, addr string, n int) func() time.Duration {
	ctx := context.Background()
	d, err := kc.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String("h")})
	require.NoError(t, err)
	var arns []string
	for i := range (n + 9) / 10 {
		out, err := kc.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: d.StreamDescriptionSummary.StreamARN, ConsumerName: aws.String("c" + strconv.Itoa(i))})
		require.NoError(t, err)
		arns = append(arns, *out.Consumer.ConsumerARN)
	}
	var conns []net.Conn
	var slowest time.Duration
	for i := range n {
		body := `{"ConsumerARN":"` + arns[i/10] + `","ShardId":"shardId-00000000000` + strconv.Itoa(i%10) + `","StartingPosition":{"Type":"TRIM_HORIZON"}}`
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		conns = append(conns, c)
		start := time.Now()
		_, err = fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: %sSubscribeToShard\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s",
			targetPrefix, contentTypeJSON, len(body), body)
		require.NoError(t, err)
		// Read only the status line: a subscription starts (200) or is
		// refused (LimitExceeded once the budget's share is taken).
		require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Minute)))
		line, err := bufio.NewReaderSize(c, 16).ReadString('\n')
		require.NoError(t, err)
		slowest = max(slowest, time.Since(start))
		require.True(t, strings.HasPrefix(line, "HTTP/1.1 200") || strings.HasPrefix(line, "HTTP/1.1 400"), line)
	}
	return func() time.Duration {
		for _, c := range conns {
			_ = c.Close()
		}
		return slowest
	}
}
