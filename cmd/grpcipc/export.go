package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"

	"github.com/jhump/protoreflect/v2/protoprint"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

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

// exportFlags are list's and describe's grpcurl flags that write what
// they found: a descriptor set, .proto files.
type exportFlags struct {
	protosetOut, protoOutDir *string
}

func addExportFlags(fs *flag.FlagSet) *exportFlags {
	return &exportFlags{
		protosetOut: fs.String("protoset-out", "", "also write the files that define what is printed, and their imports, to this\n`file` as a FileDescriptorSet (for --protoset), as grpcurl's -protoset-out"),
		protoOutDir: fs.String("proto-out-dir", "", "also write the .proto files that define what is printed, and their imports,\nunder this `directory`, as grpcurl's -proto-out-dir"),
	}
}

// write writes the files that define ds, with their imports, where the
// flags ask.
func (e *exportFlags) write(ds []protoreflect.Descriptor) error {
	if *e.protosetOut == "" && *e.protoOutDir == "" {
		return nil
	}
	files := withImports(ds)
	if *e.protosetOut != "" {
		set := &descriptorpb.FileDescriptorSet{}
		for _, f := range files {
			set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
		}
		b, err := proto.Marshal(set)
		if err != nil {
			return fmt.Errorf("--protoset-out: %w", err)
		}
		if err := os.WriteFile(*e.protosetOut, b, 0o644); err != nil {
			return fmt.Errorf("--protoset-out: %w", err)
		}
	}
	if *e.protoOutDir != "" {
		var p protoprint.Printer
		if err := p.PrintProtosToFileSystem(files, *e.protoOutDir); err != nil {
			return fmt.Errorf("--proto-out-dir: %w", err)
		}
	}
	return nil
}

// withImports lists the files of ds and everything they import, each
// after its imports, as a FileDescriptorSet must hold them.
func withImports(ds []protoreflect.Descriptor) []protoreflect.FileDescriptor {
	var out []protoreflect.FileDescriptor
	seen := map[string]bool{}
	var visit func(f protoreflect.FileDescriptor)
	visit = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		for i := 0; i < f.Imports().Len(); i++ {
			visit(f.Imports().Get(i).FileDescriptor)
		}
		out = append(out, f)
	}
	for _, d := range ds {
		visit(d.ParentFile())
	}
	return out
}

// messageTemplate returns a message of type md with every field set, so that its
// JSON shows each field's name and shape: grpcurl's -msg-template. A
// message type met again inside itself is left empty.
func messageTemplate(md protoreflect.MessageDescriptor) *dynamicpb.Message {
	return fill(md, nil)
}

func fill(md protoreflect.MessageDescriptor, path []protoreflect.FullName) *dynamicpb.Message {
	m := dynamicpb.NewMessage(md)
	if slices.Contains(path, md.FullName()) || len(path) > 8 {
		return m
	}
	path = append(path, md.FullName())
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.ContainingOneof() != nil && !fd.HasOptionalKeyword() && fd.ContainingOneof().Fields().Get(0) != fd {
			continue // one field of each oneof
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			mp.Set(zeroValue(fd.MapKey(), path).MapKey(), zeroValue(fd.MapValue(), path))
		case fd.IsList():
			m.Mutable(fd).List().Append(zeroValue(fd, path))
		default:
			m.Set(fd, zeroValue(fd, path))
		}
	}
	return m
}

// zeroValue is a field's default value, or a filled message for a message
// field.
func zeroValue(fd protoreflect.FieldDescriptor, path []protoreflect.FullName) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return protoreflect.ValueOfMessage(fill(fd.Message(), path))
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(fd.Enum().Values().Get(0).Number())
	}
	if fd.IsList() || fd.IsMap() {
		return dynamicpb.NewMessage(fd.ContainingMessage()).NewField(fd).List().NewElement()
	}
	return fd.Default()
}
