"""The committed protocol_pb2.py must match protocol.proto."""

from __future__ import annotations

import shutil
from pathlib import Path

from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parent.parent / "src" / "durably" / "protocol"


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    shutil.copy(PROTO_DIR / "protocol.proto", tmp_path / "protocol.proto")
    assert protoc.main(["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", str(tmp_path / "protocol.proto")]) == 0
    assert (tmp_path / "protocol_pb2.py").read_text() == (PROTO_DIR / "protocol_pb2.py").read_text(), (
        "protocol_pb2.py is stale: run `python scripts/gen_proto.py`"
    )
