package server

import "strconv"

// AWS's error texts that have no other home: the one table of Kinesis
// wording the server renders for conditions found outside the engine.
// Texts were recorded from AWS (kinesalite's conformance tests, and
// newer recordings where AWS changed them).

// errAccessDenied is AWS's __type for requests it cannot map to an
// operation.
const errAccessDenied = "AccessDeniedException"

// tagAllowedText lists the characters AWS allows in tag keys and values.
const tagAllowedText = "The allowed characters are Unicode letters, white space, numbers and _ . / = + - % @."

// illegalTags is AWS's InvalidArgumentException for tags with other
// characters; remove is true for RemoveTagsFromStream and UntagResource.
func (s *Server) illegalTags(stream string, remove bool) *apiError {
	verb := "add tags to"
	if remove {
		verb = "remove tags from"
	}
	return newAPIError(errInvalidArgument, "Failed to "+verb+" stream "+stream+" under account "+s.cfg.Account+
		" because some tags contained illegal characters. "+tagAllowedText)
}

// tooManyTags is AWS's InvalidArgumentException for a stream that would
// have more than maxStreamTags tags.
func (s *Server) tooManyTags(stream string) *apiError {
	return newAPIError(errInvalidArgument, "Failed to add tags to stream "+stream+" under account "+s.cfg.Account+
		" because a given stream cannot have more than "+strconv.Itoa(maxStreamTags)+" tags associated with it.")
}
