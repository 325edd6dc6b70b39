package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jhump/protoreflect/v2/protoprint"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

func runDescribe(ctx context.Context, args []string, stdout io.Writer) error {
	c := newCommand("describe", "[--connect ENDPOINT] [--timeout D] [--expect-server P]... [TLS flags] [SYMBOL]",
		"Print the definition of SYMBOL, a service, method (package.Service/Method or\n"+
			"package.Service.Method), message or enum, in .proto syntax, found by server\n"+
			"reflection (or in the --proto or --protoset files), as grpcurl describe does;\n"+
			"with no SYMBOL, every service.", 0, 1, stdout)
	flags := addClientFlags(c.fs, false)
	export := addExportFlags(c.fs)
	msgTemplate := c.fs.Bool("msg-template", false, "after a message's definition, print a JSON template of it: every field, with\nits default value (as grpcurl's -msg-template)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	cl, done, err := connectBounded(ctx, flags)
	if err != nil {
		return err
	}
	defer done()
	var names []string
	if len(pos) == 0 {
		if names, err = cl.services(); err != nil {
			return err
		}
	} else {
		name := strings.TrimPrefix(pos[0], "/")
		if svc, m, ok := strings.Cut(name, "/"); ok {
			name = svc + "." + m
		}
		names = []string{name}
	}
	var ds []protoreflect.Descriptor
	for _, name := range names {
		d, err := cl.find(name, "symbol")
		if err != nil {
			return err
		}
		if err := describe(stdout, d, *msgTemplate, cl.types); err != nil {
			return err
		}
		ds = append(ds, d)
	}
	return export.write(ds)
}

// describe prints d in .proto syntax, as grpcurl does, and with template a
// message's JSON template.
func describe(stdout io.Writer, d protoreflect.Descriptor, template bool, types typeResolver) error {
	// grpcurl's printer settings, so that the output is the same.
	p := protoprint.Printer{Compact: true, SortElements: true, ForceFullyQualifiedNames: true, OmitComments: protoprint.CommentsNonDoc}
	text, err := p.PrintProtoToString(d)
	if err != nil {
		return fmt.Errorf("printing %s: %w", d.FullName(), err)
	}
	fmt.Fprintf(stdout, "%s is a %s:\n%s", d.FullName(), kindOf(d), strings.TrimLeft(text, "\n"))
	if !strings.HasSuffix(text, "\n") {
		fmt.Fprintln(stdout)
	}
	if md, ok := d.(protoreflect.MessageDescriptor); ok && template {
		fmt.Fprintln(stdout, "\nMessage template:")
		printer := &replyPrinter{w: stdout, opts: protojson.MarshalOptions{Resolver: types, EmitUnpopulated: true}}
		if err := printer.print(messageTemplate(md)); err != nil {
			return err
		}
	}
	return nil
}

// kindOf names a descriptor's kind, as grpcurl does.
func kindOf(d protoreflect.Descriptor) string {
	switch d.(type) {
	case protoreflect.ServiceDescriptor:
		return "service"
	case protoreflect.MethodDescriptor:
		return "method"
	case protoreflect.MessageDescriptor:
		return "message"
	case protoreflect.EnumDescriptor:
		return "enum"
	case protoreflect.FieldDescriptor:
		return "field"
	case protoreflect.EnumValueDescriptor:
		return "enum value"
	}
	return "symbol"
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
