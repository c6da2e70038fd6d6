//! How many SMS segments a text takes (3GPP TS 23.038 / 23.040).
//!
//! A text that uses only the GSM 7-bit default alphabet and its extension
//! table is sent as GSM-7: 160 septets in a single message, 153 per part of a
//! concatenated one (the user data header takes the rest). Extension
//! characters (`^ { } \ [ ~ ] | €` and form feed) take two septets, an escape
//! and the character, and an escape pair is never split across parts. Any
//! other character makes the whole text UCS-2 (in practice UTF-16): 70 code
//! units single, 67 per part; a character outside the BMP (an emoji) takes
//! two units and its surrogate pair is never split either.
//!
//! A leaf: intake (`notification`) counts segments to refuse a text that is
//! too long, and the SMS adapter counts them again before sending; neither
//! imports the other for it.

/// How an SMS text is encoded on the air.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmsEncoding {
    /// GSM 03.38 default alphabet, 7 bits a character.
    Gsm7,
    /// UTF-16, 16 bits a code unit.
    Ucs2,
}

impl SmsEncoding {
    /// Units in a single-part message.
    pub fn single_units(self) -> usize {
        match self {
            SmsEncoding::Gsm7 => 160,
            SmsEncoding::Ucs2 => 70,
        }
    }

    /// Units in each part of a concatenated message.
    pub fn part_units(self) -> usize {
        match self {
            SmsEncoding::Gsm7 => 153,
            SmsEncoding::Ucs2 => 67,
        }
    }

    /// The unit counted: `septets` or `UTF-16 units`.
    pub fn unit_name(self) -> &'static str {
        match self {
            SmsEncoding::Gsm7 => "GSM-7 septets",
            SmsEncoding::Ucs2 => "UTF-16 units",
        }
    }
}

/// The encoding, the number of segments and the number of units (septets or
/// UTF-16 code units) of `text`. An empty text is one (empty) segment.
pub fn sms_segments(text: &str) -> (SmsEncoding, u32, usize) {
    let encoding = if text.chars().all(|c| gsm7_septets(c).is_some()) {
        SmsEncoding::Gsm7
    } else {
        SmsEncoding::Ucs2
    };
    let width = |c: char| match encoding {
        SmsEncoding::Gsm7 => gsm7_septets(c).unwrap_or(2),
        SmsEncoding::Ucs2 => c.len_utf16(),
    };
    let units: usize = text.chars().map(width).sum();
    if units <= encoding.single_units() {
        return (encoding, 1, units);
    }
    // Fill parts greedily; a character that does not fit whole starts the next.
    let part = encoding.part_units();
    let (mut segments, mut used) = (1u32, 0usize);
    for w in text.chars().map(width) {
        if used + w > part {
            segments = segments.saturating_add(1);
            used = 0;
        }
        used += w;
    }
    (encoding, segments, units)
}

/// Septets `c` takes in GSM-7: 1 in the default alphabet, 2 in the extension
/// table, `None` when it has no GSM-7 form.
pub fn gsm7_septets(c: char) -> Option<usize> {
    match c {
        'A'..='Z' | 'a'..='z' | '0'..='9' => Some(1),
        ' ' | '!' | '"' | '#' | '%' | '&' | '\'' | '(' | ')' | '*' | '+' | ',' | '-' | '.'
        | '/' | ':' | ';' | '<' | '=' | '>' | '?' | '@' | '$' | '_' | '\n' | '\r' => Some(1),
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Δ' | 'Φ' | 'Γ'
        | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä'
        | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
        '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' | '\u{c}' => Some(2),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(c: char, count: usize) -> String {
        std::iter::repeat_n(c, count).collect()
    }

    #[test]
    fn the_default_alphabet_has_127_printable_members() {
        // 128 code points less the escape to the extension table.
        let basic = (0..=0x3000u32)
            .filter_map(char::from_u32)
            .filter(|&c| gsm7_septets(c) == Some(1))
            .count();
        assert_eq!(basic, 127);
        let extension = (0..=0x3000u32)
            .filter_map(char::from_u32)
            .filter(|&c| gsm7_septets(c) == Some(2))
            .count();
        assert_eq!(extension, 10);
    }

    #[test]
    fn empty_text_is_one_segment() {
        assert_eq!(sms_segments(""), (SmsEncoding::Gsm7, 1, 0));
    }

    #[test]
    fn latin_limits() {
        assert_eq!(sms_segments(&n('a', 160)), (SmsEncoding::Gsm7, 1, 160));
        assert_eq!(sms_segments(&n('a', 161)), (SmsEncoding::Gsm7, 2, 161));
        assert_eq!(sms_segments(&n('a', 306)), (SmsEncoding::Gsm7, 2, 306));
        assert_eq!(sms_segments(&n('a', 307)), (SmsEncoding::Gsm7, 3, 307));
        assert_eq!(
            sms_segments("Order 1001 is delayed by 2 days: £5 off, é ü Ø"),
            (SmsEncoding::Gsm7, 1, 46)
        );
    }

    #[test]
    fn cyrillic_limits() {
        assert_eq!(sms_segments(&n('ж', 70)), (SmsEncoding::Ucs2, 1, 70));
        assert_eq!(sms_segments(&n('ж', 71)), (SmsEncoding::Ucs2, 2, 71));
        assert_eq!(sms_segments(&n('ж', 134)), (SmsEncoding::Ucs2, 2, 134));
        assert_eq!(sms_segments(&n('ж', 135)), (SmsEncoding::Ucs2, 3, 135));
        // One non-GSM character turns the whole text into UCS-2.
        let mixed = format!("{}ж", n('a', 69));
        assert_eq!(sms_segments(&mixed), (SmsEncoding::Ucs2, 1, 70));
        // In UCS-2 the extension characters are ordinary.
        assert_eq!(sms_segments("Заказ {1001}"), (SmsEncoding::Ucs2, 1, 12));
    }

    #[test]
    fn extension_characters_count_double() {
        assert_eq!(sms_segments("€"), (SmsEncoding::Gsm7, 1, 2));
        assert_eq!(sms_segments(&n('{', 80)), (SmsEncoding::Gsm7, 1, 160));
        assert_eq!(sms_segments(&n('{', 81)), (SmsEncoding::Gsm7, 2, 162));
        assert_eq!(
            sms_segments(&format!("{}[", n('a', 159))),
            (SmsEncoding::Gsm7, 2, 161)
        );
    }

    #[test]
    fn an_escape_pair_is_not_split() {
        // 152 + 77×2 = 306 septets would fill two parts of 153 exactly, but
        // the first € would straddle the boundary, so it needs a third.
        let text = format!("{}{}", n('a', 152), n('€', 77));
        assert_eq!(sms_segments(&text), (SmsEncoding::Gsm7, 3, 306));
    }

    #[test]
    fn a_surrogate_pair_is_not_split() {
        assert_eq!(sms_segments("😀"), (SmsEncoding::Ucs2, 1, 2));
        assert_eq!(sms_segments(&n('😀', 35)), (SmsEncoding::Ucs2, 1, 70));
        // 66 + 34×2 = 134 units would fill two parts of 67, but pairs may not straddle.
        let text = format!("{}{}", n('ж', 66), n('😀', 34));
        assert_eq!(sms_segments(&text), (SmsEncoding::Ucs2, 3, 134));
    }
}
