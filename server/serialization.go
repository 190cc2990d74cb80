package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// AWS's JSON 1.1 deserializer checks every member of a request against its
// type before any model constraint is looked at, and a value of the wrong
// JSON kind is a SerializationException worded by the Java types involved
// (texts recorded from AWS: serializationText). checkJSONTypes applies that
// to a request body for the Go input struct it is about to be decoded into:
// the struct's json-tagged fields are the members, their Go types the
// member types (wireShapeOf). It runs on every JSON request through
// codec.decode, before encoding/json, so encoding/json never sees a value of
// the wrong kind.
//
// Integer members take any JSON number, as AWS does: the value is floored
// and capped at 2^31−1 (AWS's TruncatingBigNumber), so ShardCount 1e11 is
// validated (and reported) as 2147483647. checkJSONTypes returns the body
// with such numbers rewritten when there are any, else the body itself.

// wireKind is the member type a JSON value is checked against.
type wireKind uint8

const (
	wireAny wireKind = iota
	wireString
	wireBlob
	wireInteger
	wireBoolean
	wireTimestamp
	wireList
	wireMap
	wireStructure
)

// wireShape is one member type: a kind, and for lists and maps the member
// (value) shape, for structures the members in declaration order.
type wireShape struct {
	kind   wireKind
	member *wireShape
	fields []wireField
}

type wireField struct {
	name  string
	shape *wireShape
}

var (
	shapeCache    sync.Map // reflect.Type → *wireShape
	timestampType = reflect.TypeFor[timestamp]()
)

// wireShapeOf returns the member type of Go type t (cached).
func wireShapeOf(t reflect.Type) *wireShape {
	if s, ok := shapeCache.Load(t); ok {
		return s.(*wireShape)
	}
	s := buildShape(t, 0)
	shapeCache.Store(t, s)
	return s
}

func buildShape(t reflect.Type, depth int) *wireShape {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if depth > 16 {
		return &wireShape{kind: wireAny}
	}
	if t == timestampType {
		return &wireShape{kind: wireTimestamp}
	}
	switch t.Kind() {
	case reflect.String:
		return &wireShape{kind: wireString}
	case reflect.Bool:
		return &wireShape{kind: wireBoolean}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &wireShape{kind: wireInteger}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return &wireShape{kind: wireBlob}
		}
		return &wireShape{kind: wireList, member: buildShape(t.Elem(), depth+1)}
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return &wireShape{kind: wireAny}
		}
		return &wireShape{kind: wireMap, member: buildShape(t.Elem(), depth+1)}
	case reflect.Struct:
		s := &wireShape{kind: wireStructure}
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			s.fields = append(s.fields, wireField{name: name, shape: buildShape(f.Type, depth+1)})
		}
		return s
	}
	return &wireShape{kind: wireAny}
}

// The JSON kinds of a value, by its first byte.
type valueKind uint8

const (
	jsonNull valueKind = iota
	jsonString
	jsonNumber
	jsonBool
	jsonArray
	jsonObject
)

func kindOf(v []byte) valueKind {
	if len(v) == 0 {
		return jsonNull
	}
	switch v[0] {
	case '"':
		return jsonString
	case '{':
		return jsonObject
	case '[':
		return jsonArray
	case 't', 'f':
		return jsonBool
	case 'n':
		return jsonNull
	}
	return jsonNumber
}

// Texts of AWS's deserializer. The grammar ("an String", "an Boolean") is
// AWS's.
const (
	textBigNumber   = "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to "
	textBoolean     = "class java.lang.Boolean can not be converted to "
	textString      = "class java.lang.String can not be converted to "
	textListStart   = "Start of list found where not expected"
	textStructStart = "Start of structure or map found where not expected."
	textExpectList  = "Expected list or null"
	textExpectMap   = "Expected map or null"
	textExpectNull  = "Expected null"
	textMillis      = "milliseconds since epoch"
)

// serializationText returns AWS's message for a value of JSON kind k (raw
// value v) where a member of kind want belongs, or "" if it fits.
func serializationText(want wireKind, k valueKind, v []byte) string {
	if k == jsonNull || want == wireAny {
		return ""
	}
	switch want {
	case wireString:
		switch k {
		case jsonNumber:
			return textBigNumber + "an String"
		case jsonBool:
			return textBoolean + "an String"
		}
	case wireBoolean:
		switch k {
		case jsonNumber:
			return textBigNumber + "an Boolean"
		case jsonString:
			s := unquote(v)
			return "'" + strings.ToUpper(s) + "' can not be converted to an Boolean"
		}
	case wireInteger:
		switch k {
		case jsonBool:
			return textBoolean + "an Integer"
		case jsonString:
			return textString + "an Integer"
		}
	case wireTimestamp:
		switch k {
		case jsonBool:
			return textBoolean + textMillis
		case jsonString:
			return textString + textMillis
		}
	case wireBlob:
		switch k {
		case jsonNumber:
			return textBigNumber + "a Blob"
		case jsonBool:
			return textBoolean + "a Blob"
		case jsonString:
			return blobText(unquote(v))
		}
	case wireList:
		switch k {
		case jsonObject:
			return textStructStart
		case jsonArray:
			return ""
		}
		return textExpectList
	case wireMap:
		switch k {
		case jsonArray:
			return textListStart
		case jsonObject:
			return ""
		}
		return textExpectMap
	case wireStructure:
		switch k {
		case jsonArray:
			return textListStart
		case jsonObject:
			return ""
		}
		return textExpectNull
	}
	switch k {
	case jsonArray:
		return textListStart
	case jsonObject:
		return textStructStart
	}
	return ""
}

// blobText checks a base64 Data value as AWS does: the length must be a
// multiple of 4 (counted in UTF-16 units), every character must be of the
// standard alphabet with '=' only as trailing padding, and the encoding must
// be canonical (no bits set after the last character's data).
func blobText(s string) string {
	prefix := "'" + s + "' can not be converted to a Blob: "
	if n := javaLen(s); n%4 != 0 {
		return prefix + "Base64 encoded length is expected a multiple of 4 bytes but found: " + strconv.Itoa(n)
	}
	for i, r := range s {
		ok := r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '/')
		if r == '=' {
			ok = i+1 == len(s) || s[i+1] == '='
		}
		if !ok {
			return prefix + "Invalid Base64 character: '" + string(r) + "'"
		}
	}
	if b, err := base64.StdEncoding.Strict().DecodeString(s); err != nil || base64.StdEncoding.EncodeToString(b) != s {
		return prefix + "Invalid last non-pad Base64 character dectected"
	}
	return ""
}

// unquote returns the string value of a JSON string literal.
func unquote(v []byte) string {
	if len(v) >= 2 && bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1])
	}
	var s string
	_ = json.Unmarshal(v, &s)
	return s
}

// numberEdit replaces the number literal at body[start:end].
type numberEdit struct {
	start, end int
	text       string
}

// typeChecker walks one request body.
type typeChecker struct {
	body  []byte
	edits []numberEdit
}

// checkJSONTypes checks body (a JSON object) against the member types of
// Go type t and returns the body to decode, or the SerializationException.
// A body that is not valid JSON is left to the decoder.
func checkJSONTypes(body []byte, t reflect.Type) ([]byte, *apiError) {
	shape := wireShapeOf(t)
	if shape.kind != wireStructure {
		return body, nil
	}
	tc := typeChecker{body: body}
	sc := jsonScanner{b: body}
	sc.ws()
	start := sc.i
	if !skipValue(&sc) {
		return body, nil // malformed: the decoder reports it
	}
	if msg := tc.value(start, sc.i, shape); msg != "" {
		return nil, newAPIError(errSerialization, msg)
	}
	if len(tc.edits) == 0 {
		return body, nil
	}
	slices.SortFunc(tc.edits, func(a, b numberEdit) int { return a.start - b.start })
	out := make([]byte, 0, len(body)+16*len(tc.edits))
	prev := 0
	for _, e := range tc.edits {
		out = append(out, body[prev:e.start]...)
		out = append(out, e.text...)
		prev = e.end
	}
	return append(out, body[prev:]...), nil
}

// value checks body[start:end] against shape.
func (tc *typeChecker) value(start, end int, shape *wireShape) string {
	v := tc.body[start:end]
	k := kindOf(v)
	if msg := serializationText(shape.kind, k, v); msg != "" {
		return msg
	}
	switch {
	case k == jsonNumber && shape.kind == wireInteger:
		if text, changed := truncatingInteger(v); changed {
			tc.edits = append(tc.edits, numberEdit{start, end, text})
		}
	case k == jsonArray && shape.kind == wireList:
		return tc.elements(start, shape.member)
	case k == jsonObject && shape.kind == wireMap:
		return tc.members(start, func(_ []byte, vs, ve int) string { return tc.value(vs, ve, shape.member) })
	case k == jsonObject && shape.kind == wireStructure:
		return tc.structure(start, shape)
	}
	return ""
}

// structure checks an object's members in the structure's declaration
// order; unknown members are ignored, a repeated one counts by its last
// value (as encoding/json decodes it).
func (tc *typeChecker) structure(start int, shape *wireShape) string {
	type span struct{ s, e int }
	var found map[string]span
	tc.members(start, func(key []byte, vs, ve int) string {
		for _, f := range shape.fields {
			if string(key) == f.name {
				if found == nil {
					found = make(map[string]span, len(shape.fields))
				}
				found[f.name] = span{vs, ve}
			}
		}
		return ""
	})
	for _, f := range shape.fields {
		if sp, ok := found[f.name]; ok {
			if msg := tc.value(sp.s, sp.e, f.shape); msg != "" {
				return msg
			}
		}
	}
	return ""
}

// members calls fn with each member of the object at start (key unquoted
// when it has no escapes, else decoded).
func (tc *typeChecker) members(start int, fn func(key []byte, vs, ve int) string) string {
	sc := jsonScanner{b: tc.body, i: start + 1}
	if sc.consume('}') {
		return ""
	}
	for {
		sc.ws()
		ks := sc.i
		if !skipValue(&sc) {
			return ""
		}
		key := tc.body[ks:sc.i]
		if bytes.IndexByte(key, '\\') >= 0 {
			key = []byte(unquote(key))
		} else if len(key) >= 2 {
			key = key[1 : len(key)-1]
		}
		if !sc.consume(':') {
			return ""
		}
		sc.ws()
		vs := sc.i
		if !skipValue(&sc) {
			return ""
		}
		if msg := fn(key, vs, sc.i); msg != "" {
			return msg
		}
		if !sc.consume(',') {
			return ""
		}
	}
}

// elements checks each element of the array at start.
func (tc *typeChecker) elements(start int, member *wireShape) string {
	sc := jsonScanner{b: tc.body, i: start + 1}
	if sc.consume(']') {
		return ""
	}
	for {
		sc.ws()
		vs := sc.i
		if !skipValue(&sc) {
			return ""
		}
		if msg := tc.value(vs, sc.i, member); msg != "" {
			return msg
		}
		if !sc.consume(',') {
			return ""
		}
	}
}

// skipValue moves sc past one JSON value, reporting false if the input is
// not one.
func skipValue(sc *jsonScanner) bool {
	sc.ws()
	if sc.i >= len(sc.b) {
		return false
	}
	switch c := sc.b[sc.i]; c {
	case '"':
		sc.i++
		for sc.i < len(sc.b) {
			switch sc.b[sc.i] {
			case '\\':
				sc.i += 2
				continue
			case '"':
				sc.i++
				return true
			}
			sc.i++
		}
		return false
	case '{', '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		sc.i++
		if sc.consume(closer) {
			return true
		}
		for {
			if c == '{' {
				if !skipValue(sc) || !sc.consume(':') {
					return false
				}
			}
			if !skipValue(sc) {
				return false
			}
			if sc.consume(',') {
				continue
			}
			return sc.consume(closer)
		}
	default:
		s := sc.i
		for sc.i < len(sc.b) {
			switch sc.b[sc.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r', ':':
				return sc.i > s
			}
			sc.i++
		}
		return sc.i > s
	}
}

// truncatingInteger returns the integer AWS reads from the JSON number v
// for an Integer member: floored and capped at 2^31−1 (and kept within
// int64 for the decoder). changed is false when v is already that integer.
func truncatingInteger(v []byte) (text string, changed bool) {
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		if n <= math.MaxInt32 {
			return "", false
		}
		return strconv.Itoa(math.MaxInt32), true
	}
	r, ok := new(big.Rat).SetString(string(v))
	if !ok {
		return "", false // not a number: the decoder reports it
	}
	// Floor: big.Int.Div rounds toward −∞ for a positive divisor.
	f := new(big.Int).Div(r.Num(), r.Denom())
	switch {
	case f.Cmp(big.NewInt(math.MaxInt32)) > 0:
		return strconv.Itoa(math.MaxInt32), true
	case !f.IsInt64():
		return strconv.FormatInt(math.MinInt64, 10), true
	}
	return f.String(), true
}
