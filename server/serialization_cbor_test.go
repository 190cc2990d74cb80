package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/require"
)

// TestSerializationExceptionsCBOR sends every type mismatch of
// TestSerializationExceptions in CBOR and checks the answer has the JSON
// path's text. Text strings in Blob members are left out: the Java SDKs
// send blobs as byte strings, and base64 is a JSON matter. Arrays in Blob
// members are refused as in JSON, though the CBOR decoder could read them
// as bytes (blob).
func TestSerializationExceptionsCBOR(t *testing.T) {
	env := newEnv(t, Config{}, nil)
	for _, m := range typedMembers {
		for _, c := range typeCases[m.typ] {
			if _, isString := c.value.(string); isString && m.typ == "Blob" {
				continue
			}
			body := cborBodyAt(m.path, c.value)
			t.Run(m.op+"/"+m.path+"/"+strings.ReplaceAll(string(bodyAt(m.path, c.value)), "/", "_"), func(t *testing.T) {
				code, h, resp := env.post(m.op, contentTypeCBOR, body)
				require.Equal(t, http.StatusBadRequest, code, "%x", resp)
				require.Equal(t, errSerialization, h.Get("X-Amzn-ErrorType"))
				var got map[string]any
				require.NoError(t, cbor.Unmarshal(resp, &got))
				require.Equal(t, map[string]any{"__type": errSerialization, "Message": c.msg}, got)
			})
		}
	}
	// An array is no Blob whatever it holds (bytes, or tagged, as
	// fxamacker/cbor would read them), in PutRecord and in PutRecords.
	for _, v := range []any{[]any{1, 2}, []any{}, cbor.Tag{Number: 22, Content: []any{1}}} {
		for _, path := range []string{"Data", "Records.0.Data"} {
			op := map[string]string{"Data": "PutRecord", "Records.0.Data": "PutRecords"}[path]
			code, _, resp := env.post(op, contentTypeCBOR, cborBodyAt(path, v))
			require.Equal(t, http.StatusBadRequest, code)
			var got map[string]any
			require.NoError(t, cbor.Unmarshal(resp, &got))
			require.Equal(t, map[string]any{"__type": errSerialization, "Message": "Start of list found where not expected"}, got, "%s %v", path, v)
		}
	}
	// A byte string fits a Blob; the first wrong member in declaration
	// order wins, as for JSON.
	code, _, resp := env.post("PutRecord", contentTypeCBOR, cborBodyAt("Data", []byte("x")))
	require.Equal(t, http.StatusBadRequest, code)
	require.NotContains(t, string(resp), errSerialization)
	b, err := cbor.Marshal(map[string]any{"StreamName": 1, "Data": true})
	require.NoError(t, err)
	_, _, resp = env.post("PutRecord", contentTypeCBOR, b)
	var got map[string]any
	require.NoError(t, cbor.Unmarshal(resp, &got))
	require.Equal(t, "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String", got["Message"])
	code, _, jresp := env.postJSON("PutRecord", `{"StreamName":1,"Data":true}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, got["Message"], jsonSerializationMessage(t, jresp))
}

// cborBodyAt is bodyAt in CBOR.
func cborBodyAt(path string, value any) []byte {
	b, err := cbor.Marshal(treeAt(path, value))
	if err != nil {
		panic(err)
	}
	return b
}

func jsonSerializationMessage(t *testing.T, body []byte) string {
	t.Helper()
	var m map[string]string
	require.NoError(t, json.Unmarshal(body, &m))
	return m["Message"]
}
