"""Signed versions: a server that requires signatures serves only versions signed with the matching key."""

import shutil

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from genmem.cli.main import main
from genmem.errors import CorruptMemory, GenmemError
from genmem.memory import Memory
from genmem.server.app import create_app
from genmem.service import ReplayService
from genmem.signing import SignatureCheck, generate_key, sign_version, signature_path

pytest.importorskip("cryptography", reason="signing needs the cryptography package (genmem[signing])")


@pytest.fixture
def signed(two_versions, tmp_path):
    """A copy of the two-version memory with both versions signed, and the key pair."""
    memory = Memory(shutil.copytree(two_versions, tmp_path / "m"))
    private, public = generate_key(tmp_path / "key")
    for version in memory.versions():
        sign_version(memory.store, version, private)
    return memory, private, public


def test_signed_versions_verify_and_a_changed_manifest_does_not(signed, tmp_path):
    memory, _, public = signed
    check = SignatureCheck(public)
    for version in memory.versions():
        check.verify(memory.store, version)
    manifest = memory.path / "versions" / "v0002" / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"parent"', b'"parent" '))  # same JSON, other bytes
    with pytest.raises(CorruptMemory, match="v0002 fails its signature check"):
        check.verify(memory.store, "v0002")
    _, other_public = generate_key(tmp_path / "other")
    with pytest.raises(CorruptMemory, match="v0001 fails its signature check"):
        SignatureCheck(other_public).verify(memory.store, "v0001")
    signature_path(memory.store, "v0001").unlink()
    with pytest.raises(CorruptMemory, match="v0001 is not signed"):
        check.verify(memory.store, "v0001")


def test_a_server_requiring_signatures_serves_the_newest_signed_version(signed):
    memory, private, public = signed
    signature_path(memory.store, "v0002").unlink()
    service = ReplayService(memory.path, signature=SignatureCheck(public))
    assert service.version == "v0001" and "v0002 is not signed" in service.damaged["v0002"].reason
    sign_version(memory.store, "v0002", private)
    assert service.refresh() == "v0002", "signing later is picked up like a repair"
    with TestClient(create_app(memory.path, watch_interval=0, require_signature=public)) as client:
        assert client.get("/v2/models/m").json()["versions"] == ["v0001", "v0002"]


def test_a_manifest_swapped_after_the_signature_check_is_not_served(signed, monkeypatch):
    memory, _, public = signed
    service = ReplayService(memory.path, signature=SignatureCheck(public))
    assert service.version == "v0002"
    real_load = Memory.load

    def swapped(self, version=None):  # what a writer replacing the manifest right after the check would give
        generator, manifest = real_load(self, version)
        return generator, manifest | {"classes": [dict(c, name="forged") for c in manifest["classes"]]}

    monkeypatch.setattr(Memory, "load", swapped)
    with pytest.raises(CorruptMemory, match="changed between its signature check and its load"):
        service._load("v0002")
    monkeypatch.setattr(Memory, "load", real_load)
    assert service._load("v0002").version == "v0002"


def test_keys_and_signing_from_the_command_line(two_versions, tmp_path):
    memory = shutil.copytree(two_versions, tmp_path / "m")
    made = CliRunner().invoke(main, ["keygen", str(tmp_path / "key")])
    assert made.exit_code == 0 and (tmp_path / "key").stat().st_mode & 0o077 == 0, "the private key is private"
    again = CliRunner().invoke(main, ["keygen", str(tmp_path / "key")])
    assert again.exit_code == 1 and "exists already" in again.output
    signed = CliRunner().invoke(main, ["sign", str(memory), "--key", str(tmp_path / "key")])
    assert signed.exit_code == 0 and signed.output.count("signed v000") == 2
    assert "signed already" in CliRunner().invoke(main, ["sign", str(memory), "--key", str(tmp_path / "key")]).output
    wrong = CliRunner().invoke(main, ["sign", str(memory), "--key", str(tmp_path / "key.pub"), "--version", "1"])
    assert wrong.exit_code == 1 and "not a readable private key" in wrong.output
    with pytest.raises(GenmemError, match="not an Ed25519 key|not a readable public key"):
        SignatureCheck(tmp_path / "key")
