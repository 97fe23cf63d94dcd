"""A gRPC client generated from the seed shim.proto alone (grpcio), driving a
container lifecycle against our server: proof that seed clients in another
language work unchanged.

usage: seed_client.py PROTO_DIR SOCKET BUNDLE ID [AUTHORITY]
PROTO_DIR holds seed/shim.proto and gogoproto/gogo.proto.
AUTHORITY is how the channel is made:
  default  no channel options at all (grpcio then sends the socket path as
           :authority, which our server must accept);
  percent  the socket path, percent-encoded, as grpc.default_authority;
  localhost  grpc.default_authority=localhost (what a careful user sets).
Prints one line per step; exits non-zero on any failure.
"""
import os
import sys
import urllib.parse
import tempfile
import threading

from grpc_tools import protoc
import grpc
import importlib.resources


def generate(proto_dir, out):
    include = str(importlib.resources.files("grpc_tools") / "_proto")
    rc = protoc.main([
        "protoc",
        f"-I{os.path.join(proto_dir, 'seed')}",
        f"-I{proto_dir}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        "shim.proto",
        "gogoproto/gogo.proto",
    ])
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    sys.path.insert(0, out)


def main():
    proto_dir, socket, bundle, cid = sys.argv[1:5]
    authority = sys.argv[5] if len(sys.argv) > 5 else "default"
    out = tempfile.mkdtemp()
    generate(proto_dir, out)
    import shim_pb2 as pb
    import shim_pb2_grpc as rpc
    from google.protobuf import empty_pb2  # noqa: F401  (the seed imports it)

    if authority == "default":
        channel = grpc.insecure_channel(f"unix:{socket}")
    elif authority == "percent":
        encoded = urllib.parse.quote(socket, safe="")
        channel = grpc.insecure_channel(f"unix:{socket}", options=[("grpc.default_authority", encoded)])
    elif authority == "localhost":
        channel = grpc.insecure_channel(f"unix:{socket}", options=[("grpc.default_authority", "localhost")])
    else:
        sys.exit(f"unknown authority mode {authority}")
    print(f"channel authority mode {authority}", flush=True)
    stub = rpc.ShimStub(channel)

    events = []
    exited = threading.Event()

    def watch():
        for ev in stub.Events(pb.EventsRequest()):
            events.append(ev)
            print(f"event {pb.EventType.Name(ev.type)} pid={ev.pid} exit_status={ev.exit_status}", flush=True)
            if ev.type == pb.EXIT:
                exited.set()
                return

    created = stub.Create(pb.CreateRequest(id=cid, bundle=bundle))
    print(f"created pid={created.pid}", flush=True)
    threading.Thread(target=watch, daemon=True).start()
    state = stub.State(pb.StateRequest())
    assert state.id == cid, state
    assert [(p.pid, p.state) for p in state.processes] == [(created.pid, pb.RUNNING)], state
    stub.Start(pb.StartRequest())
    print("started", flush=True)
    if not exited.wait(30):
        sys.exit("no EXIT event within 30 s")
    deleted = stub.Delete(pb.DeleteRequest(pid=created.pid))
    print(f"deleted exit_status={deleted.exit_status}", flush=True)
    try:
        stub.Delete(pb.DeleteRequest(pid=created.pid))
        sys.exit("a second Delete succeeded")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e
        print(f"second delete: {e.code().name}", flush=True)
    exit_event = events[-1]
    assert exit_event.pid == created.pid and exit_event.exit_status == deleted.exit_status, events


if __name__ == "__main__":
    main()
