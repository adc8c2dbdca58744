//! Minimal PEM (RFC 7468) reading and writing for RSA keys.

use crate::CryptoError;
use base64::Engine;
use zeroize::Zeroizing;

/// One decoded PEM block.
pub struct Block {
    /// The label after `BEGIN`, e.g. `RSA PRIVATE KEY`.
    pub label: String,
    /// The decoded DER bytes (zeroized on drop: they may be a private key).
    pub der: Zeroizing<Vec<u8>>,
}

/// Parses the first PEM block in `text`. Leading and trailing text is ignored,
/// `\r\n` line ends are accepted, and an encrypted (`Proc-Type: 4,ENCRYPTED`) block
/// is rejected with [`CryptoError::EncryptedKey`].
pub fn parse(text: &str) -> Result<Block, CryptoError> {
    let start = text
        .find("-----BEGIN ")
        .ok_or(CryptoError::InvalidPem("no BEGIN line"))?;
    let after = &text[start + "-----BEGIN ".len()..];
    let label_end = after
        .find("-----")
        .ok_or(CryptoError::InvalidPem("unterminated BEGIN line"))?;
    let label = after[..label_end].to_owned();
    if label.contains('\n') {
        return Err(CryptoError::InvalidPem("unterminated BEGIN line"));
    }
    let body_start = &after[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body_start
        .find(&end_marker)
        .ok_or(CryptoError::InvalidPem("no matching END line"))?;
    let body = &body_start[..body_end];
    if body.contains("Proc-Type") || body.contains("DEK-Info") {
        return Err(CryptoError::EncryptedKey);
    }
    let compact: Zeroizing<String> =
        Zeroizing::new(body.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    if compact.is_empty() {
        return Err(CryptoError::InvalidPem("empty body"));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| CryptoError::InvalidPem("body is not base64"))?;
    Ok(Block {
        label,
        der: Zeroizing::new(der),
    })
}

/// Encodes DER bytes as a PEM block with 64-character lines and a final newline.
pub fn encode(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    Zeroizing::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_crlf() {
        let pem = encode("RSA PUBLIC KEY", &[1, 2, 3, 250]).replace('\n', "\r\n");
        let block = parse(&format!("junk\r\n{pem}trailer")).unwrap();
        assert_eq!(block.label, "RSA PUBLIC KEY");
        assert_eq!(&*block.der, &[1, 2, 3, 250]);
    }

    #[test]
    fn malformed_blocks_are_errors() {
        assert!(parse("").is_err());
        assert!(parse("-----BEGIN X-----\nAAAA\n").is_err());
        assert!(parse("-----BEGIN X-----\n!!!!\n-----END X-----").is_err());
        assert!(parse("-----BEGIN X-----\n-----END X-----").is_err());
        assert_eq!(
            parse("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END RSA PRIVATE KEY-----")
                .err(),
            Some(CryptoError::EncryptedKey)
        );
    }
}
