#!/usr/bin/env python3
"""Reads LP metadata with PyPI's `liblp` (a port of Android's liblp reader) and prints it
as JSON, so that tests/lp_metadata.rs can compare it with what flashline wrote.

Usage: lp_read.py IMAGE [SLOT]

IMAGE may be a full super image or a super_empty.img. liblp's own reader only knows the
super device layout (its empty-image reader is a stub), so a super_empty.img is presented
to it the way a device would hold it: 4 KiB reserved, the geometry twice, then the
metadata copy. Parsing and checksum checks are all liblp's. The raw tables are printed:
liblp's slot-suffix adjustment (ReadMetadata) fails on retrofit images in this port, and
flashline reports names unadjusted too. On a super device the backup copy of the slot is
read as well and must print the same.
"""

import io
import json
import sys

from liblp import GetPartitionName, GetPartitionGroupName
from liblp.reader import ReadBackupMetadata, ReadLogicalPartitionGeometry, ReadPrimaryMetadata
from liblp.include.metadata_format import LP_METADATA_GEOMETRY_MAGIC, LP_METADATA_GEOMETRY_SIZE

RESERVED = 4096


def open_as_device(f):
    """A file object laid out as a super device: the file itself, or a device layout built
    around an empty image."""
    head = f.read(LP_METADATA_GEOMETRY_SIZE)
    if int.from_bytes(head[0:4], "little") != LP_METADATA_GEOMETRY_MAGIC:
        return f, "super_device"
    return io.BytesIO(bytes(RESERVED) + head + head + f.read()), "empty_image"


def name(raw):
    return raw.decode("ascii") if isinstance(raw, bytes) else raw


def main():
    path = sys.argv[1]
    slot = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    with open(path, "rb") as f:
        fd, container = open_as_device(f)
        geometry = ReadLogicalPartitionGeometry(fd)
        out = describe(ReadPrimaryMetadata(fd, geometry, slot))
        if container == "super_device":
            out["backup_matches"] = describe(ReadBackupMetadata(fd, geometry, slot)) == out
    out["container"] = container
    json.dump(out, sys.stdout, indent=1)
    print()


def describe(m):
    g, h = m.geometry, m.header
    return {
        "geometry": {
            "metadata_max_size": g.metadata_max_size,
            "metadata_slot_count": g.metadata_slot_count,
            "logical_block_size": g.logical_block_size,
        },
        "header": {
            "major_version": h.major_version,
            "minor_version": h.minor_version,
            "header_size": h.header_size,
            "flags": h.flags,
        },
        "partitions": [
            {
                "name": GetPartitionName(p),
                "attributes": p.attributes,
                "first_extent_index": p.first_extent_index,
                "num_extents": p.num_extents,
                "group_index": p.group_index,
            }
            for p in m.partitions
        ],
        "extents": [
            {
                "num_sectors": e.num_sectors,
                "target_type": e.target_type,
                "target_data": e.target_data,
                "target_source": e.target_source,
            }
            for e in m.extents
        ],
        "groups": [
            {"name": GetPartitionGroupName(gr), "flags": gr.flags, "maximum_size": gr.maximum_size}
            for gr in m.groups
        ],
        "block_devices": [
            {
                "partition_name": name(d.partition_name),
                "first_logical_sector": d.first_logical_sector,
                "alignment": d.alignment,
                "alignment_offset": d.alignment_offset,
                "size": d.size,
                "flags": d.flags,
            }
            for d in m.block_devices
        ],
    }


if __name__ == "__main__":
    main()
