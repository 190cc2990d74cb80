package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/shard"
)

// CheckOptions configure Check. A nil *CheckOptions means the defaults.
type CheckOptions struct {
	// FS is the filesystem. Default: vfs.Default (the OS).
	FS vfs.FS
}

// CheckReport is what Check found. The directory is healthy when Problems
// is empty; Warnings are findings that need no action on their own.
type CheckReport struct {
	Dir           string `json:"dir"`
	FormatVersion uint32 `json:"format_version"`
	// SSTables and SSTableBytes count the sstable files whose every block
	// checksum was verified.
	SSTables     int   `json:"sstables"`
	SSTableBytes int64 `json:"sstable_bytes"`
	// Streams has one entry per stream in the catalog.
	Streams  []StreamCheck  `json:"streams"`
	Problems []CheckProblem `json:"problems"`
	Warnings []CheckProblem `json:"warnings,omitempty"`
}

// OK reports whether Check found no problem.
func (r *CheckReport) OK() bool { return len(r.Problems) == 0 }

// Records returns the number of readable records in all streams.
func (r *CheckReport) Records() int64 {
	var n int64
	for _, s := range r.Streams {
		for _, sh := range s.Shards {
			n += sh.Records
		}
	}
	return n
}

// CheckProblem is one finding of Check.
type CheckProblem struct {
	// Kind is one of "manifest" (the MANIFEST is damaged), "sstable" (a
	// table is missing, has the wrong size or fails its checksums),
	// "open" (Pebble reported damage opening the store), "meta" (the
	// format key, secret or id counters), "catalog" (a stream's entry),
	// "records" (records that cannot be read or do not decode), "stats"
	// (a shard's record or byte count differs from its records),
	// "counters" (missing counters, records below the trim point, a
	// closed shard's end), "orphan" (records of no stream in the catalog).
	Kind    string `json:"kind"`
	Stream  string `json:"stream,omitempty"`
	Shard   string `json:"shard,omitempty"`
	File    string `json:"file,omitempty"`
	Message string `json:"message"`
}

// String formats the problem as one line.
func (p CheckProblem) String() string {
	var b strings.Builder
	b.WriteString(p.Kind)
	if p.File != "" {
		b.WriteString(" " + p.File)
	}
	if p.Stream != "" {
		b.WriteString(" stream " + p.Stream)
	}
	if p.Shard != "" {
		b.WriteString(" " + p.Shard)
	}
	b.WriteString(": " + p.Message)
	return b.String()
}

// StreamCheck is one stream's part of a CheckReport.
type StreamCheck struct {
	Name   string       `json:"name"`
	ID     uint32       `json:"id"`
	Shards []ShardCheck `json:"shards"`
}

// ShardCheck compares one shard's records with what the catalog and the
// shard's state entries say.
type ShardCheck struct {
	ShardID string `json:"shard_id"`
	Closed  bool   `json:"closed,omitempty"`
	// Records and Bytes count the readable records and their stored value
	// bytes; StatsRecords and StatsBytes are the shard's persisted counts
	// (the figures DescribeStreamSummary and MaxBytes use).
	Records      int64 `json:"records"`
	Bytes        int64 `json:"bytes"`
	StatsRecords int64 `json:"stats_records"`
	StatsBytes   int64 `json:"stats_bytes"`
	// FirstCounter and LastCounter are the counters of the first and last
	// readable record (0: none). TrimPoint is the first counter not
	// trimmed; EndCounter, for a closed shard, is its last record's
	// counter per the catalog.
	FirstCounter uint64 `json:"first_counter,omitempty"`
	LastCounter  uint64 `json:"last_counter,omitempty"`
	TrimPoint    uint64 `json:"trim_point,omitempty"`
	EndCounter   uint64 `json:"end_counter,omitempty"`
	// Unreadable lists the counter ranges whose records cannot be read.
	Unreadable []UnreadableRange `json:"unreadable,omitempty"`
}

// UnreadableRange is a run of a shard's records that cannot be read
// (a damaged block or a missing sstable). Counters are inclusive; a
// counter in the range may also never have existed.
type UnreadableRange struct {
	FromCounter uint64 `json:"from_counter"`
	// ToCounter is the last unreadable counter; 0 means everything from
	// FromCounter to the end of the shard.
	ToCounter uint64 `json:"to_counter,omitempty"`
	// AfterSequenceNumber is the last readable record before the range
	// and BeforeSequenceNumber the first readable one after it (empty:
	// none). A reader can resume with AFTER_SEQUENCE_NUMBER of the range's
	// last counter, or AT_SEQUENCE_NUMBER of BeforeSequenceNumber.
	AfterSequenceNumber  string `json:"after_sequence_number,omitempty"`
	BeforeSequenceNumber string `json:"before_sequence_number,omitempty"`
	Error                string `json:"error"`
}

// Check verifies the data directory dir without modifying it: it opens
// it read-only (creating nothing, not even a LOCK file; the directory
// must not be open elsewhere: ErrLocked), reads the MANIFEST's every
// record, verifies the checksum of every block of every sstable the
// MANIFEST lists, decodes the metadata and the catalog, reads every
// record of every shard, and compares each shard's records, bytes and
// counters with the catalog and the shard's persisted counts. Records
// that cannot be read are listed per shard as counter ranges with the
// sequence numbers around them.
//
// Damage is reported in the CheckReport (Problems non-empty), not as an
// error. The error is for a directory Check cannot examine: missing or
// not a kvstream data directory (ErrNotDataDir), in use (ErrLocked), a
// newer format (ErrFormatVersion), or refused by the OS (ErrStorage).
func Check(dir string, opts *CheckOptions) (*CheckReport, error) {
	o := (&Options{ReadOnly: true}).EnsureDefaults()
	if opts != nil && opts.FS != nil {
		o.FS = opts.FS
	}
	rep := &CheckReport{Dir: dir, Streams: []StreamCheck{}, Problems: []CheckProblem{}}
	c := &checker{dir: dir, fs: o.FS, rep: rep, reported: make(map[string]bool), events: make(map[string]pebble.DataCorruptionInfo)}
	o.Pebble = &pebble.Options{EventListener: &pebble.EventListener{DataCorruption: c.onCorruption}}
	c.checkManifest()
	pdb, err := openPebble(dir, o, true, nil, nil)
	if err != nil {
		if errors.Is(err, shard.ErrCorruption) {
			if c.torn != nil {
				c.problem(*c.torn)
			}
			c.problem(CheckProblem{Kind: "open", Message: errText(err)})
			return rep, nil
		}
		return nil, err
	}
	if c.torn != nil {
		c.rep.Warnings = append(c.rep.Warnings, *c.torn)
	}
	defer pdb.Close()
	c.pdb = pdb
	if err := c.checkMeta(); err != nil {
		return nil, err
	}
	if err := c.checkTables(); err != nil {
		return nil, err
	}
	c.checkKeySpaces()
	metas := c.readCatalog()
	for _, m := range metas {
		c.checkStream(m)
	}
	c.checkOrphans(metas)
	c.reportEvents()
	return rep, nil
}

type checker struct {
	dir string
	fs  vfs.FS
	pdb *pebble.DB
	rep *CheckReport

	reported map[string]bool // sstables (by number) with a problem listed
	torn     *CheckProblem   // the MANIFEST's last record is torn or damaged

	mu     sync.Mutex
	events map[string]pebble.DataCorruptionInfo // by path; Pebble's reports
}

// onCorruption records Pebble's report of a damaged or missing file met
// by a read (possibly on a background goroutine).
func (c *checker) onCorruption(info pebble.DataCorruptionInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.events[info.Path]; !ok {
		c.events[info.Path] = info
	}
}

// reportEvents lists the files Pebble reported damaged or missing during
// the reads that no other problem names.
func (c *checker) reportEvents() {
	c.mu.Lock()
	defer c.mu.Unlock()
	paths := make([]string, 0, len(c.events))
	for p := range c.events {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		info := c.events[p]
		file := c.fs.PathBase(p)
		if c.reported[strings.TrimSuffix(file, ".sst")] {
			continue
		}
		msg := "cannot be read: " + errText(info.Details)
		if _, err := c.fs.Stat(p); errors.Is(err, fs.ErrNotExist) {
			msg = "is listed in the MANIFEST but missing"
		}
		if info.Bounds.Start != nil {
			msg += fmt.Sprintf("; it holds %s to %s", describeKey(info.Bounds.Start), describeKey(info.Bounds.End.Key))
		}
		c.problem(CheckProblem{Kind: "sstable", File: file, Message: msg})
	}
}

func (c *checker) problem(p CheckProblem) { c.rep.Problems = append(c.rep.Problems, p) }

// checkManifest reads every record of the current MANIFEST. Pebble treats
// a record that does not verify as the end of the MANIFEST, silently
// dropping the version edits after it (new and deleted sstables), so
// Check reads it itself: a bad record followed by valid ones is damage;
// a bad last record is what a crash during a version change leaves (or a
// damaged last edit) and is a warning.
func (c *checker) checkManifest() {
	names, err := c.fs.List(c.dir)
	if err != nil {
		return // openPebble reports it
	}
	name := currentManifest(names)
	if name == "" {
		return
	}
	if name == "?" {
		c.problem(CheckProblem{Kind: "manifest", Message: "the CURRENT file does not name a MANIFEST"})
		return
	}
	path := c.fs.PathJoin(c.dir, name)
	f, err := c.fs.Open(path)
	if err != nil {
		c.problem(CheckProblem{Kind: "manifest", File: name, Message: fmt.Sprintf("cannot be opened: %v", err)})
		return
	}
	defer f.Close()
	size := int64(-1)
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	rr := record.NewReader(f, 0)
	for n := 0; ; n++ {
		off := rr.Offset()
		r, err := rr.Next()
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, io.EOF):
		case errors.Is(err, record.ErrUnexpectedEOF):
			// Torn (a crash during a version change; nothing is lost) or
			// damaged: a warning, made a problem if Pebble cannot open.
			c.torn = &CheckProblem{Kind: "manifest", File: name, Message: fmt.Sprintf(
				"record %d (at byte %d of %d) is damaged or torn, and no valid record follows in a later block: Pebble stops reading the MANIFEST there (after a crash during a version change this is harmless)", n+1, off, size)}
		default:
			c.problem(CheckProblem{Kind: "manifest", File: name, Message: fmt.Sprintf(
				"record %d (at byte %d of %d) is damaged (%v) and valid records follow it: Pebble stops reading there, so later version edits (sstables added or removed) are lost", n+1, off, size, err)})
		}
		return
	}
}

// currentManifest returns the file name of the current MANIFEST from a
// directory listing ("" if there is none, "?" if it cannot be told).
func currentManifest(names []string) string {
	best, bestIter := "", -1
	for _, n := range names {
		rest, ok := strings.CutPrefix(n, "marker.manifest.")
		if !ok {
			continue
		}
		iter, value, ok := strings.Cut(rest, ".")
		var i int
		if _, err := fmt.Sscanf(iter, "%d", &i); ok && err == nil && i > bestIter && strings.HasPrefix(value, "MANIFEST-") {
			best, bestIter = value, i
		}
	}
	if best != "" {
		return best
	}
	if slices.Contains(names, "CURRENT") {
		return "?" // the legacy format: Pebble refuses it anyway
	}
	return ""
}

// checkMeta reads the format version and secret. A missing format key
// means the directory is not kvstream's; a newer format cannot be checked.
func (c *checker) checkMeta() error {
	v, err := c.get(shard.MetaKey(metaFormat))
	switch {
	case err != nil:
		c.problem(CheckProblem{Kind: "meta", Message: fmt.Sprintf("the format version cannot be read: %s", errText(err))})
	case v == nil:
		return shard.Errorf(shard.ErrNotDataDir, "%s is not a kvstream data directory (a Pebble store without kvstream's format key)", c.dir)
	case len(v) != 4:
		c.problem(CheckProblem{Kind: "meta", Message: fmt.Sprintf("the format version is %d bytes (%x), want 4", len(v), v)})
	default:
		c.rep.FormatVersion = binary.BigEndian.Uint32(v)
		if c.rep.FormatVersion != FormatVersion {
			return shard.Errorf(shard.ErrFormatVersion, "data directory %s has format version %d; this build checks version %d", c.dir, c.rep.FormatVersion, FormatVersion)
		}
	}
	switch v, err := c.get(shard.MetaKey(metaSecret)); {
	case err != nil:
		c.problem(CheckProblem{Kind: "meta", Message: fmt.Sprintf("the iterator secret cannot be read: %s", errText(err))})
	case len(v) != 32:
		c.problem(CheckProblem{Kind: "meta", Message: fmt.Sprintf("the iterator secret is %d bytes, want 32", len(v))})
	}
	return nil
}

// get reads one key (nil, nil: absent).
func (c *checker) get(key []byte) ([]byte, error) {
	v, closer, err := c.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := slices.Clone(v)
	return out, closer.Close()
}

// checkTables checks that every sstable the MANIFEST lists exists with
// its recorded size and verifies the checksum of each of its blocks
// (data, index, filter, range deletions, properties, metaindex), reading
// the file directly, past any cache.
func (c *checker) checkTables() error {
	popts := &pebble.Options{FormatMajorVersion: pebble.FormatNewest}
	popts.EnsureDefaults()
	ropts := popts.MakeReaderOptions()
	tables, err := liveTables(c.dir, c.fs, c.pdb)
	if err != nil {
		// A table is missing: Pebble cannot list them. The reads below
		// name the missing files (Pebble reports each as it meets it);
		// verify every sstable file in the directory meanwhile.
		cause := err
		var e *shard.Error
		if errors.As(err, &e) && e.Cause != nil {
			cause = e.Cause
		}
		c.problem(CheckProblem{Kind: "sstable", Message: "the MANIFEST lists an sstable that is missing: " + cause.Error()})
		names, lerr := c.fs.List(c.dir)
		if lerr != nil {
			return storageError("read data directory "+c.dir, lerr)
		}
		slices.Sort(names)
		for _, n := range names {
			if num, ok := strings.CutSuffix(n, ".sst"); ok {
				tables = append(tables, liveTable{level: -1, num: num, path: c.fs.PathJoin(c.dir, n)})
			}
		}
	}
	for _, t := range tables {
		file := t.num + ".sst"
		switch {
		case t.statErr != nil:
			return storageError("read "+t.path, t.statErr)
		case t.problem != "":
			c.problem(CheckProblem{Kind: "sstable", File: file, Message: t.problem + "; " + describeSpan(t.info)})
			c.reported[t.num] = true
			continue
		}
		ro := ropts
		ro.CacheOpts.FileNum = t.info.BackingSSTNum // names the file in errors
		n, err := validateTable(c.fs, t.path, ro)
		if err != nil {
			// Damage, or the OS failing to read the file (an I/O error on
			// failing flash): either way the table's data is at risk.
			msg := errText(err)
			if t.level >= 0 {
				msg = fmt.Sprintf("L%d: %s; %s", t.level, errText(err), describeSpan(t.info))
			}
			c.problem(CheckProblem{Kind: "sstable", File: file, Message: msg})
			c.reported[t.num] = true
			continue
		}
		c.rep.SSTables++
		c.rep.SSTableBytes += n
	}
	return nil
}

// validateTable verifies every block checksum of the sstable at path and
// returns its size.
func validateTable(fsys vfs.FS, path string, ropts sstable.ReaderOptions) (int64, error) {
	f, err := fsys.Open(path)
	if err != nil {
		return 0, err
	}
	readable, err := sstable.NewSimpleReadable(f)
	if err != nil {
		_ = f.Close()
		return 0, err
	}
	r, err := sstable.NewReader(context.Background(), readable, ropts)
	if err != nil {
		_ = readable.Close()
		return 0, err
	}
	defer r.Close()
	if err := r.ValidateBlockChecksums(); err != nil {
		return 0, err
	}
	return readable.Size(), nil
}

// describeSpan says which kvstream keys an sstable holds.
func describeSpan(info pebble.SSTableInfo) string {
	return fmt.Sprintf("it holds %s to %s", describeKey(info.Smallest.UserKey), describeKey(info.Largest.UserKey))
}

// describeKey names a kvstream key for a human.
func describeKey(k []byte) string {
	if s, id, cnt, ok := shard.DecodeRecordKey(k); ok {
		return fmt.Sprintf("record %d of stream #%d %s", cnt, s, shard.ShardID(id))
	}
	if len(k) == 0 {
		return "the start"
	}
	if len(k) == 1 {
		switch k[0] {
		case shard.PrefixMeta:
			return "the metadata"
		case shard.PrefixCatalog:
			return "the catalog"
		case shard.PrefixRecords:
			return "the records"
		case shard.PrefixConsumers:
			return "the consumer checkpoints"
		case shard.PrefixShardState:
			return "the shard state"
		case shard.PrefixStreamConsumers:
			return "the registered consumers"
		}
		if k[0] < shard.PrefixMeta {
			return "the start"
		}
	}
	switch k[0] {
	case shard.PrefixMeta:
		return fmt.Sprintf("metadata %q", k[1:])
	case shard.PrefixCatalog:
		return fmt.Sprintf("the catalog entry of stream %q", k[1:])
	case shard.PrefixConsumers:
		return "consumer checkpoints"
	case shard.PrefixShardState:
		return "shard state"
	case shard.PrefixStreamConsumers:
		return "registered consumers"
	}
	return fmt.Sprintf("key %x", k)
}

// checkKeySpaces reads every key and value outside the records (metadata,
// catalog, consumers, shard state) to find unreadable blocks there.
func (c *checker) checkKeySpaces() {
	for _, span := range [][2][]byte{{{0}, {shard.PrefixRecords}}, {{shard.PrefixRecords + 1}, {0xff, 0xff}}} {
		c.scanSpan(span[0], span[1], func(k, v []byte) {})
	}
}

// scanSpan reads [lower, upper) and reports the first error as a
// problem.
func (c *checker) scanSpan(lower, upper []byte, fn func(k, v []byte)) {
	it, err := c.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		c.problem(CheckProblem{Kind: "meta", Message: fmt.Sprintf("cannot read %s: %s", describeKey(lower), errText(err))})
		return
	}
	var last []byte
	var verr error
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			verr = err
			break
		}
		last = append(last[:0], it.Key()...)
		fn(it.Key(), v)
	}
	if err := iterDone(it, verr); err != nil {
		where := "from " + describeKey(lower)
		if last != nil {
			where = "after " + describeKey(last)
		}
		c.problem(CheckProblem{Kind: "meta", Message: fmt.Sprintf("keys %s cannot be read: %s", where, errText(err))})
	}
}

// readCatalog decodes every catalog entry; entries that do not decode are
// problems and are skipped.
func (c *checker) readCatalog() []*streamMeta {
	var metas []*streamMeta
	c.scanSpan([]byte{shard.PrefixCatalog}, []byte{shard.PrefixCatalog + 1}, func(k, v []byte) {
		m, err := decodeStreamMeta(v)
		if err != nil {
			c.problem(CheckProblem{Kind: "catalog", Stream: string(k[1:]), Message: Message(err)})
			return
		}
		metas = append(metas, m)
	})
	if v, err := c.get(shard.MetaKey(metaNextStream)); err == nil && len(v) == 4 {
		next := binary.BigEndian.Uint32(v)
		for _, m := range metas {
			if m.ID >= next {
				c.problem(CheckProblem{Kind: "meta", Stream: m.Name, Message: fmt.Sprintf("stream id %d is not below the next stream id %d", m.ID, next)})
			}
		}
	}
	return metas
}

// checkStream checks every shard of one stream.
func (c *checker) checkStream(m *streamMeta) {
	sc := StreamCheck{Name: m.Name, ID: m.ID, Shards: []ShardCheck{}}
	for _, sm := range m.Shards {
		sc.Shards = append(sc.Shards, c.checkShard(m, sm))
	}
	c.rep.Streams = append(c.rep.Streams, sc)
}

// checkShard reads every record of one shard. A read error starts an
// unreadable range; probing finds where reading works again.
func (c *checker) checkShard(m *streamMeta, sm shardMeta) ShardCheck {
	sh := ShardCheck{ShardID: sm.ID.String(), Closed: sm.Closed, EndCounter: sm.EndCounter}
	bad := func(kind, msg string) {
		c.problem(CheckProblem{Kind: kind, Stream: m.Name, Shard: sh.ShardID, Message: msg})
	}
	if v, err := c.get(shard.ShardStateKey(m.ID, uint32(sm.ID), shard.StateTrim)); err != nil {
		bad("records", fmt.Sprintf("the trim point cannot be read: %s", errText(err)))
	} else if v != nil && len(v) != 8 {
		bad("stats", fmt.Sprintf("the trim point is %d bytes, want 8", len(v)))
	} else if v != nil {
		sh.TrimPoint = binary.BigEndian.Uint64(v)
	}
	statsOK := true
	if v, err := c.get(shard.ShardStateKey(m.ID, uint32(sm.ID), shard.StateStats)); err != nil {
		statsOK = false
		bad("stats", fmt.Sprintf("the record and byte counts cannot be read: %s", errText(err)))
	} else if v != nil && len(v) != 16 {
		statsOK = false
		bad("stats", fmt.Sprintf("the record and byte counts are %d bytes, want 16", len(v)))
	} else if v != nil {
		sh.StatsBytes = int64(binary.BigEndian.Uint64(v[:8]))
		sh.StatsRecords = int64(binary.BigEndian.Uint64(v[8:]))
	}

	seq := func(cnt uint64, ms int64) string {
		return shard.SequenceNumber{ShardCreated: sm.Created, Shard: uint32(sm.ID), Counter: cnt, Written: uint64(max(ms, 0) / 1000)}.String()
	}
	upper := shard.AppendRecordKey(nil, m.ID, uint32(sm.ID)+1, 0)
	if uint32(sm.ID) == math.MaxUint32 {
		upper = shard.AppendRecordKey(nil, m.ID+1, 0, 0)
	}
	var (
		from       uint64 // next counter to read
		prev       uint64 // last readable counter (0: none yet)
		prevMs     int64
		gapsShown  int
		undecoded  int
		backwardTs int
	)
	// scan reads from counter from until the end or an error.
	scan := func() error {
		it, err := c.pdb.NewIter(&pebble.IterOptions{LowerBound: shard.AppendRecordKey(nil, m.ID, uint32(sm.ID), from), UpperBound: upper})
		if err != nil {
			return err
		}
		var verr error
		for ok := it.First(); ok; ok = it.Next() {
			_, _, cnt, _ := shard.DecodeRecordKey(it.Key())
			v, err := it.ValueAndErr()
			if err != nil {
				verr = err
				break
			}
			d, dok := shard.DecodeValue(v)
			if !dok {
				undecoded++
				if undecoded <= 3 {
					bad("records", fmt.Sprintf("record %d does not decode (%d-byte value)", cnt, len(v)))
				}
			}
			if cnt < sh.TrimPoint {
				bad("counters", fmt.Sprintf("record %d is below the trim point %d (trimmed records must not remain)", cnt, sh.TrimPoint))
			}
			want := max(sh.TrimPoint, 1)
			if prev != 0 {
				want = prev + 1
			}
			if cnt > want && !c.coveredByUnreadable(sh.Unreadable, want) {
				gapsShown++
				if gapsShown <= 3 {
					bad("counters", fmt.Sprintf("counters %d to %d are missing (the next record is %d)", want, cnt-1, cnt))
				}
			}
			if dok && prev != 0 && d.ArrivalMs < prevMs {
				backwardTs++
				if backwardTs <= 3 {
					bad("records", fmt.Sprintf("record %d arrived at %d ms, before record %d (%d ms)", cnt, d.ArrivalMs, prev, prevMs))
				}
			}
			if sh.FirstCounter == 0 {
				sh.FirstCounter = cnt
			}
			sh.LastCounter = cnt
			sh.Records++
			sh.Bytes += int64(len(v))
			prev, from = cnt, cnt+1
			if dok {
				prevMs = d.ArrivalMs
			}
		}
		return iterDone(it, verr)
	}
	for {
		err := scan()
		if err == nil {
			break
		}
		r := UnreadableRange{FromCounter: from, Error: errText(err)}
		if prev == 0 {
			// Nothing read yet: counters start at 1, or at the trim point.
			r.FromCounter = max(from, sh.TrimPoint, 1)
		}
		if prev != 0 {
			r.AfterSequenceNumber = seq(prev, prevMs)
		}
		next, nextMs, found, perr := c.resume(m.ID, sm.ID, from, upper)
		if perr != nil {
			r.Error += "; " + perr.Error()
		}
		if found {
			r.ToCounter = next - 1
			r.BeforeSequenceNumber = seq(next, nextMs)
		}
		sh.Unreadable = append(sh.Unreadable, r)
		to := "the end of the shard"
		if found {
			to = fmt.Sprintf("%d", r.ToCounter)
		}
		bad("records", fmt.Sprintf("records %d to %s cannot be read: %s", r.FromCounter, to, errText(err)))
		if !found {
			break
		}
		// Continue at the first readable record; it is not a gap.
		from, prev = next, next-1
	}
	if undecoded > 3 {
		bad("records", fmt.Sprintf("%d records do not decode in all", undecoded))
	}
	if gapsShown > 3 {
		bad("counters", fmt.Sprintf("%d gaps in the counters in all", gapsShown))
	}
	if statsOK && len(sh.Unreadable) == 0 && (sh.Records != sh.StatsRecords || sh.Bytes != sh.StatsBytes) {
		bad("stats", fmt.Sprintf("the shard's counts say %d records and %d bytes; its records are %d and %d bytes",
			sh.StatsRecords, sh.StatsBytes, sh.Records, sh.Bytes))
	}
	if sm.Closed && sh.LastCounter != 0 && len(sh.Unreadable) == 0 && sh.LastCounter != sm.EndCounter {
		bad("counters", fmt.Sprintf("the catalog says the closed shard ended at counter %d; its last record is %d", sm.EndCounter, sh.LastCounter))
	}
	return sh
}

// coveredByUnreadable reports whether counter cnt lies in a listed
// unreadable range.
func (c *checker) coveredByUnreadable(rs []UnreadableRange, cnt uint64) bool {
	for _, r := range rs {
		if cnt >= r.FromCounter && (r.ToCounter == 0 || cnt <= r.ToCounter) {
			return true
		}
	}
	return false
}

// resume finds where reading a shard works again after a failure at
// counter from: the smallest counter x > from at which a read positions
// without error (exponential, then binary search; a damaged block covers
// a contiguous key range). It returns the first record at or after x and
// its arrival, or found false if none is readable after from.
func (c *checker) resume(stream uint32, id shard.ShardID, from uint64, upper []byte) (next uint64, nextMs int64, found bool, err error) {
	probe := func(x uint64) (uint64, int64, bool, bool) {
		it, err := c.pdb.NewIter(&pebble.IterOptions{LowerBound: shard.AppendRecordKey(nil, stream, uint32(id), x), UpperBound: upper})
		if err != nil {
			return 0, 0, false, false
		}
		defer it.Close()
		if !it.First() {
			return 0, 0, false, it.Error() == nil
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, 0, false, false
		}
		_, _, cnt, _ := shard.DecodeRecordKey(it.Key())
		ms, _ := shard.ValueArrival(v)
		return cnt, ms, true, it.Error() == nil
	}
	lo := from // reading at lo fails
	var hi uint64
	for step := uint64(1); ; step *= 2 {
		x := from + step
		if x < from || step == 0 { // overflow
			x = math.MaxUint64
		}
		n, ms, f, ok := probe(x)
		if ok {
			hi, next, nextMs, found = x, n, ms, f
			break
		}
		lo = x
		if x == math.MaxUint64 {
			return 0, 0, false, nil
		}
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if n, ms, f, ok := probe(mid); ok {
			hi, next, nextMs, found = mid, n, ms, f
		} else {
			lo = mid
		}
	}
	return next, nextMs, found, nil
}

// checkOrphans looks for records outside every shard in the catalog (of
// deleted streams, or of shards the catalog lost).
func (c *checker) checkOrphans(metas []*streamMeta) {
	type span struct{ lo, hi []byte }
	var known []span
	for _, m := range metas {
		for _, sm := range m.Shards {
			lo := shard.AppendRecordKey(nil, m.ID, uint32(sm.ID), 0)
			hi := shard.AppendRecordKey(nil, m.ID, uint32(sm.ID)+1, 0)
			if uint32(sm.ID) == math.MaxUint32 {
				hi = shard.AppendRecordKey(nil, m.ID+1, 0, 0)
			}
			known = append(known, span{lo, hi})
		}
	}
	slices.SortFunc(known, func(a, b span) int { return strings.Compare(string(a.lo), string(b.lo)) })
	start := []byte{shard.PrefixRecords}
	type orphanKey struct {
		stream uint32
		shard  uint32
	}
	counts := make(map[orphanKey]int)
	var order []orphanKey
	gap := func(lo, hi []byte) {
		if string(lo) >= string(hi) {
			return
		}
		c.scanSpan(lo, hi, func(k, _ []byte) {
			s, id, _, ok := shard.DecodeRecordKey(k)
			if !ok {
				s, id = math.MaxUint32, math.MaxUint32
			}
			ok2 := orphanKey{s, id}
			if counts[ok2] == 0 {
				order = append(order, ok2)
			}
			counts[ok2]++
		})
	}
	for _, k := range known {
		gap(start, k.lo)
		start = k.hi
	}
	gap(start, []byte{shard.PrefixRecords + 1})
	for _, k := range order {
		if k.stream == math.MaxUint32 {
			c.problem(CheckProblem{Kind: "orphan", Message: fmt.Sprintf("%d malformed keys in the records key space", counts[k])})
			continue
		}
		c.problem(CheckProblem{Kind: "orphan", Message: fmt.Sprintf("%d records of stream #%d %s, which the catalog does not list", counts[k], k.stream, shard.ShardID(k.shard))})
	}
}

// iterDone closes it and returns the first error of verr (a value read),
// the iterator's, and Close's (which repeats the iterator's).
func iterDone(it *pebble.Iterator, verr error) error {
	err := it.Error()
	cerr := it.Close()
	switch {
	case verr != nil:
		return verr
	case err != nil:
		return err
	}
	return cerr
}

// errText is err's message without the marker line Pebble appends to
// corruption errors ("<corruption detail carrier>").
func errText(err error) string {
	return strings.ReplaceAll(err.Error(), "\n<corruption detail carrier>", "")
}
