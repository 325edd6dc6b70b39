package grpcipc

// The generated code is committed; regenerate it with protoc 3.21 (Debian's
// protobuf-compiler), protoc-gen-go v1.36.12 and protoc-gen-go-grpc v1.6.2
// on PATH. greet.proto is the ASP.NET Core template's file unchanged, so its
// Go package is given on the command line.
//go:generate protoc -I proto --go_out=. --go_opt=module=github.com/grpcipc/grpcipc --go_opt=Mgreet/greet.proto=github.com/grpcipc/grpcipc/examples/greetpb --go-grpc_out=. --go-grpc_opt=module=github.com/grpcipc/grpcipc --go-grpc_opt=Mgreet/greet.proto=github.com/grpcipc/grpcipc/examples/greetpb greet/greet.proto grpcipc/v1/identity.proto grpcipc/bench/v1/bench.proto grpcipc/examples/v1/echo.proto grpcipc/examples/v1/blob.proto
