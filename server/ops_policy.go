package server

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// Resource-based policies: PutResourcePolicy, GetResourcePolicy and
// DeleteResourcePolicy, on a stream or a registered consumer. A policy is
// stored as the client sent it, as an engine attribute of its stream, so
// it persists, and goes with the stream when it is deleted or with the
// consumer when it is deregistered. kvstream does not evaluate policies
// (it has no IAM); it checks them as documents, as AWS does on Put.

// policyAttrPrefix prefixes the attributes that hold policies: the
// stream's own is policyAttrPrefix+"stream", a consumer's
// policyAttrPrefix+"consumer/<name>:<creation secs>".
const policyAttrPrefix = "kinesis/policy/"

// maxPolicyBytes is the largest policy document accepted (20 KiB, AWS's
// limit for resource-based policies).
const maxPolicyBytes = 20480

type resourcePolicyInput struct {
	ResourceARN *string `json:"ResourceARN"`
	StreamId    *string `json:"StreamId"`
	Policy      *string `json:"Policy"`
}

type getResourcePolicyOutput struct {
	Policy string `json:"Policy"`
}

// decodePolicyRequest validates a policy request and resolves its
// resource to the stream and attribute that hold the policy.
func (s *Server) decodePolicyRequest(rq *request, withPolicy bool) (resourcePolicyInput, string, string, *apiError) {
	var in resourcePolicyInput
	if err := rq.codec.decode(rq.body, &in); err != nil {
		return in, "", "", err
	}
	var c check
	c.resourceARN(in.ResourceARN)
	c.streamID(in.StreamId)
	if withPolicy {
		c.required("policy", in.Policy != nil)
	}
	if err := c.err(); err != nil {
		return in, "", "", err
	}
	stream, attr, aerr := s.resolvePolicyResource(*in.ResourceARN)
	return in, stream, attr, aerr
}

// resolvePolicyResource returns the stream and attribute of the policy of
// a stream or consumer ARN; the resource must exist.
func (s *Server) resolvePolicyResource(arn string) (stream, attr string, aerr *apiError) {
	if _, _, _, _, _, ok := parseConsumerARN(arn); ok {
		cons, aerr := s.resolveConsumer(&arn, nil, nil)
		if aerr != nil {
			return "", "", aerr
		}
		return cons.Stream, policyAttrPrefix + "consumer/" + cons.Name + ":" + strconv.FormatInt(cons.CreatedAt.Unix(), 10), nil
	}
	name, aerr := s.resolveResource(arn)
	if aerr != nil {
		return "", "", aerr
	}
	if _, err := s.db.DescribeStream(name); err != nil {
		return "", "", s.engineError(err, name)
	}
	return name, policyAttrPrefix + "stream", nil
}

func (s *Server) putResourcePolicy(rq *request) (any, *apiError) {
	in, stream, attr, aerr := s.decodePolicyRequest(rq, true)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := checkPolicyDocument(*in.Policy); aerr != nil {
		return nil, aerr
	}
	if err := s.db.SetAttr(stream, attr, []byte(*in.Policy)); err != nil {
		return nil, s.engineError(err, stream)
	}
	return nil, nil
}

// getResourcePolicy answers the resource's policy, or "{}" when it has
// none (as AWS does).
func (s *Server) getResourcePolicy(rq *request) (any, *apiError) {
	_, stream, attr, aerr := s.decodePolicyRequest(rq, false)
	if aerr != nil {
		return nil, aerr
	}
	v, ok, err := s.db.Attr(stream, attr)
	if err != nil {
		return nil, s.engineError(err, stream)
	}
	if !ok {
		return getResourcePolicyOutput{Policy: "{}"}, nil
	}
	return getResourcePolicyOutput{Policy: string(v)}, nil
}

// deleteResourcePolicy removes the resource's policy; removing none is
// not an error.
func (s *Server) deleteResourcePolicy(rq *request) (any, *apiError) {
	_, stream, attr, aerr := s.decodePolicyRequest(rq, false)
	if aerr != nil {
		return nil, aerr
	}
	if err := s.db.SetAttr(stream, attr, nil); err != nil {
		return nil, s.engineError(err, stream)
	}
	return nil, nil
}

// forgetConsumerPolicy drops a deregistered consumer's policy.
func (s *Server) forgetConsumerPolicy(cons streamConsumer) {
	attr := policyAttrPrefix + "consumer/" + cons.Name + ":" + strconv.FormatInt(cons.CreatedAt.Unix(), 10)
	_ = s.db.SetAttr(cons.Stream, attr, nil)
}

// invalidPolicy is the InvalidArgumentException for a bad policy document.
func invalidPolicy(reason string) *apiError {
	return newAPIError(errInvalidArgument, "Invalid policy document: "+reason)
}

// checkPolicyDocument checks a resource-based policy against the IAM
// policy grammar: a JSON object with an optional Version ("2012-10-17" or
// "2008-10-17"), an optional Id and a Statement (one statement or a
// non-empty list); each statement has Effect Allow or Deny, a Principal or
// NotPrincipal (a resource policy names who it applies to), an Action or
// NotAction (a string or a non-empty list of strings), and optionally
// Sid, Resource or NotResource and Condition.
func checkPolicyDocument(doc string) *apiError {
	if len(doc) > maxPolicyBytes {
		return invalidPolicy("the policy is " + strconv.Itoa(len(doc)) + " bytes, more than the limit of " + strconv.Itoa(maxPolicyBytes) + " bytes.")
	}
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	var top map[string]json.RawMessage
	if err := dec.Decode(&top); err != nil || top == nil {
		return invalidPolicy("the policy is not a JSON object.")
	}
	if dec.More() {
		return invalidPolicy("the policy has content after its JSON object.")
	}
	for k := range top {
		switch k {
		case "Version", "Id", "Statement":
		default:
			return invalidPolicy("unknown policy element " + k + ".")
		}
	}
	if v, ok := top["Version"]; ok {
		var ver string
		if json.Unmarshal(v, &ver) != nil || (ver != "2012-10-17" && ver != "2008-10-17") {
			return invalidPolicy("Version must be \"2012-10-17\" or \"2008-10-17\".")
		}
	}
	if v, ok := top["Id"]; ok {
		var id string
		if json.Unmarshal(v, &id) != nil {
			return invalidPolicy("Id must be a string.")
		}
	}
	raw, ok := top["Statement"]
	if !ok {
		return invalidPolicy("the policy has no Statement.")
	}
	var stmts []map[string]json.RawMessage
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '[' {
		if json.Unmarshal(raw, &stmts) != nil {
			return invalidPolicy("Statement must be an object or a list of objects.")
		}
	} else {
		var one map[string]json.RawMessage
		if json.Unmarshal(raw, &one) != nil || one == nil {
			return invalidPolicy("Statement must be an object or a list of objects.")
		}
		stmts = append(stmts, one)
	}
	if len(stmts) == 0 {
		return invalidPolicy("Statement must not be empty.")
	}
	for i, st := range stmts {
		if aerr := checkStatement(i+1, st); aerr != nil {
			return aerr
		}
	}
	return nil
}

// checkStatement checks the n-th (1-based) statement of a policy.
func checkStatement(n int, st map[string]json.RawMessage) *apiError {
	where := "statement " + strconv.Itoa(n) + ": "
	if st == nil {
		return invalidPolicy(where + "a statement must be an object.")
	}
	for k := range st {
		switch k {
		case "Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource", "Condition":
		default:
			return invalidPolicy(where + "unknown statement element " + k + ".")
		}
	}
	var effect string
	if json.Unmarshal(st["Effect"], &effect) != nil || (effect != "Allow" && effect != "Deny") {
		return invalidPolicy(where + "Effect must be \"Allow\" or \"Deny\".")
	}
	if aerr := exactlyOne(st, where, "Principal", "NotPrincipal"); aerr != nil {
		return aerr
	}
	for _, k := range []string{"Principal", "NotPrincipal"} {
		if v, ok := st[k]; ok && !isPrincipal(v) {
			return invalidPolicy(where + k + " must be \"*\" or an object of principal lists.")
		}
	}
	if aerr := exactlyOne(st, where, "Action", "NotAction"); aerr != nil {
		return aerr
	}
	for _, k := range []string{"Action", "NotAction", "Resource", "NotResource"} {
		if v, ok := st[k]; ok && !isStringOrList(v) {
			return invalidPolicy(where + k + " must be a string or a non-empty list of strings.")
		}
	}
	if _, ok := st["Resource"]; ok {
		if _, ok := st["NotResource"]; ok {
			return invalidPolicy(where + "Resource and NotResource cannot be used together.")
		}
	}
	if v, ok := st["Condition"]; ok {
		var cond map[string]json.RawMessage
		if json.Unmarshal(v, &cond) != nil || cond == nil {
			return invalidPolicy(where + "Condition must be an object.")
		}
	}
	if v, ok := st["Sid"]; ok {
		var sid string
		if json.Unmarshal(v, &sid) != nil {
			return invalidPolicy(where + "Sid must be a string.")
		}
	}
	return nil
}

// exactlyOne requires exactly one of the elements a and b.
func exactlyOne(st map[string]json.RawMessage, where, a, b string) *apiError {
	_, hasA := st[a]
	_, hasB := st[b]
	switch {
	case hasA && hasB:
		return invalidPolicy(where + a + " and " + b + " cannot be used together.")
	case !hasA && !hasB:
		return invalidPolicy(where + "the statement needs " + a + " or " + b + ".")
	}
	return nil
}

// isStringOrList reports whether v is a string or a non-empty list of
// strings.
func isStringOrList(v json.RawMessage) bool {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s != ""
	}
	var l []string
	if json.Unmarshal(v, &l) != nil || len(l) == 0 {
		return false
	}
	for _, x := range l {
		if x == "" {
			return false
		}
	}
	return true
}

// isPrincipal reports whether v is "*" or an object mapping principal
// types (AWS, Service, Federated, CanonicalUser) to a string or list.
func isPrincipal(v json.RawMessage) bool {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s == "*"
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(v, &m) != nil || len(m) == 0 {
		return false
	}
	for k, x := range m {
		switch k {
		case "AWS", "Service", "Federated", "CanonicalUser":
		default:
			return false
		}
		if !isStringOrList(x) {
			return false
		}
	}
	return true
}
