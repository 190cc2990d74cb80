package server

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Model constraints from the Kinesis service model (2013-12-02), checked
// before any engine call, in the model's member order, and reported as one
// ValidationException listing every violation, as AWS does.

// check accumulates violations for one request.
type check struct{ validationErrors }

// quote prints a string value the way AWS does in validation messages.
func quote(s string) string { return "'" + s + "'" }

// required records "must not be null" when present is false and reports
// whether the value is there to be checked further.
func (c *check) required(path string, present bool) bool {
	if !present {
		c.add("null", path, "not be null")
	}
	return present
}

// javaLen returns the length of s as Java (and so Kinesis) measures it:
// in UTF-16 code units.
func javaLen(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// length checks a string's length in characters (UTF-16 code units, as
// AWS counts) against [min, max] (max 0: unbounded).
func (c *check) length(path, v string, min, max int) {
	n := javaLen(v)
	if n < min {
		c.add(quote(v), path, "have length greater than or equal to "+strconv.Itoa(min))
	}
	if max > 0 && n > max {
		c.add(quote(v), path, "have length less than or equal to "+strconv.Itoa(max))
	}
}

// pattern checks v against a model pattern.
func (c *check) pattern(path, v string, ok func(string) bool, text string) {
	if !ok(v) {
		c.add(quote(v), path, "satisfy regular expression pattern: "+text)
	}
}

// str checks an optional string: pattern (ok may be nil), then length, in
// AWS's order.
func (c *check) str(path string, v *string, min, max int, ok func(string) bool, text string) {
	if v == nil {
		return
	}
	if ok != nil {
		c.pattern(path, *v, ok, text)
	}
	c.length(path, *v, min, max)
}

// reqStr checks a required string.
func (c *check) reqStr(path string, v *string, min, max int, ok func(string) bool, text string) {
	if c.required(path, v != nil) {
		c.str(path, v, min, max, ok, text)
	}
}

// intRange checks an optional integer against [min, max] (use a huge max
// for "unbounded").
func (c *check) intRange(path string, v *int64, min, max int64) {
	if v == nil {
		return
	}
	if *v < min {
		c.add(quote(strconv.FormatInt(*v, 10)), path, "have value greater than or equal to "+strconv.FormatInt(min, 10))
	}
	if *v > max {
		c.add(quote(strconv.FormatInt(*v, 10)), path, "have value less than or equal to "+strconv.FormatInt(max, 10))
	}
}

// enum checks an optional string against a value set.
func (c *check) enum(path string, v *string, values []string) {
	if v != nil && !slices.Contains(values, *v) {
		c.add(quote(*v), path, "satisfy enum value set: ["+strings.Join(values, ", ")+"]")
	}
}

// Patterns of the model, and their texts as AWS prints them.
const (
	namePatternText     = "[a-zA-Z0-9_.-]+"
	hashKeyPatternText  = "0|([1-9]\\d{0,38})"
	seqPatternText      = "0|([1-9]\\d{0,128})"
	streamARNText       = "arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+"
	resourceARNText     = "arn:aws.*:kinesis:.*:\\d{12}:.*stream/\\S+"
	maxInt              = 1<<62 - 1
	maxShardCount       = 100000 // ShardCount and TargetShardCount, as AWS validates them
	maxStreamNameLen    = 128
	maxARNLen           = 2048
	maxNextTokenLen     = 1048576
	maxShardIteratorLen = 512
)

var (
	streamARNRe   = regexp.MustCompile(`^(?:arn:aws.*:kinesis:.*:\d{12}:stream/\S+)$`)
	resourceARNRe = regexp.MustCompile(`^(?:arn:aws.*:kinesis:.*:\d{12}:.*stream/\S+)$`)
)

// isName matches [a-zA-Z0-9_.-]+ (stream names, shard ids).
func isName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// isDecimal matches 0|([1-9]\d{0,maxDigits-1}).
func isDecimal(s string, maxDigits int) bool {
	if s == "0" {
		return true
	}
	if s == "" || len(s) > maxDigits || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHashKey(s string) bool   { return isDecimal(s, 39) }
func isSeqNum(s string) bool    { return isDecimal(s, 129) }
func isStreamARN(s string) bool { return streamARNRe.MatchString(s) }
func isResourceARN(s string) bool {
	return resourceARNRe.MatchString(s)
}

// streamName checks an optional StreamName.
func (c *check) streamName(v *string) {
	c.str("streamName", v, 1, maxStreamNameLen, isName, namePatternText)
}

// streamRef checks the StreamName of an operation that needs a stream:
// without a StreamARN too, AWS lists it as null with the other missing
// members (its StreamARN is checked last, by checkedStream).
func (c *check) streamRef(name, arn *string) {
	if name == nil && arn == nil {
		c.required("streamName", false)
		return
	}
	c.streamName(name)
}

func (c *check) streamARN(v *string) {
	c.str("streamARN", v, 1, maxARNLen, isStreamARN, streamARNText)
}

func (c *check) shardID(path string, v *string, required bool) {
	if required {
		c.reqStr(path, v, 1, 128, isName, namePatternText)
		return
	}
	c.str(path, v, 1, 128, isName, namePatternText)
}

// tagMap checks a TagMap (1–200 entries, keys 1–128, values 0–256), with
// AWS's texts for the map's key and value constraints. It is linear in the
// map: the map is printed (for the messages) at most once.
func (c *check) tagMap(path string, tags map[string]string, present bool) {
	if !c.required(path, present) {
		return
	}
	printed := ""
	value := func() string {
		if printed == "" {
			printed = printMap(tags)
		}
		return printed
	}
	if len(tags) < 1 {
		c.add(value(), path, "have length greater than or equal to 1")
	}
	if len(tags) > 200 {
		c.add(value(), path, "have length less than or equal to 200")
	}
	badKey, badValue := false, false
	for k, v := range tags {
		if n := javaLen(k); n < 1 || n > 128 {
			badKey = true
		}
		if javaLen(v) > 256 {
			badValue = true
		}
	}
	if badKey {
		c.addRaw(value(), path, "Map keys must satisfy constraint: [Member must have length less than or equal to 128, "+
			"Member must have length greater than or equal to 1]")
	}
	if badValue {
		c.addRaw(value(), path, "Map value must satisfy constraint: [Member must have length less than or equal to 256, "+
			"Member must have length greater than or equal to 0]")
	}
}

// addRaw records a violation whose constraint text is not a "Member
// must …" one.
func (c *check) addRaw(value, path, text string) {
	c.addText(value, path, text)
}

// printMap prints a map the way Java's toString does: {k=v, k2=v2},
// stopping once the text is longer than a message shows (maxValueText).
func printMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString("'{")
	for i, k := range keys {
		if b.Len() > maxValueText {
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k + "=" + m[k])
	}
	b.WriteString("}'")
	return b.String()
}

// printList prints a list the way Java's toString does: [a, b].
func printList(l []string) string { return "'[" + strings.Join(l, ", ") + "]'" }

// blobValue prints a blob as AWS does in validation messages.
func blobValue(n int) string {
	s := strconv.Itoa(n)
	return "'java.nio.HeapByteBuffer[pos=0 lim=" + s + " cap=" + s + "]'"
}

// listLen checks a list's entry count against [min, max] (max 0:
// unbounded); printed is the list as AWS prints it.
func (c *check) listLen(path string, n int, printed func() string, min, max int) {
	if n < min {
		c.add(printed(), path, "have length greater than or equal to "+strconv.Itoa(min))
	}
	if max > 0 && n > max {
		c.add(printed(), path, "have length less than or equal to "+strconv.Itoa(max))
	}
}

// strList checks a list of strings: entry count, then every entry's length
// (reported once, for the whole list, as AWS does).
func (c *check) strList(path string, l []string, min, max, minLen, maxLen int) {
	c.listLen(path, len(l), func() string { return printList(l) }, min, max)
	for _, s := range l {
		if n := javaLen(s); n < minLen || n > maxLen {
			c.add(printList(l), path, "satisfy constraint: [Member must have length less than or equal to "+strconv.Itoa(maxLen)+
				", Member must have length greater than or equal to "+strconv.Itoa(minLen)+"]")
			return
		}
	}
}

// truncateUTF8 cuts s to at most n bytes without splitting a UTF-8
// sequence.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
