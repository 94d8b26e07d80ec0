//! C2SP `tlog-checkpoint` bodies signed as C2SP `signed-note`s with Ed25519: the form Go's
//! checksum database, Sigstore and other transparency logs publish their heads in, so that
//! their tools and a short script can check ours.
//!
//! A note is its text (lines ending in a newline), an empty line, then one line per
//! signature: `— <key name> <base64(key id || signature)>`. An Ed25519 key's id is the first
//! four bytes of SHA-256(name || 0x0A || 0x01 || public key); the verifier key is written
//! `<name>+<hex key id>+<base64(0x01 || public key)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;
use crate::domain::Invalid;

/// The signature algorithm byte of Ed25519 in C2SP keys.
const ED25519: u8 = 0x01;
const SIGNATURE_PREFIX: &str = "\u{2014} ";
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519]);
    hasher.update(public.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A key name: no whitespace and no `+` (C2SP signed-note).
fn check_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(Invalid::new("a key name must be non-empty, without spaces or '+'"));
    }
    Ok(())
}

/// The key that signs checkpoints. Its text form (C2SP: `PRIVATE+KEY+<name>+<id>+<key>`)
/// is what is kept in the key file or setting.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner").field("name", &self.name).finish_non_exhaustive()
    }
}

impl NoteSigner {
    pub fn new(name: &str, seed: [u8; 32]) -> Result<Self, Invalid> {
        check_name(name)?;
        Ok(Self { name: name.to_owned(), key: SigningKey::from_bytes(&seed) })
    }

    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let invalid = || Invalid::new("a signing key is written PRIVATE+KEY+<name>+<key id>+<base64 key>");
        let rest = text.trim().strip_prefix(PRIVATE_PREFIX).ok_or_else(invalid)?;
        // The name holds no '+'; the base64 key may.
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let bytes = STANDARD.decode(key).map_err(|_| invalid())?;
        let (Some(&ED25519), Ok(seed)) = (bytes.first(), <[u8; 32]>::try_from(&bytes[1.min(bytes.len())..])) else {
            return Err(Invalid::new("the signing key is not an Ed25519 key"));
        };
        let signer = Self::new(name, seed)?;
        if id != hex4(&key_id(name, &signer.key.verifying_key())) {
            return Err(Invalid::new("the signing key's id does not match its key"));
        }
        Ok(signer)
    }

    /// The text form, to be kept secret.
    pub fn to_private_text(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        let id = hex4(&key_id(&self.name, &self.key.verifying_key()));
        format!("{PRIVATE_PREFIX}{}+{id}+{}", self.name, STANDARD.encode(bytes))
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), key: self.key.verifying_key() }
    }

    /// Signs a note's text (which must end with a newline): the whole signed note.
    pub fn sign(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut blob = key_id(&self.name, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("{text}\n{SIGNATURE_PREFIX}{} {}\n", self.name, STANDARD.encode(blob))
    }
}

/// A public key that checks notes: C2SP `<name>+<hex id>+<base64(0x01 || key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
}

impl NoteVerifier {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let invalid = || Invalid::new("a verifier key is written <name>+<key id>+<base64 key>");
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        check_name(name)?;
        let bytes = STANDARD.decode(key).map_err(|_| invalid())?;
        let (Some(&ED25519), Ok(public)) = (bytes.first(), <[u8; 32]>::try_from(&bytes[1.min(bytes.len())..])) else {
            return Err(Invalid::new("the verifier key is not an Ed25519 key"));
        };
        let key =
            VerifyingKey::from_bytes(&public).map_err(|_| Invalid::new("the verifier key is not a valid point"))?;
        if id != hex4(&key_id(name, &key)) {
            return Err(Invalid::new("the verifier key's id does not match its key"));
        }
        Ok(Self { name: name.to_owned(), key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The C2SP text form, to publish.
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex4(&key_id(&self.name, &self.key)), STANDARD.encode(bytes))
    }

    /// The text of a note that carries a valid signature by this key.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, Invalid> {
        let split = note.rfind("\n\n").ok_or_else(|| Invalid::new("the note has no signature block"))?;
        let (text, signatures) = (&note[..=split], &note[split + 2..]);
        let id = key_id(&self.name, &self.key);
        for line in signatures.lines() {
            let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
                return Err(Invalid::new("a signature line does not start with an em dash"));
            };
            let Some((name, blob)) = rest.split_once(' ') else { continue };
            let Ok(blob) = STANDARD.decode(blob) else { continue };
            if name != self.name || blob.len() != 68 || blob[..4] != id {
                continue;
            }
            let Ok(signature) = Signature::from_slice(&blob[4..]) else { continue };
            return match self.key.verify_strict(text.as_bytes(), &signature) {
                Ok(()) => Ok(text),
                Err(_) => Err(Invalid::new(format!("the signature by {} does not verify", self.name))),
            };
        }
        Err(Invalid::new(format!("the note carries no signature by {}", self.to_text())))
    }
}

fn hex4(id: &[u8; 4]) -> String {
    crate::domain::consent::hex(id)
}

/// A log's signed statement of its size and root (C2SP `tlog-checkpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: origin, size and base64 root hash, one line each.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root))
    }

    /// Reads a checkpoint's text (extension lines after the third are allowed and ignored).
    pub fn parse_body(text: &str) -> Result<Self, Invalid> {
        let mut lines = text.split('\n');
        let origin =
            lines.next().filter(|o| !o.is_empty()).ok_or_else(|| Invalid::new("the checkpoint has no origin"))?;
        let size = lines
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| Invalid::new("the checkpoint's second line is not a tree size"))?;
        let root = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| <Hash>::try_from(r.as_slice()).ok())
            .ok_or_else(|| Invalid::new("the checkpoint's third line is not a base64 SHA-256 root hash"))?;
        Ok(Self { origin: origin.to_owned(), size, root })
    }

    /// A signed note's checkpoint, if the note is signed by `verifier` and names `origin`.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<Self, Invalid> {
        let checkpoint = Self::parse_body(verifier.open(note)?)?;
        Ok(checkpoint)
    }
}

/// The signed notes of a file that holds several, one after another (blank lines between
/// them are allowed), as a checkpoint file is written.
pub fn split_notes(text: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let mut current = String::new();
    let mut in_signatures = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n');
        if in_signatures && !bare.starts_with(SIGNATURE_PREFIX) {
            notes.push(std::mem::take(&mut current));
            in_signatures = false;
        }
        if current.is_empty() && bare.is_empty() {
            continue;
        }
        if bare.starts_with(SIGNATURE_PREFIX) && current.ends_with("\n\n") {
            in_signatures = true;
        }
        current.push_str(line);
        if !line.ends_with('\n') {
            current.push('\n');
        }
    }
    if in_signatures {
        notes.push(current);
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> NoteSigner {
        NoteSigner::new("example.org/consent", [7; 32]).unwrap()
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_verifier_key_only() {
        let checkpoint = Checkpoint { origin: "example.org/consent".to_owned(), size: 12, root: [3; 32] };
        let note = signer().sign(&checkpoint.body());
        assert!(note.starts_with("example.org/consent\n12\n"));
        assert!(note.contains("\n\n\u{2014} example.org/consent "));
        let verifier = NoteVerifier::parse(&signer().verifier().to_text()).unwrap();
        assert_eq!(Checkpoint::open(&note, &verifier).unwrap(), checkpoint);

        let other = NoteSigner::new("example.org/consent", [8; 32]).unwrap().verifier();
        assert!(Checkpoint::open(&note, &other).is_err());
        let forged = note.replacen("\n12\n", "\n13\n", 1);
        assert!(Checkpoint::open(&forged, &verifier).is_err());
    }

    #[test]
    fn a_file_of_checkpoints_splits_into_its_notes() {
        let first = signer().sign("example.org/consent\n1\nAAAA\n");
        let second = signer().sign("example.org/consent\n2\nBBBB\n");
        let file = format!("{first}\n{second}");
        assert_eq!(split_notes(&file), vec![first.clone(), second.clone()]);
        assert_eq!(split_notes(&format!("{first}{second}\n\n")), vec![first, second]);
    }

    #[test]
    fn keys_survive_their_text_forms() {
        let text = signer().to_private_text();
        assert!(text.starts_with("PRIVATE+KEY+example.org/consent+"));
        let again = NoteSigner::parse(&text).unwrap();
        assert_eq!(again.verifier(), signer().verifier());
        assert!(NoteSigner::parse(&text.replace("+KEY+", "+KYE+")).is_err());
        assert!(NoteVerifier::parse("name+00000000+AQ==").is_err());
    }

    /// The key id follows the C2SP rule, checked against Go's golang.org/x/mod/sumdb/note
    /// test vector (name "PeterNeumann", its published verifier key).
    #[test]
    fn key_ids_follow_the_signed_note_specification() {
        let verifier =
            NoteVerifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").unwrap();
        assert_eq!(verifier.name(), "PeterNeumann");
        let signer =
            NoteSigner::parse("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
                .unwrap();
        assert_eq!(signer.verifier(), verifier);
    }
}
