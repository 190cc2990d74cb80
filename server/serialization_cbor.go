package server

import (
	"math/big"
	"reflect"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// The CBOR path's SerializationException texts: the same as the JSON
// path's (serializationText) for the same mismatch. A CBOR body whose
// decode fails on a value's type is decoded again generically and checked
// against the input struct's member types in declaration order, so the
// message is the one AWS gives for the first member of the wrong kind, as
// for JSON. CBOR kinds map to JSON kinds: integers and floats are numbers,
// text strings strings, arrays and maps lists and objects, null and
// undefined null; byte strings fit a Blob (and are strings elsewhere), a
// tag fits a Timestamp (and counts as its content elsewhere).

// cborGeneric decodes any CBOR body into generic values with string-keyed
// maps where the keys allow it.
var cborGeneric = mustDecMode(cbor.DecOptions{
	DupMapKey:             cbor.DupMapKeyQuiet,
	IndefLength:           cbor.IndefLengthAllowed,
	MaxNestedLevels:       32,
	MaxArrayElements:      maxCBORElements,
	MaxMapPairs:           maxCBORElements,
	DefaultMapType:        reflect.TypeFor[map[string]any](),
	DefaultByteStringType: reflect.TypeFor[[]byte](),
})

// cborTypeText returns AWS's text for the first member of body (a CBOR
// map) whose value is of the wrong kind for Go input type t, or "".
func cborTypeText(body []byte, t reflect.Type) string {
	var v any
	if cborGeneric.Unmarshal(body, &v) != nil {
		return ""
	}
	return cborValueText(v, wireShapeOf(t))
}

// cborKindOf returns the JSON kind of a generic CBOR value, its text for
// string values, and whether it is a byte string or a tag.
func cborKindOf(v any) (k valueKind, text string, isBytes, isTag bool) {
	switch x := v.(type) {
	case nil:
		return jsonNull, "", false, false
	case bool:
		return jsonBool, "", false, false
	case string:
		return jsonString, x, false, false
	case []byte:
		return jsonString, string(x), true, false
	case uint64, int64, float64, float32, big.Int, *big.Int:
		return jsonNumber, "", false, false
	case []any:
		return jsonArray, "", false, false
	case map[string]any, map[any]any:
		return jsonObject, "", false, false
	case time.Time:
		return jsonNumber, "", false, true
	case cbor.Tag:
		k, text, isBytes, _ := cborKindOf(x.Content)
		return k, text, isBytes, true
	}
	return jsonNull, "", false, false
}

func cborValueText(v any, shape *wireShape) string {
	k, text, isBytes, isTag := cborKindOf(v)
	switch {
	case shape.kind == wireBlob && (isBytes || k == jsonString):
		return "" // a byte string; a text string is left to the decoder
	case shape.kind == wireTimestamp && isTag:
		return ""
	}
	if msg := serializationText(shape.kind, k, []byte(quoteJSON(text))); msg != "" {
		return msg
	}
	switch x := v.(type) {
	case []any:
		if shape.kind == wireList {
			for _, e := range x {
				if msg := cborValueText(e, shape.member); msg != "" {
					return msg
				}
			}
		}
	case map[string]any:
		switch shape.kind {
		case wireMap:
			for _, e := range x {
				if msg := cborValueText(e, shape.member); msg != "" {
					return msg
				}
			}
		case wireStructure:
			for _, f := range shape.fields {
				if e, ok := x[f.name]; ok {
					if msg := cborValueText(e, f.shape); msg != "" {
						return msg
					}
				}
			}
		}
	}
	return ""
}

// quoteJSON returns s as a JSON string literal (for serializationText,
// which reads string values as JSON).
func quoteJSON(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&0xf])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// blob is a request's Blob member (a record's Data). It is a []byte to
// every decoder, but for CBOR it refuses an array (of any content, tagged
// or not), which fxamacker/cbor would read as bytes: the JSON path
// refuses one ("Start of list found where not expected", as AWS), so the
// CBOR path does too (codec.decode then gives the same text through
// cborTypeText). Everything else decodes as into a []byte.
type blob []byte

func (b *blob) UnmarshalCBOR(data []byte) error {
	content := data
	for len(content) > 0 && content[0]>>5 == 6 { // a tag: look at what it tags
		_, content, _ = cborHead(content)
	}
	if len(content) > 0 && content[0]>>5 == 4 {
		return &cbor.UnmarshalTypeError{CBORType: cborTypeName(4), GoType: "[]uint8"}
	}
	return cborDec.Unmarshal(data, (*[]byte)(b))
}
