//! The built-in strings of pages and system mails, in the languages of [`LOCALES`].
//! Text an admin wrote (form titles, consent texts) is shown as written.

use std::collections::BTreeMap;
use std::sync::LazyLock;

/// Supported languages. Each has a file of every built-in string beside this one, named
/// after it, and `en.toml` holds the keys every language has.
pub use crate::domain::form::LOCALES;

/// The files, in the order of [`LOCALES`].
const SOURCES: [&str; LOCALES.len()] = [
    include_str!("en.toml"),
    include_str!("fr.toml"),
    include_str!("de.toml"),
    include_str!("it.toml"),
    include_str!("es.toml"),
    include_str!("pt.toml"),
    include_str!("nl.toml"),
    include_str!("pl.toml"),
];

/// Every language's strings by key, read once from the files compiled into the binary.
/// A file that does not parse fails the test below, so a released binary never meets one;
/// the language would then fall back to English string by string.
static CATALOGUE: LazyLock<Vec<BTreeMap<String, String>>> =
    LazyLock::new(|| SOURCES.iter().map(|source| toml::from_str(source).unwrap_or_default()).collect());

fn column(locale: &str) -> usize {
    LOCALES.iter().position(|l| *l == locale).unwrap_or(0)
}

/// A country's code and its name in one language.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CountryName {
    pub code: &'static str,
    pub name: &'static str,
}

/// Every country's name, per language, from `countries.tsv` (CLDR's names, written by
/// `scripts/gen-countries`): a header of language codes, then a code and its names per line.
static COUNTRIES: LazyLock<Vec<(&'static str, Vec<&'static str>)>> = LazyLock::new(|| {
    include_str!("countries.tsv")
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cells = line.split('\t');
            let code = cells.next()?;
            Some((code, cells.collect()))
        })
        .collect()
});

/// Every country, named in `locale` (English where the file lacks a name), in the
/// language's alphabetical order as far as letters without their accents give it.
pub fn countries(locale: &str) -> Vec<CountryName> {
    let header: Vec<&str> = include_str!("countries.tsv").lines().next().unwrap_or("").split('\t').skip(1).collect();
    let column = header.iter().position(|l| *l == locale).unwrap_or(0);
    let mut names: Vec<CountryName> = COUNTRIES
        .iter()
        .map(|(code, names)| {
            let name = names.get(column).or_else(|| names.first()).copied().unwrap_or(code);
            CountryName { code, name }
        })
        .collect();
    names.sort_by_cached_key(|country| sort_key(country.name));
    names
}

/// A name without case or accents, for sorting.
fn sort_key(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ą' => 'a',
            'ç' | 'ć' | 'č' => 'c',
            'è' | 'é' | 'ê' | 'ë' | 'ę' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ł' => 'l',
            'ñ' | 'ń' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
            'ś' | 'š' => 's',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ý' | 'ÿ' => 'y',
            'ź' | 'ż' | 'ž' => 'z',
            c => c,
        })
        .collect()
}

/// A submission's faults in words of `locale`, each naming its input.
pub fn fault_errors(locale: &str, faults: &[crate::domain::form::SubmissionFault]) -> Vec<crate::error::FieldError> {
    faults
        .iter()
        .map(|fault| {
            let mut message = text(locale, fault.fault.key()).to_owned();
            for (name, value) in fault.fault.arguments() {
                message = message.replace(&format!("{{{name}}}"), &value);
            }
            crate::error::FieldError::new(&fault.field, message)
        })
        .collect()
}

/// A built-in string; English when the locale is not supported or lacks the key.
pub fn text(locale: &str, key: &str) -> &'static str {
    let catalogue = &*CATALOGUE;
    let found = |column: usize| catalogue.get(column).and_then(|strings| strings.get(key));
    found(column(locale)).or_else(|| found(0)).map_or("", String::as_str)
}

/// Every built-in string of a locale, for page templates.
pub fn strings(locale: &str) -> BTreeMap<&'static str, &'static str> {
    let catalogue = &*CATALOGUE;
    let Some(english) = catalogue.first() else {
        return BTreeMap::new();
    };
    english.keys().map(|key| (key.as_str(), text(locale, key))).collect()
}

/// The words beside a partner's box, in the page's language. The page shows them and the
/// ledger keeps them as the consent text, so what is stored is what was read: both come
/// from here and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerConsentText {
    /// Everything up to the privacy policy's address, which ends the text so that the page
    /// can make it a link without adding a word.
    pub lead: String,
    pub privacy_policy_url: String,
}

impl PartnerConsentText {
    pub fn new(locale: &str, name: &str, legal_name: &str, description: &str, privacy_policy_url: &str) -> Self {
        let lead = format!(
            "{} {name} ({legal_name}): {description} {} ",
            text(locale, "partner_share"),
            text(locale, "partner_privacy_policy")
        );
        Self { lead, privacy_policy_url: privacy_policy_url.to_owned() }
    }

    /// The whole text, as the page reads.
    pub fn text(&self) -> String {
        format!("{}{}", self.lead, self.privacy_policy_url)
    }
}

/// The first supported language of an `Accept-Language` header, by quality; else English.
pub fn negotiate(accept_language: Option<&str>) -> &'static str {
    let mut ranges: Vec<(f32, &str)> = accept_language
        .unwrap_or("")
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next()?.trim();
            let quality = pieces.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.parse().ok()).unwrap_or(1.0);
            Some((quality, tag))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranges
        .into_iter()
        .filter(|(quality, _)| *quality > 0.0)
        .find_map(|(_, tag)| {
            let primary = tag.split('-').next().unwrap_or("").to_ascii_lowercase();
            LOCALES.iter().find(|l| **l == primary).copied()
        })
        .unwrap_or("en")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_exists_in_every_language() {
        let english: BTreeMap<String, String> = toml::from_str(SOURCES[0]).expect("en.toml parses");
        for (locale, source) in LOCALES.iter().zip(SOURCES) {
            let strings: BTreeMap<String, String> =
                toml::from_str(source).unwrap_or_else(|e| panic!("{locale}.toml does not parse: {e}"));
            for key in english.keys() {
                assert!(strings.get(key).is_some_and(|t| !t.trim().is_empty()), "{locale}.toml lacks {key}");
            }
            for key in strings.keys() {
                assert!(english.contains_key(key), "{locale}.toml has {key}, which en.toml lacks");
            }
            assert_eq!(strings["lang"], *locale, "{locale}.toml names another language");
        }
    }

    #[test]
    fn a_partner_box_reads_in_the_pages_language_and_ends_with_its_privacy_policy() {
        let text = PartnerConsentText::new("it", "Acme", "Acme SpA", "Offerte.", "https://acme.example/privacy");
        assert_eq!(
            text.text(),
            "Condividi il mio indirizzo e-mail e il mio profilo con Acme (Acme SpA): Offerte. Informativa sulla \
             privacy: https://acme.example/privacy"
        );
        assert!(text.text().starts_with(&text.lead));
    }

    #[test]
    fn every_country_has_a_name_in_every_language() {
        let codes = crate::domain::country::all_codes();
        for locale in LOCALES {
            let names = countries(locale);
            assert_eq!(names.len(), codes.len(), "{locale}");
            assert!(names.iter().all(|c| !c.name.trim().is_empty() && c.name != c.code), "{locale}");
        }
        let german = countries("de");
        let name = |code: &str| german.iter().find(|c| c.code == code).map(|c| c.name);
        assert_eq!((name("DE"), name("CH")), (Some("Deutschland"), Some("Schweiz")));
        let position = |code: &str| german.iter().position(|c| c.code == code);
        // Sorted by name, an accented letter beside its plain one: Österreich among the O.
        assert!(position("DE") < position("AT") && position("AT") < position("PL"), "{german:?}");
    }

    #[test]
    fn accept_language_picks_the_best_supported_language() {
        assert_eq!(negotiate(Some("de-CH,de;q=0.9,en;q=0.8")), "de");
        assert_eq!(negotiate(Some("ja-JP,it;q=0.5,fr;q=0.7")), "fr");
        assert_eq!(negotiate(Some("es-ES,en;q=0.5")), "es");
        assert_eq!(negotiate(Some("pl,nl;q=0.9")), "pl");
        assert_eq!(negotiate(Some("ja")), "en");
        assert_eq!(negotiate(None), "en");
    }
}
