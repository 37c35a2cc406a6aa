//! Just enough of the kernel's BTF (Documentation/bpf/btf.rst) to find a
//! struct member's offset and an enum's values: the drop tracer's needs.
//! (btf-rs would do it, but it is LGPL and netobs ships as one binary;
//! aya-obj keeps its BTF types to itself.)
use std::collections::HashMap;

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Copy)]
struct Type {
    name_off: u32,
    info: u32,
    /// Size, or the type it refers to.
    size_or_type: u32,
    /// Where its members start in the type section.
    extra: usize,
}

impl Type {
    fn kind(self) -> u32 {
        (self.info >> 24) & 0x1f
    }

    fn vlen(self) -> usize {
        (self.info & 0xffff) as usize
    }

    fn kind_flag(self) -> bool {
        self.info >> 31 == 1
    }
}

pub struct Btf {
    data: Vec<u8>,
    strings_at: usize,
    strings_len: usize,
    /// By id; id 0 is `void`.
    types: Vec<Type>,
    by_name: HashMap<String, Vec<u32>>,
}

/// A member found: bit offset from the start of the outer type, and its type.
pub struct Member {
    pub bits: u32,
    pub type_id: u32,
}

impl Btf {
    pub fn parse(data: Vec<u8>) -> Result<Btf, String> {
        let u16_at = |d: &[u8], i: usize| d.get(i..i + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if u16_at(&data, 0) != Some(MAGIC) {
            return Err("not little-endian BTF (bad magic)".to_owned());
        }
        let word = |i: usize| read_u32(&data, i).ok_or("BTF header cut short".to_owned());
        let hdr_len = word(4)? as usize;
        let (type_off, type_len) = (word(8)? as usize, word(12)? as usize);
        let (str_off, str_len) = (word(16)? as usize, word(20)? as usize);
        let beyond = || "BTF sections beyond the data".to_owned();
        let types_at = hdr_len.checked_add(type_off).ok_or_else(beyond)?;
        let strings_at = hdr_len.checked_add(str_off).ok_or_else(beyond)?;
        let end = types_at.checked_add(type_len).ok_or_else(beyond)?;
        if end > data.len() || strings_at.checked_add(str_len).ok_or_else(beyond)? > data.len() {
            return Err(beyond());
        }
        let mut types = vec![Type {
            name_off: 0,
            info: 0,
            size_or_type: 0,
            extra: 0,
        }];
        let mut at = types_at;
        while at < end {
            let t = Type {
                name_off: word(at)?,
                info: word(at + 4)?,
                size_or_type: word(at + 8)?,
                extra: at + 12,
            };
            let extra = match t.kind() {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * t.vlen(),
                KIND_ENUM | KIND_FUNC_PROTO => 8 * t.vlen(),
                k if k <= KIND_TYPE_TAG => 0,
                k => return Err(format!("BTF kind {k} unknown to this netobs")),
            };
            types.push(t);
            at += 12 + extra;
        }
        let mut btf = Btf {
            data,
            strings_at,
            strings_len: str_len,
            types,
            by_name: HashMap::new(),
        };
        for id in 1..btf.types.len() {
            let name = btf.string(btf.types[id].name_off);
            if !name.is_empty() {
                btf.by_name
                    .entry(name.to_owned())
                    .or_default()
                    .push(id as u32);
            }
        }
        Ok(btf)
    }

    fn string(&self, off: u32) -> &str {
        let start = self.strings_at + off as usize;
        let end = self.strings_at + self.strings_len;
        let Some(bytes) = self.data.get(start..end) else {
            return "";
        };
        let len = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..len]).unwrap_or("")
    }

    fn get(&self, id: u32) -> Option<Type> {
        self.types.get(id as usize).copied()
    }

    /// The struct named `name` (with members: not a forward declaration).
    pub fn struct_id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name)?.iter().copied().find(|id| {
            self.get(*id)
                .is_some_and(|t| t.kind() == KIND_STRUCT && t.vlen() > 0)
        })
    }

    /// The struct or union behind typedefs and qualifiers.
    pub fn strip(&self, mut id: u32) -> Option<u32> {
        for _ in 0..32 {
            let t = self.get(id)?;
            match t.kind() {
                KIND_STRUCT | KIND_UNION => return Some(id),
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return None,
            }
        }
        None
    }

    /// Member `name` of struct or union `id`, looking into anonymous
    /// members as C does.
    pub fn member(&self, id: u32, name: &str) -> Option<Member> {
        self.member_at(id, name, 0)
    }

    fn member_at(&self, id: u32, name: &str, depth: u32) -> Option<Member> {
        let t = self.get(id)?;
        if !matches!(t.kind(), KIND_STRUCT | KIND_UNION) || depth > 8 {
            return None;
        }
        for i in 0..t.vlen() {
            let at = t.extra + 12 * i;
            let (name_off, type_id, offset) = (
                read_u32(&self.data, at)?,
                read_u32(&self.data, at + 4)?,
                read_u32(&self.data, at + 8)?,
            );
            let bits = if t.kind_flag() {
                offset & 0x00ff_ffff
            } else {
                offset
            };
            let n = self.string(name_off);
            if n == name {
                return Some(Member { bits, type_id });
            }
            if n.is_empty() {
                if let Some(inner) = self.strip(type_id) {
                    if let Some(m) = self.member_at(inner, name, depth + 1) {
                        return Some(Member {
                            bits: bits + m.bits,
                            type_id: m.type_id,
                        });
                    }
                }
            }
        }
        None
    }

    /// The values and names of enum `name`.
    pub fn enum_values(&self, name: &str) -> Option<Vec<(u32, String)>> {
        let id = self
            .by_name
            .get(name)?
            .iter()
            .copied()
            .find(|id| self.get(*id).is_some_and(|t| t.kind() == KIND_ENUM))?;
        let t = self.get(id)?;
        (0..t.vlen())
            .map(|i| {
                let at = t.extra + 8 * i;
                let name = self.string(read_u32(&self.data, at)?).to_owned();
                Some((read_u32(&self.data, at + 4)?, name))
            })
            .collect()
    }
}

fn read_u32(d: &[u8], i: usize) -> Option<u32> {
    d.get(i..i + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_one_line_not_a_panic() {
        for data in [
            vec![],
            vec![0x9f, 0xeb, 1],
            vec![0x9f, 0xeb, 1, 0, 255, 255, 255, 255],
        ] {
            let e = Btf::parse(data).err().expect("refused");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
