package engine

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/kvstream/kvstream/shard"
)

// catalogVersion is the version of the catalog entry codec.
const catalogVersion = 1

// streamMeta is one stream's catalog entry, persisted as JSON under
// shard.CatalogKey(name). It is small and written only by control-plane
// calls, so readability wins over compactness here.
type streamMeta struct {
	Version     int    `json:"v"`
	Name        string `json:"name"`
	ID          uint32 `json:"id"`
	CreatedMs   int64  `json:"created_ms"`
	ActiveMs    int64  `json:"active_ms"` // CREATING until then
	RetentionMs int64  `json:"retention_ms"`
	// FloorMs hides records that arrived before it even if retention is
	// raised later: raising retention never brings expired records back.
	FloorMs     int64             `json:"floor_ms,omitempty"`
	Partitioner shard.Partitioner `json:"partitioner"`
	Limits      Limits            `json:"limits"`
	MaxBytes    int64             `json:"max_bytes,omitempty"`
	Discard     DiscardPolicy     `json:"discard,omitempty"`
	// Legacy* are Kinesis settings that builds before attributes kept
	// here (capacity mode, encryption, shard-level metrics). They are
	// only read: Open moves them into Attrs (migrate.go).
	LegacyMode       string            `json:"mode,omitempty"`
	LegacyEncryption string            `json:"encryption,omitempty"`
	LegacyKeyID      string            `json:"key_id,omitempty"`
	LegacyMetrics    []string          `json:"metrics,omitempty"`
	Tags             map[string]string `json:"tags,omitempty"`
	NextShard        uint32            `json:"next_shard"`
	Shards           []shardMeta       `json:"shards"`
	UpdatingMs       int64             `json:"updating_ms,omitempty"` // UPDATING until then
	// MaxRecordBytes overrides Options.MaxRecordBytes for this stream
	// (0: the DB's default).
	MaxRecordBytes int `json:"max_record_bytes,omitempty"`
	// Attrs are the stream's attributes (attrs.go): bytes the engine
	// stores for the layer above it and does not interpret.
	Attrs map[string][]byte `json:"attrs,omitempty"`
}

// shardMeta is one shard's lineage and range. Closed shards keep their
// entry until retention removes their data.
type shardMeta struct {
	ID             shard.ShardID   `json:"id"`
	Range          shard.HashRange `json:"range"`
	Parent         *shard.ShardID  `json:"parent,omitempty"`
	AdjacentParent *shard.ShardID  `json:"adjacent_parent,omitempty"`
	Created        uint64          `json:"created"` // Unix seconds, unique per DB
	Closed         bool            `json:"closed,omitempty"`
	ClosedMs       int64           `json:"closed_ms,omitempty"`
	EndCounter     uint64          `json:"end_counter,omitempty"` // last record's counter when closed
}

func encodeStreamMeta(m *streamMeta) ([]byte, error) {
	m.Version = catalogVersion
	return json.Marshal(m)
}

// decodeStreamMeta decodes and sanity-checks a catalog entry. Any problem
// is ErrCorruption: catalog bytes never come from users.
func decodeStreamMeta(b []byte) (*streamMeta, error) {
	var m streamMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, &shard.Error{Kind: shard.ErrCorruption, Msg: "catalog entry does not decode", Cause: err}
	}
	if m.Version != catalogVersion {
		return nil, shard.Errorf(shard.ErrCorruption, "catalog entry %q has version %d, want %d", m.Name, m.Version, catalogVersion)
	}
	if len(m.Shards) == 0 || m.Partitioner > shard.PartitionerMD5 || m.RetentionMs <= 0 {
		return nil, shard.Errorf(shard.ErrCorruption, "catalog entry %q is inconsistent", m.Name)
	}
	for i, s := range m.Shards {
		if uint32(s.ID) >= m.NextShard || s.Range.Start.Cmp(s.Range.End) > 0 || (i > 0 && s.ID <= m.Shards[i-1].ID) {
			return nil, shard.Errorf(shard.ErrCorruption, "catalog entry %q has an inconsistent shard table", m.Name)
		}
	}
	if !m.openShardsTile() {
		return nil, shard.Errorf(shard.ErrCorruption, "catalog entry %q: open shards do not cover the hash-key space exactly once", m.Name)
	}
	return &m, nil
}

// openShardsTile reports whether the open shards' ranges cover
// [0, 2^128-1] exactly once, the invariant routing depends on.
func (m *streamMeta) openShardsTile() bool {
	var open []shard.HashRange
	for _, s := range m.Shards {
		if !s.Closed {
			open = append(open, s.Range)
		}
	}
	slices.SortFunc(open, func(a, b shard.HashRange) int { return a.Start.Cmp(b.Start) })
	next := shard.HashKey{}
	for i, r := range open {
		if r.Start != next || r.End.Cmp(r.Start) < 0 {
			return false
		}
		if r.End == shard.MaxHashKey {
			return i == len(open)-1
		}
		next = r.End.Add(1)
	}
	return false
}

func (m *streamMeta) retention() time.Duration {
	return time.Duration(m.RetentionMs) * time.Millisecond
}

func (m *streamMeta) clone() *streamMeta {
	c := *m
	c.Shards = append([]shardMeta(nil), m.Shards...)
	c.LegacyMetrics = slices.Clone(m.LegacyMetrics)
	if m.Tags != nil {
		c.Tags = make(map[string]string, len(m.Tags))
		for k, v := range m.Tags {
			c.Tags[k] = v
		}
	}
	c.Attrs = cloneAttrs(m.Attrs)
	return &c
}
