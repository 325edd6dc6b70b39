package grpcipc

// checkSocketPath: Unix socket files on Windows come with the Windows
// transport; until then they are not dialed with checks.
func checkSocketPath(ep Endpoint, expect []Principal, _ identity) error {
	return unsupportedErr(ep.String(), "checking a unix socket file's owner on Windows is not supported yet")
}
