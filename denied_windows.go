package grpcipc

// describeAccess names what refused.
func describeAccess(ep Endpoint) string {
	if ep.Transport == NamedPipe {
		return "the named pipe's DACL"
	}
	return "the socket's directory DACL"
}

// describeSelf names this process's user.
func describeSelf() string {
	if id, err := selfIdentity(); err == nil {
		return "sid " + id.sid
	}
	return "this user"
}
