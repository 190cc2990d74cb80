package engine

// Fuzz target for the catalog codec (decodeStreamMeta). Catalog bytes never
// come from users, but a damaged or hand-edited entry must be refused with
// ErrCorruption, never crash Open or a later call (Invariant 6). The seed
// corpus is in testdata/fuzz/FuzzDecodeStreamMeta.

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/shard"
)

// catalogSeeds returns the encoded catalog entries of real streams: fresh,
// split, merged, rescaled, with tags and settings.
func catalogSeeds(tb testing.TB) [][]byte {
	db, err := Open("db", &Options{FS: vfs.NewMem()})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(db.CreateStream("one", StreamConfig{ShardCount: 1}))
	must(db.CreateStream("four", StreamConfig{ShardCount: 4, Partitioner: PartitionerMD5, MaxBytes: 1 << 20, Discard: DiscardNew,
		Limits: KinesisLimits, Tags: map[string]string{"team": "billing", "env": ""}}))
	must(db.CreateStream("resharded", StreamConfig{ShardCount: 3}))
	must(db.SplitShard("resharded", 0, "1000000"))
	must(db.MergeShards("resharded", 1, 2))
	must(db.UpdateShardCount("resharded", 5))
	must(db.SetAttr("four", "kinesis/shard-level-metrics", []byte(`["IncomingBytes"]`)))
	var out [][]byte
	for _, n := range []string{"one", "four", "resharded"} {
		s, err := db.streamByName(n)
		must(err)
		enc, err := encodeStreamMeta(s.meta.clone())
		must(err)
		out = append(out, enc)
	}
	return out
}

func FuzzDecodeStreamMeta(f *testing.F) {
	for _, b := range catalogSeeds(f) {
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"v":1,"name":"x","retention_ms":1,"next_shard":1,"shards":[{"id":0,"range":{"Start":"0","End":"340282366920938463463374607431768211455"}}]}`))
	f.Add([]byte(`{"v":1,"name":"x","retention_ms":1,"next_shard":2,"shards":[{"id":0,"closed":true,"range":{"Start":"5","End":"4"}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeStreamMeta(b)
		if err != nil {
			if !errors.Is(err, shard.ErrCorruption) {
				t.Fatalf("decodeStreamMeta error %v does not wrap ErrCorruption", err)
			}
			if m != nil {
				t.Fatalf("decodeStreamMeta returned both a meta and %v", err)
			}
			return
		}
		// What is accepted is what the engine relies on.
		if len(m.Shards) == 0 || m.RetentionMs <= 0 || !m.Partitioner.Valid() {
			t.Fatalf("accepted an entry without shards, retention or partitioner: %+v", m)
		}
		for i, s := range m.Shards {
			if uint32(s.ID) >= m.NextShard || s.Range.Start.Cmp(s.Range.End) > 0 || (i > 0 && s.ID <= m.Shards[i-1].ID) {
				t.Fatalf("accepted an inconsistent shard table: %+v", m.Shards)
			}
		}
		if err := openRangesTile(m); err != nil {
			t.Fatalf("accepted an entry whose open shards do not tile the hash space: %v", err)
		}
		// The codec round-trips: encoding what was decoded gives bytes that
		// decode to the same entry and encode to the same bytes.
		enc1, err := encodeStreamMeta(m.clone())
		if err != nil {
			t.Fatalf("encode of a decoded entry: %v", err)
		}
		m2, err := decodeStreamMeta(enc1)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", enc1, err)
		}
		enc2, err := encodeStreamMeta(m2.clone())
		if err != nil || !bytes.Equal(enc1, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc1, enc2)
		}
		m3, _ := decodeStreamMeta(enc2)
		if !reflect.DeepEqual(m2, m3) {
			t.Fatalf("round trip changed the entry:\n%+v\n%+v", m2, m3)
		}
	})
}

// openRangesTile reports whether m's open shards tile [0, 2^128-1].
func openRangesTile(m *streamMeta) error {
	var open []shard.HashRange
	for _, s := range m.Shards {
		if !s.Closed {
			open = append(open, s.Range)
		}
	}
	slices.SortFunc(open, func(a, b shard.HashRange) int { return a.Start.Cmp(b.Start) })
	next := shard.HashKey{}
	for i, r := range open {
		if r.Start != next {
			return errors.New("gap or overlap at " + next.String())
		}
		if i == len(open)-1 {
			if r.End != shard.MaxHashKey {
				return errors.New("the last open shard ends at " + r.End.String())
			}
			return nil
		}
		next = r.End.Add(1)
	}
	return errors.New("no open shard")
}

// TestRegressionCatalogOpenShardsMustTile: decodeStreamMeta accepted a
// catalog entry whose open shards do not tile the hash space (here: every
// shard closed, a gap, an overlap), and the engine then panicked in
// stream.route (index out of range) on the first put to the stream.
// Found by FuzzDecodeStreamMeta's properties.
func TestRegressionCatalogOpenShardsMustTile(t *testing.T) {
	base, err := decodeStreamMeta(catalogSeeds(t)[0]) // one open shard
	if err != nil {
		t.Fatal(err)
	}
	half := shard.Mid(shard.HashKey{}, shard.MaxHashKey)
	cases := map[string]func(m *streamMeta){
		"all closed": func(m *streamMeta) { m.Shards[0].Closed = true },
		"gap": func(m *streamMeta) {
			m.Shards[0].Range.End = half
			m.Shards = append(m.Shards, shardMeta{ID: 1, Range: shard.HashRange{Start: half.Add(2), End: shard.MaxHashKey}})
			m.NextShard = 2
		},
		"overlap": func(m *streamMeta) {
			m.Shards = append(m.Shards, shardMeta{ID: 1, Range: shard.HashRange{Start: half, End: shard.MaxHashKey}})
			m.NextShard = 2
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			m := base.clone()
			damage(m)
			enc, err := encodeStreamMeta(m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decodeStreamMeta(enc); !errors.Is(err, shard.ErrCorruption) {
				t.Errorf("decodeStreamMeta = %v, want ErrCorruption", err)
			}
			// End to end: Open refuses it (or at least a put does not panic).
			fs := vfs.NewMem()
			db, err := Open("db", &Options{FS: fs})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.CreateStream(m.Name, StreamConfig{ShardCount: 1}); err != nil {
				t.Fatal(err)
			}
			if err := db.pdb.Set(shard.CatalogKey(m.Name), enc, nil); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db, err = Open("db", &Options{FS: fs})
			if err != nil {
				if !errors.Is(err, shard.ErrCorruption) {
					t.Errorf("Open = %v, want ErrCorruption", err)
				}
				return
			}
			defer db.Close()
			_, err = db.PutRecord(context.Background(), m.Name, Entry{PartitionKey: "k", Data: []byte("x")})
			t.Logf("PutRecord on the damaged stream: %v", err)
		})
	}
}
