//! The allocated sections of a firmware ELF (32-bit little-endian, as every Cortex-M target
//! builds), read with the `object` crate: what the benchmarks' flash and RAM figures and the
//! real boards' `size`-style table are summed from.

use object::elf::{FileHeader32, SHF_ALLOC, SHF_WRITE, SHT_NOBITS};
use object::read::elf::{FileHeader, SectionHeader};
use object::LittleEndian;

/// A section that takes room on the device (`SHF_ALLOC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Its name (`.text`, `.rodata`, `.bss`, …).
    pub name: String,
    /// Its address on the device.
    pub addr: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it is writable (`SHF_WRITE`: RAM at run time).
    pub writable: bool,
    /// Whether the file holds no contents for it (`SHT_NOBITS`: `.bss`, `.uninit`, zeroed or
    /// left as is in RAM, nothing in flash).
    pub nobits: bool,
}

/// The allocated sections of a 32-bit little-endian ELF, in header order. Fails on another
/// kind of file, or a truncated one.
pub fn allocated_sections(data: &[u8]) -> Result<Vec<Section>, String> {
    let header = FileHeader32::<LittleEndian>::parse(data)
        .map_err(|e| format!("not a 32-bit little-endian ELF file ({e})"))?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let table = header.sections(endian, data).map_err(|e| e.to_string())?;
    let mut sections = Vec::new();
    for s in table.iter() {
        let flags = s.sh_flags(endian);
        if flags & SHF_ALLOC == 0 {
            continue;
        }
        let name = table.section_name(endian, s).map_err(|e| e.to_string())?;
        sections.push(Section {
            name: String::from_utf8_lossy(name).into_owned(),
            addr: u64::from(s.sh_addr(endian)),
            size: u64::from(s.sh_size(endian)),
            writable: flags & SHF_WRITE != 0,
            nobits: s.sh_type(endian) == SHT_NOBITS,
        });
    }
    Ok(sections)
}

/// A minimal 32-bit little-endian ELF for the tests: a null section, the given sections
/// (name, `sh_type`, `sh_flags`, address, size; no contents) and the section-name table.
#[cfg(test)]
pub fn test_elf(sections: &[(&str, u32, u32, u32, u32)]) -> Vec<u8> {
    const EHSIZE: usize = 52;
    const SHENTSIZE: usize = 40;
    let mut names = vec![0u8];
    let mut name_at = Vec::new();
    for &(name, ..) in sections.iter().chain([&(".shstrtab", 3, 0, 0, 0)]) {
        name_at.push(names.len() as u32);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    let count = sections.len() + 2;
    let shoff = (EHSIZE + names.len()).next_multiple_of(4);
    let mut e = vec![0u8; shoff + SHENTSIZE * count];
    e[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
    e[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e[0x12..0x14].copy_from_slice(&40u16.to_le_bytes()); // EM_ARM
    e[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
    e[0x20..0x24].copy_from_slice(&(shoff as u32).to_le_bytes());
    e[0x28..0x2a].copy_from_slice(&(EHSIZE as u16).to_le_bytes());
    e[0x2e..0x30].copy_from_slice(&(SHENTSIZE as u16).to_le_bytes());
    e[0x30..0x32].copy_from_slice(&(count as u16).to_le_bytes());
    e[0x32..0x34].copy_from_slice(&((count - 1) as u16).to_le_bytes());
    e[EHSIZE..EHSIZE + names.len()].copy_from_slice(&names);
    let strtab = (".shstrtab", 3, 0, 0, names.len() as u32);
    for (i, &(_, kind, flags, addr, size)) in sections.iter().chain([&strtab]).enumerate() {
        let h = shoff + SHENTSIZE * (i + 1);
        let offset = if i == sections.len() {
            EHSIZE as u32
        } else {
            0
        };
        for (at, v) in [
            (0, name_at[i]),
            (4, kind),
            (8, flags),
            (12, addr),
            (16, offset),
        ] {
            e[h + at..h + at + 4].copy_from_slice(&v.to_le_bytes());
        }
        e[h + 20..h + 24].copy_from_slice(&size.to_le_bytes());
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocated_sections_only() {
        let e = test_elf(&[
            (".text", 1, 6, 0x400, 100),
            (".bss", 8, 3, 0x2000_0000, 64),
            (".debug_info", 1, 0, 0, 999),
        ]);
        let s = allocated_sections(&e).unwrap();
        assert_eq!(
            s,
            [
                Section {
                    name: ".text".into(),
                    addr: 0x400,
                    size: 100,
                    writable: false,
                    nobits: false
                },
                Section {
                    name: ".bss".into(),
                    addr: 0x2000_0000,
                    size: 64,
                    writable: true,
                    nobits: true
                }
            ]
        );
        assert!(allocated_sections(b"\x7fELF\x02\x01").is_err());
        assert!(allocated_sections(&e[..60]).is_err());
        let mut big_endian = e.clone();
        big_endian[5] = 2;
        assert!(allocated_sections(&big_endian).is_err());
    }
}
