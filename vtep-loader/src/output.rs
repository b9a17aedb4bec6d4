//! Show output: one line per entry for people, a JSON array (or object) with `-j`.

use anyhow::Result;
use serde::Serialize;

pub fn rows<T: Serialize>(json: bool, rows: &[T], line: impl Fn(&T) -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(rows)?);
    } else {
        for row in rows {
            println!("{}", line(row));
        }
    }
    Ok(())
}

pub fn text_of(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

pub fn fixed<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    out[..s.len()].copy_from_slice(s.as_bytes());
    out
}
