package engine_test

// The model test: seeded random sequences of operations run against the
// engine and against a simple in-memory model (a map of slices), and every
// result must match. Operations: create/delete stream, PutRecord,
// PutRecords (partition keys and explicit hash keys), reads with every
// start position through both GetRecords (paged, following
// NextShardIterator to SHARD_END and ChildShards) and Iterate, tokens kept
// across reopen and expiry, SplitShard/MergeShards/UpdateShardCount,
// retention changes and explicit trims with an injected clock that moves
// forwards and backwards, durable consumers with checkpoints, and
// close/reopen.
//
// Replay a failure with the printed seed:
//
//	go test ./engine -run TestModel -model.seed=N [-model.ops=M]
//
// or KVSTREAM_MODEL_SEED / KVSTREAM_MODEL_OPS. Long runs: -model.ops=20000
// or -model.runs=50.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/shard"
)

var (
	modelSeed = flag.Uint64("model.seed", 0, "seed of TestModel (0: random; KVSTREAM_MODEL_SEED)")
	modelOps  = flag.Int("model.ops", 0, "operations per TestModel run (default 400; KVSTREAM_MODEL_OPS)")
	modelRuns = flag.Int("model.runs", 0, "TestModel runs with consecutive seeds (default 4)")
)

func modelEnvInt(flagVal uint64, env string) uint64 {
	if flagVal != 0 {
		return flagVal
	}
	if v := os.Getenv(env); v != "" {
		n, _ := strconv.ParseUint(v, 10, 64)
		return n
	}
	return 0
}

func TestModel(t *testing.T) {
	seed := modelEnvInt(*modelSeed, "KVSTREAM_MODEL_SEED")
	ops := int(modelEnvInt(uint64(*modelOps), "KVSTREAM_MODEL_OPS"))
	runs := *modelRuns
	if ops == 0 {
		ops = 400
		if testing.Short() {
			ops = 150
		}
	}
	if runs == 0 {
		runs = 4
		if seed != 0 {
			runs = 1
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	for i := range runs {
		s := seed + uint64(i)
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
			t.Logf("model seed %d, %d operations (replay: go test ./engine -run 'TestModel$' -model.seed=%d -model.ops=%d)", s, ops, s, ops)
			m := newModel(t, s)
			defer m.close()
			for n := 0; n < ops && !t.Failed(); n++ {
				m.step()
			}
			if t.Failed() {
				t.Logf("last operations:\n%s", strings.Join(m.history, "\n"))
			}
			t.Logf("model seed %d: %s", s, m.statsString())
		})
	}
}

// ---- the model ----

type mRec struct {
	pk      string
	ehk     *engine.HashKey
	data    string
	arrival int64
	seq     engine.SequenceNumber
}

type mShard struct {
	id               engine.ShardID
	rng              engine.HashRange
	parent, adjacent *engine.ShardID
	created          uint64
	closed           bool
	closedMs         int64
	recs             []mRec // counter = index+1
	trim             uint64 // records below this counter are deleted
	lastArrival      int64
}

func (sh *mShard) published() uint64 { return uint64(len(sh.recs)) }

type mStream struct {
	name        string
	gen         int // incarnation, to tell a recreated stream from the old one
	partitioner engine.Partitioner
	retentionMs int64
	watermark   int64 // arrivals below this stay expired, whatever the retention
	shards      []*mShard
	nextShard   uint32
	consumers   map[string]map[engine.ShardID]uint64 // checkpoints
}

type mToken struct {
	tok      string
	stream   string
	gen      int
	shard    engine.ShardID
	next     uint64 // first counter the token reads
	issuedMs int64
}

type model struct {
	t        *testing.T
	rng      *rand.Rand
	clk      *plClock
	fs       vfs.FS
	db       *engine.DB
	streams  map[string]*mStream
	gens     int
	lastSecs uint64
	tokens   []mToken
	history  []string
	stats    map[string]int
	ctx      context.Context
}

const (
	modelTTL = 5 * time.Minute
	maxOpen  = 8
)

func newModel(t *testing.T, seed uint64) *model {
	m := &model{t: t, rng: rand.New(rand.NewPCG(seed, seed>>7)), clk: &plClock{}, fs: vfs.NewMem(),
		streams: map[string]*mStream{}, stats: map[string]int{}, ctx: context.Background()}
	m.clk.ms.Store(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixMilli())
	m.open()
	return m
}

func (m *model) open() {
	db, err := engine.Open("db", &engine.Options{FS: m.fs, Clock: m.clk.Now, TrimInterval: time.Hour, IteratorTTL: modelTTL})
	if err != nil {
		m.t.Fatalf("open: %v", err)
	}
	m.db = db
}

func (m *model) close() {
	if m.db != nil {
		if err := m.db.Close(); err != nil {
			m.t.Errorf("close: %v", err)
		}
		m.db = nil
	}
}

func (m *model) now() int64 { return m.clk.ms.Load() }

func (m *model) logf(format string, args ...any) {
	m.history = append(m.history, fmt.Sprintf("[t=%d] ", m.now())+fmt.Sprintf(format, args...))
	if len(m.history) > 40 {
		m.history = m.history[1:]
	}
}

func (m *model) fatalf(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("model mismatch: "+format+"\nlast operations:\n%s", append(args, strings.Join(m.history, "\n"))...)
}

func (m *model) statsString() string {
	keys := make([]string, 0, len(m.stats))
	for k := range m.stats {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, m.stats[k])
	}
	return b.String()
}

// cutoff is the oldest visible arrival of s now.
func (m *model) cutoff(s *mStream) int64 {
	return max(m.now()-s.retentionMs, s.watermark)
}

// raiseRetention applies the documented rule for raising retention:
// records already past the old retention stay expired (the watermark),
// though the trimmer may not have deleted them yet. (A clock that steps
// back can show expired, untrimmed records again; the model allows that.)
func (m *model) raiseRetention(s *mStream, newMs int64) {
	if newMs > s.retentionMs {
		s.watermark = max(s.watermark, m.now()-s.retentionMs)
	}
}

// visible returns the records of sh readable from counter from.
func (m *model) visible(s *mStream, sh *mShard, from uint64) []mRec {
	from = max(from, sh.trim, 1)
	cut := m.cutoff(s)
	var out []mRec
	for c := from; c <= sh.published(); c++ {
		if r := sh.recs[c-1]; r.arrival >= cut {
			out = append(out, r)
		}
	}
	return out
}

func (s *mStream) shard(id engine.ShardID) *mShard {
	for _, sh := range s.shards {
		if sh.id == id {
			return sh
		}
	}
	return nil
}

func (s *mStream) open() []*mShard {
	var out []*mShard
	for _, sh := range s.shards {
		if !sh.closed {
			out = append(out, sh)
		}
	}
	slices.SortFunc(out, func(a, b *mShard) int { return a.rng.Start.Cmp(b.rng.Start) })
	return out
}

func (s *mStream) route(h engine.HashKey) *mShard {
	for _, sh := range s.open() {
		if sh.rng.Contains(h) {
			return sh
		}
	}
	return nil
}

func (m *model) allocSecs() uint64 {
	secs := uint64(m.now() / 1000)
	if secs <= m.lastSecs {
		secs = m.lastSecs + 1
	}
	m.lastSecs = secs
	return secs
}

// ---- helpers ----

func errKind(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, engine.ErrStreamNotFound):
		return "StreamNotFound"
	case errors.Is(err, engine.ErrStreamExists):
		return "StreamExists"
	case errors.Is(err, engine.ErrShardNotFound):
		return "ShardNotFound"
	case errors.Is(err, engine.ErrConsumerNotFound):
		return "ConsumerNotFound"
	case errors.Is(err, engine.ErrInvalidArgument):
		return "InvalidArgument"
	case errors.Is(err, engine.ErrValidation):
		return "Validation"
	case errors.Is(err, engine.ErrExpiredIterator):
		return "ExpiredIterator"
	case errors.Is(err, engine.ErrResourceInUse):
		return "ResourceInUse"
	case errors.Is(err, engine.ErrLimitExceeded):
		return "LimitExceeded"
	case errors.Is(err, context.Canceled):
		return "Canceled"
	}
	return "other: " + err.Error()
}

func (m *model) wantErr(op string, got error, want string) bool {
	m.t.Helper()
	if k := errKind(got); k != want {
		m.fatalf("%s: engine error %v (%s), model expects %s", op, got, k, want)
	}
	return got == nil
}

func (m *model) pick(names []string) string { return names[m.rng.IntN(len(names))] }

func (m *model) streamNames() []string {
	var out []string
	for n := range m.streams {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// randomStream returns an existing stream (or, sometimes, a missing name).
func (m *model) randomStream() (string, *mStream) {
	names := m.streamNames()
	if len(names) == 0 || m.rng.IntN(20) == 0 {
		n := m.pick([]string{"s0", "s1", "s2", "missing"})
		return n, m.streams[n]
	}
	n := m.pick(names)
	return n, m.streams[n]
}

func randomHashKey(rng *rand.Rand) engine.HashKey {
	return engine.HashKey{Hi: rng.Uint64(), Lo: rng.Uint64()}
}

// hashIn returns a random hash key in r, often at its edges.
func hashIn(rng *rand.Rand, r engine.HashRange) engine.HashKey {
	switch rng.IntN(4) {
	case 0:
		return r.Start
	case 1:
		return r.End
	}
	lo, _ := new(big.Int).SetString(r.Start.String(), 10)
	hi, _ := new(big.Int).SetString(r.End.String(), 10)
	span := new(big.Int).Sub(hi, lo)
	span.Add(span, big.NewInt(1))
	r128, _ := new(big.Int).SetString(randomHashKey(rng).String(), 10)
	off := r128.Mod(r128, span)
	h, _ := engine.ParseHashKey(off.Add(off, lo).String())
	return h
}

// ---- operations ----

func (m *model) step() {
	type op struct {
		w  int
		fn func()
	}
	ops := []op{
		{3, m.opCreate}, {1, m.opDelete}, {25, m.opPut}, {15, m.opPutRecords},
		{20, m.opRead}, {4, m.opLatestThenPut}, {4, m.opSaveToken}, {5, m.opUseToken},
		{3, m.opSplit}, {3, m.opMerge}, {2, m.opUpdateShardCount},
		{3, m.opSetRetention}, {4, m.opTrim}, {8, m.opClock},
		{5, m.opConsume}, {1, m.opDeleteConsumer}, {3, m.opReopen}, {2, m.opDescribe},
	}
	total := 0
	for _, o := range ops {
		total += o.w
	}
	n := m.rng.IntN(total)
	for _, o := range ops {
		if n < o.w {
			o.fn()
			return
		}
		n -= o.w
	}
}

var modelRetentions = []time.Duration{time.Minute, 10 * time.Minute, time.Hour, 24 * time.Hour}

func (m *model) opCreate() {
	name := m.pick([]string{"s0", "s1", "s2"})
	n := 1 + m.rng.IntN(4)
	ret := modelRetentions[m.rng.IntN(len(modelRetentions))]
	part := engine.PartitionerXXHash
	if m.rng.IntN(2) == 0 {
		part = engine.PartitionerMD5
	}
	m.logf("CreateStream %s shards=%d retention=%v partitioner=%v", name, n, ret, part)
	m.stats["create"]++
	err := m.db.CreateStream(name, engine.StreamConfig{ShardCount: n, Retention: ret, Partitioner: part})
	if _, ok := m.streams[name]; ok {
		m.wantErr("CreateStream", err, "StreamExists")
		return
	}
	if !m.wantErr("CreateStream", err, "ok") {
		return
	}
	m.gens++
	s := &mStream{name: name, gen: m.gens, partitioner: part, retentionMs: ret.Milliseconds(), nextShard: uint32(n),
		consumers: map[string]map[engine.ShardID]uint64{}, watermark: -1 << 62}
	secs := m.allocSecs()
	for i, r := range shard.SplitHashSpace(n) {
		s.shards = append(s.shards, &mShard{id: engine.ShardID(i), rng: r, created: secs})
	}
	m.streams[name] = s
	m.checkShards(s)
}

func (m *model) opDelete() {
	name, s := m.randomStream()
	m.logf("DeleteStream %s", name)
	m.stats["delete"]++
	err := m.db.DeleteStream(m.ctx, name)
	if s == nil {
		m.wantErr("DeleteStream", err, "StreamNotFound")
		return
	}
	m.wantErr("DeleteStream", err, "ok")
	delete(m.streams, name)
}

// entry returns a random entry for s: a partition key, or an explicit
// hash key inside a random open shard.
func (m *model) entry(s *mStream, id int) engine.Entry {
	e := engine.Entry{PartitionKey: fmt.Sprintf("pk%d", m.rng.IntN(20)), Data: fmt.Appendf(nil, "r%d-%x", id, m.rng.Uint32())}
	if s != nil && m.rng.IntN(4) == 0 {
		open := s.open()
		e.ExplicitHashKey = hashIn(m.rng, open[m.rng.IntN(len(open))].rng).String()
	} else if m.rng.IntN(30) == 0 {
		e.ExplicitHashKey = randomHashKey(m.rng).String()
	}
	return e
}

// apply appends the entries to the model as the engine must have, and
// checks each result.
func (m *model) apply(op string, s *mStream, es []engine.Entry, res []engine.PutResult) {
	m.t.Helper()
	now := m.now()
	for i, e := range es {
		var h engine.HashKey
		var ehk *engine.HashKey
		if e.ExplicitHashKey != "" {
			h, _ = engine.ParseHashKey(e.ExplicitHashKey)
			ehk = &h
		} else {
			h = s.partitioner.Hash(e.PartitionKey)
		}
		sh := s.route(h)
		arrival := max(now, sh.lastArrival)
		sh.lastArrival = arrival
		want := engine.SequenceNumber{ShardCreated: sh.created, Shard: uint32(sh.id), Counter: sh.published() + 1, Written: uint64(arrival / 1000)}
		sh.recs = append(sh.recs, mRec{pk: e.PartitionKey, ehk: ehk, data: string(e.Data), arrival: arrival, seq: want})
		if res[i].Err != nil || res[i].ShardID != sh.id || res[i].SequenceNumber != want {
			m.fatalf("%s entry %d (hash %s): engine put it in %s as %+v (err %v); model: %s as %+v", op, i, h, res[i].ShardID, res[i].SequenceNumber, res[i].Err, sh.id, want)
		}
	}
}

func (m *model) opPut() {
	name, s := m.randomStream()
	e := m.entry(s, m.stats["records"])
	m.logf("PutRecord %s pk=%s ehk=%s", name, e.PartitionKey, e.ExplicitHashKey)
	m.stats["put"]++
	res, err := m.db.PutRecord(m.ctx, name, e)
	if s == nil {
		m.wantErr("PutRecord", err, "StreamNotFound")
		return
	}
	if m.wantErr("PutRecord", err, "ok") {
		m.stats["records"]++
		m.apply("PutRecord", s, []engine.Entry{e}, []engine.PutResult{res})
	}
}

func (m *model) opPutRecords() {
	name, s := m.randomStream()
	es := make([]engine.Entry, 1+m.rng.IntN(12))
	for i := range es {
		es[i] = m.entry(s, m.stats["records"]+i)
	}
	m.logf("PutRecords %s n=%d", name, len(es))
	m.stats["putrecords"]++
	res, err := m.db.PutRecords(m.ctx, name, es)
	if s == nil {
		m.wantErr("PutRecords", err, "StreamNotFound")
		return
	}
	if m.wantErr("PutRecords", err, "ok") {
		if len(res) != len(es) {
			m.fatalf("PutRecords returned %d results for %d entries", len(res), len(es))
		}
		m.stats["records"] += len(es)
		m.apply("PutRecords", s, es, res)
	}
}

// randomShard returns a shard of s to read (sometimes one that does not
// exist any more or never did).
func (m *model) randomShard(s *mStream) (engine.ShardID, *mShard) {
	if m.rng.IntN(15) == 0 {
		id := engine.ShardID(s.nextShard + uint32(m.rng.IntN(3)))
		if m.rng.IntN(2) == 0 && s.nextShard > 0 {
			id = engine.ShardID(m.rng.IntN(int(s.nextShard))) // perhaps dropped
		}
		return id, s.shard(id)
	}
	sh := s.shards[m.rng.IntN(len(s.shards))]
	return sh.id, sh
}

// position returns a random start position for sh and the first counter
// the model expects it to read, or the expected error kind.
func (m *model) position(s *mStream, sh *mShard) (engine.StartPosition, uint64, string) {
	pub := sh.published()
	someSeq := func() (engine.SequenceNumber, bool) {
		if pub == 0 {
			return engine.SequenceNumber{}, false
		}
		return sh.recs[m.rng.IntN(int(pub))].seq, true
	}
	switch k := m.rng.IntN(6); k {
	case 0:
		return engine.TrimHorizon(), 1, "ok"
	case 1:
		return engine.Latest(), pub + 1, "ok"
	case 2, 3:
		n, ok := someSeq()
		if !ok {
			return engine.TrimHorizon(), 1, "ok"
		}
		if m.rng.IntN(10) == 0 { // a number from another shard
			other := s.shards[m.rng.IntN(len(s.shards))]
			if other != sh && other.published() > 0 {
				n = other.recs[0].seq
				return engine.AtSequenceNumber(n), 0, "InvalidArgument"
			}
		}
		if k == 2 {
			return engine.AtSequenceNumber(n), min(n.Counter, pub+1), "ok"
		}
		return engine.AfterSequenceNumber(n), min(n.Counter+1, pub+1), "ok"
	case 4:
		var ts int64
		switch {
		case pub > 0 && m.rng.IntN(2) == 0:
			ts = sh.recs[m.rng.IntN(int(pub))].arrival + int64(m.rng.IntN(3)) - 1
		default:
			ts = m.now() - int64(m.rng.IntN(int(2*s.retentionMs)))
		}
		ts = min(ts, m.now())
		from := pub + 1
		for c := max(sh.trim, 1); c <= pub; c++ {
			if sh.recs[c-1].arrival >= max(ts, m.cutoff(s)) {
				from = c
				break
			}
		}
		return engine.AtTimestamp(time.UnixMilli(ts)), from, "ok"
	default:
		if m.rng.IntN(3) == 0 {
			return engine.AtTimestamp(time.UnixMilli(m.now() + 1000)), 0, "InvalidArgument"
		}
		return engine.TrimHorizon(), 1, "ok"
	}
}

func posString(p engine.StartPosition) string {
	switch p.Kind {
	case 3, 4:
		return fmt.Sprintf("%s(%d)", p.Kind, p.Sequence.Counter)
	case 5:
		return fmt.Sprintf("%s(%d)", p.Kind, p.Timestamp.UnixMilli())
	}
	return p.Kind.String()
}

func (m *model) compare(op string, sh *mShard, got []engine.Record, want []mRec) {
	m.t.Helper()
	if len(got) != len(want) {
		var g, w []uint64
		for _, r := range got {
			g = append(g, r.SequenceNumber.Counter)
		}
		for _, r := range want {
			w = append(w, r.seq.Counter)
		}
		m.fatalf("%s on %s: engine read %d records %v, model expects %d %v", op, sh.id, len(got), g, len(want), w)
	}
	for i, r := range got {
		w := want[i]
		ehkOK := (r.ExplicitHashKey == nil) == (w.ehk == nil) && (w.ehk == nil || *r.ExplicitHashKey == *w.ehk)
		if r.SequenceNumber != w.seq || r.ShardID != sh.id || r.PartitionKey != w.pk || string(r.Data) != w.data ||
			r.Timestamp.UnixMilli() != w.arrival || !ehkOK {
			m.fatalf("%s on %s: record %d is %s/%+v pk=%q data=%q t=%d; model: %+v pk=%q data=%q t=%d",
				op, sh.id, i, r.ShardID, r.SequenceNumber, r.PartitionKey, r.Data, r.Timestamp.UnixMilli(), w.seq, w.pk, w.data, w.arrival)
		}
	}
}

// readAll pages through GetRecords from tok with a random limit and
// checks the end: an open shard ends with a next iterator, a closed one
// read to its end with no next iterator and its children.
func (m *model) readAll(op string, s *mStream, sh *mShard, tok string) []engine.Record {
	m.t.Helper()
	limit := 1 + m.rng.IntN(7)
	if m.rng.IntN(3) == 0 {
		limit = 0 // the default maximum
	}
	var out []engine.Record
	for pages := 0; ; pages++ {
		if pages > 10000 {
			m.fatalf("%s: GetRecords never reaches the end", op)
		}
		res, err := m.db.GetRecords(m.ctx, tok, limit)
		if !m.wantErr(op+" GetRecords", err, "ok") {
			return nil
		}
		out = append(out, res.Records...)
		if res.NextShardIterator == "" {
			if !sh.closed {
				m.fatalf("%s: open shard %s returned no NextShardIterator", op, sh.id)
			}
			m.checkChildren(op, s, sh, res.ChildShards)
			return out
		}
		if len(res.Records) == 0 {
			if sh.closed && len(m.visible(s, sh, 1)) == 0 && sh.published() == 0 {
				m.fatalf("%s: closed empty shard %s still returns a NextShardIterator", op, sh.id)
			}
			if res.MillisBehindLatest != 0 {
				m.fatalf("%s: caught up but MillisBehindLatest = %d", op, res.MillisBehindLatest)
			}
			return out
		}
		tok = res.NextShardIterator
	}
}

func (m *model) checkChildren(op string, s *mStream, sh *mShard, got []engine.ChildShard) {
	m.t.Helper()
	var want []string
	for _, c := range s.shards {
		if (c.parent != nil && *c.parent == sh.id) || (c.adjacent != nil && *c.adjacent == sh.id) {
			ps := []engine.ShardID{*c.parent}
			if c.adjacent != nil {
				ps = append(ps, *c.adjacent)
			}
			want = append(want, fmt.Sprintf("%s%v[%s,%s]", c.id, ps, c.rng.Start, c.rng.End))
		}
	}
	var g []string
	for _, c := range got {
		g = append(g, fmt.Sprintf("%s%v[%s,%s]", c.ShardID, c.ParentShards, c.HashKeyRange.Start, c.HashKeyRange.End))
	}
	slices.Sort(want)
	slices.Sort(g)
	if !slices.Equal(g, want) {
		m.fatalf("%s: SHARD_END of %s lists children %v, model %v", op, sh.id, g, want)
	}
}

func (m *model) opRead() {
	name, s := m.randomStream()
	if s == nil {
		m.logf("GetShardIterator %s (missing)", name)
		_, err := m.db.GetShardIterator(name, 0, engine.TrimHorizon())
		m.wantErr("GetShardIterator", err, "StreamNotFound")
		return
	}
	id, sh := m.randomShard(s)
	if sh == nil {
		m.logf("GetShardIterator %s/%s (missing shard)", name, id)
		_, err := m.db.GetShardIterator(name, id, engine.TrimHorizon())
		m.wantErr("GetShardIterator", err, "ShardNotFound")
		_, err = m.db.Iterate(name, id, engine.TrimHorizon())
		m.wantErr("Iterate", err, "ShardNotFound")
		return
	}
	pos, from, want := m.position(s, sh)
	op := fmt.Sprintf("read %s/%s from %s", name, id, posString(pos))
	m.logf("%s", op)
	m.stats["read"]++
	if m.rng.IntN(2) == 0 {
		tok, err := m.db.GetShardIterator(name, id, pos)
		if !m.wantErr(op, err, want) {
			return
		}
		m.compare(op+" via GetRecords", sh, m.readAll(op, s, sh, tok), m.visible(s, sh, from))
		return
	}
	it, err := m.db.Iterate(name, id, pos)
	if !m.wantErr(op, err, want) {
		return
	}
	var got []engine.Record
	for r := range it.All() {
		got = append(got, r.Clone())
	}
	if err := it.Err(); err != nil {
		m.fatalf("%s: iterator error %v", op, err)
	}
	if ended := it.ShardEnded(); ended != sh.closed {
		m.fatalf("%s: ShardEnded = %v after reading everything, shard closed = %v", op, ended, sh.closed)
	}
	_ = it.Close()
	m.compare(op+" via Iterate", sh, got, m.visible(s, sh, from))
}

// opLatestThenPut takes a LATEST iterator and token on an open shard,
// puts one record routed to it, and expects exactly that record.
func (m *model) opLatestThenPut() {
	name, s := m.randomStream()
	if s == nil {
		return
	}
	open := s.open()
	sh := open[m.rng.IntN(len(open))]
	m.logf("LATEST on %s/%s then put", name, sh.id)
	m.stats["latest"]++
	tok, err := m.db.GetShardIterator(name, sh.id, engine.Latest())
	m.wantErr("GetShardIterator LATEST", err, "ok")
	it, err := m.db.Iterate(name, sh.id, engine.Latest())
	m.wantErr("Iterate LATEST", err, "ok")
	defer it.Close()
	if it.Next() {
		m.fatalf("LATEST iterator on %s returned a record before any put", sh.id)
	}
	e := engine.Entry{PartitionKey: "latest", ExplicitHashKey: hashIn(m.rng, sh.rng).String(), Data: fmt.Appendf(nil, "latest-%d", m.stats["records"])}
	res, err := m.db.PutRecord(m.ctx, name, e)
	m.wantErr("PutRecord", err, "ok")
	m.stats["records"]++
	m.apply("PutRecord", s, []engine.Entry{e}, []engine.PutResult{res})
	want := m.visible(s, sh, sh.published())
	var got []engine.Record
	for it.Next() {
		got = append(got, it.Record().Clone())
	}
	m.compare("LATEST Iterate after put", sh, got, want)
	m.compare("LATEST GetRecords after put", sh, m.readAll("LATEST", s, sh, tok), want)
}

func (m *model) opSaveToken() {
	name, s := m.randomStream()
	if s == nil {
		return
	}
	sh := s.shards[m.rng.IntN(len(s.shards))]
	pos, from, want := m.position(s, sh)
	m.logf("save token %s/%s at %s", name, sh.id, posString(pos))
	tok, err := m.db.GetShardIterator(name, sh.id, pos)
	if m.wantErr("GetShardIterator", err, want) {
		m.tokens = append(m.tokens, mToken{tok: tok, stream: name, gen: s.gen, shard: sh.id, next: from, issuedMs: m.now()})
		if len(m.tokens) > 8 {
			m.tokens = m.tokens[1:]
		}
	}
}

// opUseToken reads from a token saved earlier, perhaps across reopen,
// resharding, trimming, stream deletion and clock moves.
func (m *model) opUseToken() {
	if len(m.tokens) == 0 {
		return
	}
	tk := m.tokens[m.rng.IntN(len(m.tokens))]
	op := fmt.Sprintf("use token %s/%s next=%d issued=%d", tk.stream, tk.shard, tk.next, tk.issuedMs)
	m.logf("%s", op)
	m.stats["token"]++
	s := m.streams[tk.stream]
	var sh *mShard
	if s != nil && s.gen == tk.gen {
		sh = s.shard(tk.shard)
	}
	want := "ok"
	switch {
	case m.now()-tk.issuedMs > modelTTL.Milliseconds():
		want = "ExpiredIterator"
	case s == nil || s.gen != tk.gen:
		want = "StreamNotFound"
	case sh == nil:
		want = "ShardNotFound"
	}
	if want != "ok" {
		_, err := m.db.GetRecords(m.ctx, tk.tok, 0)
		m.wantErr(op, err, want)
		return
	}
	m.compare(op, sh, m.readAll(op, s, sh, tk.tok), m.visible(s, sh, tk.next))
}

func (m *model) reshardable() (string, *mStream) {
	name, s := m.randomStream()
	if s == nil {
		return name, nil
	}
	return name, s
}

func (m *model) opSplit() {
	name, s := m.reshardable()
	if s == nil {
		m.wantErr("SplitShard", m.db.SplitShard(name, 0, "1000"), "StreamNotFound")
		return
	}
	open := s.open()
	sh := open[m.rng.IntN(len(open))]
	var k engine.HashKey
	valid := true
	switch {
	case m.rng.IntN(8) == 0:
		k, valid = sh.rng.Start.Add(1), false // must be greater than Start+1
	case m.rng.IntN(2) == 0:
		k = shard.Mid(sh.rng.Start, sh.rng.End)
	default:
		k = hashIn(m.rng, sh.rng)
	}
	if k.Cmp(sh.rng.Start.Add(1)) <= 0 || k.Cmp(sh.rng.End) >= 0 {
		valid = false
	}
	if len(open) >= maxOpen {
		valid = false
		k = sh.rng.Start // invalid key, so nothing changes
	}
	m.logf("SplitShard %s %s at %s (valid %v)", name, sh.id, k, valid)
	m.stats["split"]++
	err := m.db.SplitShard(name, sh.id, k.String())
	if !valid {
		m.wantErr("SplitShard", err, "InvalidArgument")
		return
	}
	if !m.wantErr("SplitShard", err, "ok") {
		return
	}
	m.closeShard(sh)
	secs := m.allocSecs()
	p := sh.id
	m.addShard(s, engine.HashRange{Start: sh.rng.Start, End: k.Sub(1)}, &p, nil, secs)
	m.addShard(s, engine.HashRange{Start: k, End: sh.rng.End}, &p, nil, secs)
	m.checkShards(s)
}

func (m *model) closeShard(sh *mShard) {
	sh.closed = true
	sh.closedMs = m.now()
}

func (m *model) addShard(s *mStream, r engine.HashRange, parent, adjacent *engine.ShardID, secs uint64) *mShard {
	sh := &mShard{id: engine.ShardID(s.nextShard), rng: r, parent: parent, adjacent: adjacent, created: secs}
	s.nextShard++
	s.shards = append(s.shards, sh)
	return sh
}

func (m *model) opMerge() {
	name, s := m.reshardable()
	if s == nil {
		m.wantErr("MergeShards", m.db.MergeShards(name, 0, 1), "StreamNotFound")
		return
	}
	open := s.open()
	if len(open) < 2 {
		m.logf("MergeShards %s: one open shard, merging it with itself", name)
		err := m.db.MergeShards(name, open[0].id, open[0].id)
		m.wantErr("MergeShards self", err, "InvalidArgument")
		return
	}
	i := m.rng.IntN(len(open) - 1)
	a, b := open[i], open[i+1] // adjacent, a below b
	valid := true
	if m.rng.IntN(6) == 0 && len(open) > 2 {
		b = open[(i+2)%len(open)] // not adjacent (unless it wraps to a's neighbour)
	}
	if m.rng.IntN(4) == 0 {
		a, b = b, a // the reverse order is rejected, as Kinesis does
	}
	// Valid only as Kinesis: a's range ends just below b's.
	valid = a.rng.End != engine.MaxHashKey && a.rng.End.Add(1) == b.rng.Start
	m.logf("MergeShards %s %s %s (valid %v)", name, a.id, b.id, valid)
	m.stats["merge"]++
	err := m.db.MergeShards(name, a.id, b.id)
	if !valid {
		m.wantErr("MergeShards", err, "InvalidArgument")
		return
	}
	if !m.wantErr("MergeShards", err, "ok") {
		return
	}
	m.closeShard(a)
	m.closeShard(b)
	r := engine.HashRange{Start: a.rng.Start, End: b.rng.End}
	if b.rng.Start.Cmp(a.rng.Start) < 0 {
		r = engine.HashRange{Start: b.rng.Start, End: a.rng.End}
	}
	p, q := a.id, b.id
	m.addShard(s, r, &p, &q, m.allocSecs())
	m.checkShards(s)
}

// opUpdateShardCount rescales and adopts the engine's new shards after
// checking them: uniform open ranges, new ids in sequence, every new
// shard's parents known, intermediate shards closed and empty.
func (m *model) opUpdateShardCount() {
	name, s := m.reshardable()
	if s == nil {
		m.wantErr("UpdateShardCount", m.db.UpdateShardCount(name, 2), "StreamNotFound")
		return
	}
	n := len(s.open())
	lo, hi := (n+1)/2, min(2*n, maxOpen)
	target := lo + m.rng.IntN(hi-lo+1)
	valid := true
	if m.rng.IntN(8) == 0 {
		target, valid = 2*n+1, false
	}
	m.logf("UpdateShardCount %s %d -> %d", name, n, target)
	m.stats["rescale"]++
	err := m.db.UpdateShardCount(name, target)
	if !valid {
		m.wantErr("UpdateShardCount", err, "LimitExceeded")
		return
	}
	if !m.wantErr("UpdateShardCount", err, "ok") {
		return
	}
	got, err := m.db.ListShards(name)
	m.wantErr("ListShards", err, "ok")
	before := map[engine.ShardID]*mShard{}
	for _, sh := range s.shards {
		before[sh.id] = sh
	}
	var secs uint64
	now := m.now()
	created := false
	for _, d := range got {
		old := before[d.ShardID]
		if old != nil {
			if !old.closed && !d.Open() {
				old.closed, old.closedMs = true, now
			}
			continue
		}
		if uint32(d.ShardID) != s.nextShard {
			m.fatalf("UpdateShardCount created %s, want the next id %d", d.ShardID, s.nextShard)
		}
		if !created {
			secs, created = m.allocSecs(), true
		}
		sh := m.addShard(s, d.HashKeyRange, d.ParentShardID, d.AdjacentParentShardID, secs)
		before[sh.id] = sh
		if d.ParentShardID == nil || before[*d.ParentShardID] == nil ||
			(d.AdjacentParentShardID != nil && before[*d.AdjacentParentShardID] == nil) {
			m.fatalf("UpdateShardCount: new %s has unknown parents", d.ShardID)
		}
		if !d.Open() {
			m.closeShard(sh)
		}
	}
	var open []engine.HashRange
	for _, sh := range s.open() {
		open = append(open, sh.rng)
	}
	if want := shard.SplitHashSpace(target); !slices.Equal(open, want) {
		m.fatalf("UpdateShardCount %d: open ranges %v, want %v", target, open, want)
	}
	m.checkShards(s)
}

// checkShards compares ListShards with the model's shard table.
func (m *model) checkShards(s *mStream) {
	m.t.Helper()
	got, err := m.db.ListShards(s.name)
	if !m.wantErr("ListShards", err, "ok") {
		return
	}
	if len(got) != len(s.shards) {
		m.fatalf("ListShards %s: %d shards, model %d", s.name, len(got), len(s.shards))
	}
	for i, d := range got {
		sh := s.shards[i]
		ok := d.ShardID == sh.id && d.HashKeyRange == sh.rng && d.Open() == !sh.closed &&
			ptrEq(d.ParentShardID, sh.parent) && ptrEq(d.AdjacentParentShardID, sh.adjacent) &&
			d.StartingSequenceNumber.ShardCreated == sh.created && d.StartingSequenceNumber.Shard == uint32(sh.id)
		if !ok {
			m.fatalf("ListShards %s[%d] = %+v; model %s %v closed=%v parent=%v adjacent=%v created=%d",
				s.name, i, d, sh.id, sh.rng, sh.closed, sh.parent, sh.adjacent, sh.created)
		}
		live := 0
		for c := max(sh.trim, 1); c <= sh.published(); c++ {
			live++
		}
		if d.Records != int64(live) {
			m.fatalf("ListShards %s/%s counts %d records, model %d stored", s.name, sh.id, d.Records, live)
		}
	}
}

func ptrEq(a, b *engine.ShardID) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func (m *model) opSetRetention() {
	name, s := m.randomStream()
	d := modelRetentions[m.rng.IntN(len(modelRetentions))]
	m.logf("SetRetention %s %v", name, d)
	m.stats["retention"]++
	err := m.db.SetRetention(name, d)
	if s == nil {
		m.wantErr("SetRetention", err, "StreamNotFound")
		return
	}
	if m.wantErr("SetRetention", err, "ok") {
		m.raiseRetention(s, d.Milliseconds())
		s.retentionMs = d.Milliseconds()
	}
}

// opTrim runs the trimmer on a stream: records past retention are deleted
// and closed shards that closed before the cutoff and hold nothing are
// dropped from the catalog.
func (m *model) opTrim() {
	name, s := m.randomStream()
	m.logf("Trim %s", name)
	m.stats["trim"]++
	err := m.db.Trim(m.ctx, name)
	if s == nil {
		m.wantErr("Trim", err, "StreamNotFound")
		return
	}
	if !m.wantErr("Trim", err, "ok") {
		return
	}
	cut := m.cutoff(s) // past retention, or expired before a retention raise
	for _, sh := range s.shards {
		to := sh.published() + 1
		for c := max(sh.trim, 1); c <= sh.published(); c++ {
			if sh.recs[c-1].arrival >= cut {
				to = c
				break
			}
		}
		if to > sh.trim {
			sh.trim = to
		}
	}
	s.shards = slices.DeleteFunc(s.shards, func(sh *mShard) bool {
		return sh.closed && sh.closedMs < cut && (sh.trim > sh.published() || sh.published() == 0)
	})
	m.checkShards(s)
}

func (m *model) opClock() {
	var d time.Duration
	switch m.rng.IntN(8) {
	case 0:
		d = time.Millisecond
	case 1:
		d = time.Second
	case 2:
		d = 30 * time.Second
	case 3:
		d = 5 * time.Minute
	case 4:
		d = 20 * time.Minute
	case 5:
		d = 2 * time.Hour
	case 6:
		d = -3 * time.Second
	default:
		d = time.Duration(m.rng.IntN(1000)) * time.Millisecond
	}
	m.clk.Advance(d)
	m.logf("clock %+v", d)
}

// opConsume opens a durable consumer and reads, with a cancelled context,
// everything it has to deliver: all visible records after its
// checkpoints, each shard in order and each parent before its children;
// then it checkpoints some of them.
func (m *model) opConsume() {
	name, s := m.randomStream()
	cname := m.pick([]string{"c0", "c1"})
	if s == nil {
		_, err := m.db.Consumer(name, cname, nil)
		m.wantErr("Consumer", err, "StreamNotFound")
		return
	}
	cps, exists := s.consumers[cname]
	cfg := engine.ConsumerConfig{}
	if !exists {
		cps = map[engine.ShardID]uint64{}
		if m.rng.IntN(3) == 0 {
			cfg.Start = engine.Latest()
			for _, sh := range s.shards {
				cps[sh.id] = sh.published()
			}
		}
	}
	m.logf("Consumer %s/%s (new %v, start %v) checkpoints %v", name, cname, !exists, cfg.Start.Kind, cps)
	m.stats["consume"]++
	c, err := m.db.Consumer(name, cname, &cfg)
	if !m.wantErr("Consumer", err, "ok") {
		return
	}
	s.consumers[cname] = cps

	want := map[engine.ShardID][]mRec{}
	total := 0
	for _, sh := range s.shards {
		want[sh.id] = m.visible(s, sh, cps[sh.id]+1)
		total += len(want[sh.id])
	}
	ctx, cancel := context.WithCancel(m.ctx)
	cancel() // deliver what is there, then stop instead of waiting
	got := map[engine.ShardID][]engine.Record{}
	var order []engine.ShardID
	n := 0
	for r, err := range c.Records(ctx) {
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				m.fatalf("consumer %s/%s: %v", name, cname, err)
			}
			break
		}
		if n++; n > total {
			m.fatalf("consumer %s/%s delivered more than the %d records the model expects", name, cname, total)
		}
		got[r.ShardID] = append(got[r.ShardID], r.Clone())
		order = append(order, r.ShardID)
	}
	for _, sh := range s.shards {
		m.compare("consumer "+cname, sh, got[sh.id], want[sh.id])
	}
	// A parent's records all come before any of its children's.
	lastOf := map[engine.ShardID]int{}
	firstOf := map[engine.ShardID]int{}
	for i, id := range order {
		lastOf[id] = i
		if _, ok := firstOf[id]; !ok {
			firstOf[id] = i
		}
	}
	for _, sh := range s.shards {
		f, ok := firstOf[sh.id]
		if !ok {
			continue
		}
		for _, p := range []*engine.ShardID{sh.parent, sh.adjacent} {
			if p != nil {
				if l, ok := lastOf[*p]; ok && l > f {
					m.fatalf("consumer %s/%s read child %s before finishing parent %s", name, cname, sh.id, *p)
				}
			}
		}
	}
	// Checkpoint a random delivered record of some shards.
	for _, id := range slices.Sorted(mapsKeys(got)) {
		recs := got[id]
		if m.rng.IntN(2) == 0 {
			r := recs[m.rng.IntN(len(recs))]
			if err := c.Checkpoint(r); err != nil {
				m.fatalf("Checkpoint %s: %v", r.SequenceNumber, err)
			}
			cps[id] = r.SequenceNumber.Counter
		}
	}
}

func mapsKeys[K comparable, V any](mp map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range mp {
			if !yield(k) {
				return
			}
		}
	}
}

func (m *model) opDeleteConsumer() {
	name, s := m.randomStream()
	cname := m.pick([]string{"c0", "c1"})
	m.logf("DeleteConsumer %s/%s", name, cname)
	err := m.db.DeleteConsumer(name, cname)
	switch {
	case s == nil:
		m.wantErr("DeleteConsumer", err, "StreamNotFound")
	case s.consumers[cname] == nil:
		m.wantErr("DeleteConsumer", err, "ConsumerNotFound")
	default:
		m.wantErr("DeleteConsumer", err, "ok")
		delete(s.consumers, cname)
	}
}

func (m *model) opReopen() {
	m.logf("reopen")
	m.stats["reopen"]++
	m.close()
	m.open()
	// The engine recovers each shard's last arrival from its last stored
	// record; a fully trimmed shard starts again from the clock.
	for _, s := range m.streams {
		for _, sh := range s.shards {
			sh.lastArrival = 0
			if p := sh.published(); p > 0 && max(sh.trim, 1) <= p {
				sh.lastArrival = sh.recs[p-1].arrival
			}
		}
		m.checkShards(s)
	}
	names, err := m.db.ListStreams()
	m.wantErr("ListStreams", err, "ok")
	if !slices.Equal(names, m.streamNames()) {
		m.fatalf("ListStreams after reopen = %v, model %v", names, m.streamNames())
	}
}

func (m *model) opDescribe() {
	name, s := m.randomStream()
	m.logf("DescribeStream %s", name)
	d, err := m.db.DescribeStream(name)
	if s == nil {
		m.wantErr("DescribeStream", err, "StreamNotFound")
		return
	}
	if !m.wantErr("DescribeStream", err, "ok") {
		return
	}
	if d.Retention.Milliseconds() != s.retentionMs || d.OpenShardCount != len(s.open()) || d.Partitioner != s.partitioner || len(d.Shards) != len(s.shards) {
		m.fatalf("DescribeStream %s = retention %v, %d open, partitioner %v, %d shards; model %dms, %d, %v, %d",
			name, d.Retention, d.OpenShardCount, d.Partitioner, len(d.Shards), s.retentionMs, len(s.open()), s.partitioner, len(s.shards))
	}
	m.checkShards(s)
}

// TestRegressionRetentionRaiseResurrects: SetRetention documents that
// raising retention "never brings back records that already expired", but
// records past retention that the trimmer had not deleted yet became
// readable again. Found by TestModel.
func TestRegressionRetentionRaiseResurrects(t *testing.T) {
	clk := &plClock{}
	clk.ms.Store(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	db, err := engine.Open("db", &engine.Options{FS: vfs.NewMem(), Clock: clk.Now, TrimInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.CreateStream("s", engine.StreamConfig{ShardCount: 1, Retention: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	count := func() int {
		it, err := db.Iterate("s", 0, engine.TrimHorizon())
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		n := 0
		for it.Next() {
			n++
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("%d records visible after they expired", n)
	}
	if err := db.IncreaseRetention("s", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("raising retention brought back %d expired records", n)
	}
}

// TestRegressionTrimmedShardCounterAfterReopen: when retention trimmed
// every record of an open shard and the DB was reopened, the shard's
// counter restarted at 1 (recovery looked only at the last stored record,
// not at the persisted trim point). New records then reused sequence
// numbers already issued (Invariant 2) and, lying below the trim point,
// were invisible to every reader although acknowledged (Invariant 1).
// Found by TestModel.
func TestRegressionTrimmedShardCounterAfterReopen(t *testing.T) {
	clk := &plClock{}
	clk.ms.Store(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	fs := vfs.NewMem()
	opts := &engine.Options{FS: fs, Clock: clk.Now, TrimInterval: time.Hour}
	db, err := engine.Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := db.CreateStream("s", engine.StreamConfig{ShardCount: 1, Retention: time.Hour}); err != nil {
		t.Fatal(err)
	}
	var last engine.PutResult
	for range 5 {
		if last, err = db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("old")}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(2 * time.Hour)
	if err := db.Trim(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = engine.Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("new")})
	if err != nil {
		t.Fatal(err)
	}
	if res.SequenceNumber.Counter <= last.SequenceNumber.Counter {
		t.Errorf("after reopen the shard issued counter %d, not after the last issued %d", res.SequenceNumber.Counter, last.SequenceNumber.Counter)
	}
	it, err := db.Iterate("s", 0, engine.TrimHorizon())
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var got []string
	for it.Next() {
		got = append(got, string(it.Record().Data))
	}
	if !slices.Equal(got, []string{"new"}) {
		t.Errorf("after reopen the shard reads %q, want the acknowledged record [new]", got)
	}
}

// TestRegressionConcurrentTrimStats: two Trim calls on a stream at once
// (an explicit Trim racing the background trimmer, or two callers) could
// both count the records from the same trim point, and both subtracted
// them from the shard's stats: the Records/Bytes counts (DescribeStream,
// and MaxBytes enforcement) drifted below what is stored. The race needs
// two trims in flight at once, so the test runs many while writers write.
func TestRegressionConcurrentTrimStats(t *testing.T) {
	clk := &plClock{}
	start := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	clk.ms.Store(start.UnixMilli())
	db, err := engine.Open("db", &engine.Options{FS: vfs.NewMem(), Clock: clk.Now, TrimInterval: time.Hour, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.CreateStream("s", engine.StreamConfig{ShardCount: 2, Retention: time.Minute}); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var writers, trimmers sync.WaitGroup
	for g := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := 0; !stop.Load(); i++ {
				if _, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: fmt.Sprint(g, i), Data: []byte("0123456789")}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 3 {
		trimmers.Add(1)
		go func() {
			defer trimmers.Done()
			for range 200 {
				clk.Advance(time.Second)
				if err := db.Trim(ctx, "s"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	trimmers.Wait()
	stop.Store(true)
	writers.Wait()
	clk.ms.Store(start.UnixMilli()) // retention hides nothing: read all that is stored
	shards, err := db.ListShards("s")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range shards {
		if n := len(crashReadShard(t, db, "s", d.ShardID)); int64(n) != d.Records {
			t.Errorf("%s: stats count %d records, %d are stored", d.ShardID, d.Records, n)
		}
	}
}

// TestRegressionCheckpointMovesBack: checkpointing an earlier record after
// a later one kept the later one in memory (Checkpoints reported it) but
// persisted the earlier one, so a restarted consumer resumed before what
// Checkpoints had reported as done. A checkpoint must not move back
// silently: either it keeps the later one durably or it refuses (as KCL
// refuses to checkpoint below the last checkpoint).
func TestRegressionCheckpointMovesBack(t *testing.T) {
	fs := vfs.NewMem()
	db, err := engine.Open("db", &engine.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.CreateStream("s", engine.StreamConfig{ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	var rs []engine.PutResult
	for range 10 {
		r, err := db.PutRecord(ctx, "s", engine.Entry{PartitionKey: "k", Data: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	c, err := db.Consumer("s", "c", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckpointAt(0, rs[8].SequenceNumber); err != nil {
		t.Fatal(err)
	}
	backErr := c.CheckpointAt(0, rs[2].SequenceNumber)
	reported := c.Checkpoints()[0]
	fresh, err := db.Consumer("s", "c", nil) // what a restart would load
	if err != nil {
		t.Fatal(err)
	}
	durable := fresh.Checkpoints()[0]
	if durable != reported {
		t.Errorf("Checkpoints reports counter %d, but the durable checkpoint is %d (the second call returned %v)", reported.Counter, durable.Counter, backErr)
	}
	if backErr == nil && durable.Counter != rs[8].SequenceNumber.Counter {
		t.Errorf("the checkpoint moved back from %d to %d", rs[8].SequenceNumber.Counter, durable.Counter)
	}
}
