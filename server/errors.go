package server

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/kvstream/kvstream/engine"
)

// Kinesis error type names (the "__type" of an error response).
const (
	errValidation            = "ValidationException"
	errSerialization         = "SerializationException"
	errInvalidArgument       = "InvalidArgumentException"
	errResourceNotFound      = "ResourceNotFoundException"
	errResourceInUse         = "ResourceInUseException"
	errLimitExceeded         = "LimitExceededException"
	errThroughputExceeded    = "ProvisionedThroughputExceededException"
	errExpiredIterator       = "ExpiredIteratorException"
	errExpiredNextToken      = "ExpiredNextTokenException"
	errInternalFailure       = "InternalFailure"
	errUnknownOperation      = "UnknownOperationException"
	errMissingAuthToken      = "MissingAuthenticationTokenException"
	errIncompleteSignature   = "IncompleteSignatureException"
	errInvalidSignature      = "InvalidSignatureException"
	errUnrecognizedClient    = "UnrecognizedClientException"
	errRequestEntityTooLarge = "RequestEntityTooLargeException"
	// errServiceUnavailable (HTTP 503) answers puts refused because the
	// data directory's disk is full (engine.ErrDiskFull). Every AWS SDK
	// retries it with backoff: aws-sdk-go-v2 and botocore (legacy and
	// standard modes) retry HTTP 503, as the Java SDKs do, whereas a 400
	// would make clients give up.
	errServiceUnavailable = "ServiceUnavailable"
)

// apiError is an error answered to the client: a Kinesis __type, its
// message and the HTTP status.
type apiError struct {
	Type   string
	Msg    string
	Status int
	cause  error // the decoding error behind a SerializationException, if any
}

func (e *apiError) Error() string { return e.Type + ": " + e.Msg }

// newAPIError returns an apiError with the status Kinesis uses for typ.
func newAPIError(typ, msg string) *apiError {
	st := http.StatusBadRequest
	switch typ {
	case errInternalFailure:
		st = http.StatusInternalServerError
	case errRequestEntityTooLarge:
		st = http.StatusRequestEntityTooLarge
	case errServiceUnavailable:
		st = http.StatusServiceUnavailable
	}
	return &apiError{Type: typ, Msg: msg, Status: st}
}

// engineError maps an engine error to the Kinesis error a client sees.
// stream, when known, is the stream the call named: engine messages that
// mention it get Kinesis' "under account N" qualifier.
func (s *Server) engineError(err error, stream string) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	msg := engine.Message(err)
	typ := errInternalFailure
	switch {
	case errors.Is(err, engine.ErrStreamNotFound), errors.Is(err, engine.ErrShardNotFound),
		errors.Is(err, engine.ErrConsumerNotFound):
		typ = errResourceNotFound
	case errors.Is(err, engine.ErrStreamExists), errors.Is(err, engine.ErrResourceInUse):
		typ = errResourceInUse
		msg = strings.Replace(msg, " is not ACTIVE", " not ACTIVE", 1)
	case errors.Is(err, engine.ErrValidation):
		typ = errValidation
	case errors.Is(err, engine.ErrInvalidArgument):
		typ = errInvalidArgument
	case errors.Is(err, engine.ErrExpiredIterator):
		typ = errExpiredIterator
	case errors.Is(err, engine.ErrThroughputExceeded), errors.Is(err, engine.ErrStreamFull):
		typ = errThroughputExceeded
	case errors.Is(err, engine.ErrLimitExceeded):
		typ = errLimitExceeded
	case errors.Is(err, engine.ErrDiskFull):
		return newAPIError(errServiceUnavailable, msg)
	}
	if typ == errInternalFailure {
		if errCanceled(err) { // the client went away; nothing to report
			return newAPIError(errInternalFailure, "The request was cancelled.")
		}
		if errors.Is(err, engine.ErrCorruption) {
			// Damaged stored data: say so (the message names the stream,
			// shard and position), count it, and log it for the operator.
			s.metrics.corruption.Inc()
			s.cfg.Logger.Error("kvstream server: stored data is damaged", "err", err)
			return newAPIError(errInternalFailure, "Internal service failure: corruption: "+msg)
		}
		s.cfg.Logger.Error("kvstream server: internal failure", "err", err)
		return newAPIError(errInternalFailure, "Internal service failure.")
	}
	if stream != "" {
		msg = s.qualify(msg, stream)
	}
	return newAPIError(typ, msg)
}

// qualify inserts " under account N" after the first mention of
// "stream <name>" in msg (as a whole word), unless msg already names an
// account: "Stream x not found." becomes "Stream x under account N not
// found.", as Kinesis writes it.
func (s *Server) qualify(msg, stream string) string {
	// Kinesis' retention messages name the stream without the account.
	if strings.Contains(msg, "under account") || strings.HasPrefix(msg, "Requested retention period") {
		return msg
	}
	for _, p := range [...]string{"Stream ", "stream "} {
		needle := p + stream
		off := 0
		for {
			i := strings.Index(msg[off:], needle)
			if i < 0 {
				break
			}
			end := off + i + len(needle)
			if end == len(msg) || msg[end] == ' ' || msg[end] == '.' || msg[end] == ',' {
				return msg[:end] + " under account " + s.cfg.Account + msg[end:]
			}
			off = end
		}
	}
	return msg
}

// streamNotFound is Kinesis' ResourceNotFoundException for a stream.
func (s *Server) streamNotFound(name string) *apiError {
	return newAPIError(errResourceNotFound, "Stream "+name+" under account "+s.cfg.Account+" not found.")
}

// validationErrors collects model-constraint violations and renders them
// the way AWS does: "N validation error(s) detected: Value 'v' at 'path'
// failed to satisfy constraint: Member must …; …" (AWS lists and counts
// the first maxListedViolations only). A printed value longer than
// maxValueText is cut there, with "…".
type validationErrors struct {
	n    int
	msgs []string
}

const (
	maxListedViolations = 10
	maxValueText        = 1024
)

// add records one violation. value is the printed value: quoted by the
// caller as AWS does ('v'), or "null".
func (v *validationErrors) add(value, path, constraint string) {
	v.addText(value, path, "Member must "+constraint)
}

// addText records one violation with its whole constraint text. AWS stops
// at 10 and counts only those.
func (v *validationErrors) addText(value, path, text string) {
	v.addTextLimit(value, path, text, maxValueText)
}

// addTextLimit is addText with a printed value cut at limit bytes.
func (v *validationErrors) addTextLimit(value, path, text string, limit int) {
	if v.n < maxListedViolations {
		v.n++
		if len(value) > limit {
			value = truncateUTF8(value, limit) + "…'"
		}
		v.msgs = append(v.msgs, "Value "+value+" at '"+echo(path)+"' failed to satisfy constraint: "+text)
	}
}

// err returns the ValidationException, or nil if nothing was recorded.
func (v *validationErrors) err() *apiError {
	if v.n == 0 {
		return nil
	}
	noun := " validation errors detected: "
	if v.n == 1 {
		noun = " validation error detected: "
	}
	return newAPIError(errValidation, strconv.Itoa(v.n)+noun+strings.Join(v.msgs, "; "))
}
