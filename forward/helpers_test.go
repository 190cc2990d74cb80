package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/internal/sdkbody"
	"github.com/kvstream/kvstream/server"
	"github.com/stretchr/testify/require"
)

const (
	localStream    = "local"
	upstreamStream = "up"
)

// testConfig is a Config with short waits, so failure tests run fast.
func testConfig() Config {
	return Config{
		Stream:       localStream,
		TargetStream: upstreamStream,
		Linger:       time.Millisecond,
		MinBackoff:   time.Millisecond,
		MaxBackoff:   20 * time.Millisecond,
	}
}

// openLocal opens (or reopens) a local DB in dir.
func openLocal(t testing.TB, dir string) *engine.DB {
	t.Helper()
	db, err := engine.Open(dir, &engine.Options{NoSync: true})
	require.NoError(t, err)
	return db
}

// newLocal opens a local DB in a fresh directory with stream "local".
func newLocal(t testing.TB, cfg engine.StreamConfig) (*engine.DB, string) {
	t.Helper()
	dir := t.TempDir()
	db := openLocal(t, dir)
	require.NoError(t, db.CreateStream(localStream, cfg))
	return db, dir
}

// upstream is a kvstream server over its own data directory on a fixed
// 127.0.0.1 port, so it can be started late (connection refused until
// then) and stopped and started again (a server restart), behind a
// handler that injects faults.
type upstream struct {
	t      testing.TB
	dir    string
	addr   string
	faults *faults
	// opts are the engine options start opens the data directory with
	// (default: NoSync, to keep the tests fast).
	opts *engine.Options

	mu sync.Mutex
	db *engine.DB
	hs *httptest.Server
}

// newUpstream reserves a port and creates the upstream stream with
// shards shards; it does not listen until start.
func newUpstream(t testing.TB, shards int) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	u := &upstream{t: t, dir: t.TempDir(), addr: ln.Addr().String(), faults: &faults{}}
	require.NoError(t, ln.Close())
	db, err := engine.Open(u.dir, &engine.Options{NoSync: true})
	require.NoError(t, err)
	require.NoError(t, db.CreateStream(upstreamStream, engine.StreamConfig{ShardCount: shards}))
	require.NoError(t, db.Close())
	t.Cleanup(u.stop)
	return u
}

func (u *upstream) url() string { return "http://" + u.addr }

// start opens the upstream's engine and serves it on its port.
func (u *upstream) start() {
	u.t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	require.Nil(u.t, u.hs, "upstream already started")
	opts := u.opts
	if opts == nil {
		opts = &engine.Options{NoSync: true}
	}
	db, err := engine.Open(u.dir, opts)
	require.NoError(u.t, err)
	srv, err := server.New(db, server.Config{})
	require.NoError(u.t, err)
	u.faults.setNext(srv)
	var ln net.Listener
	// The port was free a moment ago; retry briefly in case the kernel
	// still holds it.
	for i := 0; ; i++ {
		if ln, err = net.Listen("tcp", u.addr); err == nil || i == 100 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(u.t, err)
	hs := httptest.NewUnstartedServer(u.faults)
	hs.Listener = ln
	hs.Start()
	u.db, u.hs = db, hs
}

// stop closes the server (and its clients' connections) and the engine.
func (u *upstream) stop() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.hs == nil {
		return
	}
	u.hs.CloseClientConnections()
	u.hs.Close()
	require.NoError(u.t, u.db.Close())
	u.db, u.hs = nil, nil
}

// records returns the data of every record in the upstream stream, per
// shard in sequence order (it must be running).
func (u *upstream) records() []string {
	u.t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	require.NotNil(u.t, u.db, "upstream not running")
	return streamData(u.t, u.db, upstreamStream)
}

func streamData(t testing.TB, db *engine.DB, stream string) []string {
	t.Helper()
	shards, err := db.ListShards(stream)
	require.NoError(t, err)
	var out []string
	for _, s := range shards {
		it, err := db.Iterate(stream, s.ShardID, engine.TrimHorizon())
		require.NoError(t, err)
		for it.Next() {
			out = append(out, string(it.Record().Data))
		}
		require.NoError(t, it.Err())
		require.NoError(t, it.Close())
	}
	return out
}

// client returns a Kinesis client for the upstream without SDK retries.
// Its request bodies go to net/http as in-memory readers
// (internal/sdkbody): with the SDK's own, a loaded machine now and then
// loses the answer to an applied call ("deserialization failed ... use
// of closed network connection" on a 200), the Forwarder sends the batch
// again, and a test that counts duplicates sees one that its faults did
// not cause.
func (u *upstream) client() *kinesis.Client {
	return kinesis.New(kinesis.Options{
		BaseEndpoint: aws.String(u.url()),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		Retryer:      aws.NopRetryer{},
		HTTPClient:   &http.Client{Transport: sdkbody.Transport(nil)},
	})
}

// faults wraps the upstream server and injects failures into PutRecords
// calls. Probabilities are in [0, 1]; zero values inject nothing.
type faults struct {
	next atomic.Pointer[http.Handler]

	mu sync.Mutex
	// throttle answers a call with ProvisionedThroughputExceededException.
	throttle float64
	// partial makes a call partially fail: each entry then fails with
	// probability entry (throttled, not written).
	partial, entry float64
	// lostAck applies a call, then drops the connection instead of
	// answering, as a server crashing after its commit.
	lostAck float64
	// delay is a random delay up to this long before each call.
	delay time.Duration
	// hang, while set, holds every call until it is closed or the
	// client gives up, without answering.
	hang chan struct{}
	rng  *rand.Rand
	// onPut, if set, runs before each PutRecords with the number of
	// calls so far; when it returns true the call is answered with a 503
	// and not applied. afterPut runs after each applied call.
	onPut, afterPut func(n int) bool

	calls, injected atomic.Int64
}

func (f *faults) setNext(h http.Handler) { f.next.Store(&h) }

// set changes the fault probabilities under the lock.
func (f *faults) set(fn func(f *faults)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// rand returns the fault generator (f.mu held).
func (f *faults) rand() *rand.Rand {
	if f.rng == nil {
		f.rng = rand.New(rand.NewPCG(1, 2))
	}
	return f.rng
}

// roll reports true with probability p (f.mu held).
func (f *faults) roll(p float64) bool {
	return p > 0 && f.rand().Float64() < p
}

func (f *faults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	next := *f.next.Load()
	if !strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".PutRecords") {
		next.ServeHTTP(w, r)
		return
	}
	n := int(f.calls.Add(1))
	f.mu.Lock()
	throttle, partial, lostAck := f.roll(f.throttle), f.roll(f.partial), f.roll(f.lostAck)
	var delay time.Duration
	if f.delay > 0 {
		delay = time.Duration(f.rand().Int64N(int64(f.delay)))
	}
	entry, onPut, afterPut, hang := f.entry, f.onPut, f.afterPut, f.hang
	idle := f.throttle == 0 && f.partial == 0 && f.lostAck == 0 && f.delay == 0 && onPut == nil && afterPut == nil && hang == nil
	f.mu.Unlock()
	if idle {
		next.ServeHTTP(w, r)
		return
	}
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
			f.injected.Add(1)
			return
		}
	}
	if onPut != nil && onPut(n) {
		f.injected.Add(1)
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	time.Sleep(delay)
	if throttle {
		f.injected.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard shardId-000000000000 in stream up under account 000000000000."}`)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var fail []bool
	if partial {
		f.injected.Add(1)
		body, fail = f.dropEntries(body, entry)
	}
	rec := httptest.NewRecorder()
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))
	next.ServeHTTP(rec, r2)
	if afterPut != nil {
		afterPut(n)
	}
	if lostAck && rec.Code == http.StatusOK {
		f.injected.Add(1)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
	}
	out := rec.Body.Bytes()
	if fail != nil && rec.Code == http.StatusOK {
		out = mergeFailures(out, fail)
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(rec.Code)
	_, _ = w.Write(out)
}

// dropEntries removes a random subset of a PutRecords body's entries (at
// least one) and reports which were removed.
func (f *faults) dropEntries(body []byte, p float64) ([]byte, []bool) {
	var in map[string]json.RawMessage
	if json.Unmarshal(body, &in) != nil {
		return body, nil
	}
	var recs []json.RawMessage
	if json.Unmarshal(in["Records"], &recs) != nil || len(recs) == 0 {
		return body, nil
	}
	fail := make([]bool, len(recs))
	var kept []json.RawMessage
	f.mu.Lock()
	any := false
	for i := range recs {
		fail[i] = f.roll(p)
		any = any || fail[i]
	}
	if !any {
		fail[f.rand().IntN(len(recs))] = true
	}
	f.mu.Unlock()
	for i, r := range recs {
		if !fail[i] {
			kept = append(kept, r)
		}
	}
	if len(kept) == 0 {
		// Keep one entry so the call stays valid.
		kept = recs[:1]
		fail[0] = false
	}
	in["Records"], _ = json.Marshal(kept)
	out, _ := json.Marshal(in)
	return out, fail
}

// mergeFailures puts failed entries back into a PutRecords answer.
func mergeFailures(body []byte, fail []bool) []byte {
	var out struct {
		FailedRecordCount int               `json:"FailedRecordCount"`
		Records           []json.RawMessage `json:"Records"`
		EncryptionType    string            `json:"EncryptionType,omitempty"`
	}
	if json.Unmarshal(body, &out) != nil {
		return body
	}
	failed := json.RawMessage(`{"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded for shard shardId-000000000000 in stream up under account 000000000000."}`)
	var recs []json.RawMessage
	j := 0
	for _, f := range fail {
		if f {
			recs = append(recs, failed)
			out.FailedRecordCount++
			continue
		}
		recs = append(recs, out.Records[j])
		j++
	}
	out.Records = recs
	b, _ := json.Marshal(out)
	return b
}

// producer writes records "key:index:" to the local stream and remembers
// how many it wrote per key.
type producer struct {
	t    testing.TB
	db   *engine.DB
	keys int
	rng  *rand.Rand
	n    map[string]int
	// pad is appended to each record's data: "key:index:pad".
	pad []byte
}

func newProducer(t testing.TB, db *engine.DB, keys int) *producer {
	return &producer{t: t, db: db, keys: keys, rng: rand.New(rand.NewPCG(7, 9)), n: map[string]int{}}
}

// put writes n records in PutRecords calls of up to 500, keys at random.
func (p *producer) put(n int) {
	p.t.Helper()
	for n > 0 {
		batch := make([]engine.Entry, min(n, 500))
		for i := range batch {
			k := "k" + strconv.Itoa(p.rng.IntN(p.keys))
			batch[i] = engine.Entry{PartitionKey: k, Data: append(fmt.Appendf(nil, "%s:%d:", k, p.n[k]), p.pad...)}
			p.n[k]++
		}
		res, err := p.db.PutRecords(context.Background(), localStream, batch)
		require.NoError(p.t, err)
		for _, r := range res {
			require.NoError(p.t, r.Err)
		}
		n -= len(batch)
	}
}

func (p *producer) total() int {
	s := 0
	for _, n := range p.n {
		s += n
	}
	return s
}

// delivery is what check found.
type delivery struct {
	distinct, duplicates int
}

// order says which copies of each key's records check requires in order.
type order int

const (
	// firstCopies: the first copy of each record in local order, as any
	// run without partial failures gives (a batch is sent only after the
	// previous one is acknowledged, so a late duplicate of a batch still
	// follows its first copy).
	firstCopies order = 1 << iota
	// lastCopies: the last copy of each record in local order, as the
	// re-sending after partial failures restores.
	lastCopies
	bothCopies = firstCopies | lastCopies
)

// check verifies that got (the upstream's records) holds every record in
// want (records per key, "key:index" for index < want[key]), except
// those in dropped, and that for every key the copies ord names come in
// index order.
func check(t testing.TB, want map[string]int, got []string, ord order, dropped map[string]map[int]bool) delivery {
	t.Helper()
	perKey := map[string][]int{}
	for _, s := range got {
		k, rest, ok := strings.Cut(s, ":")
		require.True(t, ok, "record %q", s)
		i, _, _ := strings.Cut(rest, ":")
		n, err := strconv.Atoi(i)
		require.NoError(t, err)
		perKey[k] = append(perKey[k], n)
	}
	var d delivery
	for k := range perKey {
		require.Contains(t, want, k, "upstream has records of key %s that was never written", k)
	}
	for k, n := range want {
		seq := perKey[k]
		// Every record present.
		seen := map[int]bool{}
		for _, i := range seq {
			require.Less(t, i, n, "key %s: record %d was never written", k, i)
			seen[i] = true
		}
		for i := range n {
			if !dropped[k][i] {
				require.True(t, seen[i], "key %s: record %d missing upstream", k, i)
			}
		}
		d.distinct += len(seen)
		d.duplicates += len(seq) - len(seen)
		if ord&lastCopies != 0 {
			// Walking backwards, the first sightings are the last copies.
			var last []int
			back := map[int]bool{}
			for j := len(seq) - 1; j >= 0; j-- {
				if !back[seq[j]] {
					back[seq[j]] = true
					last = append(last, seq[j])
				}
			}
			slices.Reverse(last)
			requireAscending(t, last, "key %s: last copies out of order", k)
		}
		if ord&firstCopies != 0 {
			var first []int
			fwd := map[int]bool{}
			for _, i := range seq {
				if !fwd[i] {
					fwd[i] = true
					first = append(first, i)
				}
			}
			requireAscending(t, first, "key %s: first copies out of order", k)
		}
	}
	return d
}

// running is a Run in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// requireAscending fails with a short excerpt around the first
// inversion in s.
func requireAscending(t testing.TB, s []int, format string, args ...any) {
	t.Helper()
	for i := 1; i < len(s); i++ {
		if s[i] < s[i-1] {
			t.Fatalf(format+": %d before %d (position %d of %d, around %v)", append(args, s[i-1], s[i], i, len(s), s[max(0, i-5):min(len(s), i+5)])...)
		}
	}
}

// runForwarder runs f in the background until the test ends or stop.
func runForwarder(t testing.TB, f *Forwarder) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f.Run(ctx) }()
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// wait returns Run's result once it has returned.
func (r *running) wait() error {
	r.once.Do(func() { r.err = <-r.done })
	return r.err
}

// stop cancels Run and returns its result.
func (r *running) stop() error {
	r.cancel()
	return r.wait()
}

// hangGuard bounds a wait during which the Forwarder reports no event at
// all (f.changed): only a hang gets there, as even a hung call ends after
// RequestTimeout (30s by default) with a failure event. Waits are
// otherwise not timed: on a loaded machine a drain may take long, and
// go test's -timeout ends a wait whose condition never holds.
const hangGuard = 2 * time.Minute

// waitFor checks cond each time f reports an event (a batch
// acknowledged, a call failed or answered, Run started or returned) until
// it holds. cond must become true through such events, or while they go
// on (e.g. calls failing while the reader fills its queues). It fails,
// with f's Stats and every goroutine's stack, if f reports nothing for
// hangGuard.
func waitFor(t testing.TB, f *Forwarder, what string, cond func() bool) {
	t.Helper()
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	for !cond() {
		select {
		case <-f.changed:
			guard.Reset(hangGuard)
		case <-guard.C:
			st, err := f.Stats()
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("waiting for %s: no forwarder event for %v; stats %+v (err %v)\n%s", what, hangGuard, st, err, buf)
		}
	}
}

// waitDrained waits until f has no lag. Stats reads up to ExactLagRecords
// records per shard, so it is called only once every shard's acknowledged
// position has reached the shard's last record.
func waitDrained(t testing.TB, f *Forwarder) Stats {
	t.Helper()
	var st Stats
	waitFor(t, f, "the forwarder to drain", func() bool {
		if !ackedAll(t, f) {
			return false
		}
		var err error
		st, err = f.Stats()
		require.NoError(t, err)
		return st.LagRecords == 0
	})
	return st
}

// ackedAll reports whether every shard of f's stream has been
// acknowledged up to its last visible record (or trimmed past it).
func ackedAll(t testing.TB, f *Forwarder) bool {
	t.Helper()
	descs, err := f.db.ListShards(f.cfg.Stream)
	require.NoError(t, err)
	for _, d := range descs {
		first, last, err := f.bounds(d.ShardID)
		require.NoError(t, err)
		f.mu.Lock()
		p := f.mu.pos[d.ShardID]
		f.mu.Unlock()
		var acked uint64
		if p != nil {
			p.mu.Lock()
			acked = p.acked
			p.mu.Unlock()
		}
		if max(acked+1, first) <= last {
			return false
		}
	}
	return true
}
