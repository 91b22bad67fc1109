//! Android LP (super) metadata: flashline's writer against an independent reader (PyPI's
//! `liblp`, a port of Android's liblp, and its `lpunpack`), and flashline's reader against
//! real `super_empty.img` files from public repositories (tests/data/lp/SOURCES.md).

mod common;

use std::fs::{self, File};
use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::process::Command;

use flashline::protocol::lp::{
    self, Container, GroupSpec, LpError, Metadata, PartitionSpec, SuperLayout, Target,
    PARTITION_ATTR_READONLY,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/lp")
        .join(name)
}

fn read_file(path: &Path, slot: u32) -> Result<(Container, Metadata), LpError> {
    lp::read_metadata(&mut BufReader::new(File::open(path).unwrap()), slot)
}

/// Deterministic pseudo-random bytes (xorshift64), so failures are reproducible.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn partition(name: &str, group: &str, size: u64) -> PartitionSpec {
    PartitionSpec {
        name: name.into(),
        group: group.into(),
        size,
        attributes: PARTITION_ATTR_READONLY,
    }
}

/// An 8 MiB Virtual A/B super with a size-limited group, as a small stand-in for a phone's.
fn small_layout() -> SuperLayout {
    let mut layout = SuperLayout::new(8 * MIB, 3);
    layout.virtual_ab = true;
    layout.groups.push(GroupSpec {
        name: "main_a".into(),
        maximum_size: 6 * MIB,
    });
    layout.partitions = vec![
        partition("system_a", "main_a", 3 * MIB),
        partition("vendor_a", "main_a", MIB + 4096),
        partition("product_a", "main_a", 0),
        partition("odm_a", "default", 512 * 1024),
    ];
    layout
}

/// flashline's metadata in the shape `tests/lp/lp_read.py` prints liblp's.
fn liblp_shape(m: &Metadata) -> Value {
    json!({
        "geometry": {
            "metadata_max_size": m.geometry.metadata_max_size,
            "metadata_slot_count": m.geometry.metadata_slot_count,
            "logical_block_size": m.geometry.logical_block_size,
        },
        "header": {
            "major_version": 10,
            "minor_version": m.minor_version,
            "header_size": if m.minor_version >= 2 { 256 } else { 128 },
            "flags": m.flags,
        },
        "partitions": m.partitions.iter().map(|p| json!({
            "name": p.name,
            "attributes": p.attributes,
            "first_extent_index": p.first_extent_index,
            "num_extents": p.num_extents,
            "group_index": p.group_index,
        })).collect::<Vec<_>>(),
        "extents": m.extents.iter().map(|e| {
            let (kind, data, source) = match e.target {
                Target::Linear { block_device, first_sector } => (0, first_sector, block_device),
                Target::Zero => (1, 0, 0),
            };
            json!({
                "num_sectors": e.num_sectors,
                "target_type": kind,
                "target_data": data,
                "target_source": source,
            })
        }).collect::<Vec<_>>(),
        "groups": m.groups.iter().map(|g| json!({
            "name": g.name, "flags": g.flags, "maximum_size": g.maximum_size,
        })).collect::<Vec<_>>(),
        "block_devices": m.block_devices.iter().map(|d| json!({
            "partition_name": d.partition_name,
            "first_logical_sector": d.first_logical_sector,
            "alignment": d.alignment,
            "alignment_offset": d.alignment_offset,
            "size": d.size,
            "flags": d.flags,
        })).collect::<Vec<_>>(),
    })
}

/// `lpunpack` (from PyPI's liblp) if installed; its Python runs our reader script too.
fn liblp_peer() -> Option<(PathBuf, PathBuf)> {
    let lpunpack = common::peer("lpunpack")?;
    // The script must run on the interpreter liblp was installed for: lpunpack's own.
    let shebang = fs::read_to_string(&lpunpack).unwrap_or_default();
    let python = shebang
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .map(|p| PathBuf::from(p.trim()))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"));
    Some((lpunpack, python))
}

/// liblp's reading of `image` as JSON, with its `container` and `backup_matches` fields.
fn liblp_read(python: &Path, image: &Path, slot: u32) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lp/lp_read.py");
    let out = Command::new(python)
        .arg(script)
        .arg(image)
        .arg(slot.to_string())
        .output()
        .expect("run the liblp reader");
    assert!(
        out.status.success(),
        "liblp could not read {}: {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn real_super_empty_images_parse_and_reserialize_byte_for_byte() {
    let path = data("oneplus_xigua_super_empty.img");
    let (container, m) = read_file(&path, 0).unwrap();
    assert_eq!(container, Container::EmptyImage);
    assert_eq!(
        (
            m.geometry.metadata_slot_count,
            m.geometry.metadata_max_size,
            m.geometry.logical_block_size
        ),
        (3, 65536, 4096)
    );
    assert_eq!(
        (m.minor_version, m.flags),
        (2, 1),
        "v10.2 with the Virtual A/B flag"
    );
    assert_eq!(m.partitions.len(), 14);
    assert_eq!(m.partitions[0].name, "odm_a");
    assert_eq!(m.group_name(&m.partitions[0]), "qti_dynamic_partitions_a");
    assert_eq!(m.group_name(&m.partitions[1]), "qti_dynamic_partitions_b");
    assert!(m
        .partitions
        .iter()
        .all(|p| p.num_extents == 0 && p.attributes == 1));
    assert_eq!(m.groups[1].maximum_size, 16_101_933_056);
    assert_eq!(m.block_devices.len(), 1);
    assert_eq!(m.block_devices[0].partition_name, "super");
    assert_eq!(m.block_devices[0].size, 16_106_127_360);
    assert_eq!(m.block_devices[0].first_logical_sector, 2048);
    assert_eq!(m.block_devices[0].alignment, 1_048_576);
    // flashline's writer produces exactly the bytes Android's tools wrote.
    let mut out = Vec::new();
    lp::write_empty_image(&m, &mut out).unwrap();
    assert_eq!(out, fs::read(&path).unwrap());

    let path = data("oneplus6t_fajita_retrofit_super_empty.img");
    let (_, m) = read_file(&path, 0).unwrap();
    assert_eq!(
        (m.geometry.metadata_slot_count, m.minor_version, m.flags),
        (2, 0, 0)
    );
    let devices: Vec<_> = m
        .block_devices
        .iter()
        .map(|d| (d.partition_name.as_str(), d.size, d.flags))
        .collect();
    assert_eq!(
        devices,
        [
            ("system", 2_998_927_360, 1),
            ("odm", 104_857_600, 1),
            ("vendor", 1_073_741_824, 1)
        ]
    );
    let names: Vec<_> = m.partitions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["odm", "product", "system", "system_ext", "vendor"]);
    assert!(
        m.partitions.iter().all(|p| p.attributes == 0b11),
        "readonly, slot-suffixed"
    );
    assert_eq!(
        (m.groups[1].name.as_str(), m.groups[1].flags),
        ("oneplus_dynamic_partitions", 1)
    );
    let mut out = Vec::new();
    lp::write_empty_image(&m, &mut out).unwrap();
    assert_eq!(out, fs::read(&path).unwrap());
}

#[test]
fn liblp_reads_the_public_samples_as_flashline_does() {
    let Some((_, python)) = liblp_peer() else {
        return;
    };
    for sample in [
        "oneplus_xigua_super_empty.img",
        "oneplus6t_fajita_retrofit_super_empty.img",
    ] {
        let path = data(sample);
        let (_, m) = read_file(&path, 0).unwrap();
        let mut theirs = liblp_read(&python, &path, 0);
        assert_eq!(theirs["container"], "empty_image");
        theirs.as_object_mut().unwrap().remove("container");
        assert_eq!(theirs, liblp_shape(&m), "{sample}");
    }
}

#[test]
fn liblp_reads_flashline_super_empty() {
    let Some((_, python)) = liblp_peer() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let m = small_layout().build().unwrap();
    let path = dir.path().join("super_empty.img");
    lp::write_empty_image(&m, &mut File::create(&path).unwrap()).unwrap();

    let mut theirs = liblp_read(&python, &path, 0);
    assert_eq!(theirs["container"], "empty_image");
    theirs.as_object_mut().unwrap().remove("container");
    assert_eq!(theirs, liblp_shape(&m));
    // What liblp saw is the layout asked for, not just whatever flashline wrote.
    assert_eq!(theirs["header"]["flags"], 1);
    assert_eq!(
        theirs["groups"][1],
        json!({"name": "main_a", "flags": 0, "maximum_size": 6 * MIB})
    );
    let extents = theirs["extents"].as_array().unwrap();
    // system_a: 3 MiB at 1 MiB; vendor_a rounded up to 4 KiB blocks at the next MiB.
    assert_eq!(
        extents[0],
        json!({"num_sectors": 6144, "target_type": 0, "target_data": 2048, "target_source": 0})
    );
    assert_eq!(extents[1]["num_sectors"], (MIB + 4096) / 512);
    assert_eq!(extents[1]["target_data"], 4 * MIB / 512);
    assert_eq!(
        theirs["partitions"][2]["num_extents"], 0,
        "product_a has no size yet"
    );

    // And flashline reads its own file back to the same metadata.
    assert_eq!(read_file(&path, 0).unwrap(), (Container::EmptyImage, m));
}

#[test]
fn liblp_reads_and_lpunpack_extracts_a_flashline_super_image() {
    let Some((lpunpack, python)) = liblp_peer() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let m = small_layout().build().unwrap();
    // Images shorter than their partitions (vendor: not even block-aligned) are padded.
    let images = [
        ("system_a", noise(3 * MIB as usize, 1)),
        ("vendor_a", noise(MIB as usize + 100, 2)),
        ("odm_a", noise(300_000, 3)),
    ];
    let mut sources = Vec::new();
    for (name, bytes) in &images {
        let path = dir.path().join(format!("{name}.in"));
        fs::write(&path, bytes).unwrap();
        sources.push((name.to_string(), BufReader::new(File::open(path).unwrap())));
    }
    let super_path = dir.path().join("super.img");
    let written =
        lp::write_super_image(&m, sources, &mut File::create(&super_path).unwrap()).unwrap();
    assert_eq!(fs::metadata(&super_path).unwrap().len(), 8 * MIB);
    for (name, bytes) in &images {
        let w = written.iter().find(|w| w.name == *name).unwrap();
        assert_eq!(w.image_bytes, bytes.len() as u64);
        assert_eq!(w.sha256, hex::encode(Sha256::digest(bytes)), "{name}");
    }

    for slot in 0..3 {
        let mut theirs = liblp_read(&python, &super_path, slot);
        assert_eq!(theirs["container"], "super_device");
        assert_eq!(theirs["backup_matches"], true, "slot {slot}: backup copy");
        let obj = theirs.as_object_mut().unwrap();
        obj.remove("container");
        obj.remove("backup_matches");
        assert_eq!(theirs, liblp_shape(&m), "slot {slot}");
    }

    let out = dir.path().join("unpacked");
    fs::create_dir(&out).unwrap();
    let status = Command::new(&lpunpack)
        .arg(&super_path)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "lpunpack failed");
    for (name, bytes) in &images {
        let size = m.partition_size(m.partition(name).unwrap()) as usize;
        let mut expected = bytes.clone();
        expected.resize(size, 0);
        let theirs = fs::read(out.join(format!("{name}.img"))).unwrap();
        assert!(theirs == expected, "{name}: lpunpack extracted other bytes");
        // flashline's own extraction agrees.
        let mut ours = Vec::new();
        let mut f = File::open(&super_path).unwrap();
        lp::extract_partition(&mut f, &m, name, &mut ours).unwrap();
        assert!(ours == expected, "{name}: flashline extracted other bytes");
    }
    assert_eq!(fs::read(out.join("product_a.img")).unwrap().len(), 0);

    // flashline reads the super image back, from every slot.
    for slot in 0..3 {
        assert_eq!(
            read_file(&super_path, slot).unwrap(),
            (Container::SuperDevice, m.clone())
        );
    }
}

fn small_super() -> (Metadata, Vec<u8>) {
    let m = small_layout().build().unwrap();
    let mut image = Vec::new();
    let sources = [("system_a".to_string(), Cursor::new(noise(4096, 9)))];
    lp::write_super_image(&m, sources, &mut image).unwrap();
    (m, image)
}

fn read_bytes(bytes: &[u8], slot: u32) -> Result<(Container, Metadata), LpError> {
    lp::read_metadata(&mut Cursor::new(bytes), slot)
}

#[test]
fn damaged_primary_copies_fall_back_to_their_backups() {
    let (m, mut image) = small_super();
    let geometry = m.geometry;
    // Primary geometry and slot 1's primary metadata damaged.
    image[4096 + 44] ^= 0xff;
    assert!(matches!(
        lp::codec::parse_geometry(&image[4096..8192]),
        Err(LpError::GeometryChecksum)
    ));
    image[geometry.primary_metadata_offset(1) as usize + 20] ^= 0xff;
    assert_eq!(read_bytes(&image, 1).unwrap().1, m);
    // With the backup damaged too, the primary's error is reported.
    image[geometry.backup_metadata_offset(1) as usize + 20] ^= 0xff;
    assert!(matches!(
        read_bytes(&image, 1),
        Err(LpError::HeaderChecksum)
    ));
    assert!(read_bytes(&image, 0).is_ok(), "other slots are untouched");
    assert!(matches!(
        read_bytes(&image, 3),
        Err(LpError::Slot { slot: 3, count: 3 })
    ));
    // The head of a super image (its metadata region) is enough to read it.
    let region = geometry.metadata_region_size() as usize;
    assert_eq!(read_bytes(&image[..region], 0).unwrap().1, m);
}

/// Replaces the header checksum after a deliberate edit, so that the later checks run.
fn rehash_header(copy: &mut [u8], header_size: usize) {
    copy[12..44].fill(0);
    let sum = Sha256::digest(&copy[..header_size]);
    copy[12..44].copy_from_slice(&sum);
}

#[test]
fn hostile_metadata_is_refused_without_allocating_from_it() {
    let m = small_layout().build().unwrap();
    let mut empty = Vec::new();
    lp::write_empty_image(&m, &mut empty).unwrap();
    let header = 4096;

    // A partition table claiming 4 billion entries.
    let mut bad = empty.clone();
    bad[header + 84..header + 88].copy_from_slice(&u32::MAX.to_le_bytes());
    rehash_header(&mut bad[header..], 256);
    let err = read_bytes(&bad, 0).unwrap_err();
    assert!(
        matches!(
            err,
            LpError::Table {
                table: "partition",
                ..
            }
        ),
        "{err}"
    );

    // Tables larger than a metadata copy may be.
    let mut bad = empty.clone();
    bad[header + 44..header + 48].copy_from_slice(&u32::MAX.to_le_bytes());
    rehash_header(&mut bad[header..], 256);
    assert!(matches!(
        read_bytes(&bad, 0),
        Err(LpError::TablesTooLarge { .. })
    ));

    // A partition pointing at a group that does not exist (tables rehashed too).
    let mut bad = empty.clone();
    let tables = header + 256;
    bad[tables + 48..tables + 52].copy_from_slice(&7u32.to_le_bytes());
    let sum = Sha256::digest(&bad[tables..]);
    bad[header + 48..header + 80].copy_from_slice(&sum);
    rehash_header(&mut bad[header..], 256);
    let err = read_bytes(&bad, 0).unwrap_err();
    assert!(
        matches!(&err, LpError::PartitionInvalid { partition, .. } if partition == "system_a"),
        "{err}"
    );

    // A flipped table byte, a flipped geometry byte, a cut file, an unknown version.
    let mut bad = empty.clone();
    bad[tables + 3] ^= 1;
    assert!(matches!(read_bytes(&bad, 0), Err(LpError::TablesChecksum)));
    let mut bad = empty.clone();
    bad[44] = 0xff;
    assert!(
        matches!(read_bytes(&bad, 0), Err(LpError::GeometryMagic { .. })),
        "no valid geometry anywhere"
    );
    assert!(matches!(
        read_bytes(&empty[..header + 300], 0),
        Err(LpError::Truncated { .. })
    ));
    let mut bad = empty.clone();
    bad[header + 6] = 3;
    assert!(matches!(
        read_bytes(&bad, 0),
        Err(LpError::Version {
            major: 10,
            minor: 3
        })
    ));
    // A geometry claiming a huge metadata copy is refused before anything is read.
    let mut geometry = m.geometry;
    geometry.metadata_max_size = 0x8000_0000;
    let mut huge = m.clone();
    huge.geometry = geometry;
    assert!(matches!(
        lp::write_empty_image(&huge, &mut Vec::new()),
        Err(LpError::GeometryInvalid(_))
    ));
    assert!(matches!(read_bytes(b"", 0), Err(LpError::Truncated { .. })));
}

#[test]
fn layouts_and_images_that_do_not_fit_are_refused() {
    let mut layout = small_layout();
    layout
        .partitions
        .push(partition("big_a", "default", 4 * MIB));
    assert!(matches!(layout.build(), Err(LpError::Layout(why)) if why.contains("does not fit")));
    let mut layout = small_layout();
    layout.partitions[1].size = 3 * MIB + 1;
    assert!(matches!(layout.build(), Err(LpError::Layout(why)) if why.contains("over its limit")));
    let mut layout = small_layout();
    layout.partitions[0].group = "nope".into();
    assert!(matches!(layout.build(), Err(LpError::Layout(_))));
    let mut layout = small_layout();
    layout.partitions[0].name = "a_name_far_too_long_for_its_36_byte_field".into();
    assert!(matches!(layout.build(), Err(LpError::Name(_))));

    let m = small_layout().build().unwrap();
    let too_big = [("odm_a".to_string(), Cursor::new(vec![1u8; 512 * 1024 + 1]))];
    let err = lp::write_super_image(&m, too_big, &mut std::io::sink()).unwrap_err();
    assert!(
        matches!(&err, LpError::ImageTooLarge { partition, size } if partition == "odm_a" && *size == 512 * 1024)
    );
    let unknown = [("boot".to_string(), Cursor::new(vec![]))];
    assert!(matches!(
        lp::write_super_image(&m, unknown, &mut std::io::sink()),
        Err(LpError::NoSuchPartition(_))
    ));
}

#[test]
fn lp_dump_prints_the_metadata_for_people_and_as_json() {
    let sample = data("oneplus_xigua_super_empty.img");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_flashline"))
            .args(["lp", "dump"])
            .args(args)
            .arg(&sample)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run(&[]);
    assert!(
        text.contains("(super_empty image), metadata slot 0"),
        "{text}"
    );
    assert!(
        text.contains("version 10.2, header flags virtual_ab"),
        "{text}"
    );
    assert!(
        text.contains("geometry: 3 slots of at most 65536 bytes, logical block size 4096"),
        "{text}"
    );
    assert!(
        text.contains("  super: 16106127360 bytes, data from sector 2048"),
        "{text}"
    );
    assert!(
        text.contains("  qti_dynamic_partitions_b: at most 16101933056 bytes"),
        "{text}"
    );
    assert!(
        text.contains("  system_b: 0 bytes in group qti_dynamic_partitions_b, attributes readonly"),
        "{text}"
    );

    let dump: Value = serde_json::from_str(&run(&["--json"])).unwrap();
    assert_eq!(dump["container"], "empty_image");
    assert_eq!(dump["metadata"]["geometry"]["metadata_slot_count"], 3);
    assert_eq!(dump["metadata"]["partitions"].as_array().unwrap().len(), 14);
    assert_eq!(dump["metadata"]["partitions"][13]["name"], "vendor_dlkm_b");

    // A super image shows its extents; a bad file is a clear error.
    let dir = tempfile::tempdir().unwrap();
    let (_, image) = small_super();
    let path = dir.path().join("super.img");
    fs::write(&path, image).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flashline"))
        .args(["lp", "dump", "--slot", "2"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("(super image), metadata slot 2"), "{text}");
    assert!(
        text.contains("    sectors 0..6144 (3145728 bytes) -> super sectors 2048..8192"),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_flashline"))
        .args(["lp", "dump"])
        .arg(env!("CARGO_MANIFEST_DIR").to_string() + "/Cargo.toml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no LP geometry"));
}

/// system_a as three extents: 1 MiB on the device, 512 KiB of zeros, 1 MiB more.
fn split_system(first: u64, second: u64) -> Metadata {
    let mut m = small_layout().build().unwrap();
    let linear = |first_sector, num_sectors| lp::Extent {
        num_sectors,
        target: Target::Linear {
            block_device: 0,
            first_sector,
        },
    };
    let zero = lp::Extent {
        num_sectors: 1024,
        target: Target::Zero,
    };
    m.extents
        .splice(0..1, [linear(first, 2048), zero, linear(second, 2048)]);
    m.partitions[0].num_extents = 3;
    for p in &mut m.partitions[1..] {
        p.first_extent_index += 2;
    }
    m
}

#[test]
fn zero_extents_and_split_partitions_stream_in_device_order() {
    let m = split_system(2048, 4096);
    let mut image = noise(MIB as usize, 5);
    image.resize(MIB as usize + 512 * 1024, 0);
    image.extend(noise(MIB as usize, 6));
    let mut super_image = Vec::new();
    let sources = [("system_a".to_string(), Cursor::new(image.clone()))];
    lp::write_super_image(&m, sources, &mut super_image).unwrap();
    assert_eq!(read_bytes(&super_image, 0).unwrap().1, m);
    let mut out = Vec::new();
    lp::extract_partition(&mut Cursor::new(&super_image), &m, "system_a", &mut out).unwrap();
    assert!(
        out == image,
        "the zero extent reads back as zeros, the rest as written"
    );
    assert!(super_image[MIB as usize..2 * MIB as usize] == image[..MIB as usize]);

    // Data where the zero extent is cannot be stored.
    image[MIB as usize + 10] = 1;
    let sources = [("system_a".to_string(), Cursor::new(image))];
    let err = lp::write_super_image(&m, sources, &mut std::io::sink()).unwrap_err();
    assert!(matches!(err, LpError::ZeroExtentData { .. }), "{err}");

    // Extents in the opposite order to the device's cannot be streamed to a writer.
    let m = split_system(4096, 2048);
    let sources = [("system_a".to_string(), Cursor::new(vec![7u8; 4096]))];
    let err = lp::write_super_image(&m, sources, &mut std::io::sink()).unwrap_err();
    assert!(matches!(err, LpError::Unsupported(_)), "{err}");
}
