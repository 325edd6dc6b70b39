//go:build unix && !linux

package inherit

// CreatorAlive: no pidfds outside Linux; the PID is compared alone.
func CreatorAlive(int) error { return nil }
