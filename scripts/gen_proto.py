"""Regenerate src/durably/protocol/protocol_pb2.py from protocol.proto (needs grpcio-tools)."""

from pathlib import Path

from grpc_tools import protoc

root = Path(__file__).resolve().parent.parent / "src" / "durably" / "protocol"
code = protoc.main(
    ["protoc", f"-I{root}", f"--python_out={root}", f"--pyi_out={root}", str(root / "protocol.proto")]
)
raise SystemExit(code)
