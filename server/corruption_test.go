package server

import (
	"cmp"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// TestGetRecordsCorruption: a GetRecords that meets a damaged block gets
// a 500 InternalFailure that says corruption and names the shard, the
// server counts it on /metrics, and the other shard reads normally.
func TestGetRecordsCorruption(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	// Two shards, routed by explicit hash key; NoSync so Close flushes
	// the records into an sstable.
	db, err := engine.Open(dir, &engine.Options{NoSync: true})
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("s", engine.StreamConfig{ShardCount: 2}))
	rng := rand.New(rand.NewPCG(3, 4))
	for _, ehk := range []string{"0", "340282366920938463463374607431768211455"} {
		for range 6 {
			entries := make([]engine.Entry, 500)
			for i := range entries {
				data := make([]byte, 100)
				for j := range data {
					data[j] = byte(rng.IntN(256))
				}
				entries[i] = engine.Entry{PartitionKey: "k", ExplicitHashKey: ehk, Data: data}
			}
			_, err := db.PutRecords(ctx, "s", entries)
			require.NoError(t, err)
		}
	}
	require.NoError(t, db.Close())

	// Damage a data block a quarter into the table: inside shard 0.
	// The records' table: the largest (the engine keeps records in tables
	// of their own; the others hold a few small keys).
	tables, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	require.NoError(t, err)
	require.NotEmpty(t, tables)
	slices.SortFunc(tables, func(a, b string) int {
		fa, erra := os.Stat(a)
		fb, errb := os.Stat(b)
		require.NoError(t, errors.Join(erra, errb))
		return cmp.Compare(fb.Size(), fa.Size())
	})
	po := &pebble.Options{}
	po.EnsureDefaults()
	f, err := vfs.Default.Open(tables[0])
	require.NoError(t, err)
	readable, err := sstable.NewSimpleReadable(f)
	require.NoError(t, err)
	r, err := sstable.NewReader(ctx, readable, po.MakeReaderOptions())
	require.NoError(t, err)
	layout, err := r.Layout()
	require.NoError(t, err)
	bh := layout.Data[len(layout.Data)/4].Handle
	require.NoError(t, r.Close())
	b, err := os.ReadFile(tables[0])
	require.NoError(t, err)
	b[bh.Offset+bh.Length/2] ^= 0xff
	require.NoError(t, os.WriteFile(tables[0], b, 0o644))

	db, err = engine.Open(dir, nil)
	require.NoError(t, err)
	srv, err := New(db, Config{})
	require.NoError(t, err)
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.Protocols = Protocols()
	hs.Start()
	t.Cleanup(func() {
		hs.Close()
		require.NoError(t, db.Close())
	})
	env := &testEnv{t: t, db: db, srv: srv, hs: hs, url: hs.URL}
	kc := env.client()

	read := func(shardID string) (n int, err error) {
		it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
			StreamName: aws.String("s"), ShardId: aws.String(shardID), ShardIteratorType: "TRIM_HORIZON"})
		require.NoError(t, err)
		tok := it.ShardIterator
		for range 100 {
			out, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: tok})
			if err != nil {
				return n, err
			}
			n += len(out.Records)
			if len(out.Records) == 0 {
				return n, nil
			}
			tok = out.NextShardIterator
		}
		t.Fatal("no end")
		return n, nil
	}
	n, err := read("shardId-000000000000")
	require.Error(t, err)
	var ae smithy.APIError
	require.True(t, errors.As(err, &ae), "%v", err)
	require.Equal(t, "InternalFailure", ae.ErrorCode())
	require.Contains(t, ae.ErrorMessage(), "corruption")
	require.Contains(t, ae.ErrorMessage(), "shardId-000000000000")
	require.Positive(t, n, "the records before the damage were returned")
	require.Less(t, n, 3000)
	var re interface{ HTTPStatusCode() int }
	require.True(t, errors.As(err, &re))
	require.Equal(t, http.StatusInternalServerError, re.HTTPStatusCode())

	n, err = read("shardId-000000000001")
	require.NoError(t, err, "the other shard is not affected")
	require.Equal(t, 3000, n)

	resp, err := hs.Client().Get(hs.URL + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), "kvstream_server_corruption_errors_total 1")
	require.True(t, strings.Contains(string(body), `kvstream_server_requests_total{error="InternalFailure",op="GetRecords"} 1`))
}
