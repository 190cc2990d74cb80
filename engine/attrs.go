package engine

import (
	"maps"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/shard"
)

// Attributes are a small key → bytes store for data the engine does not
// interpret: what a layer above the engine (the Kinesis server, say) needs
// to persist beside a stream, such as resource policies or settings that
// only that layer gives a meaning to. The engine stores and returns the
// bytes, nothing more.
//
// A stream's attributes live in its catalog entry: they are written
// durably with it (StreamConfig.Attrs sets the first ones in the commit
// that creates the stream), read without touching disk, and deleted with
// the stream (a stream created later under the same name starts with
// none). SetAttr changes one; UpdateAttrs is a read-modify-write of all of
// a stream's attributes in one commit.
// Attributes of stream "" belong to the DB as a whole.
//
// They are meant for small, rarely written values: every change rewrites
// the stream's catalog entry. Limits: keys 1 to MaxAttrKeyBytes bytes,
// values at most MaxAttrValueBytes bytes, at most MaxAttrBytes bytes of
// keys and values per stream.
const (
	MaxAttrKeyBytes   = 256
	MaxAttrValueBytes = 64 << 10
	MaxAttrBytes      = 1 << 20
)

// attrMetaPrefix prefixes DB-wide attributes in the metadata key space.
const attrMetaPrefix = "attr/"

// SetAttr sets the attribute key of stream streamName (of the DB when
// streamName is "")
// to value, durably; a nil value deletes it. It fails with
// ErrStreamNotFound for an unknown stream and ErrValidation when a limit
// is exceeded. Safe for concurrent use.
func (db *DB) SetAttr(streamName, key string, value []byte) error {
	if err := db.check(); err != nil {
		return err
	}
	if err := db.writable(); err != nil {
		return err
	}
	if len(key) < 1 || len(key) > MaxAttrKeyBytes {
		return validationf("attribute key %q must be 1 to %d bytes long", key, MaxAttrKeyBytes)
	}
	if len(value) > MaxAttrValueBytes {
		return validationf("attribute %q is %d bytes, more than the limit of %d bytes", key, len(value), MaxAttrValueBytes)
	}
	if streamName == "" {
		leave, err := db.enterWrite()
		if err != nil {
			return err
		}
		defer leave()
		k := shard.MetaKey(attrMetaPrefix + key)
		b := db.pdb.NewBatch()
		defer b.Close()
		if value == nil {
			_ = b.Delete(k, nil)
		} else {
			_ = b.Set(k, value, nil)
		}
		if err := db.writer.CommitBatch(b, pebble.Sync); err != nil {
			return writeFailed("SetAttr", streamName, err)
		}
		return nil
	}
	return db.UpdateAttrs(streamName, func(attrs map[string][]byte) error {
		if value == nil {
			delete(attrs, key)
		} else {
			attrs[key] = value
		}
		return nil
	})
}

// UpdateAttrs changes the attributes of stream streamName atomically: fn
// gets a copy of them (never nil; it may add, change and delete entries),
// and when it returns nil the result replaces them durably in one commit.
// An error from fn aborts the change and is returned as is. Nothing else
// changes the stream in between, so fn can check and update in one step
// (count entries under a prefix, refuse a duplicate). fn runs under the
// stream's control-plane lock, which orders it with the stream's other
// settings changes (puts and reads go on meanwhile): it must be quick and
// must not call the DB.
// The limits of SetAttr apply to the result (ErrValidation); the stream
// must exist (ErrStreamNotFound). DB-wide attributes (stream "") are not
// supported here.
func (db *DB) UpdateAttrs(streamName string, fn func(attrs map[string][]byte) error) error {
	if err := db.check(); err != nil {
		return err
	}
	if streamName == "" {
		return validationf("UpdateAttrs needs a stream name; use SetAttr for DB-wide attributes")
	}
	return db.updateMeta(streamName, func(_ *stream, m *streamMeta) error {
		attrs := cloneAttrs(m.Attrs)
		if attrs == nil {
			attrs = make(map[string][]byte)
		}
		if err := fn(attrs); err != nil {
			return err
		}
		if err := validateAttrs(streamName, attrs); err != nil {
			return err
		}
		m.Attrs = cloneAttrs(attrs)
		if len(m.Attrs) == 0 {
			m.Attrs = nil
		}
		return nil
	})
}

// validateAttrs checks a stream's attributes against the limits.
func validateAttrs(streamName string, attrs map[string][]byte) error {
	for k, v := range attrs {
		if len(k) < 1 || len(k) > MaxAttrKeyBytes {
			return validationf("attribute key %q must be 1 to %d bytes long", k, MaxAttrKeyBytes)
		}
		if len(v) > MaxAttrValueBytes {
			return validationf("attribute %q is %d bytes, more than the limit of %d bytes", k, len(v), MaxAttrValueBytes)
		}
	}
	if n := attrsSize(attrs); n > MaxAttrBytes {
		return validationf("attributes of stream %s would total %d bytes, more than the limit of %d bytes", streamName, n, MaxAttrBytes)
	}
	return nil
}

// Attr returns the attribute key of stream (of the DB when stream is "");
// ok is false when it is not set. The returned slice is the caller's.
func (db *DB) Attr(stream, key string) (value []byte, ok bool, err error) {
	if stream == "" {
		leave, err := db.enterRead()
		if err != nil {
			return nil, false, err
		}
		defer leave()
		v, err := db.get(shard.MetaKey(attrMetaPrefix + key))
		return v, v != nil, err
	}
	s, err := db.streamByName(stream)
	if err != nil {
		return nil, false, err
	}
	v, ok := s.load().meta.Attrs[key]
	if !ok {
		return nil, false, nil
	}
	return append([]byte(nil), v...), true, nil
}

// Attrs returns the attributes of stream whose keys start with prefix
// (all of them for ""). DB-wide attributes are not listed. The map is the
// caller's.
func (db *DB) Attrs(stream, prefix string) (map[string][]byte, error) {
	s, err := db.streamByName(stream)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte)
	for k, v := range s.load().meta.Attrs {
		if strings.HasPrefix(k, prefix) {
			out[k] = append([]byte(nil), v...)
		}
	}
	return out, nil
}

func attrsSize(m map[string][]byte) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}

func cloneAttrs(m map[string][]byte) map[string][]byte {
	if m == nil {
		return nil
	}
	c := maps.Clone(m)
	for k, v := range c {
		c[k] = append([]byte(nil), v...)
	}
	return c
}
