package command

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/server"
	"github.com/spf13/pflag"
)

// store is what put, get and streams need: either a local data directory
// (localStore, the engine in this process) or any Kinesis endpoint
// (remoteStore, through aws-sdk-go-v2). Shard ids and sequence numbers are
// passed in their Kinesis string forms so both sides look alike.
type store interface {
	CreateStream(ctx context.Context, name string, cfg createConfig) error
	DeleteStream(ctx context.Context, name string) error
	ListStreams(ctx context.Context) ([]string, error)
	DescribeStream(ctx context.Context, name string) (streamInfo, error)
	// Put writes entries (at most 500) in one PutRecords call. A per-entry
	// failure (throttling) sets that result's Err.
	Put(ctx context.Context, stream string, entries []engine.Entry) ([]putResult, error)
	// OpenShard starts reading one shard at pos.
	OpenShard(ctx context.Context, stream, shardID string, pos engine.StartPosition) (shardReader, error)
	SplitShard(ctx context.Context, stream, shardID, newStartingHashKey string) error
	MergeShards(ctx context.Context, stream, shardID, adjacentShardID string) error
	UpdateShardCount(ctx context.Context, stream string, target int) error
	SetRetention(ctx context.Context, stream string, d time.Duration) error
	// SetMaxBytes bounds the stream's stored bytes (0: unbounded) with the
	// discard policy "old" or "new"; local data directories only.
	SetMaxBytes(ctx context.Context, stream string, maxBytes int64, discard string) error
	// Where names the directory or endpoint, for messages.
	Where() string
	Close() error
}

// createConfig are the stream settings streams create and demo choose.
type createConfig struct {
	Shards      int
	Retention   time.Duration // 0: the default (24 h)
	Partitioner string        // "" (default), "xxhash" or "md5"; local only
	MaxBytes    int64         // 0: unbounded; local only
	Discard     string        // "old" (default) or "new"; local only
}

// streamInfo describes a stream for streams describe (its JSON form is
// streamInfoJSON).
type streamInfo struct {
	Name        string
	Status      string
	Created     time.Time
	Retention   time.Duration
	Mode        string
	Partitioner string
	Encryption  string
	OpenShards  int
	Shards      []shardInfo
	// Records, Bytes, MaxBytes and Discard are known for local
	// directories only (HasStats).
	HasStats bool
	Records  int64
	Bytes    int64
	MaxBytes int64  // 0: unbounded
	Discard  string // "old" or "new"
}

// shardInfo describes one shard.
type shardInfo struct {
	ID                     string `json:"shardId"`
	Parent                 string `json:"parentShardId,omitempty"`
	AdjacentParent         string `json:"adjacentParentShardId,omitempty"`
	StartingHashKey        string `json:"startingHashKey"`
	EndingHashKey          string `json:"endingHashKey"`
	StartingSequenceNumber string `json:"startingSequenceNumber"`
	EndingSequenceNumber   string `json:"endingSequenceNumber,omitempty"`
	Records                int64  `json:"records,omitempty"`
	Bytes                  int64  `json:"bytes,omitempty"`
}

// Open reports whether the shard still takes writes.
func (s shardInfo) Open() bool { return s.EndingSequenceNumber == "" }

// putResult is the outcome of one put entry.
type putResult struct {
	Shard string
	Seq   string
	Err   error
}

// record is one record read, owning its memory.
type record struct {
	Shard string
	Seq   string
	Key   string
	Data  []byte
	Time  time.Time
}

// readState says where a shard reader stands after Next.
type readState int

const (
	// stateMore: more records are visible now; call Next again.
	stateMore readState = iota
	// stateCaughtUp: every visible record was returned; Wait for more.
	stateCaughtUp
	// stateEnded: the shard is closed and read to its end.
	stateEnded
)

// shardReader reads one shard in order.
type shardReader interface {
	// Next returns up to max records visible now and where the reader stands.
	Next(ctx context.Context, max int) ([]record, readState, error)
	// Wait blocks until more records may be visible or ctx ends. Locally
	// the commit path wakes it (no polling); remotely it polls GetRecords
	// at a modest interval, as Kinesis offers no push for shared reads.
	Wait(ctx context.Context) error
	Close() error
}

// storeOptions choose between the data directory and a Kinesis endpoint;
// put, get and streams take them.
type storeOptions struct {
	endpoint string
	region   string
}

// AddFlags registers --endpoint and --region.
func (o *storeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.endpoint, "endpoint", "", "talk to this Kinesis endpoint (a running kvstream serve, or AWS) instead of opening --data, e.g. http://127.0.0.1:4567")
	fs.StringVar(&o.region, "region", "", "region for --endpoint (default $AWS_REGION, else us-east-1)")
}

// access says what a command does to the data directory. Every command
// states it when it opens the directory, and openDB is the one place that
// turns it into engine options, so "read-only commands never create or
// modify a data directory" is decided here and nowhere else.
type access int

const (
	// readOnly: the command only reads (streams list and describe, get
	// without --consumer). The directory must exist; nothing in it is
	// created or changed.
	readOnly access = iota
	// readWrite: the command writes into an existing data directory
	// (put, streams delete and resharding, get --consumer, forward).
	readWrite
	// mayCreate: the command may create the data directory (streams
	// create, demo, serve).
	mayCreate
)

// open returns the store the flags select, opening the data directory for
// acc (see access). If another process holds the directory, it is reached
// through its socket (socket.go), and the command works as it would on
// the directory itself; if that process serves no socket, the error says
// which process it is.
func (o *storeOptions) open(ctx context.Context, root *rootOptions, acc access) (store, error) {
	if o.endpoint != "" {
		return newRemoteStore(ctx, o.endpoint, o.region)
	}
	dir := root.dataDir
	var err error
	// Twice: a holder that exits between our open and our dial leaves the
	// directory free for the second open.
	for range 2 {
		var db *heldDB
		db, err = openDB(dir, acc, nil)
		if err == nil {
			return &localStore{db: db, dir: dir}, nil
		}
		if !isLocked(err) {
			return nil, err
		}
		var path string
		path, err = probeSocket(ctx, dir)
		if err == nil {
			return newSocketStore(dir, path), nil
		}
	}
	return nil, &cliError{err: engine.ErrLocked, msg: inUseMessage(dir, err)}
}

// isLocked reports whether err is another process (or a DB of this
// process) holding the data directory.
func isLocked(err error) bool {
	return errors.Is(err, engine.ErrLocked) || errors.Is(err, syscall.EAGAIN)
}

// openDB opens the data directory dir for acc with opts (nil: defaults),
// and turns the errors a user meets into advice: no directory yet, or
// another process holding it. Opened for writing, it also serves the
// directory on its socket (socket.go) until Close; if the socket cannot
// be made, the command goes on without it (a command that then finds the
// directory locked says why there is no socket).
func openDB(dir string, acc access, opts *engine.Options) (*heldDB, error) {
	if acc != mayCreate && !dataDirExists(dir) {
		return nil, &cliError{err: fs.ErrNotExist, msg: fmt.Sprintf(
			"no data directory at %s (create a stream first with 'kvstream streams create', or pass --data DIR or --endpoint URL)", dir)}
	}
	o := engine.Options{}
	if opts != nil {
		o = *opts
	}
	// Read-only commands write nothing at all: no file is created or
	// changed in the directory (engine.Options.ReadOnly).
	o.ReadOnly = acc == readOnly
	db, err := engine.Open(dir, &o)
	// engine.Open reports another process's lock (EAGAIN from fcntl) as
	// corruption today; accept both until it says ErrLocked.
	if isLocked(err) {
		return nil, &cliError{err: err, msg: inUseMessage(dir, nil)}
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	h := &heldDB{DB: db}
	if acc != readOnly {
		h.sock, _ = startSocket(dir, db, nil)
	}
	return h, nil
}

// inUseMessage says that another process holds dir, which one if the
// system tells, and what to do. sockErr is why its socket did not answer,
// or nil for a command that needs the directory to itself.
func inUseMessage(dir string, sockErr error) string {
	pid, cmdline := lockHolder(dir)
	who := "another process"
	switch {
	case pid != 0 && cmdline != "":
		who = fmt.Sprintf("process %d (%s)", pid, cmdline)
	case pid != 0:
		who = fmt.Sprintf("process %d", pid)
	}
	msg := fmt.Sprintf("data directory %s is in use by %s", dir, who)
	switch {
	case sockErr == nil:
		msg += ", and this command needs the directory to itself"
	case errors.Is(sockErr, errNoSocket):
		msg += fmt.Sprintf(", which does not share it (%v)", sockErr)
	default:
		msg += fmt.Sprintf(", which does not share it: %v", sockErr)
	}
	if strings.Contains(" "+cmdline+" ", " serve ") {
		endpoint := "URL (the address it printed)"
		if addr := serveAddr(cmdline); !strings.HasSuffix(addr, ":0") {
			endpoint = "http://" + addr
		}
		return msg + fmt.Sprintf("; talk to that server with --endpoint %s, or stop it", endpoint)
	}
	return msg + "; stop that process first"
}

// serveAddr returns the --addr of a kvstream serve command line, or the
// default address.
func serveAddr(cmdline string) string {
	args := strings.Fields(cmdline)
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--addr="); ok {
			return v
		}
		if a == "--addr" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return server.DefaultAddr
}

// dataDirExists reports whether dir exists as a directory.
func dataDirExists(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}

// parseShardID accepts "shardId-000000000003", "shardId-3" and "3" and
// returns the canonical form.
func parseShardID(s string) (string, error) {
	if n, err := strconv.ParseUint(s, 10, 31); err == nil {
		return engine.ShardID(n).String(), nil
	}
	id, ok := engine.ParseShardID(s)
	if !ok || !strings.Contains(strings.ToLower(s), "shard") {
		return "", usagef("%q is not a shard id (write shardId-000000000000, or just 0)", s)
	}
	return id.String(), nil
}

// parseFrom parses --from: trim-horizon, latest, at:SEQ, after:SEQ or
// time:RFC3339. For at: and after: it also returns the shard the sequence
// number belongs to, so reading "all shards" can start in the right one.
func parseFrom(s string) (pos engine.StartPosition, seqShard string, err error) {
	kind, arg, _ := strings.Cut(s, ":")
	switch strings.ToLower(kind) {
	case "trim-horizon", "trim_horizon", "oldest":
		return engine.TrimHorizon(), "", nil
	case "latest", "newest":
		return engine.Latest(), "", nil
	case "at", "after":
		n, ok := engine.ParseSequenceNumber(arg)
		if !ok {
			return pos, "", usagef("--from %s: %q is not a Kinesis sequence number", kind, arg)
		}
		if strings.EqualFold(kind, "at") {
			return engine.AtSequenceNumber(n), engine.ShardID(n.Shard).String(), nil
		}
		return engine.AfterSequenceNumber(n), engine.ShardID(n.Shard).String(), nil
	case "time":
		t, err := time.Parse(time.RFC3339Nano, arg)
		if err != nil {
			return pos, "", usagef("--from time: %q is not an RFC 3339 time like 2026-01-02T15:04:05Z", arg)
		}
		return engine.AtTimestamp(t), "", nil
	}
	return pos, "", usagef("--from %q must be trim-horizon, latest, at:SEQ, after:SEQ or time:RFC3339", s)
}

// closeStore closes st, keeping the first error in *err.
func closeStore(st store, err *error) {
	if cerr := st.Close(); *err == nil && cerr != nil {
		*err = cerr
	}
}
