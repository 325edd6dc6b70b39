// Package inherit handles descriptors a process is handed: the socket
// pairs a parent passes to a child it starts (and the proofs the child
// sends back over them with SCM_RIGHTS), and the sockets systemd passes in
// socket activation. It checks what it is given before taking it, so that
// a wrong or forged number never closes a descriptor of the process's own
// (descriptors received with a message go through internal/rights). It
// knows nothing of gRPC or of identities.
package inherit
