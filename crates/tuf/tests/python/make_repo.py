"""Writes TUF repositories with python-tuf's Metadata API for keel-tuf's interop test.

usage: make_repo.py OUT_DIR

OUT_DIR/stage1: a consistent-snapshot repository (root ed25519, timestamp ecdsa, snapshot rsassa-pss, targets
ed25519) with a top-level target, a delegated role "images" (paths ["images/*"], ecdsa) that delegates further to
TAP 15 succinct hashed bins, and targets hashed with sha256 and sha512.
OUT_DIR/stage2: the same repository after a root rotation (new 2-of-2 root keys, cross-signed by the old root
key), a timestamp key rotation, and a new target. OUT_DIR/payloads/NAME holds every target's bytes.
"""

import os
import shutil
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

out = sys.argv[1]
expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)
serializer = JSONSerializer(compact=False)


def write(stage, name, md):
    path = os.path.join(out, stage, "metadata", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    md.to_file(path, serializer)


def add_target(stage, md, name, data):
    target = TargetFile.from_data(name, data, ["sha256", "sha512"])
    md.signed.targets[name] = target
    dirname, sep, basename = name.rpartition("/")
    for digest in target.hashes.values():
        path = os.path.join(out, stage, "targets", dirname, f"{digest}.{basename}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    payload = os.path.join(out, "payloads", name)
    os.makedirs(os.path.dirname(payload), exist_ok=True)
    with open(payload, "wb") as f:
        f.write(data)


signers = {
    "root": CryptoSigner.generate_ed25519(),
    "timestamp": CryptoSigner.generate_ecdsa(),
    "snapshot": CryptoSigner.generate_rsa(),
    "targets": CryptoSigner.generate_ed25519(),
}
images_signer = CryptoSigner.generate_ecdsa()
bins_signer = CryptoSigner.generate_ed25519()

root = Metadata(Root(expires=expires, consistent_snapshot=True))
for role, signer in signers.items():
    root.signed.add_key(signer.public_key, role)
root.sign(signers["root"])

targets = Metadata(Targets(expires=expires))
add_target("stage1", targets, "hello.txt", b"hello from python-tuf\n")
targets.signed.delegations = Delegations(
    keys={images_signer.public_key.keyid: images_signer.public_key},
    roles={
        "images": DelegatedRole("images", [images_signer.public_key.keyid], 1, False, paths=["images/*"]),
    },
)
images = Metadata(Targets(expires=expires))
succinct = SuccinctRoles([bins_signer.public_key.keyid], 1, 2, "images-bin")
images.signed.delegations = Delegations(
    keys={bins_signer.public_key.keyid: bins_signer.public_key}, succinct_roles=succinct
)
bins = {name: Metadata(Targets(expires=expires)) for name in succinct.get_roles()}
firmware = os.urandom(200_000)
add_target("stage1", bins[succinct.get_role_for_target("images/fw.swu")], "images/fw.swu", firmware)

targets.sign(signers["targets"])
images.sign(images_signer)
for md in bins.values():
    md.sign(bins_signer)

snapshot = Metadata(Snapshot(expires=expires))
snapshot.signed.meta["targets.json"] = MetaFile(1)
snapshot.signed.meta["images.json"] = MetaFile(1)
for name in bins:
    snapshot.signed.meta[f"{name}.json"] = MetaFile(1)
snapshot.sign(signers["snapshot"])
timestamp = Metadata(Timestamp(expires=expires))
timestamp.signed.snapshot_meta = MetaFile(1)
timestamp.sign(signers["timestamp"])

write("stage1", "1.root.json", root)
write("stage1", "root.json", root)
write("stage1", "1.targets.json", targets)
write("stage1", "1.images.json", images)
for name, md in bins.items():
    write("stage1", f"1.{name}.json", md)
write("stage1", "1.snapshot.json", snapshot)
write("stage1", "timestamp.json", timestamp)

# Stage 2: rotate root keys (2-of-2) and the timestamp key; publish a new target.
shutil.copytree(os.path.join(out, "stage1"), os.path.join(out, "stage2"))
new_root_signers = [CryptoSigner.generate_ed25519(), CryptoSigner.generate_ecdsa()]
new_timestamp = CryptoSigner.generate_ed25519()
root.signed.version = 2
root.signed.revoke_key(signers["root"].public_key.keyid, "root")
for signer in new_root_signers:
    root.signed.add_key(signer.public_key, "root")
root.signed.roles["root"].threshold = 2
root.signed.revoke_key(signers["timestamp"].public_key.keyid, "timestamp")
root.signed.add_key(new_timestamp.public_key, "timestamp")
root.signatures.clear()
root.sign(signers["root"], append=True)
for signer in new_root_signers:
    root.sign(signer, append=True)
write("stage2", "2.root.json", root)
write("stage2", "root.json", root)

add_target("stage2", targets, "new.txt", b"published after the rotation\n")
targets.signed.version = 2
targets.sign(signers["targets"])
write("stage2", "2.targets.json", targets)
snapshot.signed.version = 2
snapshot.signed.meta["targets.json"] = MetaFile(2)
snapshot.sign(signers["snapshot"])
write("stage2", "2.snapshot.json", snapshot)
timestamp.signed.version = 2
timestamp.signed.snapshot_meta = MetaFile(2)
timestamp.sign(new_timestamp)
write("stage2", "timestamp.json", timestamp)
print("ok")
