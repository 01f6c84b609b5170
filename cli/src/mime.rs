//! A file's media type from its name, for `weft send --file`: what the receiving app shows
//! (never trusted: the bytes are whatever they are).

/// The media type a name's extension usually means; `application/octet-stream` otherwise.
pub fn guess(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "pdf" => "application/pdf",
        "txt" | "md" => "text/plain",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "ogg" | "opus" => "audio/ogg",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_extensions_and_the_rest() {
        assert_eq!(super::guess("map.JPG"), "image/jpeg");
        assert_eq!(super::guess("notes.pdf"), "application/pdf");
        assert_eq!(super::guess("noextension"), "application/octet-stream");
        assert_eq!(super::guess("archive.tar.xz"), "application/octet-stream");
    }
}
