package iterator

// EncodeV1 encodes t in the version 1 format, for tests of old tokens.
func (c *Codec) EncodeV1(t Token) string { return c.encodeV1(t) }
