//! Brands: the sender's identity that public pages and system mails show, so that a
//! person always sees who is asking, and where that sender's privacy policy is.

use super::Invalid;
use super::contact::parse_short_text;
use super::ids::BrandId;

/// The largest logo accepted, in bytes: a page must stay light.
pub const LOGO_MAX_BYTES: usize = 200 * 1024;

/// A colour as `#rrggbb`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Color(String);

impl TryFrom<String> for Color {
    type Error = Invalid;

    fn try_from(value: String) -> Result<Self, Invalid> {
        Self::parse(&value)
    }
}

impl From<Color> for String {
    fn from(color: Color) -> Self {
        color.0
    }
}

impl Color {
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let text = input.trim();
        let hex = text.strip_prefix('#').unwrap_or("");
        if hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(Self(format!("#{}", hex.to_ascii_lowercase())))
        } else {
            Err(Invalid::new("must be a colour as #rrggbb, such as #1d4ed8"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The relative luminance (WCAG 2), from 0 (black) to 1 (white).
    pub fn luminance(&self) -> f64 {
        let channel = |i: usize| {
            let value = f64::from(u8::from_str_radix(&self.0[i..i + 2], 16).unwrap_or(0)) / 255.0;
            if value <= 0.039_28 { value / 12.92 } else { ((value + 0.055) / 1.055).powf(2.4) }
        };
        0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
    }

    /// White or black: whichever reads better on this colour (a button's label).
    pub fn text_on(&self) -> &'static str {
        // The contrast with white equals the contrast with black at this luminance.
        if self.luminance() > 0.179 { "#000000" } else { "#ffffff" }
    }
}

/// The contrast ratio of two colours (WCAG 2), from 1 to 21.
pub fn contrast(a: &Color, b: &Color) -> f64 {
    let (la, lb) = (a.luminance(), b.luminance());
    let (light, dark) = if la > lb { (la, lb) } else { (lb, la) };
    (light + 0.05) / (dark + 0.05)
}

/// A logo's image type, known from its first bytes. Only raster images: an SVG can carry
/// script, and a logo is served from this server's own origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoType {
    Png,
    Jpeg,
    Webp,
    Gif,
}

impl LogoType {
    pub fn sniff(bytes: &[u8]) -> Result<Self, Invalid> {
        if bytes.len() > LOGO_MAX_BYTES {
            return Err(Invalid::new(format!("must be at most {} KiB", LOGO_MAX_BYTES / 1024)));
        }
        match bytes {
            [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, ..] => Ok(Self::Png),
            [0xff, 0xd8, 0xff, ..] => Ok(Self::Jpeg),
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Ok(Self::Webp),
            [b'G', b'I', b'F', b'8', ..] => Ok(Self::Gif),
            _ => Err(Invalid::new("must be a PNG, JPEG, WebP or GIF image")),
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
        }
    }

    pub fn from_media_type(media_type: &str) -> Option<Self> {
        [Self::Png, Self::Jpeg, Self::Webp, Self::Gif].into_iter().find(|t| t.media_type() == media_type)
    }
}

/// What a brand says of its sender, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrandProfile {
    /// The name people know the sender by.
    pub name: String,
    /// The legal entity responsible (the controller, GDPR Art. 13(1)(a)).
    pub legal_name: String,
    pub postal_address: String,
    pub privacy_policy_url: String,
    pub accent_color: Option<Color>,
    pub background_color: Option<Color>,
    /// A line shown at the foot of pages and mails, as written.
    pub footer: Option<String>,
}

/// A brand as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brand {
    pub id: BrandId,
    pub profile: BrandProfile,
    pub logo: Option<LogoType>,
    /// The brand of every page and mail that has no brand of its own.
    pub is_default: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// The colour of a page's words when a background is chosen and no text colour is.
pub const TEXT_ON_CHOSEN_BACKGROUND: &str = "#111111";

/// Checks a name, legal name or address: not blank, bounded, no control characters
/// (an address may hold line breaks).
pub fn parse_brand_text(input: &str, max: usize, lines: bool) -> Result<String, Invalid> {
    let text = input.trim();
    if text.is_empty() {
        return Err(Invalid::new("must not be empty"));
    }
    if lines {
        let normalised: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        for line in &normalised {
            parse_short_text(line, max)?;
        }
        let joined = normalised.join("\n");
        if joined.chars().count() > max {
            return Err(Invalid::new(format!("must be at most {max} characters")));
        }
        return Ok(joined);
    }
    parse_short_text(text, max)
}

/// Checks a privacy policy's address: an https:// URL (http:// only for a local host, to
/// try things out).
pub fn parse_policy_url(input: &str) -> Result<String, Invalid> {
    let url = input.trim();
    let local = |rest: &str| {
        ["localhost", "127.0.0.1"]
            .iter()
            .any(|h| rest == *h || rest.starts_with(&format!("{h}:")) || rest.starts_with(&format!("{h}/")))
    };
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://").filter(|rest| local(rest)));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !url.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(url.to_owned())
        }
        _ => Err(Invalid::new("must be an https:// URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_colour_is_six_hex_digits_and_its_label_colour_is_readable() {
        assert_eq!(Color::parse("#1D4ED8").unwrap().as_str(), "#1d4ed8");
        assert!(Color::parse("red").is_err() && Color::parse("#12345").is_err() && Color::parse("#12345g").is_err());
        assert_eq!(Color::parse("#1d4ed8").unwrap().text_on(), "#ffffff");
        assert_eq!(Color::parse("#fde047").unwrap().text_on(), "#000000");
        let (white, black) = (Color::parse("#ffffff").unwrap(), Color::parse("#000000").unwrap());
        assert!((contrast(&white, &black) - 21.0).abs() < 0.01);
    }

    #[test]
    fn a_logo_is_a_raster_image_known_by_its_first_bytes() {
        assert_eq!(LogoType::sniff(b"\x89PNG\r\n\x1a\nrest").unwrap(), LogoType::Png);
        assert_eq!(LogoType::sniff(b"\xff\xd8\xff\xe0").unwrap(), LogoType::Jpeg);
        assert!(LogoType::sniff(b"<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>").is_err());
        assert!(LogoType::sniff(&vec![0xff; LOGO_MAX_BYTES + 1]).is_err());
    }
}
