// Package rights handles the descriptors a peer attaches to what it sends
// on a Unix stream socket (SCM_RIGHTS): every read has room for all a
// message can carry, what arrives is made close-on-exec at once, and what
// is not wanted is closed off the reading goroutine. Every accepted Unix
// connection reads through its Conn, and a child's inherited connection
// too, so that no peer can make a read block or leak a descriptor into a
// process this one starts. A Conn can also keep what arrives, with the
// place in the stream where it arrived, for a protocol whose frames
// announce descriptors (the fast path's FILES frames): what arrives where
// no frame announces it ends the connection, and is closed.
package rights
