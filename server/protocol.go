package server

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// AWS's answers to requests that never reach an operation, in the order
// AWS checks (recorded from AWS by kinesalite's conformance tests):
//
//  1. Every API response carries x-amzn-RequestId and x-amz-id-2 (not a
//     CORS preflight). A request with an Origin gets
//     Access-Control-Allow-Origin: *; an OPTIONS with an Origin is a
//     preflight answered 200 with the requested headers and method allowed
//     (browser SDKs work); other responses expose AWS's headers.
//  2. Anything but POST: 403 AccessDeniedException in XML.
//  3. An empty body: SerializationException (or UnknownOperationException
//     when X-Amz-Target names no operation), in JSON for
//     application/x-amz-json-1.1, else in CBOR.
//  4. A Content-Type that is neither JSON 1.1, CBOR 1.1 nor
//     application/json: the signature's presence is checked (XML errors,
//     403), then 403 AccessDeniedException when the target has no
//     service or operation, UnrecognizedClientException for another
//     service, 500 InternalFailure for an unknown Kinesis operation, else
//     404 UnknownOperationException.
//  5. A body that is not a JSON object: SerializationException (no
//     message); with application/json AWS wraps it in the Coral envelope.
//  6. application/json: 404 with the Coral UnknownOperationException
//     envelope.
//  7. An unknown operation: 400 UnknownOperationException (no message).
//  8. The signature's presence: no Authorization header and no
//     X-Amz-Algorithm query parameter is MissingAuthenticationTokenException,
//     both is InvalidSignatureException, missing parts are
//     IncompleteSignatureException listing them. AWS serves no unsigned
//     call, so this applies whether or not SigV4 verification is on (when
//     it is off any signature is accepted).
//
// GET /healthz and GET /metrics are kvstream's own and answer as before.

// Content types the API accepts.
const (
	mediaJSON11    = "application/x-amz-json-1.1"
	mediaCBOR11    = "application/x-amz-cbor-1.1"
	mediaPlainJSON = "application/json"
)

// corsExposeHeaders are the headers AWS lets browsers read.
const corsExposeHeaders = "x-amzn-RequestId,x-amzn-ErrorType,x-amz-request-id,x-amz-id-2,x-amzn-ErrorMessage,Date"

// mediaType returns a Content-Type without parameters or spaces.
func mediaType(ct string) string {
	ct, _, _ = strings.Cut(ct, ";")
	return strings.TrimSpace(ct)
}

// amzID2 returns a value for x-amz-id-2: 72 random bytes in base64, the
// size of AWS's.
func amzID2() string {
	var b [72]byte
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rand.Uint64())
	}
	return base64.StdEncoding.EncodeToString(b[:])
}

// serveEdge sets the headers every API response carries and answers the
// requests that are not API calls (CORS preflights, methods other than
// POST). It reports whether it answered.
func (s *Server) serveEdge(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	h["X-Amzn-Requestid"] = []string{requestID()}
	origin := r.Header.Get("Origin") != ""
	if r.Method != http.MethodOptions || !origin {
		h["X-Amz-Id-2"] = []string{amzID2()}
	}
	if origin {
		h["Access-Control-Allow-Origin"] = []string{"*"}
		if r.Method == http.MethodOptions {
			if v := r.Header.Get("Access-Control-Request-Headers"); v != "" {
				h["Access-Control-Allow-Headers"] = []string{v}
			}
			if v := r.Header.Get("Access-Control-Request-Method"); v != "" {
				h["Access-Control-Allow-Methods"] = []string{v}
			}
			h["Access-Control-Max-Age"] = []string{"172800"}
			writeRaw(w, http.StatusOK, "", nil)
			return true
		}
		h["Access-Control-Expose-Headers"] = []string{corsExposeHeaders}
	}
	if r.Method != http.MethodPost {
		writeXMLError(w, errAccessDenied, "Unable to determine service/operation name to be authorized", http.StatusForbidden)
		return true
	}
	return false
}

// target is a request's X-Amz-Target split into service and operation.
type target struct {
	service, operation string
	known              bool // a Kinesis operation this server serves
}

func parseTarget(r *http.Request) target {
	svc, op, _ := strings.Cut(r.Header.Get("X-Amz-Target"), ".")
	t := target{service: svc, operation: op}
	if svc+"." == targetPrefix {
		_, fn := operations[op]
		_, sfn := streamingOperations[op]
		t.known = op != "" && (fn || sfn)
	}
	return t
}

// screen applies checks 3 to 8 to a POST whose body has been read. It
// answers the request and returns the error type when one fails, else
// returns "".
func (s *Server) screen(w http.ResponseWriter, r *http.Request, body []byte) string {
	mt := mediaType(r.Header.Get("Content-Type"))
	tg := parseTarget(r)
	valid := mt == mediaJSON11 || mt == mediaCBOR11 || mt == mediaPlainJSON
	if len(body) == 0 {
		typ := errSerialization
		if !tg.known {
			typ = errUnknownOperation
		}
		if mt == mediaJSON11 {
			writeBareError(w, codecJSON, typ)
		} else {
			writeBareError(w, codecCBOR, typ)
		}
		return typ
	}
	if !valid {
		if typ, msg := authPresence(r); typ != "" {
			writeXMLError(w, typ, msg, http.StatusForbidden)
			return typ
		}
		switch {
		case tg.service == "" || tg.operation == "":
			writeXMLError(w, errAccessDenied, "Unable to determine service/operation name to be authorized", http.StatusForbidden)
			return errAccessDenied
		case tg.service+"." != targetPrefix:
			writeXMLError(w, errUnrecognizedClient, "No authorization strategy was found for service: "+tg.service+
				", operation: "+tg.operation, http.StatusForbidden)
			return errUnrecognizedClient
		case !tg.known:
			writeXMLError(w, errInternalFailure, "", http.StatusInternalServerError)
			return errInternalFailure
		}
		writeXMLError(w, errUnknownOperation, "", http.StatusNotFound)
		return errUnknownOperation
	}
	if mt != mediaCBOR11 && !jsonObjectBody(body, tg.operation) {
		if mt == mediaPlainJSON {
			writeRaw(w, http.StatusOK, mediaPlainJSON,
				[]byte(`{"Output":{"__type":"com.amazon.coral.service#SerializationException","Message":null},"Version":"1.0"}`))
		} else {
			writeBareError(w, codecJSON, errSerialization)
		}
		return errSerialization
	}
	if mt == mediaPlainJSON {
		writeRaw(w, http.StatusNotFound, mediaPlainJSON,
			[]byte(`{"Output":{"__type":"com.amazon.coral.service#UnknownOperationException"},"Version":"1.0"}`))
		return errUnknownOperation
	}
	c := codecJSON
	if mt == mediaCBOR11 {
		c = codecCBOR
	}
	if !tg.known {
		writeBareError(w, c, errUnknownOperation)
		return errUnknownOperation
	}
	if typ, msg := authPresence(r); typ != "" {
		writeError(w, c, newAPIError(typ, msg))
		return typ
	}
	return ""
}

// jsonObjectBody reports whether body is a JSON object. PutRecord(s)
// bodies, which can be megabytes, are only checked to start like one: the
// decoder reports the rest.
func jsonObjectBody(body []byte, op string) bool {
	t := bytes.TrimLeft(body, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return false
	}
	if len(body) > 64<<10 && (op == "PutRecords" || op == "PutRecord") {
		return true
	}
	return json.Valid(body)
}

// authPresence checks that a request carries a signature, in the header or
// the query string, with the parts AWS requires. It returns the error type
// and message, or "" when the signature is complete.
func authPresence(r *http.Request) (typ, msg string) {
	authz := r.Header.Get("Authorization")
	var query url.Values
	if strings.Contains(r.RequestURI, "?") || r.URL.RawQuery != "" {
		query = r.URL.Query()
	}
	_, byQuery := query["X-Amz-Algorithm"]
	switch {
	case authz != "" && byQuery:
		return errInvalidSignature, "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header."
	case authz == "" && !byQuery:
		return errMissingAuthToken, "Missing Authentication Token"
	}
	var b strings.Builder
	if authz != "" {
		params := map[string]string{}
		fields := strings.FieldsFunc(authz, func(r rune) bool { return r == ',' || r == ' ' })
		if len(fields) > 0 {
			fields = fields[1:] // the algorithm
		}
		for _, f := range fields {
			k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
			v, _, _ = strings.Cut(v, "=")
			params[k] = v
		}
		for _, p := range [...]string{"Credential", "Signature", "SignedHeaders"} {
			if params[p] == "" {
				b.WriteString("Authorization header requires '" + p + "' parameter. ")
			}
		}
		if r.Header.Get("X-Amz-Date") == "" && r.Header.Get("Date") == "" {
			b.WriteString("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ")
		}
		if b.Len() > 0 {
			b.WriteString("Authorization=" + authz)
		}
	} else {
		for _, p := range [...]string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date"} {
			if query.Get(p) == "" {
				b.WriteString("AWS query-string parameters must include '" + p + "'. ")
			}
		}
		if b.Len() > 0 {
			b.WriteString("Re-examine the query-string parameters.")
		}
	}
	if b.Len() > 0 {
		return errIncompleteSignature, b.String()
	}
	return "", ""
}

// writeRaw writes a complete response. An empty contentType sends none
// (Go would otherwise sniff one).
func writeRaw(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	if contentType != "" {
		h["Content-Type"] = []string{contentType}
	} else {
		h["Content-Type"] = nil
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeXMLError writes AWS's XML error: with a message
// "<T>\n  <Message>m</Message>\n</T>\n", without one "<T/>\n"; no
// Content-Type, as AWS.
func writeXMLError(w http.ResponseWriter, typ, msg string, status int) {
	body := "<" + typ + "/>\n"
	if msg != "" {
		body = "<" + typ + ">\n  <Message>" + msg + "</Message>\n</" + typ + ">\n"
	}
	writeRaw(w, status, "", []byte(body))
}

// writeBareError writes {"__type": typ} with no message, as AWS answers
// protocol errors; in CBOR it is the indefinite-length map AWS sends.
func writeBareError(w http.ResponseWriter, c codec, typ string) {
	var body []byte
	if c == codecCBOR {
		body = append(body, 0xbf)
		body = appendCBORHead(body, 3, 6)
		body = append(body, "__type"...)
		body = appendCBORHead(body, 3, uint64(len(typ)))
		body = append(body, typ...)
		body = append(body, 0xff)
	} else {
		body = append(append([]byte(`{"__type":`), strconv.Quote(typ)...), '}')
	}
	w.Header()["X-Amzn-Errortype"] = []string{typ}
	writeRaw(w, http.StatusBadRequest, c.contentType(), body)
}
