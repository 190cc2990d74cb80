package server

import (
	"bytes"
	"encoding/json"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

// Request lists decoded with their limits enforced as they decode, so a
// body declaring millions of entries costs no more than the first few
// hundred: PutRecords' Records (500 entries, 5 MiB of data and partition
// keys) and tag maps (200 tags).

// putRecordsList is PutRecords' Records. Decoding stops with the limit's
// error at the 501st entry or the entry that goes past 5 MiB.
type putRecordsList []putRecordsEntry

// jsonKind names the kind of a JSON value by its first byte, as
// json.UnmarshalTypeError.Value does.
func jsonKind(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "value"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	}
	return "number " + string(b[:min(len(b), 32)])
}

func (l *putRecordsList) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return &json.UnmarshalTypeError{Value: jsonKind(b), Type: reflect.TypeFor[[]putRecordsEntry]()}
	}
	out := make(putRecordsList, 0, 16)
	size := 0
	for dec.More() {
		if len(out) == maxPutRecordsEntries {
			return tooManyRecords()
		}
		var e putRecordsEntry
		if err := dec.Decode(&e); err != nil {
			return err
		}
		if size += e.size(); size > maxPutRecordsDecoded {
			return recordsTooLarge()
		}
		out = append(out, e)
	}
	*l = out
	return nil
}

// size is the entry's data and partition-key bytes.
func (e *putRecordsEntry) size() int {
	n := len(e.Data)
	if e.PartitionKey != nil {
		n += len(*e.PartitionKey)
	}
	return n
}

func (l *putRecordsList) UnmarshalCBOR(b []byte) error {
	if len(b) == 0 {
		return &cbor.UnmarshalTypeError{CBORType: "primitives", GoType: "[]server.putRecordsEntry"}
	}
	if b[0] == 0xf6 || b[0] == 0xf7 { // null, undefined
		return nil
	}
	if b[0]>>5 != 4 {
		return &cbor.UnmarshalTypeError{CBORType: cborTypeName(b[0] >> 5), GoType: "[]server.putRecordsEntry"}
	}
	// The array's head: its length (or indefinite), then the items.
	n, rest, definite := cborHead(b)
	if definite && n > maxPutRecordsEntries {
		return tooManyRecords()
	}
	out := make(putRecordsList, 0, min(n, 16))
	size := 0
	for {
		if definite && uint64(len(out)) == n {
			break
		}
		if !definite && len(rest) > 0 && rest[0] == 0xff { // break
			break
		}
		if len(out) == maxPutRecordsEntries {
			return tooManyRecords()
		}
		var e putRecordsEntry
		var err error
		if rest, err = cborDec.UnmarshalFirst(rest, &e); err != nil {
			return err
		}
		if size += e.size(); size > maxPutRecordsDecoded {
			return recordsTooLarge()
		}
		out = append(out, e)
	}
	*l = out
	return nil
}

// cborHead decodes the head of a well-formed array item: its element
// count (if definite) and the bytes after the head.
func cborHead(b []byte) (n uint64, rest []byte, definite bool) {
	info := b[0] & 0x1f
	switch {
	case info < 24:
		return uint64(info), b[1:], true
	case info == 31:
		return 0, b[1:], false
	}
	size := 1 << (info - 24) // 1, 2, 4 or 8 bytes
	if info > 27 || 1+size > len(b) {
		return 0, nil, true // not well-formed: fxamacker/cbor rejects it before
	}
	for _, c := range b[1 : 1+size] {
		n = n<<8 | uint64(c)
	}
	return n, b[1+size:], true
}

// cborTypeName names a CBOR major type as fxamacker/cbor does.
func cborTypeName(major byte) string {
	return [...]string{"positive integer", "negative integer", "byte string", "UTF-8 text string", "array", "map", "tag", "primitives"}[major&7]
}

// maxTagsDecoded is how many tags of a map are decoded: one more than
// the model allows, so validation reports the map as too long.
const maxTagsDecoded = 201

// tagMapIn is a request's tag map (CreateStream, AddTagsToStream,
// TagResource, RegisterStreamConsumer). A JSON map stops decoding after
// maxTagsDecoded tags; a CBOR map is bounded by maxCBORElements.
type tagMapIn map[string]string

func (m *tagMapIn) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return &json.UnmarshalTypeError{Value: jsonKind(b), Type: reflect.TypeFor[map[string]string]()}
	}
	out := make(tagMapIn)
	for dec.More() && len(out) < maxTagsDecoded {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		var v string
		if err := dec.Decode(&v); err != nil {
			return err
		}
		out[tok.(string)] = v
	}
	*m = out
	return nil
}
