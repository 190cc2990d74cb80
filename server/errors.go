package server

import (
	"net/http"
	"strconv"
	"strings"
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
// stream, when known, is the stream the call named: texts about that
// stream get Kinesis' "under account N" qualifier.
func (s *Server) engineError(err error, stream string) *apiError {
	return s.renderError(err, call{stream: stream})
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
