//! The pointer fields of include/asps.h's argument structs, read from their bindgen mirror
//! (src/capi/bindings.rs), for the host-check tests (tests/verify_args.rs, tests/tree_args.rs).

/// The pointer fields of the header's struct `name`, nested structs flattened
/// (`sampling.target.top_k`), with their byte offsets, read from the bindgen mirror of
/// include/asps.h (its field lists and its layout assertions), so that a field added to the
/// header is found here without editing a test.
pub fn pointer_fields(name: &str) -> Vec<(String, usize)> {
    let text = include_str!("../../src/capi/bindings.rs");
    let mut fields: std::collections::HashMap<&str, Vec<(&str, &str)>> = Default::default();
    let mut current: Option<&str> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line
            .strip_prefix("pub struct ")
            .and_then(|r| r.strip_suffix(" {"))
        {
            current = Some(name);
            fields.insert(name, Vec::new());
        } else if line == "}" {
            current = None;
        } else if let (Some(s), Some(field)) = (current, line.strip_prefix("pub ")) {
            let (name, ty) = field.trim_end_matches(',').split_once(": ").unwrap();
            fields.get_mut(s).unwrap().push((name, ty));
        }
    }
    let offset = |s: &str, f: &str| -> usize {
        let needle = format!("offset_of!({s}, {f}) - ");
        let at = text
            .find(&needle)
            .unwrap_or_else(|| panic!("no offset of {s}::{f}"));
        let rest = &text[at + needle.len()..];
        rest[..rest.find("usize").unwrap()].parse().unwrap()
    };
    fn walk(
        s: &str,
        prefix: &str,
        base: usize,
        fields: &std::collections::HashMap<&str, Vec<(&str, &str)>>,
        offset: &dyn Fn(&str, &str) -> usize,
        out: &mut Vec<(String, usize)>,
    ) {
        for &(name, ty) in &fields[s] {
            let at = base + offset(s, name);
            let path = format!("{prefix}{name}");
            if ty.starts_with("*const") || ty.starts_with("*mut") {
                out.push((path, at));
            } else if fields.contains_key(ty) {
                walk(ty, &format!("{path}."), at, fields, offset, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(name, "", 0, &fields, &offset, &mut out);
    out
}
