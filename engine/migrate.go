package engine

import (
	"encoding/binary"
	"encoding/json"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/shard"
)

// Migration of data directories written by builds that kept Kinesis-only
// stream settings in the engine: a stream's capacity mode, encryption and
// shard-level metrics in its catalog entry (streamMeta.Legacy*), and the
// registered (enhanced fan-out) consumers under PrefixStreamConsumers.
// The Kinesis server now keeps them as stream attributes. Open moves
// each into the attribute the server reads, in the server's encoding
// (server/kinesisattrs.go; the two must agree, and the upgrade test in
// server checks that they do), and removes the old entries, in one
// commit. A read-only Open applies the same change in memory only.
//
// The engine gives these attributes no meaning: this file is the only
// place that knows their keys, and only to carry old data forward.
const (
	legacyModeAttr       = "kinesis/stream-mode"
	legacyEncryptionAttr = "kinesis/encryption"
	legacyMetricsAttr    = "kinesis/shard-level-metrics"
	legacyConsumerPrefix = "kinesis/consumer/"
)

// legacyEncryption is the encoding of legacyEncryptionAttr.
type legacyEncryption struct {
	Type  string `json:"type"`
	KeyID string `json:"key_id,omitempty"`
}

// legacyConsumer is the encoding of a legacyConsumerPrefix+name attribute.
type legacyConsumer struct {
	CreatedMs       int64 `json:"created_ms"`
	ActiveMs        int64 `json:"active_ms"`
	DeletionDelayMs int64 `json:"deletion_delay_ms,omitempty"`
	DeregisteredMs  int64 `json:"deregistered_ms,omitempty"`
}

// migrateLegacy moves m's legacy settings and the registered consumers
// found for it into m.Attrs, staging the rewritten catalog entry and the
// deletion of the consumer entries in b. It reports whether m changed.
func (db *DB) migrateLegacy(b *pebble.Batch, m *streamMeta) (bool, error) {
	set := func(k string, v []byte) {
		if m.Attrs == nil {
			m.Attrs = make(map[string][]byte)
		}
		if _, ok := m.Attrs[k]; !ok { // never overwrite a newer value
			m.Attrs[k] = v
		}
	}
	changed := false
	if m.LegacyMode != "" {
		if m.LegacyMode != "PROVISIONED" { // the default: no attribute
			set(legacyModeAttr, []byte(m.LegacyMode))
		}
		m.LegacyMode, changed = "", true
	}
	if m.LegacyEncryption != "" || m.LegacyKeyID != "" {
		if m.LegacyEncryption != "" && m.LegacyEncryption != "NONE" {
			v, _ := json.Marshal(legacyEncryption{Type: m.LegacyEncryption, KeyID: m.LegacyKeyID})
			set(legacyEncryptionAttr, v)
		}
		m.LegacyEncryption, m.LegacyKeyID, changed = "", "", true
	}
	if m.LegacyMetrics != nil {
		if len(m.LegacyMetrics) > 0 {
			ms := slices.Clone(m.LegacyMetrics)
			slices.Sort(ms)
			v, _ := json.Marshal(slices.Compact(ms))
			set(legacyMetricsAttr, v)
		}
		m.LegacyMetrics, changed = nil, true
	}
	lower, upper := shard.StreamSpan(shard.PrefixStreamConsumers, m.ID)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return false, err
	}
	defer it.Close()
	found := false
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return false, err
		}
		// version(1) | createdMs | activeMs | deletionDelayMs |
		// deregisteredMs, each 8 bytes big-endian.
		if len(v) != 33 || v[0] != 1 {
			return false, shard.Errorf(shard.ErrCorruption, "registered consumer entry %q of stream %s does not decode", it.Key(), m.Name)
		}
		at := func(i int) int64 { return int64(binary.BigEndian.Uint64(v[1+8*i:])) }
		enc, _ := json.Marshal(legacyConsumer{CreatedMs: at(0), ActiveMs: at(1), DeletionDelayMs: at(2), DeregisteredMs: at(3)})
		set(legacyConsumerPrefix+string(it.Key()[len(lower):]), enc)
		found = true
	}
	if err := it.Error(); err != nil {
		return false, err
	}
	if found {
		_ = b.DeleteRange(lower, upper, nil)
		changed = true
	}
	if changed {
		enc, err := encodeStreamMeta(m)
		if err != nil {
			return false, err
		}
		_ = b.Set(shard.CatalogKey(m.Name), enc, nil)
	}
	return changed, nil
}
