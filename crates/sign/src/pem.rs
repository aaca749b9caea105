//! Splitting PEM files with several blocks (certificate chains, `openssl ecparam -genkey` output) and
//! text around them, as OpenSSL's PEM reader tolerates.

/// One decoded PEM block: its label (e.g. "CERTIFICATE") and DER contents.
pub(crate) struct PemBlock {
    pub label: String,
    pub der: Vec<u8>,
}

/// All PEM blocks in `input`, in order. Text outside `-----BEGIN`/`-----END` lines is ignored.
pub(crate) fn parse_blocks(input: &[u8]) -> Result<Vec<PemBlock>, String> {
    let text = std::str::from_utf8(input).map_err(|_| "PEM text is not valid UTF-8".to_string())?;
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after_begin = &rest[begin..];
        let label_end = after_begin[11..]
            .find("-----")
            .ok_or_else(|| "PEM BEGIN line without closing dashes".to_string())?;
        let label = &after_begin[11..11 + label_end];
        let end_marker = format!("-----END {label}-----");
        let end = after_begin
            .find(&end_marker)
            .ok_or_else(|| format!("PEM block \"{label}\" has no END line"))?;
        let block_text = &after_begin[..end + end_marker.len()];
        let (decoded_label, der) = pem_rfc7468::decode_vec(block_text.as_bytes())
            .map_err(|e| format!("PEM block \"{label}\" is malformed: {e}"))?;
        blocks.push(PemBlock {
            label: decoded_label.to_string(),
            der,
        });
        rest = &after_begin[end + end_marker.len()..];
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_blocks_and_skips_text() {
        let a =
            pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, b"abc").unwrap();
        let b =
            pem_rfc7468::encode_string("EC PRIVATE KEY", pem_rfc7468::LineEnding::CRLF, b"defg")
                .unwrap();
        let input = format!("Subject: x\n{a}junk\n{b}\ntrailer");
        let blocks = parse_blocks(input.as_bytes()).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[0].der, b"abc");
        assert_eq!(blocks[1].label, "EC PRIVATE KEY");
        assert_eq!(blocks[1].der, b"defg");
    }

    #[test]
    fn rejects_unterminated_block() {
        let err = parse_blocks(b"-----BEGIN CERTIFICATE-----\nAAAA\n")
            .err()
            .unwrap();
        assert!(err.contains("no END line"), "{err}");
    }

    #[test]
    fn no_blocks_is_empty() {
        assert!(parse_blocks(b"nothing here").unwrap().is_empty());
    }
}
