package engine

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvstream/kvstream/shard"
	"github.com/stretchr/testify/require"
)

// copyLegacyDir copies testdata/legacy-v1, a data directory written by
// the build before the Kinesis settings and the registered consumers
// moved into attributes (see its README), to a temporary directory.
func copyLegacyDir(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("testdata", "legacy-v1")
	ents, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range ents {
		if e.Name() == "README" {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		out, err := os.Create(filepath.Join(dst, e.Name()))
		require.NoError(t, err)
		_, err = io.Copy(out, in)
		require.NoError(t, err)
		require.NoError(t, in.Close())
		require.NoError(t, out.Close())
	}
	return dst
}

// legacyAttrs returns the attributes the migration must produce from
// testdata/legacy-v1, by stream.
func legacyAttrs(t *testing.T) map[string]map[string]string {
	const t0 = 1764578000000
	consumer := func(c legacyConsumer) string {
		b, err := json.Marshal(c)
		require.NoError(t, err)
		return string(b)
	}
	return map[string]map[string]string{
		"orders": {
			legacyEncryptionAttr:             `{"type":"KMS","key_id":"alias/aws/kinesis"}`,
			legacyMetricsAttr:                `["IncomingBytes","OutgoingBytes"]`,
			legacyConsumerPrefix + "billing": consumer(legacyConsumer{CreatedMs: t0, ActiveMs: t0}),
			legacyConsumerPrefix + "audit":   consumer(legacyConsumer{CreatedMs: t0, ActiveMs: t0, DeletionDelayMs: 3600000, DeregisteredMs: t0 + 1500}),
			legacyConsumerPrefix + "slow":    consumer(legacyConsumer{CreatedMs: t0 + 1500, ActiveMs: t0 + 1500 + 3600000, DeletionDelayMs: 3600000}),
		},
		"ondemand": {
			legacyModeAttr:                  "ON_DEMAND",
			legacyConsumerPrefix + "reader": consumer(legacyConsumer{CreatedMs: t0 + 1500, ActiveMs: t0 + 1500}),
		},
		"plain": {},
	}
}

func requireAttrs(t *testing.T, db *DB, want map[string]map[string]string) {
	t.Helper()
	for stream, w := range want {
		got, err := db.Attrs(stream, "")
		require.NoError(t, err)
		gs := make(map[string]string, len(got))
		for k, v := range got {
			gs[k] = string(v)
		}
		require.Equal(t, w, gs, stream)
	}
}

// legacyConsumerKeys counts the entries left in the old registered
// consumer key space.
func legacyConsumerKeys(t *testing.T, db *DB) int {
	t.Helper()
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{shard.PrefixStreamConsumers}, UpperBound: []byte{shard.PrefixStreamConsumers + 1}})
	require.NoError(t, err)
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

// TestMigrateLegacyLayout opens a data directory written by the previous
// build: its stream modes, encryption settings, shard-level metrics and
// registered consumers come back as attributes, the old entries are gone
// after the first writable Open, a read-only Open sees the same without
// writing, and the result is stable across reopens.
func TestMigrateLegacyLayout(t *testing.T) {
	dir := copyLegacyDir(t)
	want := legacyAttrs(t)
	now := func() time.Time { return time.UnixMilli(1764578000000 + 2000) }

	ro, err := Open(dir, &Options{ReadOnly: true, Clock: now})
	require.NoError(t, err)
	requireAttrs(t, ro, want)
	require.Equal(t, 4, legacyConsumerKeys(t, ro), "a read-only Open writes nothing")
	require.NoError(t, ro.Close())

	for range 2 {
		db, err := Open(dir, &Options{BallastBytes: -1, Clock: now})
		require.NoError(t, err)
		requireAttrs(t, db, want)
		require.Zero(t, legacyConsumerKeys(t, db))
		for _, name := range []string{"orders", "ondemand", "plain"} {
			s, err := db.streamByName(name)
			require.NoError(t, err)
			m := s.load().meta
			require.Empty(t, m.LegacyMode, name)
			require.Empty(t, m.LegacyEncryption, name)
			require.Empty(t, m.LegacyKeyID, name)
			require.Nil(t, m.LegacyMetrics, name)
		}
		d, err := db.DescribeStream("orders")
		require.NoError(t, err)
		require.Len(t, d.Shards, 2)
		require.NoError(t, db.Close())
	}

	// The migrated attributes are deleted with their stream.
	db, err := Open(dir, &Options{BallastBytes: -1, Clock: now})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.DeleteStream(context.Background(), "orders"))
	require.NoError(t, db.CreateStream("orders", StreamConfig{ShardCount: 1}))
	got, err := db.Attrs("orders", "")
	require.NoError(t, err)
	require.Empty(t, got)
}
