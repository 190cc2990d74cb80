package engine_test

// The crash loop: a child process (this test binary, re-executed with
// -test.run=^TestCrashChild$) writes with the default durability from
// several goroutines and reports every acknowledged record to the parent
// over a pipe; the parent SIGKILLs it at a random moment, reopens the
// directory and checks Invariants 1, 2, 4 and 5: every acknowledged record
// is present and unchanged, sequence numbers strictly increase per shard
// with no gaps, no record appears twice, arrival times never decrease,
// every record sits in the shard its hash key routed it to, and writing
// continues. Some cycles reshard during the writes; the "trim" stream has
// a short retention so the background trimmer deletes records (and drops
// expired closed shards) while the child is killed; the "churn" stream is
// deleted and recreated all the time, and must never mix incarnations.
//
// KVSTREAM_CRASH_CYCLES=N sets the number of cycles (default 50, or 10
// with -short); KVSTREAM_CRASH_SEED replays the parent's choices.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/shard"
	"go.uber.org/goleak"
)

const (
	crashEnvDir   = "KVSTREAM_CRASH_CHILD_DIR"
	crashEnvMode  = "KVSTREAM_CRASH_CHILD_MODE"
	crashEnvCycle = "KVSTREAM_CRASH_CHILD_CYCLE"
	crashEnvSeed  = "KVSTREAM_CRASH_CHILD_SEED"

	crashStream     = "crash" // 24 h retention: nothing may ever go missing
	trimStream      = "trim"  // short retention: the trimmer runs during writes
	churnStream     = "churn" // deleted and recreated over and over
	crashRetention  = 24 * time.Hour
	trimRetention   = 300 * time.Millisecond
	crashEpochLen   = 10 // cycles per data directory
	crashChildLimit = 60 * time.Second
)

// TestMain checks that the package's tests leave no goroutine behind
// (the engine owns goroutines: the Writer, the trimmer, tail waiters).
// Child processes (the crash child, the fail-stop children) skip the
// check: they are killed, end with a fatal failure, or block the goroutine
// that hit the failure on purpose.
func TestMain(m *testing.M) {
	if os.Getenv(crashEnvDir) != "" || os.Getenv(failStopEnvCase) != "" {
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

// crashChildOptions are the child's options: default durability (fsync
// before ack) and a fast trimmer; everything else default.
func crashChildOptions() *engine.Options {
	return &engine.Options{MinRetention: 10 * time.Millisecond, TrimInterval: 20 * time.Millisecond}
}

// TestCrashChild is the child side of TestCrashLoop. It does nothing in a
// normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnvDir)
	if dir == "" {
		t.Skip("the child process of TestCrashLoop")
	}
	cycle, _ := strconv.Atoi(os.Getenv(crashEnvCycle))
	seed, _ := strconv.ParseUint(os.Getenv(crashEnvSeed), 10, 64)
	crashChild(dir, os.Getenv(crashEnvMode), cycle, seed)
}

// crashReporter writes one line per acknowledged record to fd 3. A line is
// written only after the put returned nil, in one write(2) call, so the
// parent never sees an ack for a record that was not acknowledged (a line
// cut by the kill has no newline and is ignored).
type crashReporter struct {
	mu sync.Mutex
	f  *os.File
}

func (r *crashReporter) send(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.f.Write(b); err != nil {
		os.Exit(4) // the parent went away
	}
}

func (r *crashReporter) fail(format string, args ...any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " | ")
	r.send([]byte("E " + msg + "\n"))
}

func crashAckLine(b []byte, stream string, res engine.PutResult, id string, data []byte) []byte {
	return fmt.Appendf(b, "A %s %d %s %s %x\n", stream, uint32(res.ShardID), res.SequenceNumber, id, xxhash.Sum64(data))
}

// crashPayload returns a unique record payload: "<id>:<random bytes>".
func crashPayload(rng *rand.Rand, id string) []byte {
	b := make([]byte, 0, len(id)+1+300)
	b = append(b, id...)
	b = append(b, ':')
	for range rng.IntN(120) {
		b = append(b, byte(rng.Uint32()))
	}
	return b
}

func crashChild(dir, mode string, cycle int, seed uint64) {
	rep := &crashReporter{f: os.NewFile(3, "acks")}
	time.AfterFunc(crashChildLimit, func() { os.Exit(3) }) // never outlive a dead parent
	db, err := engine.Open(dir, crashChildOptions())
	if err != nil {
		rep.fail("open: %v", err)
		os.Exit(2)
	}
	rep.send([]byte("R\n"))
	ctx := context.Background()
	var wg sync.WaitGroup
	writer := func(g int, stream string, batch bool) {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, uint64(g)))
		var line []byte
		for n := 0; ; n++ {
			entries := make([]engine.Entry, 1+rng.IntN(25))
			if !batch {
				entries = entries[:1]
			}
			ids := make([]string, len(entries))
			for i := range entries {
				ids[i] = fmt.Sprintf("c%dg%dn%di%d", cycle, g, n, i)
				entries[i] = engine.Entry{PartitionKey: fmt.Sprintf("pk-%d", rng.IntN(64)), Data: crashPayload(rng, ids[i])}
				if rng.IntN(10) == 0 {
					entries[i].ExplicitHashKey = shard.HashKey{Hi: rng.Uint64(), Lo: rng.Uint64()}.String()
				}
			}
			var results []engine.PutResult
			var err error
			if batch {
				results, err = db.PutRecords(ctx, stream, entries)
			} else {
				var r engine.PutResult
				r, err = db.PutRecord(ctx, stream, entries[0])
				results = []engine.PutResult{r}
			}
			if err != nil {
				rep.fail("%s put: %v", stream, err)
				return
			}
			line = line[:0]
			for i, r := range results {
				if r.Err != nil {
					rep.fail("%s put entry %d: %v", stream, i, r.Err)
					return
				}
				line = crashAckLine(line, stream, r, ids[i], entries[i].Data)
			}
			rep.send(line)
		}
	}
	wg.Add(6)
	go writer(0, crashStream, false)
	go writer(1, crashStream, false)
	go writer(2, crashStream, true)
	go writer(3, crashStream, true)
	go writer(4, trimStream, true)
	go writer(5, trimStream, false)
	if mode == "reshard" {
		wg.Add(2)
		go crashResharder(db, rep, &wg, crashStream, seed+100)
		go crashResharder(db, rep, &wg, trimStream, seed+200)
	}
	wg.Add(1)
	go crashChurner(db, rep, &wg, cycle, seed+300)
	wg.Wait()
	// Only reached after a failure: stay alive until killed so the parent
	// reads the error line.
	select {}
}

// crashResharder splits, merges and rescales a stream while it is written,
// keeping 2 to 8 open shards.
func crashResharder(db *engine.DB, rep *crashReporter, wg *sync.WaitGroup, stream string, seed uint64) {
	defer wg.Done()
	rng := rand.New(rand.NewPCG(seed, 7))
	for {
		time.Sleep(time.Duration(2+rng.IntN(30)) * time.Millisecond)
		shards, err := db.ListShards(stream)
		if err != nil {
			rep.fail("ListShards %s: %v", stream, err)
			return
		}
		var open []engine.ShardDescription
		for _, s := range shards {
			if s.Open() {
				open = append(open, s)
			}
		}
		if len(open) == 0 {
			rep.fail("ListShards %s: no open shard", stream)
			return
		}
		var op string
		switch k := rng.IntN(3); {
		case k == 0 && len(open) < 8:
			s := open[rng.IntN(len(open))]
			mid := shard.Mid(s.HashKeyRange.Start, s.HashKeyRange.End)
			op = fmt.Sprintf("split %s at %s", s.ShardID, mid)
			err = db.SplitShard(stream, s.ShardID, mid.String())
		case k == 1 && len(open) > 2:
			sortShardsByStart(open)
			i := rng.IntN(len(open) - 1)
			op = fmt.Sprintf("merge %s %s", open[i].ShardID, open[i+1].ShardID)
			err = db.MergeShards(stream, open[i].ShardID, open[i+1].ShardID)
		default:
			lo, hi := max(2, (len(open)+1)/2), min(8, 2*len(open))
			target := lo + rng.IntN(hi-lo+1)
			op = fmt.Sprintf("update shard count %d -> %d", len(open), target)
			err = db.UpdateShardCount(stream, target)
		}
		if err != nil && !errors.Is(err, engine.ErrResourceInUse) && !errors.Is(err, engine.ErrInvalidArgument) {
			rep.fail("%s on %s: %v", op, stream, err)
			return
		}
		rep.send([]byte("S " + stream + "\n"))
	}
}

// crashChurner deletes and recreates the churn stream over and over and
// writes a few records to each incarnation ("generation"). It reports
// "D" after each DeleteStream returned and "C <gen>" after each
// CreateStream returned, before writing to that generation; record ids
// carry the generation, so the parent can tell incarnations apart.
func crashChurner(db *engine.DB, rep *crashReporter, wg *sync.WaitGroup, cycle int, seed uint64) {
	defer wg.Done()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 3))
	var line []byte
	for k := 0; ; k++ {
		gen := cycle*100000 + k
		if err := db.DeleteStream(ctx, churnStream); err == nil {
			rep.send([]byte("D\n"))
		} else if !errors.Is(err, engine.ErrStreamNotFound) {
			rep.fail("DeleteStream %s: %v", churnStream, err)
			return
		}
		time.Sleep(time.Duration(rng.IntN(10)) * time.Millisecond)
		if err := db.CreateStream(churnStream, engine.StreamConfig{ShardCount: 1 + rng.IntN(3)}); err != nil {
			rep.fail("CreateStream %s: %v", churnStream, err)
			return
		}
		rep.send(fmt.Appendf(nil, "C %d\n", gen))
		for i := range 1 + rng.IntN(20) {
			id := fmt.Sprintf("churn%d-%d", gen, i)
			data := crashPayload(rng, id)
			r, err := db.PutRecord(ctx, churnStream, engine.Entry{PartitionKey: fmt.Sprint(rng.IntN(8)), Data: data})
			if err != nil {
				rep.fail("%s put: %v", churnStream, err)
				return
			}
			rep.send(crashAckLine(line[:0], churnStream, r, id, data))
		}
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
	}
}

// crashChurn is what the parent knows of the churn stream: the last
// generation the child created, whether a delete was reported after it,
// and the acknowledged records of that generation.
type crashChurn struct {
	gen     int // -1: none created yet
	deleted bool
	acked   map[string]crashAck
}

func sortShardsByStart(s []engine.ShardDescription) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].HashKeyRange.Start.Cmp(s[j-1].HashKeyRange.Start) < 0; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// crashAck is an acknowledged record as the child reported it.
type crashAck struct {
	stream string
	shard  uint32
	seq    string
	hash   string
	cycle  int
}

// crashCycleStats is what one child did before it died.
type crashCycleStats struct {
	acks, reshards, churns int
	errs                   []string
	ready                  bool
}

func crashCycles(t *testing.T) int {
	if v := os.Getenv("KVSTREAM_CRASH_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("KVSTREAM_CRASH_CYCLES=%q is not a positive integer", v)
		}
		return n
	}
	if testing.Short() {
		return 10
	}
	return 50
}

// TestRegressionReshardDeadlock (found by the crash loop, fixed in
// 6f5c7d4): a reshard took the stream's lock
// exclusively (updateMeta) and then counted open shards across all streams
// with openShardsLocked, which read-locks every stream including the same
// one: the reshard never returned and every later put to the stream
// blocked behind it.
func TestRegressionReshardDeadlock(t *testing.T) {
	db, err := engine.Open("db", &engine.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, n := range []string{"a", "b"} {
		if err := db.CreateStream(n, engine.StreamConfig{ShardCount: 2}); err != nil {
			t.Fatal(err)
		}
	}
	half := shard.Mid(engine.HashKey{}, engine.MaxHashKey)
	quarter := shard.Mid(engine.HashKey{}, half)
	ops := []func() error{
		func() error { return db.SplitShard("a", 0, quarter.String()) },
		func() error { return db.MergeShards("a", 2, 3) },
		func() error { return db.UpdateShardCount("b", 3) },
	}
	for i, op := range ops {
		done := make(chan error, 1)
		go func() { done <- op() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("reshard %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("reshard %d did not return within 10 s (deadlock)", i)
		}
		if _, err := db.PutRecord(context.Background(), "a", engine.Entry{PartitionKey: "k", Data: []byte("x")}); err != nil {
			t.Fatalf("put after reshard %d: %v", i, err)
		}
	}
}

func TestCrashLoop(t *testing.T) {
	if os.Getenv(crashEnvDir) != "" {
		t.Skip("in the crash child")
	}
	cycles := crashCycles(t)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("KVSTREAM_CRASH_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("crash loop: %d cycles, seed %d (KVSTREAM_CRASH_SEED=%d replays the parent's choices)", cycles, seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	root := t.TempDir()
	start := time.Now()

	var (
		dir        string
		clock      time.Time // the parent reads with this fixed clock
		acked      map[string]crashAck
		churn      *crashChurn
		totalAcks  int
		totalResh  int
		totalTrim  int
		totalChurn int
		earlyKills int
		// reshard cycles that ran long enough to finish a reshard
		longReshardCycles int
	)
	for cycle := 0; cycle < cycles; cycle++ {
		if cycle%crashEpochLen == 0 {
			dir = filepath.Join(root, fmt.Sprintf("epoch-%d", cycle/crashEpochLen))
			clock = crashCreateStreams(t, dir)
			acked = make(map[string]crashAck)
			churn = &crashChurn{gen: -1, acked: map[string]crashAck{}}
		}
		mode := "plain"
		if cycle%3 == 2 {
			mode = "reshard"
		}
		early := rng.IntN(8) == 0
		delay := time.Duration(10+rng.IntN(250)) * time.Millisecond
		if early {
			delay = time.Duration(rng.IntN(40)) * time.Millisecond
			earlyKills++
		}
		st, killedAt := crashRunChild(t, dir, mode, cycle, rng.Uint64(), delay, early, acked, churn)
		if len(st.errs) > 0 {
			t.Fatalf("cycle %d (%s): the child reported errors:\n%s", cycle, mode, strings.Join(st.errs, "\n"))
		}
		if !early && st.acks == 0 {
			t.Fatalf("cycle %d (%s): the child acknowledged nothing in %v", cycle, mode, delay)
		}
		if mode == "reshard" && !early && delay >= 150*time.Millisecond {
			longReshardCycles++
		}
		if testing.Verbose() {
			t.Logf("cycle %d (%s): %d acks, %d reshards, killed %v after first ack (early %v)", cycle, mode, st.acks, st.reshards, delay, early)
		}
		totalAcks += st.acks
		totalResh += st.reshards
		totalChurn += st.churns
		trimmed := crashVerify(t, dir, clock, killedAt, acked, churn, cycle)
		totalTrim += trimmed
		if t.Failed() {
			kept := filepath.Join(os.TempDir(), fmt.Sprintf("kvstream-crash-%d-cycle-%d", seed, cycle))
			if err := os.Rename(dir, kept); err != nil {
				kept = fmt.Sprintf("(not kept: %v)", err)
			}
			t.Fatalf("cycle %d (%s, seed %d) failed; data directory kept at %s", cycle, mode, seed, kept)
		}
	}
	if longReshardCycles >= 2 && totalResh == 0 {
		t.Errorf("no reshard finished in %d reshard cycles of 150 ms or more while writers were running (see TestRegressionReshardDeadlock)", longReshardCycles)
	}
	t.Logf("crash loop: %d cycles (%d killed early) in %v: %d acknowledged records verified, %d reshards, %d stream re-creations, %d acknowledged records trimmed by retention",
		cycles, earlyKills, time.Since(start).Round(time.Millisecond), totalAcks, totalResh, totalChurn, totalTrim)
}

// crashCreateStreams creates the two streams of a new epoch and returns
// the fixed clock the parent reads with: the creation time, so every
// record (arrived later) is within retention for the parent's reads and
// the parent's own trimmer deletes nothing.
func crashCreateStreams(t *testing.T, dir string) time.Time {
	t.Helper()
	db, err := engine.Open(dir, crashChildOptions())
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	if err := db.CreateStream(crashStream, engine.StreamConfig{ShardCount: 4, Retention: crashRetention}); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateStream(trimStream, engine.StreamConfig{ShardCount: 2, Retention: trimRetention}); err != nil {
		t.Fatal(err)
	}
	now := time.Now() // after creation: the streams are ACTIVE at this time
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return now
}

// crashRunChild starts a child on dir, kills it with SIGKILL after delay
// (counted from its first acknowledged record unless early), and collects
// its acknowledgements into acked.
func crashRunChild(t *testing.T, dir, mode string, cycle int, seed uint64, delay time.Duration, early bool, acked map[string]crashAck, churn *crashChurn) (crashCycleStats, time.Time) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		crashEnvDir+"="+dir, crashEnvMode+"="+mode,
		crashEnvCycle+"="+strconv.Itoa(cycle), crashEnvSeed+"="+strconv.FormatUint(seed, 10))
	cmd.ExtraFiles = []*os.File{pw}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = pw.Close()

	var st crashCycleStats
	firstAck := make(chan struct{})
	readDone := make(chan struct{})
	var lines []string
	go func() {
		defer close(readDone)
		br := bufio.NewReaderSize(pr, 64<<10)
		signalled := false
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return // a final fragment without '\n' was cut by the kill: not an ack
			}
			l = l[:len(l)-1]
			lines = append(lines, l)
			if !signalled && strings.HasPrefix(l, "A ") {
				signalled = true
				close(firstAck)
			}
		}
	}()
	if !early {
		select {
		case <-firstAck:
		case <-readDone:
		case <-time.After(30 * time.Second):
			t.Errorf("cycle %d: no acknowledgement within 30 s", cycle)
		}
	}
	time.Sleep(delay)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	werr := cmd.Wait()
	killedAt := time.Now()
	<-readDone
	_ = pr.Close()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("cycle %d: the child did not die of SIGKILL (%v):\n%s", cycle, werr, out.String())
	}
	for _, l := range lines {
		f := strings.Fields(l)
		switch {
		case l == "R":
			st.ready = true
		case len(f) == 6 && f[0] == "A":
			sh, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil {
				t.Fatalf("cycle %d: bad ack line %q", cycle, l)
			}
			a := crashAck{stream: f[1], shard: uint32(sh), seq: f[3], hash: f[5], cycle: cycle}
			if f[1] == churnStream {
				churn.acked[f[4]] = a
				st.acks++
				continue
			}
			if _, dup := acked[f[4]]; dup {
				t.Errorf("cycle %d: id %s acknowledged twice", cycle, f[4])
			}
			acked[f[4]] = a
			st.acks++
		case l == "D":
			churn.deleted = true
			churn.acked = map[string]crashAck{}
		case len(f) == 2 && f[0] == "C":
			g, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("cycle %d: bad line %q", cycle, l)
			}
			// A new generation: the earlier ones are gone (deleted, perhaps
			// by a delete the last kill kept from being reported).
			churn.gen, churn.deleted, churn.acked = g, false, map[string]crashAck{}
			st.churns++
		case len(f) == 2 && f[0] == "S":
			st.reshards++
		case strings.HasPrefix(l, "E "):
			st.errs = append(st.errs, l[2:])
		default:
			t.Fatalf("cycle %d: unexpected line %q from the child", cycle, l)
		}
	}
	if len(st.errs) > 0 {
		st.errs = append(st.errs, "child output:\n"+out.String())
	}
	return st, killedAt
}

// crashVerify reopens dir and checks every invariant against acked. It
// returns how many acknowledged records are gone because retention
// trimmed them (only possible in the trim stream). It then writes one
// record per stream to show that writing continues, and adds it to acked.
func crashVerify(t *testing.T, dir string, clock time.Time, killedAt time.Time, acked map[string]crashAck, churn *crashChurn, cycle int) int {
	t.Helper()
	opts := crashChildOptions()
	opts.Clock = func() time.Time { return clock }
	db, err := engine.Open(dir, opts)
	if err != nil {
		t.Errorf("cycle %d: reopen after SIGKILL: %v", cycle, err)
		return 0
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Errorf("cycle %d: close: %v", cycle, err)
		}
	}()
	type present struct {
		stream string
		shard  uint32
		seq    string
		hash   string
	}
	found := make(map[string]present)
	lastSeq := make(map[string]engine.SequenceNumber) // stream/shard → last number
	for _, stream := range []string{crashStream, trimStream} {
		shards, err := db.ListShards(stream)
		if err != nil {
			t.Errorf("cycle %d: ListShards(%s): %v", cycle, stream, err)
			return 0
		}
		crashCheckTiling(t, cycle, stream, shards)
		for _, sd := range shards {
			recs := crashReadShard(t, db, stream, sd.ShardID)
			var prev engine.Record
			var nbytes int64
			for i, r := range recs {
				if i > 0 {
					// Counters are gap-free within one process; after a
					// kill the next process continues above the reserved
					// ceiling (Invariant 8), leaving a gap.
					if r.SequenceNumber.Counter != prev.SequenceNumber.Counter+1 &&
						(crashIncarnation(r.Data) == crashIncarnation(prev.Data) || r.SequenceNumber.Counter <= prev.SequenceNumber.Counter) {
						t.Errorf("cycle %d: %s/%s: counter %d follows %d (gap or disorder)", cycle, stream, sd.ShardID, r.SequenceNumber.Counter, prev.SequenceNumber.Counter)
					}
					a, _ := new(big.Int).SetString(prev.SequenceNumber.String(), 10)
					b, _ := new(big.Int).SetString(r.SequenceNumber.String(), 10)
					if a.Cmp(b) >= 0 {
						t.Errorf("cycle %d: %s/%s: sequence number %s does not exceed %s", cycle, stream, sd.ShardID, b, a)
					}
					if r.Timestamp.Before(prev.Timestamp) {
						t.Errorf("cycle %d: %s/%s: arrival %v before %v", cycle, stream, sd.ShardID, r.Timestamp, prev.Timestamp)
					}
				} else if stream == crashStream && r.SequenceNumber.Counter != 1 && r.SequenceNumber.Counter < 1<<32 {
					// A shard's first record is counter 1, unless it was
					// written by a process after a kill: counters then
					// continue above the reserved ceiling (≥ 2^32).
					t.Errorf("cycle %d: %s/%s: first record has counter %d, want 1 (nothing is trimmed in 24 h)", cycle, stream, sd.ShardID, r.SequenceNumber.Counter)
				}
				prev = r
				h := shard.PartitionerXXHash.Hash(r.PartitionKey)
				if r.ExplicitHashKey != nil {
					h = *r.ExplicitHashKey
				}
				if !sd.HashKeyRange.Contains(h) {
					t.Errorf("cycle %d: %s/%s: record with hash key %s outside the shard's range [%s, %s]", cycle, stream, sd.ShardID, h, sd.HashKeyRange.Start, sd.HashKeyRange.End)
				}
				id, _, ok := bytes.Cut(r.Data, []byte{':'})
				if !ok {
					t.Errorf("cycle %d: %s/%s: record %s has a malformed payload %q", cycle, stream, sd.ShardID, r.SequenceNumber, r.Data)
					continue
				}
				if p, dup := found[string(id)]; dup {
					t.Errorf("cycle %d: record %s is stored twice: %s/%d/%s and %s/%s/%s", cycle, id, p.stream, p.shard, p.seq, stream, sd.ShardID, r.SequenceNumber)
				}
				found[string(id)] = present{stream, uint32(sd.ShardID), r.SequenceNumber.String(), fmt.Sprintf("%x", xxhash.Sum64(r.Data))}
				nbytes += int64(shard.ValueLen(r.PartitionKey, r.ExplicitHashKey != nil, r.Data))
			}
			if int64(len(recs)) != sd.Records || nbytes != sd.Bytes {
				t.Errorf("cycle %d: %s/%s: stats say %d records, %d bytes; the shard holds %d records, %d bytes",
					cycle, stream, sd.ShardID, sd.Records, sd.Bytes, len(recs), nbytes)
			}
			if len(recs) > 0 {
				lastSeq[stream+"/"+sd.ShardID.String()] = prev.SequenceNumber
			}
		}
	}
	trimmed := 0
	for id, a := range acked {
		p, ok := found[id]
		if !ok {
			n, _ := engine.ParseSequenceNumber(a.seq)
			// Retention may have removed it if it arrived more than
			// trimRetention before the kill (Written is in seconds).
			if a.stream == trimStream && int64(n.Written)*1000 < killedAt.UnixMilli()-trimRetention.Milliseconds() {
				trimmed++
				delete(acked, id)
				continue
			}
			t.Errorf("cycle %d: acknowledged record %s (cycle %d, %s/%s, %s) is lost", cycle, id, a.cycle, a.stream, shard.ShardID(a.shard), a.seq)
			continue
		}
		if p.stream != a.stream || p.shard != a.shard || p.seq != a.seq || p.hash != a.hash {
			t.Errorf("cycle %d: acknowledged record %s changed: acked %s/%s/%s hash %s, found %s/%s/%s hash %s",
				cycle, id, a.stream, shard.ShardID(a.shard), a.seq, a.hash, p.stream, shard.ShardID(p.shard), p.seq, p.hash)
		}
	}
	crashVerifyChurn(t, db, churn, cycle)
	// Writing continues, after every record already there.
	for _, stream := range []string{crashStream, trimStream} {
		id := fmt.Sprintf("parent%d%s", cycle, stream)
		data := []byte(id + ":after the crash")
		res, err := db.PutRecord(context.Background(), stream, engine.Entry{PartitionKey: id, Data: data})
		if err != nil {
			t.Errorf("cycle %d: put after reopen: %v", cycle, err)
			continue
		}
		if last, ok := lastSeq[stream+"/"+res.ShardID.String()]; ok && res.SequenceNumber.Counter <= last.Counter {
			t.Errorf("cycle %d: put after reopen got counter %d in %s/%s, want more than %d", cycle, res.SequenceNumber.Counter, stream, res.ShardID, last.Counter)
		}
		if !db.Recovery().Clean && res.SequenceNumber.Counter < 1<<32 {
			t.Errorf("cycle %d: put after a kill got counter %d in %s/%s, want one above the reserved ceiling", cycle, res.SequenceNumber.Counter, stream, res.ShardID)
		}
		acked[id] = crashAck{stream: stream, shard: uint32(res.ShardID), seq: res.SequenceNumber.String(), hash: fmt.Sprintf("%x", xxhash.Sum64(data)), cycle: cycle}
	}
	return trimmed
}

// crashVerifyChurn checks that the churn stream, if it exists, holds one
// generation only (delete and recreate never mix data), that it is the
// last one created unless a later delete was reported, and that the
// acknowledged records of a surviving generation are all there.
func crashVerifyChurn(t *testing.T, db *engine.DB, churn *crashChurn, cycle int) {
	t.Helper()
	shards, err := db.ListShards(churnStream)
	if errors.Is(err, engine.ErrStreamNotFound) {
		return // deleted (perhaps by a delete the kill kept from being reported)
	}
	if err != nil {
		t.Errorf("cycle %d: ListShards(%s): %v", cycle, churnStream, err)
		return
	}
	crashCheckTiling(t, cycle, churnStream, shards)
	found := map[string]crashAck{}
	gens := map[int]int{}
	for _, sd := range shards {
		recs := crashReadShard(t, db, churnStream, sd.ShardID)
		if int64(len(recs)) != sd.Records {
			t.Errorf("cycle %d: %s/%s: stats say %d records, the shard holds %d", cycle, churnStream, sd.ShardID, sd.Records, len(recs))
		}
		for i, r := range recs {
			if r.SequenceNumber.Counter != uint64(i+1) {
				t.Errorf("cycle %d: %s/%s: record %d has counter %d", cycle, churnStream, sd.ShardID, i, r.SequenceNumber.Counter)
			}
			id, _, _ := bytes.Cut(r.Data, []byte{':'})
			var g, n int
			if _, err := fmt.Sscanf(string(id), "churn%d-%d", &g, &n); err != nil {
				t.Errorf("cycle %d: %s holds a record %q of no generation", cycle, churnStream, id)
				continue
			}
			gens[g]++
			found[string(id)] = crashAck{stream: churnStream, shard: uint32(sd.ShardID), seq: r.SequenceNumber.String(), hash: fmt.Sprintf("%x", xxhash.Sum64(r.Data))}
		}
	}
	if len(gens) > 1 {
		t.Errorf("cycle %d: %s mixes generations %v (delete+recreate must never mix data)", cycle, churnStream, gens)
	}
	for g := range gens {
		if g != churn.gen || churn.deleted {
			t.Errorf("cycle %d: %s holds records of generation %d; the last created is %d (deleted after: %v)", cycle, churnStream, g, churn.gen, churn.deleted)
		}
	}
	if churn.deleted {
		return // a newer, unreported generation: nothing was written to it
	}
	for id, a := range churn.acked {
		p, ok := found[id]
		if !ok {
			t.Errorf("cycle %d: acknowledged %s record %s (%s, %s) is lost", cycle, churnStream, id, shard.ShardID(a.shard), a.seq)
		} else if p.shard != a.shard || p.seq != a.seq || p.hash != a.hash {
			t.Errorf("cycle %d: acknowledged %s record %s changed", cycle, churnStream, id)
		}
	}
}

// crashIncarnation returns which process wrote a record: the cycle of a
// child's record ("c12g3n4i0:…" → "c12"), or the parent's verify step.
func crashIncarnation(data []byte) string {
	id, _, _ := bytes.Cut(data, []byte{':'})
	if i := bytes.IndexByte(id, 'g'); len(id) > 0 && id[0] == 'c' && i > 0 {
		return string(id[:i])
	}
	return string(bytes.TrimRight(id, "abcdefghijklmnopqrstuvwxyz"))
}

func crashReadShard(t *testing.T, db *engine.DB, stream string, id engine.ShardID) []engine.Record {
	t.Helper()
	it, err := db.Iterate(stream, id, engine.TrimHorizon())
	if err != nil {
		t.Errorf("Iterate(%s, %s): %v", stream, id, err)
		return nil
	}
	defer it.Close()
	var out []engine.Record
	for r := range it.All() {
		out = append(out, r.Clone())
	}
	if err := it.Err(); err != nil {
		t.Errorf("Iterate(%s, %s): %v", stream, id, err)
	}
	return out
}

// crashCheckTiling checks Invariant 5: the open shards tile the hash space.
func crashCheckTiling(t *testing.T, cycle int, stream string, shards []engine.ShardDescription) {
	t.Helper()
	var open []engine.ShardDescription
	for _, s := range shards {
		if s.Open() {
			open = append(open, s)
		}
	}
	sortShardsByStart(open)
	next := engine.HashKey{}
	for i, s := range open {
		if s.HashKeyRange.Start != next || s.HashKeyRange.Start.Cmp(s.HashKeyRange.End) > 0 {
			t.Errorf("cycle %d: %s: open shards do not tile the hash space at %s (%s starts at %s)", cycle, stream, next, s.ShardID, s.HashKeyRange.Start)
			return
		}
		if i == len(open)-1 {
			if s.HashKeyRange.End != engine.MaxHashKey {
				t.Errorf("cycle %d: %s: open shards end at %s", cycle, stream, s.HashKeyRange.End)
			}
			return
		}
		next = s.HashKeyRange.End.Add(1)
	}
	t.Errorf("cycle %d: %s has no open shard", cycle, stream)
}

// TestRegressionOpenLockedDirectory: Open of a directory another process
// holds must fail with ErrLocked (DESIGN: "a second Open gets a clear
// error"). It failed with ErrCorruption ("open <dir>: resource temporarily
// unavailable"): Open recognised a held lock by looking for "lock" in
// Pebble's error text, and the OS error for a held flock is EAGAIN. Found
// by the fault tests; fixed in 5e037d6.
func TestRegressionOpenLockedDirectory(t *testing.T) {
	dir := t.TempDir()
	crashCreateStreams(t, dir)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnvDir+"="+dir, crashEnvMode+"=plain", crashEnvCycle+"=0", crashEnvSeed+"=1")
	cmd.ExtraFiles = []*os.File{pw}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = pw.Close()
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	l, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || l != "R\n" {
		t.Fatalf("child: %q, %v", l, err)
	}
	db, err := engine.Open(dir, nil)
	if err == nil {
		_ = db.Close()
		t.Fatal("a second process opened a directory in use")
	}
	if !errors.Is(err, engine.ErrLocked) || engine.IsCorruptionError(err) {
		t.Fatalf("Open of a directory in use by another process = %v; want ErrLocked, not corruption", err)
	}
}
