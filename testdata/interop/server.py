"""A Python grpcio server of greet.Greeter/SayHello: python3 server.py TARGET.

TARGET is grpcio's, e.g. unix:///path. Prints "ready", serves until its
standard input closes.
"""
import sys
from concurrent import futures

import grpc

import pb


def say_hello(request, context):
    name = pb.parse(request).get(1, [b""])[0].decode()
    return pb.field_str(1, "Hello %s from python" % name)


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "greet.Greeter", {"SayHello": grpc.unary_unary_rpc_method_handler(say_hello)}),))
    if not server.add_insecure_port(sys.argv[1]):
        sys.exit("cannot listen on " + sys.argv[1])
    server.start()
    print("ready", flush=True)
    sys.stdin.read()
    server.stop(0).wait()


if __name__ == "__main__":
    main()
