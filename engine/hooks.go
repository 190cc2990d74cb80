package engine

// hooks are test-only interception points (set by export_hooks_test.go),
// so tests can hold a call at a known point instead of sleeping. They are
// nil in normal use and never set while a DB is in use.
var hooks struct {
	// beforeThrottleWait runs in a put that is about to wait for
	// throughput, with no lock held.
	beforeThrottleWait func()
	// beforePutCommit runs in a put just before its commit, with the
	// stream's lock held shared.
	beforePutCommit func()
	// beforeCatalogCommit runs in CreateStream, DeleteStream and every
	// control-plane change of a stream (changeMeta: reshards, settings,
	// attributes) just before its catalog commit, with the locks the
	// commit is made under held.
	beforeCatalogCommit func()
}
