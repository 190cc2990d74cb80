package server

import (
	"bytes"
	"flag"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
)

// fuzzOps are the operations, streamed ones (SubscribeToShard) included,
// in a fixed order, so a byte picks one.
var fuzzOps = slices.Sorted(func(yield func(string) bool) {
	for op := range maps.Keys(operations) {
		if !yield(op) {
			return
		}
	}
	for op := range maps.Keys(streamingOperations) {
		if !yield(op) {
			return
		}
	}
})

var (
	fuzzOnce sync.Once
	fuzzSrv  *Server
)

// fuzzServer is one Server over an in-memory DB shared by all fuzz inputs
// of the process, with a stream "s" of 2 shards.
func fuzzServer(t testing.TB) *Server {
	fuzzOnce.Do(func() {
		db, err := engine.Open("fuzz", &engine.Options{FS: vfs.NewMem(), NoSync: true, MaxShards: 64})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.CreateStream("s", engine.StreamConfig{ShardCount: 2, Partitioner: engine.PartitionerMD5}); err != nil {
			t.Fatal(err)
		}
		// A subscription the fuzzer manages to start (it would have to
		// register a consumer and name its ARN) ends at once.
		fuzzSrv, err = New(db, Config{Engine: &engine.Options{MaxShards: 64}, SubscriptionLifetime: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
	})
	return fuzzSrv
}

// FuzzDecodeRequest feeds arbitrary bodies, in JSON and CBOR, to every
// operation, SubscribeToShard included. It checks that nothing panics, no
// input is answered with InternalFailure, no request takes more than
// 100 ms (without the race detector) or allocates more than 10 times its
// body (plus a fixed allowance for the response and the engine), and that
// the fast PutRecords JSON decoder agrees with encoding/json whenever it
// accepts a body (and fails whenever it stops at a limit). The seed
// corpus is in testdata/fuzz/FuzzDecodeRequest.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(byte(0), false, []byte(`{"StreamName":"s","Records":[{"Data":"aGVsbG8=","PartitionKey":"k"}]}`))
	f.Add(byte(1), true, []byte{0xa1, 0x6a, 'S', 't', 'r', 'e', 'a', 'm', 'N', 'a', 'm', 'e', 0x61, 's'})
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, opIndex byte, useCBOR bool, body []byte) {
		op := fuzzOps[int(opIndex)%len(fuzzOps)]
		c := codecJSON
		if useCBOR {
			c = codecCBOR
		}

		// The fast PutRecord decoder must agree with the generic one.
		var fastRecord putRecordInput
		if decodePutRecordJSON(body, &fastRecord) {
			var slow putRecordInput
			if aerr := codecJSON.decode(body, &slow); aerr != nil {
				t.Fatalf("fast PutRecord decoder accepted a body codecJSON rejects (%v): %q", aerr, body)
			}
			if !reflect.DeepEqual(fastRecord, slow) {
				t.Fatalf("fast and generic PutRecord decoders disagree on %q:\nfast %+v\nslow %+v", body, fastRecord, slow)
			}
		}

		// The fast PutRecords decoder must agree with the generic one.
		var fast putBatch
		if decodePutRecordsJSON(body, &fast) {
			var in putRecordsInput
			aerr := codecJSON.decode(body, &in)
			if fast.limitErr != nil {
				if aerr == nil {
					t.Fatalf("fast decoder stopped at a limit (%v), encoding/json accepted %q", fast.limitErr, body)
				}
				goto handler
			}
			if aerr != nil {
				t.Fatalf("fast decoder accepted a body encoding/json rejects (%v): %q", aerr, body)
			}
			var slow putBatch
			slow.fromInput(&in)
			if !sameBatch(&fast, &slow) {
				t.Fatalf("fast and generic decoders disagree on %q:\nfast %+v\nslow %+v", body, fast, slow)
			}
		}

		// Through the whole handler: never a panic, never InternalFailure,
		// never slow or allocation-heavy.
	handler:
		start := time.Now()
		rec, alloc := serveDirect(srv, op, c, body)
		took := time.Since(start)
		if rec.Code == http.StatusInternalServerError {
			t.Fatalf("%s answered %d %s for %q", op, rec.Code, rec.Body.String(), body)
		}
		if limit := uint64(10*len(body) + fuzzAllocAllowance); alloc > limit {
			t.Fatalf("%s allocated %d bytes (limit %d) for a %d-byte body %q", op, alloc, limit, len(body), body)
		}
		if fuzzing() && !raceEnabled && took > fuzzSlow && op != "SubscribeToShard" {
			// Slow every time, not just once on a busy machine.
			for range 2 {
				start := time.Now()
				serveDirect(srv, op, c, body)
				took = min(took, time.Since(start))
			}
			if took > fuzzSlow {
				t.Fatalf("%s took %v for a %d-byte body %q", op, took, len(body), body)
			}
		}
	})
}

// The fuzz oracle's bounds: a request may allocate 10 times its body plus
// fuzzAllocAllowance (the body buffer's first step, the response, the
// engine's work), and take at most fuzzSlow.
const (
	fuzzAllocAllowance = 1 << 20
	fuzzSlow           = 100 * time.Millisecond
)

// fuzzing reports whether the test binary runs a fuzzer (-test.fuzz), not
// just the seed corpus: only then is the time bound checked, so a loaded
// machine cannot fail a plain go test.
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	return f != nil && f.Value.String() != ""
}

func sameBatch(a, b *putBatch) bool {
	if a.streamName != b.streamName || a.hasStreamName != b.hasStreamName || a.streamARN != b.streamARN ||
		a.hasStreamARN != b.hasStreamARN || a.hasRecords != b.hasRecords || len(a.entries) != len(b.entries) {
		return false
	}
	for i := range a.entries {
		x, y := a.entries[i], b.entries[i]
		if a.flags[i] != b.flags[i] || x.PartitionKey != y.PartitionKey || x.ExplicitHashKey != y.ExplicitHashKey ||
			!bytes.Equal(x.Data, y.Data) || (x.Data == nil) != (y.Data == nil) {
			return false
		}
	}
	return true
}
