package command

// The data directory's socket.
//
// A data directory belongs to one process at a time: the engine locks it.
// So that a second kvstream command can still use a directory another one
// holds (get --follow in one terminal, put in another), every command that
// holds a data directory for writing (serve, demo, forward, put, get
// --follow, get --consumer and the streams commands that change
// something) also answers on a Unix socket inside it, <dir>/kvstream.sock,
// for as long as it holds it. The socket serves
//
//   - the Kinesis API (server.Server's Trusted handler: no SigV4
//     verification; the socket file's mode, 0600, is the access control,
//     so only the directory owner's processes can connect), and
//   - POST /kvstream/v1/store: the store operations the Kinesis API cannot
//     express exactly (streams create with a partitioner or a size bound,
//     describe with record counts, a size bound, retention in other than
//     whole hours, and resharding by the engine's rules), run on the
//     holder's localStore.
//
// A command that finds the directory locked (engine.ErrLocked) dials the
// socket and runs through socketStore, which speaks both, and prints what
// it would have printed with the directory to itself. Commands that need
// the directory itself (demo, forward, serve, get --consumer, check) say
// which process holds it instead.
//
// The socket is created only once the lock is held, so a file already at
// its path is what a holder killed with SIGKILL left behind, and is
// replaced; so is the private directory (.NNNN) the socket is bound in
// before it is renamed into place, if a holder was killed in between. It
// is removed when the holder closes the directory (before the lock is
// released). A path longer than a Unix socket address holds
// (about 104 to 108 bytes) is reached relative to the working directory
// when that is short enough; otherwise there is no socket, and a command
// finding the directory locked says so. Read-only holders (get without
// --follow, streams list and describe) take a shared lock and serve no
// socket. Platforms without Unix sockets in this sense (Windows) have no
// socket (socket_other.go).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/kvstream/kvstream/engine"
	"github.com/kvstream/kvstream/internal/sdkbody"
	"github.com/kvstream/kvstream/server"
)

// socketName is the socket's file name inside the data directory.
const socketName = "kvstream.sock"

// storePath is the extension endpoint of the socket.
const storePath = "/kvstream/v1/store"

// socketShutdown bounds how long closing the socket waits for requests
// in flight.
const socketShutdown = 5 * time.Second

// heldDB is a data directory this process opened, with its socket while
// it holds the directory for writing. Close closes the socket first, then
// the DB, so the socket is gone before the lock is released.
type heldDB struct {
	*engine.DB
	sock *dirSocket // nil: no socket (read-only, or it could not be made)
}

// Close removes the socket (waiting for requests in flight) and closes
// the DB.
func (h *heldDB) Close() error {
	if h.sock != nil {
		h.sock.close()
		h.sock = nil
	}
	return h.DB.Close()
}

// dirSocket serves a held data directory on its socket.
type dirSocket struct {
	hs   *http.Server
	done chan struct{}
}

// startSocket serves db on dir's socket: srv's Trusted handler (a new
// Server over db if srv is nil) and the store extension. The caller holds
// dir's lock for writing. The error says why there is no socket; callers
// go on without one.
func startSocket(dir string, db *engine.DB, srv *server.Server) (*dirSocket, error) {
	ln, err := listenSocket(dir)
	if err != nil {
		return nil, err
	}
	own := srv == nil
	if own {
		srv, err = server.New(db, server.Config{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			_ = ln.Close()
			return nil, err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+storePath, &storeHandler{local: &localStore{db: &heldDB{DB: db}, dir: dir}})
	mux.Handle("/", srv.Trusted())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if own {
		hs.RegisterOnShutdown(srv.Close) // ends SubscribeToShard streams
	}
	s := &dirSocket{hs: hs, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = hs.Serve(ln) // ErrServerClosed after close
	}()
	return s, nil
}

// close stops serving, waiting up to socketShutdown for requests in
// flight, and removes the socket file.
func (s *dirSocket) close() {
	ctx, cancel := context.WithTimeout(context.Background(), socketShutdown)
	defer cancel()
	if err := s.hs.Shutdown(ctx); err != nil {
		_ = s.hs.Close()
	}
	<-s.done
}

// storeCall is one call of the store extension: a store method and its
// arguments.
type storeCall struct {
	Op        string        `json:"op"`
	Stream    string        `json:"stream"`
	Create    createConfig  `json:"create,omitzero"`
	Shard     string        `json:"shard,omitempty"`
	Adjacent  string        `json:"adjacent,omitempty"`
	HashKey   string        `json:"hashKey,omitempty"`
	Target    int           `json:"target,omitempty"`
	Retention time.Duration `json:"retention,omitempty"`
	MaxBytes  int64         `json:"maxBytes,omitempty"`
	Discard   string        `json:"discard,omitempty"`
}

// storeReply is the answer to a storeCall.
type storeReply struct {
	Info  *streamInfo `json:"info,omitempty"`
	Error *storeError `json:"error,omitempty"`
}

// storeError is an error of a storeCall: the engine sentinel's name
// (errorKinds), the message as the holder would print it, and whether it
// is a usage error.
type storeError struct {
	Kind  string `json:"kind,omitempty"`
	Msg   string `json:"msg"`
	Usage bool   `json:"usage,omitempty"`
}

// errorKinds names the engine sentinels a storeError carries, in the
// order encodeStoreError tries them: an error can match more than one (a
// failed write whose cause is a full disk or the stopped DB), and the
// most specific is the one carried, the same every time.
var errorKinds = []struct {
	name string
	err  error
}{
	{"DiskFull", engine.ErrDiskFull}, {"Failed", engine.ErrFailed}, {"Corruption", engine.ErrCorruption},
	{"ReadOnly", engine.ErrReadOnly}, {"Closed", engine.ErrClosed}, {"StreamFull", engine.ErrStreamFull},
	{"StreamNotFound", engine.ErrStreamNotFound}, {"StreamExists", engine.ErrStreamExists},
	{"ShardNotFound", engine.ErrShardNotFound}, {"LimitExceeded", engine.ErrLimitExceeded},
	{"ResourceInUse", engine.ErrResourceInUse}, {"InvalidOptions", engine.ErrInvalidOptions},
	{"Validation", engine.ErrValidation}, {"InvalidArgument", engine.ErrInvalidArgument},
	{"WriteFailed", engine.ErrWriteFailed},
}

// errorKind returns the sentinel errorKinds names name, or nil.
func errorKind(name string) error {
	for _, k := range errorKinds {
		if k.name == name {
			return k.err
		}
	}
	return nil
}

// storeHandler serves the store extension on the holder's localStore.
type storeHandler struct{ local *localStore }

func (h *storeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var c storeCall
	var reply storeReply
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&c); err != nil {
		reply.Error = &storeError{Msg: "bad store call: " + err.Error()}
	} else {
		info, err := h.local.do(r.Context(), c)
		if err != nil {
			reply.Error = encodeStoreError(err)
		} else if c.Op == "describe" {
			reply.Info = &info
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(reply)
}

// do runs c on l.
func (l *localStore) do(ctx context.Context, c storeCall) (streamInfo, error) {
	switch c.Op {
	case "create":
		return streamInfo{}, l.CreateStream(ctx, c.Stream, c.Create)
	case "delete":
		return streamInfo{}, l.DeleteStream(ctx, c.Stream)
	case "describe":
		return l.DescribeStream(ctx, c.Stream)
	case "split":
		return streamInfo{}, l.SplitShard(ctx, c.Stream, c.Shard, c.HashKey)
	case "merge":
		return streamInfo{}, l.MergeShards(ctx, c.Stream, c.Shard, c.Adjacent)
	case "scale":
		return streamInfo{}, l.UpdateShardCount(ctx, c.Stream, c.Target)
	case "retention":
		return streamInfo{}, l.SetRetention(ctx, c.Stream, c.Retention)
	case "maxbytes":
		return streamInfo{}, l.SetMaxBytes(ctx, c.Stream, c.MaxBytes, c.Discard)
	}
	return streamInfo{}, fmt.Errorf("unknown store call %q (is the process holding the directory another kvstream version?)", c.Op)
}

func encodeStoreError(err error) *storeError {
	e := &storeError{Msg: oneLine(err)}
	var ue usageError
	e.Usage = errors.As(err, &ue)
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			e.Kind = k.name
			break
		}
	}
	return e
}

// socketStore is a store over a data directory another process holds,
// through its socket: the Kinesis API for listing, putting and reading
// (remoteStore), the store extension for the rest. Its messages name the
// data directory, as localStore's do.
type socketStore struct {
	*remoteStore
	dir  string
	path string // the socket
	http *http.Client
}

// newSocketStore returns a store for dir through its socket at path.
func newSocketStore(dir, path string) *socketStore {
	tr := &http.Transport{
		Proxy: nil, // never through $HTTP_PROXY
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     time.Minute,
	}
	// Request bodies go to net/http in memory (internal/sdkbody): plain
	// HTTP on a stream socket meets the SDK's request-body race too.
	hc := &http.Client{Transport: sdkbody.Transport(tr)}
	// The socket needs no credentials (Trusted); the SDK signs anyway, with
	// placeholders, and no AWS configuration is read.
	cfg := aws.Config{
		Region:           awsDefaultRegion,
		Credentials:      credentials.NewStaticCredentialsProvider("kvstream", "kvstream", ""),
		HTTPClient:       hc,
		RetryMaxAttempts: 2,
	}
	const base = "http://localhost" // the host is not used: every connection dials path
	client := kinesis.NewFromConfig(cfg, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(base) })
	return &socketStore{remoteStore: &remoteStore{client: client, endpoint: base, dir: dir}, dir: dir, path: path, http: hc}
}

// awsDefaultRegion is the region the socket client signs for.
const awsDefaultRegion = "us-east-1"

func (s *socketStore) Where() string { return s.dir }

func (s *socketStore) Close() error {
	s.http.CloseIdleConnections()
	return nil
}

// call runs c on the holder's localStore.
func (s *socketStore) call(ctx context.Context, c storeCall) (streamInfo, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return streamInfo{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://localhost"+storePath, bytes.NewReader(body))
	if err != nil {
		return streamInfo{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return streamInfo{}, ctx.Err()
		}
		return streamInfo{}, s.lost(err)
	}
	defer resp.Body.Close()
	var reply storeReply
	if resp.StatusCode != http.StatusOK {
		return streamInfo{}, fmt.Errorf("the process holding %s answered %s on %s (is it another kvstream version?)", s.dir, resp.Status, s.path)
	}
	if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
		return streamInfo{}, s.lost(err)
	}
	if e := reply.Error; e != nil {
		var err error = errors.New(e.Msg)
		if kind := errorKind(e.Kind); kind != nil {
			err = &engine.Error{Kind: kind, Msg: e.Msg}
		}
		switch {
		case e.Usage:
			return streamInfo{}, usageError{err}
		case e.Kind == "StreamNotFound" || e.Kind == "StreamExists":
			return streamInfo{}, localWrap(err, c.Stream, s.dir) // in this command's words
		}
		return streamInfo{}, &cliError{err: err, msg: e.Msg}
	}
	if reply.Info != nil {
		return *reply.Info, nil
	}
	return streamInfo{}, nil
}

// lost is the error of a call the holder did not answer.
func (s *socketStore) lost(err error) error {
	return &cliError{err: err, msg: fmt.Sprintf("lost the process holding %s (on %s): %v", s.dir, s.path, err)}
}

func (s *socketStore) CreateStream(ctx context.Context, name string, cfg createConfig) error {
	_, err := s.call(ctx, storeCall{Op: "create", Stream: name, Create: cfg})
	return err
}

func (s *socketStore) DeleteStream(ctx context.Context, name string) error {
	_, err := s.call(ctx, storeCall{Op: "delete", Stream: name})
	return err
}

func (s *socketStore) DescribeStream(ctx context.Context, name string) (streamInfo, error) {
	return s.call(ctx, storeCall{Op: "describe", Stream: name})
}

func (s *socketStore) SplitShard(ctx context.Context, stream, shardID, newStartingHashKey string) error {
	_, err := s.call(ctx, storeCall{Op: "split", Stream: stream, Shard: shardID, HashKey: newStartingHashKey})
	return err
}

func (s *socketStore) MergeShards(ctx context.Context, stream, shardID, adjacentShardID string) error {
	_, err := s.call(ctx, storeCall{Op: "merge", Stream: stream, Shard: shardID, Adjacent: adjacentShardID})
	return err
}

func (s *socketStore) UpdateShardCount(ctx context.Context, stream string, target int) error {
	_, err := s.call(ctx, storeCall{Op: "scale", Stream: stream, Target: target})
	return err
}

func (s *socketStore) SetRetention(ctx context.Context, stream string, d time.Duration) error {
	_, err := s.call(ctx, storeCall{Op: "retention", Stream: stream, Retention: d})
	return err
}

func (s *socketStore) SetMaxBytes(ctx context.Context, stream string, maxBytes int64, discard string) error {
	_, err := s.call(ctx, storeCall{Op: "maxbytes", Stream: stream, MaxBytes: maxBytes, Discard: discard})
	return err
}

// OpenShard reads through GetShardIterator and GetRecords, with
// localStore's message for a shard that is not there.
func (s *socketStore) OpenShard(ctx context.Context, stream, shardID string, pos engine.StartPosition) (shardReader, error) {
	r, err := s.remoteStore.OpenShard(ctx, stream, shardID, pos)
	if errors.Is(err, engine.ErrShardNotFound) {
		return nil, &cliError{err: err, msg: fmt.Sprintf("stream %q in %s has no shard %s", stream, s.dir, shardID)}
	}
	return r, err
}
