package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

func TestSmoke(t *testing.T) {
	dir := t.TempDir()
	db, err := engine.Open(dir, nil)
	require.NoError(t, err)
	require.NoError(t, db.CreateStream("orders", engine.StreamConfig{ShardCount: 2}))
	ctx := context.Background()
	var last engine.PutResult
	for i := range 10 {
		last, err = db.PutRecord(ctx, "orders", engine.Entry{PartitionKey: "k", Data: fmt.Appendf(nil, "%d", i)})
		require.NoError(t, err)
	}
	t.Log(last.SequenceNumber.String(), len(last.SequenceNumber.String()))
	tok, err := db.GetShardIterator("orders", last.ShardID, engine.TrimHorizon())
	require.NoError(t, err)
	out, err := db.GetRecords(ctx, tok, 0)
	require.NoError(t, err)
	require.Len(t, out.Records, 10)
	require.NoError(t, db.Close())
	_, err = engine.Open(dir, nil)
	require.NoError(t, err)
	_, err = engine.Open(dir, nil)
	t.Log(err)
	require.ErrorIs(t, err, engine.ErrLocked)
}
