package iterator

// EncodeV1 encodes t in the version 1 format, for tests of old tokens.
func (c *Codec) EncodeV1(t Token) string { return c.encodeV1(t) }

// SetGateOnWait sets the hook Close calls when it starts waiting for busy
// gated Iterators.
func SetGateOnWait(g *Gate, f func(n int)) { g.onWait = f }

// SetCallHook sets the hook that runs inside the calls of Iterator.Close
// and Iterator.Wait (nil: none) and returns the previous one.
func SetCallHook(f func()) func() {
	old := testCallHook
	testCallHook = f
	return old
}
