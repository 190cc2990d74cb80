package server

import (
	"bytes"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvstream/kvstream/engine"
)

// fuzzOps are the operations, in a fixed order, so a byte picks one.
var fuzzOps = slices.Sorted(maps.Keys(operations))

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
		fuzzSrv, err = New(db, Config{Engine: &engine.Options{MaxShards: 64}})
		if err != nil {
			t.Fatal(err)
		}
	})
	return fuzzSrv
}

// FuzzDecodeRequest feeds arbitrary bodies, in JSON and CBOR, to every
// operation. It checks that nothing panics and no input is answered with
// InternalFailure, and that the fast PutRecords JSON decoder agrees with
// encoding/json whenever it accepts a body. The seed corpus is in
// testdata/fuzz/FuzzDecodeRequest.
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

		// The fast PutRecords decoder must agree with the generic one.
		var fast putBatch
		if decodePutRecordsJSON(body, &fast) {
			var in putRecordsInput
			if aerr := codecJSON.decode(body, &in); aerr != nil {
				t.Fatalf("fast decoder accepted a body encoding/json rejects (%v): %q", aerr, body)
			}
			var slow putBatch
			slow.fromInput(&in)
			if !sameBatch(&fast, &slow) {
				t.Fatalf("fast and generic decoders disagree on %q:\nfast %+v\nslow %+v", body, fast, slow)
			}
		}

		// Through the whole handler: never a panic, never InternalFailure.
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set("X-Amz-Target", targetPrefix+op)
		req.Header.Set("Content-Type", c.contentType())
		fakeSign(req)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code == http.StatusInternalServerError {
			t.Fatalf("%s answered %d %s for %q", op, rec.Code, rec.Body.String(), body)
		}
	})
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
