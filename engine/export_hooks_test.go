package engine

// SetTestHooks installs test hooks (see hooks.go) and returns a function
// that removes them. Set them before opening the DB the test uses and
// remove them after closing it.
func SetTestHooks(beforeThrottleWait, beforePutCommit, beforeCatalogCommit func()) (restore func()) {
	old := hooks
	hooks.beforeThrottleWait = beforeThrottleWait
	hooks.beforePutCommit = beforePutCommit
	hooks.beforeCatalogCommit = beforeCatalogCommit
	return func() { hooks = old }
}
