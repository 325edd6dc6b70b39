package grpcipc

import (
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/backoff"
)

// reconnect is what a ClientConn remembers of its failed attempts to
// connect, so that a server that is down is not dialled once per call:
// after a failure, calls that do not wait for ready fail at once with the
// failure's error until the next attempt is due, and calls that wait for
// ready wait for it (within their deadlines). The delays are grpc-go's
// (gRPC's connection-backoff.md, backoff.DefaultConfig): 1 s after the
// first failure, then 1.6 times longer each time up to 120 s, each
// randomized by ±20 %; a connection that is made resets them.
type reconnect struct {
	failures int       // consecutive failed attempts
	at       time.Time // when the next attempt may start; zero: now
	err      error     // the last attempt's error
}

// failed records a failed attempt at now.
func (r *reconnect) failed(err error, now time.Time) {
	r.at = now.Add(backoffDelay(backoff.DefaultConfig, r.failures))
	r.failures++
	r.err = err
}

// succeeded forgets the failures: a connection was made.
func (r *reconnect) succeeded() { *r = reconnect{} }

// wait says how long until the next attempt may start (≤ 0: now).
func (r *reconnect) wait(now time.Time) time.Duration {
	if r.at.IsZero() {
		return 0
	}
	return r.at.Sub(now)
}

// backoffDelay is the wait after retries+1 consecutive failures: c's base
// delay times its multiplier per earlier failure, capped at its maximum,
// randomized by its jitter.
func backoffDelay(c backoff.Config, retries int) time.Duration {
	d, limit := float64(c.BaseDelay), float64(c.MaxDelay)
	for ; d < limit && retries > 0; retries-- {
		d *= c.Multiplier
	}
	d = min(d, limit)
	d *= 1 + c.Jitter*(rand.Float64()*2-1)
	return time.Duration(max(d, 0))
}
