package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// verifier checks AWS Signature Version 4 on API requests against one
// configured access key and secret key. It recomputes the signature with
// aws-sdk-go-v2's signer over the headers the client says it signed.
type verifier struct {
	creds  aws.Credentials
	signer *v4.Signer
	now    func() time.Time
}

// maxSkew is how far a request's X-Amz-Date may be from the server's clock.
const maxSkew = 15 * time.Minute

const amzDateFormat = "20060102T150405Z"

func newVerifier(accessKey, secretKey string) *verifier {
	return &verifier{
		creds:  aws.Credentials{AccessKeyID: accessKey, SecretAccessKey: secretKey},
		signer: v4.NewSigner(),
		now:    time.Now,
	}
}

// verify returns nil if r (with body) carries a valid signature by the
// configured credentials, or the Kinesis authentication error otherwise.
func (v *verifier) verify(r *http.Request, body []byte) *apiError {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return newAPIError(errMissingAuthToken, "Missing Authentication Token")
	}
	const alg = "AWS4-HMAC-SHA256"
	rest, ok := strings.CutPrefix(authz, alg+" ")
	if !ok {
		alg, _, _ := strings.Cut(authz, " ")
		return newAPIError(errIncompleteSignature, "Unsupported AWS 'algorithm': '"+alg+"'")
	}
	var credential, signedHeaders, signature string
	for part := range strings.SplitSeq(rest, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			credential = val
		case "SignedHeaders":
			signedHeaders = val
		case "Signature":
			signature = val
		}
	}
	var missing []string
	for _, p := range [...]struct{ name, val string }{{"Credential", credential}, {"Signature", signature}, {"SignedHeaders", signedHeaders}} {
		if p.val == "" {
			missing = append(missing, "Authorization header requires '"+p.name+"' parameter.")
		}
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if amzDate == "" {
		missing = append(missing, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
	}
	if len(missing) > 0 {
		return newAPIError(errIncompleteSignature, strings.Join(missing, " ")+" Authorization="+authz)
	}
	scope := strings.Split(credential, "/")
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return newAPIError(errIncompleteSignature, "Credential should be scoped to a valid region, not ''. Credential="+credential)
	}
	accessKey, day, region, service := scope[0], scope[1], scope[2], scope[3]
	if accessKey != v.creds.AccessKeyID {
		return newAPIError(errUnrecognizedClient, "The security token included in the request is invalid.")
	}
	if service != "kinesis" {
		return newAPIError(errInvalidSignature, "Credential should be scoped to correct service: 'kinesis'. ")
	}
	t, err := time.Parse(amzDateFormat, amzDate)
	if err != nil {
		return newAPIError(errIncompleteSignature, "Date must be in ISO-8601 'basic format'. Got '"+amzDate+"'. See http://en.wikipedia.org/wiki/ISO_8601")
	}
	if day != amzDate[:8] {
		return newAPIError(errInvalidSignature, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '"+
			day+"' != '"+amzDate[:8]+"', from '"+amzDate+"'.")
	}
	now := v.now().UTC()
	if t.Before(now.Add(-maxSkew)) {
		return newAPIError(errInvalidSignature, "Signature expired: "+amzDate+" is now earlier than "+
			now.Add(-maxSkew).Format(amzDateFormat)+" ("+now.Format(amzDateFormat)+" - 15 min.)")
	}
	if t.After(now.Add(maxSkew)) {
		return newAPIError(errInvalidSignature, "Signature not yet current: "+amzDate+" is still later than "+
			now.Add(maxSkew).Format(amzDateFormat)+" ("+now.Format(amzDateFormat)+" + 15 min.)")
	}
	want, err := v.recompute(r, body, signedHeaders, region, t)
	if err != nil || !hmac.Equal([]byte(want), []byte(signature)) {
		return newAPIError(errInvalidSignature, "The request signature we calculated does not match the signature you provided. "+
			"Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	}
	return nil
}

// recompute signs a copy of r holding only the headers named in
// signedHeaders and returns the signature, or "" if the signer would sign
// a different header set (so the signatures cannot match).
func (v *verifier) recompute(r *http.Request, body []byte, signedHeaders, region string, t time.Time) (string, error) {
	u := *r.URL
	u.Host = r.Host
	if u.Scheme == "" {
		u.Scheme = "http"
	}
	cp := &http.Request{Method: r.Method, URL: &u, Host: r.Host, Header: make(http.Header)}
	for name := range strings.SplitSeq(signedHeaders, ";") {
		switch name {
		case "host":
		case "content-length":
			cp.ContentLength = int64(len(body))
		default:
			if vals := r.Header.Values(name); len(vals) > 0 {
				cp.Header[http.CanonicalHeaderKey(name)] = vals
			}
		}
	}
	if r.URL.RawQuery != "" {
		u.RawQuery = url.Values(r.URL.Query()).Encode()
	}
	sum := sha256.Sum256(body)
	if err := v.signer.SignHTTP(context.Background(), v.creds, cp, hex.EncodeToString(sum[:]), "kinesis", region, t); err != nil {
		return "", err
	}
	got := cp.Header.Get("Authorization")
	if !strings.Contains(got, "SignedHeaders="+signedHeaders+",") {
		return "", nil
	}
	_, sig, _ := strings.Cut(got, "Signature=")
	return sig, nil
}
