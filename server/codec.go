package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// codec is a request's wire encoding; the response uses the same one.
type codec uint8

const (
	codecJSON codec = iota // application/x-amz-json-1.1 (boto3, CLI, Go/JS SDKs)
	codecCBOR              // application/x-amz-cbor-1.1 (Java SDKs, KCL)
)

const (
	contentTypeJSON = "application/x-amz-json-1.1"
	contentTypeCBOR = "application/x-amz-cbor-1.1"
)

// codecFor picks the codec from a request's Content-Type: CBOR for any
// "cbor" type, JSON otherwise (x-amz-json-1.0/1.1, application/json).
func codecFor(contentType string) codec {
	if strings.Contains(contentType, "cbor") {
		return codecCBOR
	}
	return codecJSON
}

// contentType returns the Content-Type of responses in c.
func (c codec) contentType() string {
	if c == codecCBOR {
		return contentTypeCBOR
	}
	return contentTypeJSON
}

// maxCBORElements caps the elements of any CBOR array or map in a request.
const maxCBORElements = 4096

var (
	// The element limits bound what a small body can make the decoder
	// allocate: no request has lists or maps near them (PutRecords' 500
	// records is the longest; a 501st stops its decoding, putRecordsList).
	cborDec = mustDecMode(cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyQuiet,
		IndefLength:       cbor.IndefLengthAllowed,
		MaxNestedLevels:   32,
		MaxArrayElements:  maxCBORElements,
		MaxMapPairs:       maxCBORElements,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
	})
	cborEnc = mustEncMode(cbor.EncOptions{Time: cbor.TimeUnixMicro})
)

func mustDecMode(o cbor.DecOptions) cbor.DecMode {
	m, err := o.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}

func mustEncMode(o cbor.EncOptions) cbor.EncMode {
	m, err := o.EncMode()
	if err != nil {
		panic(err)
	}
	return m
}

// decode decodes a request body into v (a pointer to a request struct).
// An empty body decodes as an empty object. Any malformed body, wrong
// value type or bad base64 is a SerializationException.
func (c codec) decode(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var err error
	if c == codecCBOR {
		err = cborDec.Unmarshal(body, v)
		if err != nil { // AWS's text for a mismatch of kinds (serialization_cbor.go)
			if msg := cborTypeText(body, reflect.TypeOf(v)); msg != "" {
				return &apiError{Type: errSerialization, Msg: msg, Status: http.StatusBadRequest, cause: err}
			}
		}
	} else {
		// encoding/json would replace invalid UTF-8 with U+FFFD, making
		// distinct partition keys one; CBOR text strings are checked by
		// the decoder. Both are refused, as Kinesis refuses them.
		if i := invalidUTF8(body); i >= 0 {
			return newAPIError(errSerialization, "Invalid UTF-8 in the request body at offset "+strconv.Itoa(i))
		}
		// AWS's type checks first (serialization.go), then the decode.
		b, aerr := checkJSONTypes(body, reflect.TypeOf(v))
		if aerr != nil {
			return aerr
		}
		err = json.Unmarshal(b, v)
	}
	if err == nil {
		return nil
	}
	return serializationError(err)
}

// invalidUTF8 returns the offset of the first invalid UTF-8 sequence in
// b, or -1.
func invalidUTF8(b []byte) int {
	if utf8.Valid(b) {
		return -1
	}
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// serializationError renders a decoding failure the way Kinesis (a Java
// service) words it, where the shape of the error allows.
//
// Messages never name Go types or fields: CBOR and JSON type errors are
// worded as the Java service words them, and other CBOR errors as what
// was wrong with the body.
func serializationError(err error) *apiError {
	var te *json.UnmarshalTypeError
	var cte *cbor.UnmarshalTypeError
	var ce base64.CorruptInputError
	var ae *apiError
	var se *json.SyntaxError
	var aerr *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &te):
		aerr = newAPIError(errSerialization, javaTypeMessage(te.Value, te.Type.String()))
	case errors.As(err, &cte):
		aerr = newAPIError(errSerialization, javaTypeMessage(cborKind(cte.CBORType), cte.GoType))
	case errors.As(err, &ce):
		aerr = newAPIError(errSerialization, "Base64 encoded data is invalid: illegal base64 data at input byte "+strconv.Itoa(int(ce)))
	case errors.As(err, &se):
		// AWS answers a body that is not JSON with no message.
		aerr = newAPIError(errSerialization, "")
	default:
		aerr = newAPIError(errSerialization, "Unable to parse the request body: "+cborMessage(err))
	}
	aerr.cause = err
	return aerr
}

// cborKind names a CBOR type (as fxamacker/cbor reports it) as the JSON
// value kind javaTypeMessage takes.
func cborKind(t string) string {
	switch t {
	case "map":
		return "object"
	case "array":
		return "array"
	case "UTF-8 text string", "byte string":
		return "string"
	case "primitives":
		return "bool"
	case "tag":
		return "1.0"
	}
	return "1"
}

// cborMessage words a CBOR decoding error without Go type names. It goes
// by the error's type only: the kinds of malformed body the decoder
// reports as typed errors get their own text (syntax and semantic errors
// keep the decoder's detail, which is about the bytes, minus its "cbor: "
// prefix), and every other error, whose text may name Go types (a value
// that does not fit the request's shape), is "not a valid request".
func cborMessage(err error) string {
	var mae *cbor.MaxArrayElementsError
	var mpe *cbor.MaxMapPairsError
	var mne *cbor.MaxNestedLevelError
	var syn *cbor.SyntaxError
	var sem *cbor.SemanticError
	var ext *cbor.ExtraneousDataError
	var ind *cbor.IndefiniteLengthError
	var tmd *cbor.TagsMdError
	var odd *cbor.IndefiniteLengthMapOddItemCountError
	var dup *cbor.DupMapKeyError
	var unacc cbor.UnacceptableDataItemError
	switch {
	case errors.As(err, &mae):
		return "a CBOR array has more than " + strconv.Itoa(maxCBORElements) + " elements"
	case errors.As(err, &mpe):
		return "a CBOR map has more than " + strconv.Itoa(maxCBORElements) + " pairs"
	case errors.As(err, &mne):
		return "CBOR values are nested more than 32 levels deep"
	case errors.As(err, &syn), errors.As(err, &sem):
		return strings.TrimPrefix(err.Error(), "cbor: ")
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the body ends in the middle of a CBOR value"
	case errors.As(err, &ext):
		return "there is data after the CBOR value"
	case errors.As(err, &ind), errors.As(err, &odd):
		return "the body has a malformed indefinite-length CBOR value"
	case errors.As(err, &tmd):
		return "the body has CBOR tags where none are allowed"
	case errors.As(err, &dup):
		return "a CBOR map has a duplicate key at element " + strconv.Itoa(dup.Index)
	case errors.As(err, &unacc):
		return "the body has a CBOR " + unacc.CBORType + " where none is allowed"
	}
	return "the body is not a valid request"
}

// javaTypeMessage mimics "class java.lang.String can not be converted to
// an Integer" for a JSON value kind and a Go target type.
func javaTypeMessage(kind, goType string) string {
	switch kind {
	case "object":
		return "Start of structure or map found where not expected."
	case "array":
		return "Start of list found where not expected"
	}
	from := map[string]string{"string": "class java.lang.String", "bool": "class java.lang.Boolean"}[kind]
	if from == "" {
		from = "class java.lang.Long"
		if strings.Contains(kind, ".") || strings.ContainsAny(kind, "eE") {
			from = "class java.lang.Double"
		}
	}
	to := "a String"
	switch {
	case strings.Contains(goType, "int"):
		to = "an Integer"
	case strings.Contains(goType, "bool"):
		to = "a Boolean"
	case strings.Contains(goType, "[]uint8"):
		to = "a Blob"
	case strings.Contains(goType, "map"), strings.Contains(goType, "struct"), strings.Contains(goType, "server."):
		to = "a Structure"
	case strings.Contains(goType, "[]"):
		to = "a List"
	}
	return from + " can not be converted to " + to
}

// encode encodes a response struct.
func (c codec) encode(v any) ([]byte, error) {
	if c == codecCBOR {
		return cborEnc.Marshal(v)
	}
	return json.Marshal(v)
}

// timestamp is a point in time on the wire. JSON carries epoch seconds,
// possibly fractional; CBOR carries tag 1 with integer epoch milliseconds
// (the Java SDKs' quirk) or, per RFC 8949, seconds. Decoding accepts
// both: an integer of magnitude ≥ 1e11 is milliseconds (1e11 seconds is
// year 5138, 1e11 ms is 1973), a float is always seconds.
type timestamp struct{ time.Time }

// ts wraps t for a response.
func ts(t time.Time) *timestamp { return &timestamp{t} }

const msThreshold = 1e11

func fromSeconds(f float64) (time.Time, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e14 {
		return time.Time{}, fmt.Errorf("timestamp %v is out of range", f)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

func fromInteger(v int64) (time.Time, error) {
	if v >= msThreshold || v <= -msThreshold {
		if v > 1e17 || v < -1e17 {
			return time.Time{}, fmt.Errorf("timestamp %d is out of range", v)
		}
		return time.UnixMilli(v).UTC(), nil
	}
	return time.Unix(v, 0).UTC(), nil
}

// UnmarshalJSON accepts epoch seconds (int or float) or an RFC 3339 string.
func (t *timestamp) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if v, err := time.Parse(time.RFC3339Nano, s); err == nil {
			t.Time = v
			return nil
		}
		b = []byte(s) // a number in a string: parsed below
	}
	if i, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		v, err := fromInteger(i)
		if err != nil {
			return newAPIError(errSerialization, err.Error())
		}
		t.Time = v
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return newAPIError(errSerialization, "Unable to parse the timestamp "+strconv.Quote(string(b)))
	}
	v, err := fromSeconds(f)
	if err != nil {
		return newAPIError(errSerialization, err.Error())
	}
	if exact, ok := exactSeconds(string(b)); ok { // no float rounding
		v = exact
	}
	t.Time = v
	return nil
}

// MarshalJSON writes epoch seconds with millisecond precision.
func (t timestamp) MarshalJSON() ([]byte, error) {
	return appendEpochSeconds(nil, t.Time), nil
}

// appendEpochSeconds appends t as epoch seconds with three decimals.
func appendEpochSeconds(dst []byte, t time.Time) []byte {
	ms := t.UnixMilli()
	if ms < 0 {
		return strconv.AppendFloat(dst, float64(ms)/1000, 'f', 3, 64)
	}
	dst = strconv.AppendInt(dst, ms/1000, 10)
	frac := ms % 1000
	return append(dst, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

// UnmarshalCBOR accepts tag 0 (RFC 3339 text), tag 1 or an untagged
// number, with the integer/float rules above.
func (t *timestamp) UnmarshalCBOR(b []byte) error {
	if len(b) == 0 {
		return newAPIError(errSerialization, "empty timestamp")
	}
	if b[0] == 0xf6 || b[0] == 0xf7 { // null, undefined
		return nil
	}
	content := b
	if b[0]>>5 == 6 { // a tag
		var rt cbor.RawTag
		if err := cborDec.Unmarshal(b, &rt); err != nil {
			return err
		}
		switch rt.Number {
		case 0:
			var s string
			if err := cborDec.Unmarshal(rt.Content, &s); err != nil {
				return err
			}
			v, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return newAPIError(errSerialization, "Unable to parse the timestamp "+strconv.Quote(s))
			}
			t.Time = v
			return nil
		case 1:
			content = rt.Content
		default:
			return newAPIError(errSerialization, "CBOR tag "+strconv.FormatUint(rt.Number, 10)+" can not be converted to a Timestamp")
		}
	}
	var n any
	if err := cborDec.Unmarshal(content, &n); err != nil {
		return err
	}
	var v time.Time
	var err error
	switch x := n.(type) {
	case uint64:
		if x > math.MaxInt64 {
			return newAPIError(errSerialization, "timestamp is out of range")
		}
		v, err = fromInteger(int64(x))
	case int64:
		v, err = fromInteger(x)
	case float64:
		v, err = fromSeconds(x)
	default:
		return newAPIError(errSerialization, fmt.Sprintf("a %T can not be converted to a Timestamp", n))
	}
	if err != nil {
		return newAPIError(errSerialization, err.Error())
	}
	t.Time = v
	return nil
}

// MarshalCBOR writes tag 1 with integer epoch milliseconds, which is what
// the Java SDKs read.
func (t timestamp) MarshalCBOR() ([]byte, error) {
	return appendCBORTimestamp(nil, t.Time), nil
}

// appendCBORTimestamp appends tag 1 + integer epoch milliseconds.
func appendCBORTimestamp(dst []byte, t time.Time) []byte {
	dst = append(dst, 0xc1)
	return appendCBORInt(dst, t.UnixMilli())
}

// appendCBORInt appends a CBOR integer.
func appendCBORInt(dst []byte, v int64) []byte {
	if v < 0 {
		return appendCBORHead(dst, 1, uint64(-(v + 1)))
	}
	return appendCBORHead(dst, 0, uint64(v))
}

// appendCBORHead appends a CBOR initial byte for major type major and
// argument n.
func appendCBORHead(dst []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(dst, m|byte(n))
	case n <= math.MaxUint8:
		return append(dst, m|24, byte(n))
	case n <= math.MaxUint16:
		return append(dst, m|25, byte(n>>8), byte(n))
	case n <= math.MaxUint32:
		return append(dst, m|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, m|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}
