package fastpath

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/grpcipc/grpcipc/internal/wire"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Fast-path limits (docs/protocol.md).
const (
	// MaxStreams is how many streams a fast-path connection may have open
	// at once; a client waits for a free one, a server closes a connection
	// that opens more.
	MaxStreams = 256
	// maxFramePayload is the largest MESSAGE payload a sender puts in one
	// frame: a 1 MiB message and its field's few bytes of encoding fit;
	// readers accept wire.DefaultMaxFrame.
	maxFramePayload = 1<<20 + 32<<10
)

// errServerStopped ends the connections of a stopped server.
var errServerStopped = errors.New("grpcipc: the server stopped")

// marshal appends msg's encoding to b. Protobuf messages are marshalled
// in place; others go through grpc-go's registered proto codec.
func marshal(b []byte, msg any) ([]byte, error) {
	if msg == nil {
		return b, nil // as grpc-go: a nil message is an empty one
	}
	if m, ok := msg.(proto.Message); ok {
		return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, m)
	}
	c := encoding.GetCodecV2("proto")
	if c == nil {
		return nil, fmt.Errorf("grpcipc: cannot marshal %T: not a protobuf message", msg)
	}
	bs, err := c.Marshal(msg)
	if err != nil {
		return nil, err
	}
	b = append(b, bs.Materialize()...)
	bs.Free()
	return b, nil
}

// messageSize is msg's encoded size (cached for marshal).
func messageSize(msg any) int {
	if msg == nil {
		return 0
	}
	if m, ok := msg.(proto.Message); ok {
		return proto.Size(m)
	}
	return -1
}

// unmarshal decodes b into msg.
func unmarshal(b []byte, msg any) error {
	if m, ok := msg.(proto.Message); ok {
		return proto.Unmarshal(b, m)
	}
	c := encoding.GetCodecV2("proto")
	if c == nil {
		return fmt.Errorf("grpcipc: cannot unmarshal into %T: not a protobuf message", msg)
	}
	return c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, msg)
}

// toKV turns metadata into the wire's list, refusing what gRPC refuses;
// reserved (grpc- and :) keys are left out, as grpc-go leaves them out.
func toKV(md metadata.MD, out []wire.KV) ([]wire.KV, error) {
	for k, vs := range md {
		if strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-") {
			continue
		}
		for _, v := range vs {
			if err := wire.CheckKV(k, v); err != nil {
				return nil, status.Errorf(codes.Internal, "grpcipc: metadata: %v", err)
			}
			out = append(out, wire.KV{Key: k, Value: v})
		}
	}
	return out, nil
}

// fromKV turns the wire's list into metadata.
func fromKV(kv []wire.KV) metadata.MD {
	if len(kv) == 0 {
		return nil
	}
	md := make(metadata.MD, len(kv))
	for _, e := range kv {
		md[e.Key] = append(md[e.Key], e.Value)
	}
	return md
}

// okStatus is the status of every call that ends well (status values are
// not changed once made).
var okStatus = status.New(codes.OK, "")

// appendOKTrailer appends the payload of TRAILERS for a call that ended
// well, with md, when it fits in one frame (errTrailerTooLarge otherwise:
// trailerOf makes one of any size).
func appendOKTrailer(b []byte, md metadata.MD) ([]byte, error) {
	kv, err := toKV(md, nil)
	if err != nil {
		return b, err
	}
	t := &wire.Trailer{Metadata: kv}
	if trailerSize(t) > wire.DefaultMaxFrame || len(kv) > wire.MaxMetadataV1 {
		return b, errTrailerTooLarge // trailerOf makes one that fits
	}
	return wire.AppendTrailer(b, t), nil
}

// errTrailerTooLarge: the trailer does not fit in a frame.
var errTrailerTooLarge = errors.New("grpcipc: the trailer does not fit in a frame")

// trailerSize is at least the size of t's payload.
func trailerSize(t *wire.Trailer) int {
	n := 3*binary.MaxVarintLen64 + len(t.Message) + len(t.Details)
	for _, kv := range t.Metadata {
		n += 2*binary.MaxVarintLen64 + len(kv.Key) + len(kv.Value)
	}
	return n
}

// fitTrailer makes t fit what the client reads: for version 2, the
// metadata limit (wire.MaxHeaderListSize, counted as HTTP/2 counts
// trailers, as a grpc-go client's default limit); for version 1, one frame
// of the largest size its reader accepts. The status details go first,
// then the trailing metadata, each with a note in the status message; a
// call that ended well and whose trailing metadata does not fit becomes
// INTERNAL, as grpc-go's server resets a stream whose trailers are over
// its client's header list limit.
func fitTrailer(t *wire.Trailer, version uint8) {
	fits, limit, what := func() bool { return wire.TrailerListSize(t) <= wire.MaxHeaderListSize }, wire.MaxHeaderListSize, "the fast path's metadata limit"
	if version < 2 {
		fits, limit, what = func() bool { return trailerSize(t) <= wire.DefaultMaxFrame && len(t.Metadata) <= wire.MaxMetadataV1 }, wire.DefaultMaxFrame, "a version-1 client's frame limit"
	}
	if fits() {
		return
	}
	if len(t.Details) > 0 {
		t.Message = noted(t.Message, fmt.Sprintf("[grpcipc: %d bytes of status details dropped: the trailer would be over %s (%d bytes)]", len(t.Details), what, limit))
		t.Details = nil
		if fits() {
			return
		}
	}
	n := 0
	for _, kv := range t.Metadata {
		n += len(kv.Key) + len(kv.Value)
	}
	note := fmt.Sprintf("[grpcipc: %d entries (%d bytes) of trailing metadata dropped: the trailer would be over %s (%d bytes)]", len(t.Metadata), n, what, limit)
	t.Metadata = nil
	if t.Code == uint32(codes.OK) {
		t.Code, t.Message = uint32(codes.Internal), note
		return
	}
	t.Message = noted(t.Message, note)
}

// appendBlock appends a CALL, HEADERS or TRAILERS frame on stream of the
// payload that f appends. A payload longer than a frame is cut into parts,
// all but the last with FlagMore, one after another with nothing between
// them (a version-2 peer puts them together; the sender checked the
// payload's limits).
func appendBlock(b []byte, stream uint32, t wire.Type, fl wire.Flags, f func([]byte) []byte) []byte {
	b, at := wire.BeginFrame(b, stream, t, fl)
	b = f(b)
	if len(b)-at-wire.HeaderSize <= wire.DefaultMaxFrame {
		wire.EndFrame(b, at)
		return b
	}
	payload := bytes.Clone(b[at+wire.HeaderSize:])
	b = b[:at]
	for len(payload) > wire.DefaultMaxFrame {
		b = wire.AppendFrame(b, stream, t, wire.FlagMore|fl, payload[:wire.DefaultMaxFrame])
		payload = payload[wire.DefaultMaxFrame:]
	}
	return wire.AppendFrame(b, stream, t, fl, payload)
}

// noted appends note to a status message, within its limit.
func noted(msg, note string) string {
	if msg != "" {
		note = " " + note
	}
	if len(msg)+len(note) > wire.MaxStatusMessage {
		msg = msg[:wire.MaxStatusMessage-len(note)]
	}
	return msg + note
}

// trailerOf is the TRAILERS payload of a call's outcome, for a client of
// the protocol version given.
func trailerOf(st *status.Status, md metadata.MD, version uint8) (*wire.Trailer, error) {
	t := &wire.Trailer{Code: uint32(st.Code()), Message: st.Message()}
	if len(t.Message) > wire.MaxStatusMessage {
		t.Message = t.Message[:wire.MaxStatusMessage]
	}
	if p := st.Proto(); len(p.GetDetails()) > 0 {
		d, err := proto.Marshal(p)
		if err != nil {
			return nil, err
		}
		t.Details = d
	}
	var err error
	if t.Metadata, err = toKV(md, nil); err != nil {
		return nil, err
	}
	fitTrailer(t, version)
	return t, nil
}

// statusOf turns a TRAILERS payload into the call's status.
func statusOf(t *wire.Trailer) *status.Status {
	if t.Code == 0 && len(t.Details) == 0 && t.Message == "" {
		return okStatus
	}
	if len(t.Details) > 0 {
		var p spb.Status
		if proto.Unmarshal(t.Details, &p) == nil && p.GetCode() == int32(t.Code) {
			return status.FromProto(&p)
		}
	}
	return status.New(codes.Code(t.Code), t.Message)
}

// detailsCost is what the status details of TRAILERS payload p hold once
// statusOf has parsed them into a google.rpc.Status, beyond the payload's
// own bytes (callCost): their bytes twice (the parse and the clone
// status.FromProto makes), and for each Any, which takes 2 bytes on the
// wire when empty, two structs of about 100 bytes (a red-team run: 2 MiB
// of empty Anys held 100 MiB of a client's heap for a 4 MiB charge).
func detailsCost(p []byte) int {
	d := wire.TrailerDetails(p)
	n, anys := len(d), 0
	for len(d) > 0 {
		num, typ, k := protowire.ConsumeTag(d)
		if k < 0 {
			break
		}
		d = d[k:]
		if k = protowire.ConsumeFieldValue(num, typ, d); k < 0 {
			break
		}
		if num == detailsField && typ == protowire.BytesType {
			anys++
		}
		d = d[k:]
	}
	return 2*n + anyCost*anys
}

// detailsField is google.rpc.Status's field number of its details (the
// Any messages); anyCost is what one holds once parsed, twice over.
const (
	detailsField = 3
	anyCost      = 256
)

// ContextStatus is the status of a call whose context ended.
func ContextStatus(ctx context.Context) error {
	err := ctx.Err()
	if err == nil {
		err = context.DeadlineExceeded // the deadline passed; the timer has yet to fire
	}
	return status.FromContextError(err).Err()
}

// preferContext: a call that failed once its context had ended (its
// deadline passed, or cancelled) failed because of that, whatever the
// server made of it (its handler's context ended too, maybe a moment
// earlier), as grpc-go reports it.
func preferContext(ctx context.Context, err error) error {
	if err == nil || status.Code(err) == codes.OK {
		return err
	}
	if ctx.Err() != nil {
		return ContextStatus(ctx)
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return ContextStatus(ctx)
	}
	return err
}

// tooLargeMessage is the status message of a received message over the
// limit, in grpc-go's words.
func tooLargeMessage(err error) string {
	var tl *wire.TooLargeError
	if errors.As(err, &tl) {
		return fmt.Sprintf("grpcipc: received message larger than max (%d bytes or more vs. %d)", tl.Size, tl.Max)
	}
	return fmt.Sprintf("grpcipc: received message larger than max (%v)", err)
}

// callCost is what the metadata of a CALL frame of n payload bytes and
// entries key-value pairs occupies while its call runs: the strings, their
// headers, the map and its slices, and the stream's own state.
func callCost(n, entries int) int {
	return 2*n + 128*entries + 4<<10
}
