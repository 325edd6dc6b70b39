package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bufbuild/protocompile"
	"github.com/grpcipc/grpcipc"
	"github.com/jhump/protoreflect/v2/grpcreflect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// typeResolver is what protojson needs to resolve types in Any fields.
type typeResolver interface {
	protoregistry.MessageTypeResolver
	protoregistry.ExtensionTypeResolver
}

// anyOf resolves types in the first resolver that has them: the server's
// (by reflection) or the --proto files', then those compiled into grpcipc
// (google.rpc's error details, the well-known types).
type anyOf []typeResolver

func (r anyOf) FindMessageByName(n protoreflect.FullName) (protoreflect.MessageType, error) {
	return first(r, func(t typeResolver) (protoreflect.MessageType, error) { return t.FindMessageByName(n) })
}

func (r anyOf) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	return first(r, func(t typeResolver) (protoreflect.MessageType, error) { return t.FindMessageByURL(url) })
}

func (r anyOf) FindExtensionByName(n protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return first(r, func(t typeResolver) (protoreflect.ExtensionType, error) { return t.FindExtensionByName(n) })
}

func (r anyOf) FindExtensionByNumber(m protoreflect.FullName, n protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return first(r, func(t typeResolver) (protoreflect.ExtensionType, error) { return t.FindExtensionByNumber(m, n) })
}

func first[T any](r anyOf, find func(typeResolver) (T, error)) (T, error) {
	var zero T
	err := error(protoregistry.NotFound)
	for _, t := range r {
		v, ferr := find(t)
		if ferr == nil {
			return v, nil
		}
		if !errors.Is(ferr, protoregistry.NotFound) {
			err = ferr
		}
	}
	return zero, err
}

// client is a connection and where its service descriptions come from:
// server reflection, or .proto files given with --proto or --protoset.
type client struct {
	ep    grpcipc.Endpoint
	conn  *grpcipc.ClientConn
	refl  *grpcreflect.Client // nil with --proto or --protoset
	files *protoregistry.Files
	types typeResolver
	limit time.Duration // of connecting and reflection
}

func connect(ctx context.Context, f *clientFlags) (*client, error) {
	ep, err := endpointOrDefault(*f.connect)
	if err != nil {
		return nil, err
	}
	opts, err := f.options(ctx)
	if err != nil {
		return nil, err
	}
	var files *protoregistry.Files
	switch {
	case len(f.protos) > 0 && len(f.protosets) > 0:
		return nil, usageErrorf("give --proto or --protoset, not both")
	case len(f.protos) > 0:
		if files, err = compileProtos(ctx, f.protos, f.importPaths); err != nil {
			return nil, err
		}
	case len(f.protosets) > 0:
		if files, err = loadProtosets(ctx, f.protosets); err != nil {
			return nil, err
		}
	}
	conn, err := grpcipc.NewClient(ep.String(), opts...)
	if err != nil {
		return nil, err
	}
	cl := &client{ep: ep, conn: conn, files: files, limit: f.connectTimeout.or(*f.timeout)}
	if files != nil {
		cl.types = anyOf{dynamicpb.NewTypes(files), protoregistry.GlobalTypes}
	} else {
		md, err := f.metadata(false)
		if err != nil {
			conn.Close()
			return nil, err
		}
		cl.refl = grpcreflect.NewClientAuto(metadata.NewOutgoingContext(ctx, md), conn)
		cl.types = anyOf{cl.refl.AsResolver().AsTypeResolver(), protoregistry.GlobalTypes}
	}
	return cl, nil
}

// connectBounded connects within --connect-timeout (or --timeout), for
// commands that make no call of their own; done closes the client.
func connectBounded(ctx context.Context, f *clientFlags) (cl *client, done func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, f.connectTimeout.or(*f.timeout))
	if cl, err = connect(ctx, f); err != nil {
		cancel()
		return nil, nil, err
	}
	return cl, func() { cl.Close(); cancel() }, nil
}

// compileProtos parses .proto files, for servers without reflection. Each
// file, and each it imports, is read within ctx and up to
// maxDescriptorFile bytes.
func compileProtos(ctx context.Context, protos, importPaths []string) (*protoregistry.Files, error) {
	protos, importPaths = protoNames(protos, importPaths)
	read := func(path string) (io.ReadCloser, error) {
		b, err := readCapped(ctx, "", path, maxDescriptorFile) // the error is the compiler's, which says --proto
		if err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	comp := protocompile.Compiler{Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: importPaths, Accessor: read})}
	compiled, err := comp.Compile(ctx, protos...)
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("--proto: not read and compiled in time (--connect-timeout, or --timeout): %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("--proto: %w", err)
	}
	files := new(protoregistry.Files)
	for _, f := range compiled {
		if err := files.RegisterFile(f); err != nil {
			return nil, fmt.Errorf("--proto: %w", err)
		}
	}
	return files, nil
}

// protoNames turns --proto paths into names the compiler finds through the
// import paths, as protoc does: a file under an import path is named
// relative to it; an absolute path under none gets its directory as one
// more import path (the compiler would otherwise join it to each import
// path: "/x/proto/x/proto/a.proto").
func protoNames(protos, importPaths []string) ([]string, []string) {
	if len(importPaths) == 0 {
		return protos, importPaths
	}
	names := make([]string, len(protos))
	paths := slices.Clone(importPaths)
	for i, p := range protos {
		names[i] = p
		if !filepath.IsAbs(p) {
			continue
		}
		found := false
		for _, ip := range importPaths {
			abs, err := filepath.Abs(ip)
			if err != nil {
				continue
			}
			if rel, err := filepath.Rel(abs, p); err == nil && filepath.IsLocal(rel) {
				names[i], found = filepath.ToSlash(rel), true
				break
			}
		}
		if !found {
			names[i] = filepath.Base(p)
			if dir := filepath.Dir(p); !slices.Contains(paths, dir) {
				paths = append(paths, dir)
			}
		}
	}
	return names, paths
}

// loadProtosets reads compiled descriptor sets, for servers without
// reflection. Each set must hold the imports of its files (protoc's
// --include_imports), or they must be in another of the sets. Each is
// read within ctx and up to maxDescriptorFile bytes.
func loadProtosets(ctx context.Context, names []string) (*protoregistry.Files, error) {
	var all descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	for _, name := range names {
		b, err := readCapped(ctx, "--protoset", name, maxDescriptorFile)
		if err != nil {
			return nil, err
		}
		var set descriptorpb.FileDescriptorSet
		if err := proto.Unmarshal(b, &set); err != nil {
			return nil, fmt.Errorf("--protoset %s: not a FileDescriptorSet: %w", name, err)
		}
		for _, fd := range set.GetFile() {
			if !seen[fd.GetName()] {
				seen[fd.GetName()] = true
				all.File = append(all.File, fd)
			}
		}
	}
	files, err := protodesc.NewFiles(&all)
	if err != nil {
		return nil, fmt.Errorf("--protoset: %w (compile it with protoc --include_imports)", err)
	}
	return files, nil
}

func (c *client) Close() {
	if c.refl != nil {
		c.refl.Reset()
	}
	c.conn.Close()
}

func (c *client) service(name string) (protoreflect.ServiceDescriptor, error) {
	d, err := c.find(name, "service")
	if err != nil {
		return nil, err
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s: %q is not a service", c.ep, name)
	}
	return sd, nil
}

// services lists the services the server offers, or the --proto files
// describe.
func (c *client) services() ([]string, error) {
	var names []string
	if c.files == nil {
		fulls, err := c.refl.ListServices()
		if err != nil {
			return nil, c.reflectionError(err)
		}
		for _, n := range fulls {
			names = append(names, string(n))
		}
	} else {
		c.files.RangeFiles(func(f protoreflect.FileDescriptor) bool {
			for i := 0; i < f.Services().Len(); i++ {
				names = append(names, string(f.Services().Get(i).FullName()))
			}
			return true
		})
	}
	slices.Sort(names)
	return names, nil
}

// find looks a symbol up by reflection or in the --proto files; kind
// names what was looked for in the error for one that is not there.
func (c *client) find(name, kind string) (protoreflect.Descriptor, error) {
	var d protoreflect.Descriptor
	var err error
	where := "the server (see grpcipc list)"
	if c.files != nil {
		d, err = c.files.FindDescriptorByName(protoreflect.FullName(name))
		where = "the --proto or --protoset files"
	} else {
		d, err = c.refl.AsResolver().FindDescriptorByName(protoreflect.FullName(name))
	}
	if errors.Is(err, protoregistry.NotFound) || grpcreflect.IsElementNotFoundError(err) {
		return nil, fmt.Errorf("%s: no %s %q in %s", c.ep, kind, name, where)
	} else if err != nil {
		return nil, c.reflectionError(err)
	}
	return d, nil
}

// reflectionError says why reflection failed: in words for a status (the
// connection's, often), and naming the limit when time ran out.
func (c *client) reflectionError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: reflection: %w", c.ep, unprefixed{err})
	}
	// Exit status 1, as grpcurl's when it cannot connect or reflect.
	if st.Code() == codes.DeadlineExceeded {
		return fmt.Errorf("%s: no answer to connecting and reflection within %v (--connect-timeout, or --timeout)", c.ep, c.limit)
	}
	if err := notConnected(c.ep, err); err != nil {
		return err
	}
	if err := reflectionRefused(c.ep, st); err != nil {
		return err
	}
	if st.Code() == codes.Unimplemented {
		// grpcreflect tries v1, then v1alpha: the last word is v1alpha's.
		return fmt.Errorf("%s: the server offers no reflection service (Unimplemented): pass --proto or --protoset (the server said: %s)", c.ep, st.Message())
	}
	return fmt.Errorf("%s: reflection: %s: %s", c.ep, st.Code(), strings.TrimPrefix(st.Message(), "grpcipc: "))
}
