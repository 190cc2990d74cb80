package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// verifier checks AWS Signature Version 4 on requests against one
// configured access key, secret key and region, as AWS checks it: the
// credential scope names this access key, region and the service
// "kinesis"; X-Amz-Date is within 15 minutes; the signed headers include
// host (or :authority, which HTTP/2 clients such as the JavaScript SDK v3
// sign instead) and every x-amz-* header sent; and the signature over the
// canonical request matches.
//
// Checking is split in two so that no body is read for a request whose
// headers already fail: begin checks everything the headers say and
// builds the canonical request; check finishes it once the payload hash
// is known (from X-Amz-Content-Sha256 before the body, or from the body
// as it streams in). It is safe for concurrent use.
type verifier struct {
	accessKey, secretKey, region string
	now                          func() time.Time

	mu     sync.Mutex
	keyDay string // the day key was derived for
	key    []byte
}

// maxSkew is how far a request's X-Amz-Date may be from the server's clock.
const maxSkew = 15 * time.Minute

const (
	amzDateFormat = "20060102T150405Z"
	sigAlgorithm  = "AWS4-HMAC-SHA256"
	sigService    = "kinesis"
	// emptySHA256 is the hex SHA-256 of an empty payload.
	emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

func newVerifier(accessKey, secretKey, region string) *verifier {
	return &verifier{accessKey: accessKey, secretKey: secretKey, region: region, now: time.Now}
}

// authHeader is a parsed SigV4 Authorization header.
type authHeader struct {
	credential, signedHeaders, signature string
	// The credential scope: <accessKey>/<day>/<region>/<service>/aws4_request.
	accessKey, day, region, service string
}

// maxEchoed caps how much of a client's header an error message repeats.
const maxEchoed = 256

// echo returns s cut to maxEchoed bytes, for an error message.
func echo(s string) string {
	if len(s) <= maxEchoed {
		return s
	}
	return truncateUTF8(s, maxEchoed) + "…"
}

// parseAuthorization parses "AWS4-HMAC-SHA256 Credential=…,
// SignedHeaders=…, Signature=…" (the parts in any order, with or without
// spaces after the commas), answering Kinesis' errors for a missing
// header, another algorithm, missing parts or a malformed credential.
func parseAuthorization(authz string) (authHeader, *apiError) {
	var a authHeader
	if authz == "" {
		return a, newAPIError(errMissingAuthToken, "Missing Authentication Token")
	}
	rest, ok := strings.CutPrefix(authz, sigAlgorithm+" ")
	if !ok {
		alg, _, _ := strings.Cut(authz, " ")
		return a, newAPIError(errIncompleteSignature, "Unsupported AWS 'algorithm': '"+echo(alg)+"'")
	}
	for part := range strings.SplitSeq(rest, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			a.credential = val
		case "SignedHeaders":
			a.signedHeaders = val
		case "Signature":
			a.signature = val
		}
	}
	var missing []string
	for _, p := range [...]struct{ name, val string }{{"Credential", a.credential}, {"Signature", a.signature}, {"SignedHeaders", a.signedHeaders}} {
		if p.val == "" {
			missing = append(missing, "Authorization header requires '"+p.name+"' parameter.")
		}
	}
	if len(missing) > 0 {
		return a, newAPIError(errIncompleteSignature, strings.Join(missing, " ")+" Authorization="+echo(authz))
	}
	scope := strings.Split(a.credential, "/")
	if len(scope) != 5 || scope[4] != "aws4_request" || scope[0] == "" {
		return a, newAPIError(errIncompleteSignature, "Credential should be scoped to a valid region, not ''. Credential="+echo(a.credential))
	}
	a.accessKey, a.day, a.region, a.service = scope[0], scope[1], scope[2], scope[3]
	return a, nil
}

// pendingSig is a request whose headers passed the checks; check finishes
// the verification once the payload hash is known.
type pendingSig struct {
	v         *verifier
	canonical []byte // the canonical request up to, not including, the payload hash
	amzDate   string
	day       string
	signature string
	// claimedHash is X-Amz-Content-Sha256 when it is a hex SHA-256: the
	// signature can then be checked before the body is read, and the body
	// against the hash as it comes in.
	claimedHash string
}

// begin checks what r's headers say and returns the pending verification,
// or the Kinesis error to answer without reading the body.
func (v *verifier) begin(r *http.Request) (*pendingSig, *apiError) {
	a, aerr := parseAuthorization(r.Header.Get("Authorization"))
	if aerr != nil {
		return nil, aerr
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if amzDate == "" {
		return nil, newAPIError(errIncompleteSignature, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization="+
			echo(r.Header.Get("Authorization")))
	}
	if a.accessKey != v.accessKey {
		return nil, newAPIError(errUnrecognizedClient, "The security token included in the request is invalid.")
	}
	t, err := time.Parse(amzDateFormat, amzDate)
	if err != nil {
		return nil, newAPIError(errIncompleteSignature, "Date must be in ISO-8601 'basic format'. Got '"+echo(amzDate)+"'. See http://en.wikipedia.org/wiki/ISO_8601")
	}
	if a.day != amzDate[:8] {
		return nil, newAPIError(errInvalidSignature, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '"+
			echo(a.day)+"' != '"+amzDate[:8]+"', from '"+amzDate+"'.")
	}
	if a.region != v.region {
		return nil, newAPIError(errInvalidSignature, "Credential should be scoped to a valid region, not '"+echo(a.region)+"'. ")
	}
	if a.service != sigService {
		return nil, newAPIError(errInvalidSignature, "Credential should be scoped to correct service: '"+sigService+"'. ")
	}
	now := v.now().UTC()
	if t.Before(now.Add(-maxSkew)) {
		return nil, newAPIError(errInvalidSignature, "Signature expired: "+amzDate+" is now earlier than "+
			now.Add(-maxSkew).Format(amzDateFormat)+" ("+now.Format(amzDateFormat)+" - 15 min.)")
	}
	if t.After(now.Add(maxSkew)) {
		return nil, newAPIError(errInvalidSignature, "Signature not yet current: "+amzDate+" is still later than "+
			now.Add(maxSkew).Format(amzDateFormat)+" ("+now.Format(amzDateFormat)+" + 15 min.)")
	}
	signed := strings.Split(a.signedHeaders, ";")
	if !slices.Contains(signed, "host") && !slices.Contains(signed, ":authority") {
		return nil, newAPIError(errIncompleteSignature, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}
	for name := range r.Header {
		if lower := strings.ToLower(name); strings.HasPrefix(lower, "x-amz-") && !slices.Contains(signed, lower) {
			return nil, newAPIError(errIncompleteSignature, "There were headers present in the request which were not signed: "+
				echo(lower)+". Every x-amz-* header must be in SignedHeaders.")
		}
	}
	p := &pendingSig{v: v, amzDate: amzDate, day: a.day, signature: a.signature}
	p.canonical = canonicalRequest(r, signed, a.signedHeaders)
	if h := r.Header.Get("X-Amz-Content-Sha256"); len(h) == sha256.Size*2 && isLowerHex(h) {
		p.claimedHash = h
	}
	return p, nil
}

// check reports whether the signature matches the request with a payload
// whose hex SHA-256 is payloadHash.
func (p *pendingSig) check(payloadHash string) *apiError {
	h := sha256.New()
	h.Write(p.canonical)
	h.Write([]byte(payloadHash))
	var sum [sha256.Size]byte
	scope := p.day + "/" + p.v.region + "/" + sigService + "/aws4_request"
	sts := sigAlgorithm + "\n" + p.amzDate + "\n" + scope + "\n" + hex.EncodeToString(h.Sum(sum[:0]))
	mac := hmac.New(sha256.New, p.v.signingKey(p.day))
	mac.Write([]byte(sts))
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(p.signature)) {
		return newAPIError(errInvalidSignature, "The request signature we calculated does not match the signature you provided. "+
			"Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	}
	return nil
}

// verifyNoBody verifies a request without a body (GET /metrics).
func (v *verifier) verifyNoBody(r *http.Request) *apiError {
	p, aerr := v.begin(r)
	if aerr != nil {
		return aerr
	}
	return p.check(emptySHA256)
}

// signingKey returns the SigV4 signing key of day, caching the last one.
func (v *verifier) signingKey(day string) []byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.keyDay == day && v.key != nil {
		return v.key
	}
	k := hmacSHA256([]byte("AWS4"+v.secretKey), day)
	k = hmacSHA256(k, v.region)
	k = hmacSHA256(k, sigService)
	k = hmacSHA256(k, "aws4_request")
	v.keyDay, v.key = day, k
	return k
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// canonicalRequest builds SigV4's canonical request of r up to the payload
// hash: method, URI, query, the signed headers with their values, and the
// signed-header list, each followed by a newline.
func canonicalRequest(r *http.Request, signed []string, signedList string) []byte {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	b.WriteString(uriEncode(path, false)) // services other than S3 encode the path twice
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.RawQuery))
	b.WriteByte('\n')
	for _, name := range signed {
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(headerValue(r, name))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(signedList)
	b.WriteByte('\n')
	return []byte(b.String())
}

// headerValue returns the canonical value of header name (lower case) of
// r: its values trimmed, inner runs of spaces collapsed, joined by commas.
func headerValue(r *http.Request, name string) string {
	var vals []string
	switch name {
	case "host", ":authority":
		vals = []string{r.Host}
	case "content-length":
		vals = r.Header.Values("Content-Length")
		if len(vals) == 0 && r.ContentLength >= 0 && r.Method != http.MethodGet {
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	default:
		vals = r.Header.Values(name)
	}
	for i, v := range vals {
		vals[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(vals, ",")
}

// canonicalQuery sorts and encodes a query string as SigV4 does.
func canonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	q, _ := url.ParseQuery(raw)
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range q {
			if !yield(k) {
				return
			}
		}
	})
	var parts []string
	for _, k := range keys {
		vs := slices.Clone(q[k])
		slices.Sort(vs)
		for _, v := range vs {
			parts = append(parts, uriEncode(k, true)+"="+uriEncode(v, true))
		}
	}
	return strings.Join(parts, "&")
}

// uriEncode percent-encodes every byte but the unreserved characters
// (and '/' unless encodeSlash), in upper-case hex, as SigV4 requires.
func uriEncode(s string, encodeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' && !encodeSlash {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xf])
	}
	return b.String()
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
