"""An independent TUF repository producer for flashline's fleet tests (tests/fleet_tuf.rs).

Built on python-tuf's Metadata API (not on flashline or tough), so that what flashline's
TUF client accepts or refuses is decided against metadata a second implementation wrote.

Layout of DIR:
  DIR/keys/<role>.pem        one ed25519 key per top-level role (never served)
  DIR/repo/metadata/         N.root.json, N.targets.json, N.snapshot.json, timestamp.json
  DIR/repo/targets/          <sha256>.<name> (consistent snapshots)

Commands (times are seconds from now; negative means already expired):
  init DIR [--timestamp-expires S]
  add DIR FILE --name NAME [--custom JSON] [--timestamp-expires S]
  timestamp DIR [--expires S] [--snapshot-version N]
  snapshot DIR [--targets-version N] [--timestamp-expires S]
  rotate DIR --role ROLE        a new key for ROLE in root N+1 (signed by the root key),
                                then a new timestamp

Every command prints the new metadata versions as one JSON line.
"""

import argparse
import json
import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

ROLES = ("root", "targets", "snapshot", "timestamp")
LONG = timedelta(days=365)
MEDIUM = timedelta(days=30)


def expiry(seconds):
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=seconds)


def signer(base, role):
    pem = (base / "keys" / f"{role}.pem").read_bytes()
    return CryptoSigner(load_pem_private_key(pem, password=None))


def write(base, md, filename):
    md.signatures.clear()
    md.sign(signer(base, md.signed.type))
    md.to_file(str(base / "repo" / "metadata" / filename), JSONSerializer(compact=False))


def highest(base, role):
    versions = [
        int(p.name.split(".")[0])
        for p in (base / "repo" / "metadata").glob(f"*.{role}.json")
    ]
    return max(versions, default=0)


def load(base, filename):
    return Metadata.from_file(str(base / "repo" / "metadata" / filename))


def current_timestamp(base):
    return load(base, "timestamp.json")


def current_snapshot(base):
    version = current_timestamp(base).signed.snapshot_meta.version
    return load(base, f"{version}.snapshot.json")


def current_targets(base):
    version = current_snapshot(base).signed.meta["targets.json"].version
    return load(base, f"{version}.targets.json")


def publish_timestamp(base, snapshot_version, seconds):
    if (base / "repo" / "metadata" / "timestamp.json").exists():
        ts = current_timestamp(base)
        ts.signed.version += 1
    else:
        ts = Metadata(Timestamp())
    ts.signed.snapshot_meta = MetaFile(version=snapshot_version)
    ts.signed.expires = expiry(seconds)
    write(base, ts, "timestamp.json")
    return ts.signed.version


def publish_snapshot(base, targets_version):
    snap = Metadata(Snapshot())
    snap.signed.version = highest(base, "snapshot") + 1
    snap.signed.meta = {"targets.json": MetaFile(version=targets_version)}
    snap.signed.expires = expiry(MEDIUM.total_seconds())
    write(base, snap, f"{snap.signed.version}.snapshot.json")
    return snap.signed.version


def report(base, **extra):
    ts = current_timestamp(base).signed
    print(
        json.dumps(
            {
                "timestamp": ts.version,
                "snapshot": ts.snapshot_meta.version,
                "targets": current_snapshot(base).signed.meta["targets.json"].version,
                "timestamp_expires": ts.expires.isoformat(),
                **extra,
            }
        )
    )


def new_key(base, role):
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (base / "keys" / f"{role}.pem").write_bytes(pem)
    return CryptoSigner(private).public_key


def init(args):
    base = Path(args.dir)
    (base / "keys").mkdir(parents=True)
    (base / "repo" / "metadata").mkdir(parents=True)
    (base / "repo" / "targets").mkdir(parents=True)
    root = Metadata(Root(consistent_snapshot=True))
    root.signed.expires = expiry(LONG.total_seconds())
    for role in ROLES:
        root.signed.add_key(new_key(base, role), role)
    write(base, root, "1.root.json")
    targets = Metadata(Targets())
    targets.signed.expires = expiry(MEDIUM.total_seconds())
    write(base, targets, "1.targets.json")
    publish_timestamp(base, publish_snapshot(base, 1), args.timestamp_expires)
    report(base)


def add(args):
    base = Path(args.dir)
    source = Path(args.file)
    target = TargetFile.from_file(args.name, str(source))
    if args.custom:
        target.unrecognized_fields["custom"] = json.loads(args.custom)
    digest = target.hashes["sha256"]
    shutil.copyfile(source, base / "repo" / "targets" / f"{digest}.{args.name}")
    targets = current_targets(base)
    targets.signed.targets[args.name] = target
    targets.signed.version = highest(base, "targets") + 1
    targets.signed.expires = expiry(MEDIUM.total_seconds())
    write(base, targets, f"{targets.signed.version}.targets.json")
    publish_timestamp(
        base, publish_snapshot(base, targets.signed.version), args.timestamp_expires
    )
    report(base, sha256=digest, length=target.length)


def timestamp(args):
    base = Path(args.dir)
    version = args.snapshot_version or current_timestamp(base).signed.snapshot_meta.version
    publish_timestamp(base, version, args.expires)
    report(base)


def snapshot(args):
    base = Path(args.dir)
    version = args.targets_version or current_snapshot(base).signed.meta["targets.json"].version
    publish_timestamp(base, publish_snapshot(base, version), args.timestamp_expires)
    report(base)


def rotate(args):
    base = Path(args.dir)
    version = highest(base, "root")
    root = load(base, f"{version}.root.json")
    for keyid in list(root.signed.roles[args.role].keyids):
        root.signed.revoke_key(keyid, args.role)
    root.signed.add_key(new_key(base, args.role), args.role)
    root.signed.version = version + 1
    write(base, root, f"{version + 1}.root.json")
    timestamp(argparse.Namespace(dir=args.dir, expires=86400.0, snapshot_version=None))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    day = 86400.0
    p = commands.add_parser("init")
    p.add_argument("dir")
    p.add_argument("--timestamp-expires", type=float, default=day)
    p.set_defaults(run=init)
    p = commands.add_parser("add")
    p.add_argument("dir")
    p.add_argument("file")
    p.add_argument("--name", required=True)
    p.add_argument("--custom")
    p.add_argument("--timestamp-expires", type=float, default=day)
    p.set_defaults(run=add)
    p = commands.add_parser("timestamp")
    p.add_argument("dir")
    p.add_argument("--expires", type=float, default=day)
    p.add_argument("--snapshot-version", type=int)
    p.set_defaults(run=timestamp)
    p = commands.add_parser("snapshot")
    p.add_argument("dir")
    p.add_argument("--targets-version", type=int)
    p.add_argument("--timestamp-expires", type=float, default=day)
    p.set_defaults(run=snapshot)
    p = commands.add_parser("rotate")
    p.add_argument("dir")
    p.add_argument("--role", choices=["targets", "snapshot", "timestamp"], required=True)
    p.set_defaults(run=rotate)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
