package command

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/server"
)

// localStore is a store over a data directory opened in this process.
type localStore struct {
	db  *heldDB
	dir string
}

func (l *localStore) Where() string { return l.dir }

func (l *localStore) Close() error { return l.db.Close() }

// wrap turns engine errors about stream into command-line messages.
func (l *localStore) wrap(err error, stream string) error { return localWrap(err, stream, l.dir) }

// localWrap turns engine errors about stream in data directory dir into
// command-line messages (shared with socketStore, so a directory reached
// through its socket reads the same).
func localWrap(err error, stream, dir string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, engine.ErrStreamNotFound):
		return &cliError{err: err, msg: fmt.Sprintf("stream %q not found in %s ('kvstream streams list' shows the streams)", stream, dir)}
	case errors.Is(err, engine.ErrStreamExists):
		return &cliError{err: err, msg: fmt.Sprintf("stream %q already exists in %s", stream, dir)}
	}
	return err
}

func (l *localStore) CreateStream(_ context.Context, name string, cfg createConfig) error {
	discard, err := parseDiscard(cfg.Discard)
	if err != nil {
		return err
	}
	sc := engine.StreamConfig{ShardCount: cfg.Shards, Retention: cfg.Retention, MaxBytes: cfg.MaxBytes, Discard: discard}
	switch cfg.Partitioner {
	case "", "xxhash":
		sc.Partitioner = engine.PartitionerXXHash
	case "md5":
		sc.Partitioner = engine.PartitionerMD5
	default:
		return usagef("--partitioner %q must be xxhash or md5", cfg.Partitioner)
	}
	return l.wrap(l.db.CreateStream(name, sc), name)
}

func (l *localStore) DeleteStream(ctx context.Context, name string) error {
	return l.wrap(l.db.DeleteStream(ctx, name), name)
}

func (l *localStore) ListStreams(context.Context) ([]string, error) { return l.db.ListStreams() }

func (l *localStore) DescribeStream(_ context.Context, name string) (streamInfo, error) {
	d, err := l.db.DescribeStream(name)
	if err != nil {
		return streamInfo{}, l.wrap(err, name)
	}
	// Mode and Encryption are Kinesis settings the server keeps as
	// stream attributes.
	ks, err := server.ReadStreamSettings(l.db.DB, name)
	if err != nil {
		return streamInfo{}, l.wrap(err, name)
	}
	info := streamInfo{
		Name:        d.Name,
		Status:      string(d.Status),
		Created:     d.CreatedAt,
		Retention:   d.Retention,
		Mode:        ks.Mode,
		Encryption:  ks.EncryptionType,
		Partitioner: d.Partitioner.String(),
		OpenShards:  d.OpenShardCount,
		HasStats:    true,
		Records:     d.Records,
		Bytes:       d.Bytes,
		MaxBytes:    d.MaxBytes,
		Discard:     discardName(d.Discard),
	}
	for _, s := range d.Shards {
		si := shardInfo{
			ID:                     s.ShardID.String(),
			StartingHashKey:        s.HashKeyRange.Start.String(),
			EndingHashKey:          s.HashKeyRange.End.String(),
			StartingSequenceNumber: s.StartingSequenceNumber.String(),
			Records:                s.Records,
			Bytes:                  s.Bytes,
		}
		if s.ParentShardID != nil {
			si.Parent = s.ParentShardID.String()
		}
		if s.AdjacentParentShardID != nil {
			si.AdjacentParent = s.AdjacentParentShardID.String()
		}
		if !s.Open() {
			si.EndingSequenceNumber = s.EndingSequenceNumber.String()
		}
		info.Shards = append(info.Shards, si)
	}
	return info, nil
}

func (l *localStore) Put(ctx context.Context, stream string, entries []engine.Entry) ([]putResult, error) {
	res, err := l.db.PutRecords(ctx, stream, entries)
	if err != nil {
		return nil, l.wrap(err, stream)
	}
	out := make([]putResult, len(res))
	for i, r := range res {
		out[i] = putResult{Shard: r.ShardID.String(), Err: r.Err}
		if r.Err == nil {
			out[i].Seq = r.SequenceNumber.String()
		}
	}
	return out, nil
}

func (l *localStore) OpenShard(_ context.Context, stream, shardID string, pos engine.StartPosition) (shardReader, error) {
	id, ok := engine.ParseShardID(shardID)
	if !ok {
		return nil, usagef("%q is not a shard id", shardID)
	}
	it, err := l.db.Iterate(stream, id, pos)
	if err != nil {
		if errors.Is(err, engine.ErrShardNotFound) {
			return nil, &cliError{err: err, msg: fmt.Sprintf("stream %q in %s has no shard %s", stream, l.dir, shardID)}
		}
		return nil, l.wrap(err, stream)
	}
	return &localReader{it: it}, nil
}

func (l *localStore) SplitShard(_ context.Context, stream, shardID, newStartingHashKey string) error {
	id, _ := engine.ParseShardID(shardID)
	return l.wrap(l.db.SplitShard(stream, id, newStartingHashKey), stream)
}

func (l *localStore) MergeShards(_ context.Context, stream, shardID, adjacentShardID string) error {
	a, _ := engine.ParseShardID(shardID)
	b, _ := engine.ParseShardID(adjacentShardID)
	return l.wrap(l.db.MergeShards(stream, a, b), stream)
}

func (l *localStore) UpdateShardCount(_ context.Context, stream string, target int) error {
	return l.wrap(l.db.UpdateShardCount(stream, target), stream)
}

func (l *localStore) SetRetention(_ context.Context, stream string, d time.Duration) error {
	return l.wrap(l.db.SetRetention(stream, d), stream)
}

func (l *localStore) SetMaxBytes(_ context.Context, stream string, maxBytes int64, discard string) error {
	p, err := parseDiscard(discard)
	if err != nil {
		return err
	}
	return l.wrap(l.db.SetMaxBytes(stream, maxBytes, p), stream)
}

// parseDiscard maps --discard's "old" (or "") and "new" to the engine's
// policy.
func parseDiscard(s string) (engine.DiscardPolicy, error) {
	switch s {
	case "", "old":
		return engine.DiscardOld, nil
	case "new":
		return engine.DiscardNew, nil
	}
	return 0, usagef("--discard %q must be old (drop the oldest records) or new (refuse new records)", s)
}

func discardName(p engine.DiscardPolicy) string {
	if p == engine.DiscardNew {
		return "new"
	}
	return "old"
}

// localReader reads a shard through engine.Iterator; Wait is woken by
// the engine's commit path.
type localReader struct {
	it *engine.Iterator
}

func (r *localReader) Next(_ context.Context, max int) ([]record, readState, error) {
	var out []record
	for len(out) < max && r.it.Next() {
		rec := r.it.Record()
		out = append(out, record{
			Shard: rec.ShardID.String(),
			Seq:   rec.SequenceNumber.String(),
			Key:   rec.PartitionKey,
			Data:  append([]byte(nil), rec.Data...),
			Time:  rec.Timestamp,
		})
	}
	if err := r.it.Err(); err != nil {
		return out, stateCaughtUp, err
	}
	switch {
	case len(out) == max:
		return out, stateMore, nil
	case r.it.ShardEnded():
		return out, stateEnded, nil
	}
	return out, stateCaughtUp, nil
}

func (r *localReader) Wait(ctx context.Context) error { return r.it.Wait(ctx) }

func (r *localReader) Close() error { return r.it.Close() }
