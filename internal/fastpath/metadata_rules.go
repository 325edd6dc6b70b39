package fastpath

import (
	"context"
	"fmt"
	"strings"
	_ "unsafe" // go:linkname, for grpc-go's raw outgoing metadata

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// metadataFromOutgoingContextRaw is grpc-go's own accessor of the outgoing
// metadata as the application set it (keys not yet lower-cased), which
// grpc-go's client validates (stream.go, newClientStream) and exports to
// itself only (internal.FromOutgoingContextRaw). The fast path applies the
// same rules to the same keys, so that a call grpc-go refuses over HTTP/2
// is refused on the fast path with the same code and text.
//
//go:linkname metadataFromOutgoingContextRaw google.golang.org/grpc/metadata.fromOutgoingContextRaw
func metadataFromOutgoingContextRaw(ctx context.Context) (metadata.MD, [][]string, bool)

// validateOutgoing refuses the outgoing metadata of ctx as grpc-go's client
// refuses it: INTERNAL, with grpc-go's words (internal/metadata.Validate).
func validateOutgoing(ctx context.Context) error {
	md, added, ok := metadataFromOutgoingContextRaw(ctx)
	if !ok {
		return nil
	}
	for k, vs := range md {
		if err := validatePair(k, vs...); err != nil {
			return status.Error(codes.Internal, err.Error())
		}
	}
	for _, kvs := range added {
		for i := 0; i+1 < len(kvs); i += 2 {
			if err := validatePair(kvs[i], kvs[i+1]); err != nil {
				return status.Error(codes.Internal, err.Error())
			}
		}
	}
	return nil
}

// validatePair is grpc-go's internal/metadata.ValidatePair: keys of
// [0-9a-z-_.] (pseudo-headers skipped), values of printable ASCII unless
// the key ends in "-bin".
func validatePair(key string, vals ...string) error {
	if key == "" {
		return fmt.Errorf("there is an empty key in the header")
	}
	if key[0] == ':' {
		return nil
	}
	for i := 0; i < len(key); i++ {
		r := key[i]
		if !(r >= 'a' && r <= 'z') && !(r >= '0' && r <= '9') && r != '.' && r != '-' && r != '_' {
			return fmt.Errorf("header key %q contains illegal characters not in [0-9a-z-_.]", key)
		}
	}
	if strings.HasSuffix(key, "-bin") {
		return nil
	}
	for _, v := range vals {
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x20 || c > 0x7E {
				return fmt.Errorf("header key %q contains value with non-printable ASCII characters", key)
			}
		}
	}
	return nil
}
