package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/shard"
)

// ReadAPI selects the engine read path RunRead measures.
type ReadAPI uint8

const (
	// ViaGetRecords reads with GetShardIterator and GetRecords pages of
	// ReadConfig.Limit records, following NextShardIterator. The ceiling
	// opens a fresh raw Pebble iterator per page of the same size, as
	// GetRecords does, and copies each page into memory it owns.
	ViaGetRecords ReadAPI = iota
	// ViaIterator reads with DB.Iterate from TrimHorizon. The ceiling is
	// one raw Pebble iterator per shard.
	ViaIterator
)

func (a ReadAPI) String() string {
	if a == ViaIterator {
		return "Iterator"
	}
	return "GetRecords"
}

// ReadConfig configures the full-read workload: Records records are loaded
// into a stream of Shards shards (with the engine, unsynced, then flushed
// and compacted so both sides read the same settled LSM), then one reader
// reads every shard from TRIM_HORIZON to its end, shard after shard.
//
// The ceiling reads the same directory with raw Pebble, opened with the
// same options (PebbleOptions) and, like the engine side, fresh for each
// phase, so both start from a cold block cache and a warm OS page cache.
// It iterates the same key spans and decodes each key and value
// (shard.DecodeRecordKey, shard.DecodeValue), and then does what a raw
// reader must do to hand the caller the same result:
//
//   - Iterator: the data is handed over borrowed, valid until the next
//     step, as the engine Iterator's Data is; the partition key, which
//     the engine hands over as a string the caller may keep, is copied
//     into memory the caller owns, into 4 KiB chunks shared by many keys
//     as the engine's Iterator does (the least a reader can do that gives
//     out keys it will not overwrite).
//   - GetRecords: a page outlives its Pebble iterator, so the ceiling
//     copies it into memory the caller owns, as GetRecords must: one
//     rawRecord (counter, arrival, partition key, data) per record, its
//     bytes in arenas of about the page's size.
//
// The engine side additionally resolves positions, applies retention,
// builds Records (sequence number, timestamp, partition key string) and,
// for GetRecords, checks and charges the shard's read limits and
// decodes and encodes tokens.
//
// The loaded data set is kept in a subdirectory of dir named after
// Records, Shards, RecordSize and Profile, and reused by later runs on the
// same dir (so GetRecords and Iterator can share one load).
type ReadConfig struct {
	// Profile is the Pebble memory profile of both sides.
	// DefaultReadConfig: engine.ProfileThroughput.
	Profile engine.Profile
	// Via selects the engine read path. Default ViaGetRecords.
	Via ReadAPI
	// Shards is the stream's shard count. Default 4.
	Shards int
	// RecordSize is the data size of each record (plus a 16-byte
	// partition key). Default 100.
	RecordSize int
	// Records is the data set size. Default 1,000,000.
	Records int64
	// Limit is the records per GetRecords page (and per ceiling page).
	// Default 10,000 (the Kinesis maximum).
	Limit int
	// Rounds, Progress and Context are as in AppendConfig.
	Rounds   int
	Progress func(done, total int64)
	Context  context.Context
}

// DefaultReadConfig returns the full-read workload: 1 M records of
// 100 B in 4 shards, GetRecords pages of 10,000, ProfileThroughput.
func DefaultReadConfig() ReadConfig {
	return ReadConfig{
		Profile:    engine.ProfileThroughput,
		Shards:     4,
		RecordSize: 100,
		Records:    1_000_000,
		Limit:      10_000,
		Rounds:     1,
	}
}

// RunRead runs the full-read workload and its raw-Pebble ceiling under dir.
func RunRead(dir string, cfg ReadConfig) (Result, error) {
	if cfg.Shards < 1 || cfg.RecordSize < 0 || cfg.Records < 1 || cfg.Limit < 1 || cfg.Rounds < 1 || cfg.Via > ViaIterator {
		return Result{}, fmt.Errorf("kvstream: bench: invalid ReadConfig %+v: Shards, Records, Limit and Rounds must be ≥ 1", cfg)
	}
	ctx := ctxOrBackground(cfg.Context)
	ddir := filepath.Join(dir, fmt.Sprintf("read-%d-%d-%d-%s", cfg.Records, cfg.Shards, cfg.RecordSize, ProfileName(cfg.Profile)))
	loaded, err := datasetReady(ddir)
	if err != nil {
		return Result{}, err
	}
	total := 2 * cfg.Records * int64(cfg.Rounds)
	if !loaded {
		total += cfg.Records
	}
	prog := newProgress(cfg.Progress, total)
	defer prog.close()
	ds, err := loadDataset(ctx, ddir, &cfg, prog)
	if err != nil {
		return Result{}, err
	}
	res := Result{
		Workload: cfg.Via.String(),
		Params:   fmt.Sprintf("full read of %d × %d B records, %s", cfg.Records, cfg.RecordSize, count(cfg.Shards, "shard")),
		Profile:  ProfileName(cfg.Profile),
		Rounds:   cfg.Rounds,
	}
	if cfg.Via == ViaGetRecords {
		res.Params += fmt.Sprintf(", pages of %d", cfg.Limit)
	}
	check := func(m Measurement, err error) (Measurement, error) {
		if err == nil && m.Records != cfg.Records {
			err = fmt.Errorf("kvstream: bench: read %d records, loaded %d", m.Records, cfg.Records)
		}
		m.DiskBytesPerRecord = ds.DiskBytesPerRecord
		return m, err
	}
	err = runRounds(&res, cfg.Rounds,
		func() (Measurement, error) { return check(readCeiling(ctx, ddir, &cfg, ds, prog)) },
		func() (Measurement, error) { return check(readEngine(ctx, ddir, &cfg, ds, prog)) },
		throughputRatio)
	return res, err
}

// dataset describes a loaded read data set; it is stored as JSON in
// datasetFile once the load is complete.
type dataset struct {
	StreamID           uint32           `json:"stream_id"`
	Shards             []engine.ShardID `json:"shards"`
	Records            int64            `json:"records"`
	DiskBytesPerRecord float64          `json:"disk_bytes_per_record"`
}

const datasetFile = "kvstream-bench-dataset.json"

func datasetReady(ddir string) (bool, error) {
	_, err := os.Stat(filepath.Join(ddir, datasetFile))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// loadDataset returns the data set in ddir, loading it first if needed.
func loadDataset(ctx context.Context, ddir string, cfg *ReadConfig, prog *progress) (*dataset, error) {
	if b, err := os.ReadFile(filepath.Join(ddir, datasetFile)); err == nil {
		ds := &dataset{}
		if err := json.Unmarshal(b, ds); err != nil {
			return nil, fmt.Errorf("kvstream: bench: %s: %w", filepath.Join(ddir, datasetFile), err)
		}
		return ds, nil
	}
	if err := os.RemoveAll(ddir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(ddir, 0o755); err != nil {
		return nil, err
	}
	db, err := openEngine(ddir, cfg.Profile, true, cfg.Shards)
	if err != nil {
		return nil, err
	}
	p := newPool(int(min(cfg.Records, 1<<16)), cfg.RecordSize, 3)
	const batch = 500
	for done := int64(0); done < cfg.Records; {
		if err := ctx.Err(); err != nil {
			_ = db.Close()
			return nil, err
		}
		n := min(int64(batch), cfg.Records-done)
		off := int(done % int64(len(p.entries)))
		n = min(n, int64(len(p.entries)-off))
		rs, err := db.PutRecords(ctx, StreamName, p.entries[off:off+int(n)])
		if err == nil {
			for i := range rs {
				if err = rs[i].Err; err != nil {
					break
				}
			}
		}
		if err != nil {
			_ = db.Close()
			return nil, err
		}
		done += n
		prog.add(n)
	}
	desc, err := db.DescribeStream(StreamName)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	ds := &dataset{Records: cfg.Records}
	for _, s := range desc.Shards {
		ds.Shards = append(ds.Shards, s.ShardID)
	}
	// The stream id is not exported; find it from the first record key.
	if err := db.Close(); err != nil {
		return nil, err
	}
	pdb, err := openPebble(ddir, cfg.Profile)
	if err != nil {
		return nil, err
	}
	if err := settle(pdb); err != nil {
		_ = pdb.Close()
		return nil, err
	}
	ds.StreamID, err = firstStreamID(pdb)
	if cerr := pdb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	n, err := sstBytes(ddir)
	if err != nil {
		return nil, err
	}
	ds.DiskBytesPerRecord = float64(n) / float64(cfg.Records)
	b, err := json.Marshal(ds)
	if err != nil {
		return nil, err
	}
	return ds, os.WriteFile(filepath.Join(ddir, datasetFile), b, 0o644)
}

// settle flushes and compacts the whole key space, so reads see one
// settled LSM and no background compaction runs while they are measured.
func settle(pdb *pebble.DB) error {
	if err := pdb.Flush(); err != nil {
		return err
	}
	return pdb.Compact(context.Background(), []byte{0}, []byte{0xff}, false)
}

func firstStreamID(pdb *pebble.DB) (uint32, error) {
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{shard.PrefixRecords}, UpperBound: []byte{shard.PrefixRecords + 1}})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.First() {
		return 0, errors.Join(errors.New("kvstream: bench: the loaded data set has no records"), it.Error())
	}
	s, _, _, ok := shard.DecodeRecordKey(it.Key())
	if !ok {
		return 0, fmt.Errorf("kvstream: bench: key %x is not a record key", it.Key())
	}
	return s, nil
}

func readEngine(ctx context.Context, ddir string, cfg *ReadConfig, ds *dataset, prog *progress) (m Measurement, err error) {
	db, err := engine.Open(ddir, &engine.Options{Profile: cfg.Profile, NoSync: true})
	if err != nil {
		return m, err
	}
	defer func() {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}()
	var lat latencies
	rss := startMeter()
	start := time.Now()
	for _, id := range ds.Shards {
		var n, nb int64
		switch cfg.Via {
		case ViaIterator:
			n, nb, err = readIterator(ctx, db, id, prog)
		default:
			n, nb, err = readGetRecords(ctx, db, id, cfg.Limit, &lat, prog)
		}
		if err != nil {
			return m, err
		}
		m.Records += n
		m.Bytes += nb
	}
	m.Elapsed = time.Since(start)
	if cfg.Via == ViaIterator {
		m.finish(nil, rss)
	} else {
		m.finish(&lat, rss)
	}
	return m, nil
}

func readIterator(ctx context.Context, db *engine.DB, id engine.ShardID, prog *progress) (n, nb int64, err error) {
	it, err := db.Iterate(StreamName, id, engine.TrimHorizon())
	if err != nil {
		return 0, 0, err
	}
	defer it.Close()
	for it.Next() {
		r := it.Record()
		nb += int64(len(r.Data) + len(r.PartitionKey))
		n++
		if n%8192 == 0 {
			prog.add(8192)
			if err := ctx.Err(); err != nil {
				return n, nb, err
			}
		}
	}
	prog.add(n % 8192)
	return n, nb, it.Err()
}

func readGetRecords(ctx context.Context, db *engine.DB, id engine.ShardID, limit int, lat *latencies, prog *progress) (n, nb int64, err error) {
	tok, err := db.GetShardIterator(StreamName, id, engine.TrimHorizon())
	if err != nil {
		return 0, 0, err
	}
	var ds []time.Duration
	defer func() { lat.add(ds) }()
	for tok != "" {
		if err := ctx.Err(); err != nil {
			return n, nb, err
		}
		t0 := time.Now()
		out, err := db.GetRecords(ctx, tok, limit)
		ds = append(ds, time.Since(t0))
		if err != nil {
			return n, nb, err
		}
		for i := range out.Records {
			nb += int64(len(out.Records[i].Data) + len(out.Records[i].PartitionKey))
		}
		n += int64(len(out.Records))
		prog.add(int64(len(out.Records)))
		if len(out.Records) == 0 {
			break // the open shard's end
		}
		tok = out.NextShardIterator
	}
	return n, nb, nil
}

func readCeiling(ctx context.Context, ddir string, cfg *ReadConfig, ds *dataset, prog *progress) (m Measurement, err error) {
	pdb, err := openPebble(ddir, cfg.Profile)
	if err != nil {
		return m, err
	}
	defer func() {
		if cerr := pdb.Close(); err == nil {
			err = cerr
		}
	}()
	var lat latencies
	rss := startMeter()
	start := time.Now()
	for _, id := range ds.Shards {
		var n, nb int64
		if cfg.Via == ViaIterator {
			n, nb, err = scanShard(pdb, ds.StreamID, id)
			prog.add(n)
		} else {
			var d []time.Duration
			for from := uint64(1); ; {
				if err := ctx.Err(); err != nil {
					return m, err
				}
				t0 := time.Now()
				page, perr := readPage(pdb, ds.StreamID, id, from, cfg.Limit)
				d = append(d, time.Since(t0))
				if perr != nil {
					err = perr
					break
				}
				for i := range page {
					nb += int64(len(page[i].Data) + len(page[i].PartitionKey))
				}
				n += int64(len(page))
				prog.add(int64(len(page)))
				if len(page) == 0 {
					break
				}
				from = page[len(page)-1].Counter + 1
			}
			lat.add(d)
		}
		if err != nil {
			return m, err
		}
		m.Records += n
		m.Bytes += nb
	}
	m.Elapsed = time.Since(start)
	if cfg.Via == ViaIterator {
		m.finish(nil, rss)
	} else {
		m.finish(&lat, rss)
	}
	return m, nil
}

// scanShard reads every record of one shard with one raw Pebble iterator,
// decoding each key and value and copying each record's partition key
// (and nothing else) into memory the caller owns (see ReadConfig).
func scanShard(pdb *pebble.DB, stream uint32, id engine.ShardID) (n, nb int64, err error) {
	lower := shard.AppendRecordKey(nil, stream, uint32(id), 1)
	upper := shard.AppendRecordKey(nil, stream, uint32(id)+1, 0)
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, 0, err
	}
	var keys []byte // the current chunk of owned partition keys
	for ok := it.First(); ok; ok = it.Next() {
		if _, _, _, kok := shard.DecodeRecordKey(it.Key()); !kok {
			_ = it.Close()
			return n, nb, fmt.Errorf("kvstream: bench: key %x is not a record key", it.Key())
		}
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return n, nb, err
		}
		d, ok := shard.DecodeValue(v)
		if !ok {
			_ = it.Close()
			return n, nb, fmt.Errorf("kvstream: bench: record value does not decode")
		}
		if cap(keys)-len(keys) < len(d.PartitionKey) {
			keys = make([]byte, 0, max(4<<10, len(d.PartitionKey)))
		}
		start := len(keys)
		keys = append(keys, d.PartitionKey...)
		nb += int64(len(d.Data) + len(keys[start:]))
		n++
	}
	return n, nb, errors.Join(it.Error(), it.Close())
}

// rawRecord is a record of a ceiling page: what a raw-Pebble reader must
// keep of each record to give its caller a GetRecords page (the sequence
// number and timestamp derive from Counter and ArrivalMs). PartitionKey
// and Data are the page's own copies.
type rawRecord struct {
	Counter      uint64
	ArrivalMs    int64
	PartitionKey []byte
	Data         []byte
}

// readPage reads up to limit records of one shard from counter from with a
// fresh raw Pebble iterator and returns them in memory the caller owns:
// one slice of limit records, and the bytes in arenas sized, from the
// first record, for the rest of the page (a few allocations per page).
func readPage(pdb *pebble.DB, stream uint32, id engine.ShardID, from uint64, limit int) (page []rawRecord, err error) {
	lower := shard.AppendRecordKey(nil, stream, uint32(id), from)
	upper := shard.AppendRecordKey(nil, stream, uint32(id)+1, 0)
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	var arena []byte
	for ok := it.First(); ok && len(page) < limit; ok = it.Next() {
		_, _, c, kok := shard.DecodeRecordKey(it.Key())
		if !kok {
			_ = it.Close()
			return nil, fmt.Errorf("kvstream: bench: key %x is not a record key", it.Key())
		}
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		d, ok := shard.DecodeValue(v)
		if !ok {
			_ = it.Close()
			return nil, fmt.Errorf("kvstream: bench: record value does not decode")
		}
		if page == nil {
			page = make([]rawRecord, 0, limit)
		}
		n := len(d.PartitionKey) + len(d.Data)
		if cap(arena)-len(arena) < n {
			arena = make([]byte, 0, max(n, min(n*(limit-len(page)), 1<<20)))
		}
		start := len(arena)
		arena = append(arena, d.PartitionKey...)
		arena = append(arena, d.Data...)
		page = append(page, rawRecord{
			Counter:      c,
			ArrivalMs:    d.ArrivalMs,
			PartitionKey: arena[start : start+len(d.PartitionKey) : start+len(d.PartitionKey)],
			Data:         arena[start+len(d.PartitionKey) : len(arena) : len(arena)],
		})
	}
	return page, errors.Join(it.Error(), it.Close())
}
