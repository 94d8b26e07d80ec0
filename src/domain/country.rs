//! ISO 3166-1 alpha-2 country codes.

use super::Invalid;

/// Every officially assigned ISO 3166-1 alpha-2 code, in order.
const CODES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN \
BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE \
EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU \
ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM \
PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS \
ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS \
YE YT ZA ZM ZW";

/// Every assigned code, in order.
pub fn all_codes() -> Vec<&'static str> {
    CODES.split(' ').collect()
}

/// A country, as its upper-case ISO 3166-1 alpha-2 code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Country(String);

impl Country {
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let code = input.trim().to_ascii_uppercase();
        if code.len() == 2 && CODES.split(' ').any(|known| known == code) {
            Ok(Self(code))
        } else {
            Err(Invalid::new("must be an ISO 3166-1 alpha-2 country code, such as FR or DE"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_known_codes_in_any_case() {
        assert_eq!(Country::parse("fr").unwrap().as_str(), "FR");
        assert_eq!(Country::parse("CH").unwrap().as_str(), "CH");
    }

    #[test]
    fn rejects_unknown_codes() {
        for bad in ["", "XX", "FRA", "F", "UK"] {
            assert!(Country::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
