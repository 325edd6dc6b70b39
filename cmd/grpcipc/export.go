package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/jhump/protoreflect/v2/protoprint"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

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
