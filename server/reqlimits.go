package server

import "strconv"

// Request size caps, derived from the largest record a stream can be
// given through the API (UpdateMaxRecordSize's and CreateStream's
// MaxRecordSizeInKiB, at most maxRecordSizeKiB) instead of kept as
// separate numbers. Each stream's own limit (the engine's per-stream
// MaxRecordBytes) is checked after decoding, once the stream is known:
// these caps only bound what any request can make the server read and
// decode, for any stream.
const (
	// maxAPIRecordBytes is the largest record limit a stream can have.
	maxAPIRecordBytes = maxRecordSizeKiB << 10
	// maxPutRecordsDecoded stops decoding a PutRecords (data plus
	// partition keys): no stream takes more in one request, since the
	// request limit is 5 MiB or one record of the stream's limit when that
	// is more (putRecords).
	maxPutRecordsDecoded = max(maxPutRecordsBytes, maxAPIRecordBytes)
	// requestOverhead is room, beyond the records' base64 data, for
	// partition keys, hash keys and the JSON around them: 500 entries of
	// 256-character keys take under 300 KiB.
	requestOverhead = 1 << 20
	// maxRequestBody is the largest body a legal request needs: the
	// largest PutRecords (or PutRecord) in JSON, its data base64-encoded.
	maxRequestBody = (maxPutRecordsDecoded+2)/3*4 + requestOverhead
)

// recordsTooLargeFor is Kinesis' error for a PutRecords over the request
// limit of a stream whose record limit is recordLimit.
func recordsTooLargeFor(recordLimit int) *apiError {
	return newAPIError(errInvalidArgument, "Records size exceeds "+strconv.Itoa(max(maxPutRecordsBytes, recordLimit)>>20)+" MB limit")
}

// streamOfBody returns the StreamName and StreamARN members of a JSON
// request body's top-level object without decoding the rest (nil when
// absent or the body is not a JSON object).
func streamOfBody(body []byte) (name, arn *string) {
	sc := jsonScanner{b: body}
	if !sc.consume('{') {
		return nil, nil
	}
	for !sc.consume('}') {
		key, ok := sc.str()
		if !ok || !sc.consume(':') {
			return name, arn
		}
		switch string(key) {
		case "StreamName", "StreamARN":
			v, ok := sc.str()
			if !ok {
				return name, arn
			}
			s := string(v)
			if string(key) == "StreamName" {
				name = &s
			} else {
				arn = &s
			}
		default:
			if !skipValue(&sc) {
				return name, arn
			}
		}
		sc.consume(',')
	}
	return name, arn
}
