//! Uploaded materials: what a file must be to be accepted for a material (its size, its
//! extension among the accepted formats, and content that really is of that format), and
//! the media type it is served back with.
//!
//! A file's content is checked against the signature of its extension's format, so a
//! renamed executable is not a "PDF". Formats without a reliable signature (plain text,
//! CSV) are accepted by extension when the material lists them.

use crate::case::MaterialRef;
use crate::form::Problem;
use crate::procedure::Material;

/// Largest upload of a material that sets no `max_mb`.
pub const DEFAULT_MAX_MB: u32 = 10;

/// One uploaded file of a submission or a supplement answer.
pub struct Upload {
    /// The material it is for.
    pub material: String,
    /// The file's name as the applicant's computer gave it.
    pub name: String,
    pub bytes: Vec<u8>,
}

/// How a format's content starts: byte strings at offsets, any of which must match.
fn signatures(ext: &str) -> Option<&'static [(usize, &'static [u8])]> {
    Some(match ext {
        "pdf" => &[(0, b"%PDF-")],
        "jpg" | "jpeg" => &[(0, &[0xFF, 0xD8, 0xFF])],
        "png" => &[(0, &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A])],
        "gif" => &[(0, b"GIF87a"), (0, b"GIF89a")],
        "tif" | "tiff" => &[(0, b"II*\0"), (0, b"MM\0*")],
        "bmp" => &[(0, b"BM")],
        "webp" => &[(8, b"WEBP")],
        "dwg" => &[(0, b"AC10")],
        "dxf" => &[
            (0, b"0\r\nSECTION"),
            (0, b"  0\r\nSECTION"),
            (0, b"0\nSECTION"),
            (0, b"  0\nSECTION"),
        ],
        // Office Open XML and OpenDocument are zip files.
        "zip" | "docx" | "xlsx" | "pptx" | "odt" | "ods" | "ofd" => &[(0, b"PK\x03\x04")],
        // Older Office files are compound documents.
        "doc" | "xls" | "ppt" => &[(0, &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1])],
        "txt" | "csv" => return None,
        _ => return None,
    })
}

/// Extensions accepted by their name alone: their content has no signature to check.
const TEXT_FORMATS: &[&str] = &["txt", "csv"];

/// The lower-case extension of a file name.
pub fn extension(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

/// What is wrong with `upload` as material `decl`; empty if nothing.
pub fn check_upload(decl: &Material, upload: &Upload) -> Vec<Problem> {
    let field = format!("material.{}", decl.id);
    let mut problems = Vec::new();
    let max = u64::from(decl.max_mb.unwrap_or(DEFAULT_MAX_MB)) << 20;
    if upload.bytes.is_empty() {
        problems.push(
            Problem::of(
                field.as_str(),
                format!("material '{}' ({}): the file is empty", decl.id, decl.name),
            )
            .code("empty_file"),
        );
    } else if upload.bytes.len() as u64 > max {
        problems.push(
            Problem::of(
                field.as_str(),
                format!(
                    "material '{}' ({}): the file is larger than {} MiB",
                    decl.id,
                    decl.name,
                    max >> 20
                ),
            )
            .code("too_large")
            .param("mb", (max >> 20).to_string()),
        );
    }
    let ext = extension(&upload.name);
    let content_ok = match signatures(&ext) {
        Some(sigs) => sigs.iter().any(|(at, sig)| {
            upload
                .bytes
                .get(*at..at + sig.len())
                .is_some_and(|b| b == *sig)
        }),
        // Only a format the material accepts by name, or any file where it accepts any.
        None => {
            decl.formats.is_empty()
                || (TEXT_FORMATS.contains(&ext.as_str())
                    && std::str::from_utf8(&upload.bytes).is_ok())
        }
    };
    // An extension the material does not accept is reported with the materials.
    let accepted = decl.formats.is_empty() || decl.formats.contains(&ext);
    if !upload.bytes.is_empty() && accepted && !content_ok {
        problems.push(
            Problem::of(
                field,
                format!(
                    "material '{}' ({}): the file's content is not {}",
                    decl.id,
                    decl.name,
                    if ext.is_empty() {
                        "of an accepted format".to_string()
                    } else {
                        format!("a {} file", ext.to_uppercase())
                    }
                ),
            )
            .code("content")
            .param("format", ext.to_uppercase()),
        );
    }
    problems
}

/// The media type a file is served with, from its name.
pub fn media_type(name: &str) -> &'static str {
    match extension(name).as_str() {
        "pdf" => "application/pdf",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "tif" | "tiff" => "image/tiff",
        "webp" => "image/webp",
        "txt" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// A file's SHA-256, in hex: the name the store keeps it under.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Every problem of `uploads` for `p`: unknown materials, sizes, formats, contents.
pub fn check_uploads(p: &crate::procedure::Procedure, uploads: &[Upload]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for up in uploads {
        match p.materials.iter().find(|m| m.id == up.material) {
            Some(decl) => problems.extend(check_upload(decl, up)),
            None => problems.push(
                Problem::of(
                    format!("material.{}", up.material),
                    format!("unknown material '{}'", up.material),
                )
                .code("unknown_material"),
            ),
        }
    }
    problems
}

/// Names `uploads` in `materials` by their hashes, replacing what was said of the same
/// materials without a file.
pub fn name_uploads(materials: &mut Vec<MaterialRef>, uploads: &[Upload]) {
    materials.retain(|m| !uploads.iter().any(|u| u.material == m.id));
    materials.extend(uploads.iter().map(|u| MaterialRef {
        id: u.material.clone(),
        file: u.name.clone(),
        sha256: Some(sha256(&u.bytes)),
        size: Some(u.bytes.len() as u64),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material(formats: &[&str], max_mb: Option<u32>) -> Material {
        Material {
            id: "plan".into(),
            name: "Plan".into(),
            names: Default::default(),
            required: true,
            formats: formats.iter().map(|f| f.to_string()).collect(),
            max_mb,
        }
    }

    fn check(m: &Material, name: &str, bytes: &[u8]) -> Vec<String> {
        let up = Upload {
            material: "plan".into(),
            name: name.into(),
            bytes: bytes.to_vec(),
        };
        check_upload(m, &up)
            .into_iter()
            .map(|p| p.message)
            .collect()
    }

    #[test]
    fn a_file_is_accepted_when_its_content_is_of_its_extensions_format() {
        let m = material(&["pdf", "jpg", "png", "dwg", "xlsx"], None);
        assert!(check(&m, "plan.pdf", b"%PDF-1.7 ...").is_empty());
        assert!(check(&m, "PHOTO.JPG", &[0xFF, 0xD8, 0xFF, 0xE0, 0]).is_empty());
        assert!(check(&m, "p.png", b"\x89PNG\r\n\x1a\n....").is_empty());
        assert!(check(&m, "site.dwg", b"AC1032....").is_empty());
        assert!(check(&m, "loads.xlsx", b"PK\x03\x04....").is_empty());
        // A renamed program is not a PDF.
        let e = check(&m, "plan.pdf", b"MZ\x90\x00 this program cannot");
        assert_eq!(
            e,
            ["material 'plan' (Plan): the file's content is not a PDF file"]
        );
        assert!(!check(&m, "plan.png", b"%PDF-1.7").is_empty());
        // An extension the material does not accept is another check's to report.
        assert!(check(&m, "plan.exe", b"MZ").is_empty());
    }

    #[test]
    fn size_and_emptiness_are_checked_against_the_material() {
        let m = material(&["pdf"], Some(1));
        assert!(check(&m, "p.pdf", &[]).iter().any(|e| e.contains("empty")));
        let mut big = b"%PDF-".to_vec();
        big.resize((1 << 20) + 1, b' ');
        assert!(check(&m, "p.pdf", &big)
            .iter()
            .any(|e| e.contains("larger than 1 MiB")));
    }

    #[test]
    fn formats_without_a_signature_are_accepted_by_name_only_when_listed() {
        let listed = material(&["csv"], None);
        assert!(check(&listed, "a.csv", b"a,b\n1,2\n").is_empty());
        assert!(!check(&listed, "a.csv", &[0xFF, 0xFE, 0x00, 0xD8]).is_empty());
        let any = material(&[], None);
        assert!(check(&any, "notes.xyz", b"\x00\x01").is_empty());
        assert!(!check(&any, "fake.pdf", b"not a pdf").is_empty());
    }
}
