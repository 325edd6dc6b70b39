package main

import (
	"context"
	"fmt"
	"io"
	"slices"

	"google.golang.org/protobuf/reflect/protoreflect"
)

func runList(ctx context.Context, args []string, stdout io.Writer) error {
	c := newCommand("list", "[--connect ENDPOINT] [--timeout D] [--expect-server P]... [TLS flags] [SERVICE]",
		"List the services the server offers by reflection (or those of the --proto or\n"+
			"--protoset files), or the methods of SERVICE.", 0, 1, stdout)
	flags := addClientFlags(c.fs, false)
	export := addExportFlags(c.fs)
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	cl, done, err := connectBounded(ctx, flags)
	if err != nil {
		return err
	}
	defer done()
	if len(pos) == 1 {
		sd, err := cl.service(pos[0])
		if err != nil {
			return err
		}
		// grpcurl's form, so that scripts move over: full names, sorted
		// ("describe SERVICE" shows the signatures).
		var methods []string
		for i := 0; i < sd.Methods().Len(); i++ {
			methods = append(methods, string(sd.Methods().Get(i).FullName()))
		}
		slices.Sort(methods)
		for _, m := range methods {
			fmt.Fprintln(stdout, m)
		}
		return export.write([]protoreflect.Descriptor{sd})
	}
	names, err := cl.services()
	if err != nil {
		return err
	}
	var ds []protoreflect.Descriptor
	for _, n := range names {
		fmt.Fprintln(stdout, n)
		if *export.protosetOut != "" || *export.protoOutDir != "" {
			sd, err := cl.service(n)
			if err != nil {
				return err
			}
			ds = append(ds, sd)
		}
	}
	return export.write(ds)
}
