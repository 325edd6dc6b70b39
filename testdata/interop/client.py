"""A Python grpcio client of grpcipc's demo server: python3 client.py TARGET.

TARGET is grpcio's: unix:///path or unix-abstract:name. Prints one JSON line.
"""
import json
import os
import sys

import grpc

import pb


def main():
    channel = grpc.insecure_channel(sys.argv[1])
    grpc.channel_ready_future(channel).result(timeout=10)
    hello = pb.parse(channel.unary_unary("/greet.Greeter/SayHello")(pb.field_str(1, "python"), timeout=10))
    health = pb.parse(channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=10))
    who = pb.parse(channel.unary_unary("/grpcipc.v1.Identity/WhoAmI")(b"", timeout=10))
    print(json.dumps({
        "pid": os.getpid(),
        "uid": os.geteuid(),
        "hello": hello[1][0].decode(),
        "health": health.get(1, [0])[0],
        "who_transport": who[1][0].decode(),
        "who_pid": who.get(5, [0])[0],
        "who_uid": who.get(6, [b""])[0].decode(),
    }))
    channel.close()


if __name__ == "__main__":
    main()
