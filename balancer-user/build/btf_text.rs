//! Marks text fields in the XDP object's BTF so that `bpftool map dump` prints them as strings.
//!
//! bpftool prints a byte array as a string only when its element type is a BTF integer named
//! `char`, and Rust's debug info only has `u8`. For each (struct, field) of
//! `balancer_common::directory::TEXT_FIELDS` this appends a `char` integer and an array of it
//! with the same length, and points the field at that array. Nothing else changes: appended
//! types take new ids, so every existing id (and `.BTF.ext`) stays valid, and the bytes of the
//! maps are the same. The BTF format is the kernel's `Documentation/bpf/btf.rst`.

use anyhow::{bail, ensure, Context as _};
use object::build::elf::{Builder, SectionData};

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;

/// Rewrites the `.BTF` section of the ELF object `elf`.
pub fn mark_text_fields(elf: &[u8], fields: &[(&str, &str)]) -> anyhow::Result<Vec<u8>> {
    let mut builder = Builder::read(elf).context("reading the XDP object")?;
    let section = builder
        .sections
        .iter_mut()
        .find(|s| s.name.as_slice() == b".BTF")
        .context("the XDP object has no .BTF section")?;
    let SectionData::Data(data) = &section.data else {
        bail!(".BTF is not a data section");
    };
    let patched = patch_btf(data, fields)?;
    section.data = SectionData::Data(patched.into());
    // bpf-linker keeps section names in the symbol string table; the writer wants its own.
    if !builder
        .sections
        .iter()
        .any(|s| matches!(s.data, SectionData::SectionString))
    {
        let shstrtab = builder.sections.add();
        shstrtab.name = b".shstrtab"[..].into();
        shstrtab.sh_type = object::elf::SHT_STRTAB;
        shstrtab.sh_addralign = 1;
        shstrtab.data = SectionData::SectionString;
    }
    let mut out = Vec::new();
    builder.write(&mut out).context("writing the XDP object")?;
    Ok(out)
}

struct Btf {
    types: Vec<u8>,
    strings: Vec<u8>,
    /// Byte offset in `types` of each type, indexed by id - 1.
    offsets: Vec<usize>,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

impl Btf {
    fn parse(data: &[u8]) -> anyhow::Result<Self> {
        ensure!(data.len() >= HEADER_LEN, "BTF shorter than its header");
        ensure!(
            u16::from_le_bytes([data[0], data[1]]) == MAGIC,
            "not little-endian BTF"
        );
        let header_len = u32_at(data, 4) as usize;
        let section = |off: usize, len: usize| -> anyhow::Result<Vec<u8>> {
            let start = header_len + u32_at(data, off) as usize;
            let end = start + u32_at(data, len) as usize;
            data.get(start..end)
                .map(<[u8]>::to_vec)
                .context("BTF section out of bounds")
        };
        let types = section(8, 12)?;
        let strings = section(16, 20)?;
        let mut offsets = Vec::new();
        let mut at = 0;
        while at < types.len() {
            offsets.push(at);
            at += 12 + Self::extra_len(&types, at)?;
        }
        Ok(Self {
            types,
            strings,
            offsets,
        })
    }

    /// Bytes after the 12-byte common header of the type at `at`.
    fn extra_len(types: &[u8], at: usize) -> anyhow::Result<usize> {
        let info = u32_at(types, at + 4);
        let vlen = (info & 0xffff) as usize;
        Ok(match (info >> 24) & 0x1f {
            1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
            3 => 12,                      // ARRAY
            4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
            6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
            2 | 7..=12 | 16 | 18 => 0,
            kind => bail!("unknown BTF kind {kind}"),
        })
    }

    fn kind(&self, id: u32) -> u32 {
        (u32_at(&self.types, self.offsets[id as usize - 1] + 4) >> 24) & 0x1f
    }

    fn name(&self, name_off: u32) -> &[u8] {
        let rest = &self.strings[name_off as usize..];
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    fn add_string(&mut self, s: &str) -> u32 {
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    fn add_type(&mut self, words: &[u32]) -> u32 {
        self.offsets.push(self.types.len());
        for w in words {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
        self.offsets.len() as u32
    }

    fn to_bytes(&self, original: &[u8]) -> Vec<u8> {
        let mut out = original[..HEADER_LEN].to_vec();
        set_u32(&mut out, 4, HEADER_LEN as u32);
        set_u32(&mut out, 8, 0);
        set_u32(&mut out, 12, self.types.len() as u32);
        set_u32(&mut out, 16, self.types.len() as u32);
        set_u32(&mut out, 20, self.strings.len() as u32);
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

fn patch_btf(data: &[u8], fields: &[(&str, &str)]) -> anyhow::Result<Vec<u8>> {
    let mut btf = Btf::parse(data)?;
    let already_marked = (1..=btf.offsets.len() as u32).any(|id| {
        btf.kind(id) == KIND_INT
            && btf.name(u32_at(&btf.types, btf.offsets[id as usize - 1])) == b"char"
    });
    if already_marked {
        return Ok(data.to_vec());
    }
    let char_name = btf.add_string("char");
    // INT: size 1, no encoding, offset 0, 8 bits.
    let char_id = btf.add_type(&[char_name, KIND_INT << 24, 1, 8]);
    for &(struct_name, field) in fields {
        let mut found = false;
        for id in 1..=btf.offsets.len() as u32 {
            let at = btf.offsets[id as usize - 1];
            if btf.kind(id) != KIND_STRUCT
                || btf.name(u32_at(&btf.types, at)) != struct_name.as_bytes()
            {
                continue;
            }
            let vlen = (u32_at(&btf.types, at + 4) & 0xffff) as usize;
            for m in 0..vlen {
                let member = at + 12 + 12 * m;
                if btf.name(u32_at(&btf.types, member)) != field.as_bytes() {
                    continue;
                }
                let array = u32_at(&btf.types, member + 4);
                ensure!(
                    btf.kind(array) == KIND_ARRAY,
                    "{struct_name}.{field} is not an array"
                );
                let a = btf.offsets[array as usize - 1] + 12;
                let (index_type, nelems) = (u32_at(&btf.types, a + 4), u32_at(&btf.types, a + 8));
                let text = btf.add_type(&[0, KIND_ARRAY << 24, 0, char_id, index_type, nelems]);
                set_u32(&mut btf.types, member + 4, text);
                found = true;
            }
        }
        ensure!(
            found,
            "no struct {struct_name} with a field {field} in the BTF"
        );
    }
    Ok(btf.to_bytes(data))
}
