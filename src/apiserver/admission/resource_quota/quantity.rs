//! Resource quantities (`500m`, `1Gi`, `2`) as quota arithmetic needs them: parsed exactly to
//! nano-units, added and compared, and printed in upstream's canonical form (what
//! `resource.Quantity.String()` prints), so messages and `status.used` read as upstream's.
//!
//! Invariant: a quantity keeps the format (binary or decimal SI) it was written in; a sum
//! keeps the first operand's format unless that one is zero, as upstream's `Add`.

use std::cmp::Ordering;

/// One quantity, in units of 10^-9 (values finer than that round up, as upstream).
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    binary: bool,
}

const NANO: i128 = 1_000_000_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)]
pub struct QuantityError;

impl Quantity {
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        binary: false,
    };

    /// A plain count (`pods=1`).
    pub fn count(n: i64) -> Quantity {
        Quantity {
            nanos: i128::from(n) * NANO,
            binary: false,
        }
    }

    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let s = s.trim();
        let (neg, body) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (num, suffix) = body.split_at(num_end);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(QuantityError);
        }
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        let (binary, mult_num, pow10): (bool, i128, i32) = match suffix {
            "" => (false, 1, 0),
            "n" => (false, 1, -9),
            "u" => (false, 1, -6),
            "m" => (false, 1, -3),
            "k" => (false, 1, 3),
            "M" => (false, 1, 6),
            "G" => (false, 1, 9),
            "T" => (false, 1, 12),
            "P" => (false, 1, 15),
            "E" => (false, 1, 18),
            "Ki" => (true, 1 << 10, 0),
            "Mi" => (true, 1 << 20, 0),
            "Gi" => (true, 1 << 30, 0),
            "Ti" => (true, 1 << 40, 0),
            "Pi" => (true, 1 << 50, 0),
            "Ei" => (true, 1 << 60, 0),
            e if e.starts_with(['e', 'E']) => {
                let exp: i32 = e[1..].parse().map_err(|_| QuantityError)?;
                (false, 1, exp)
            }
            _ => return Err(QuantityError),
        };
        // value = digits * 10^(pow10 - frac_len) * mult_num, in nanos: * 10^9.
        let digits: String = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| QuantityError)?
        };
        let frac_len = i32::try_from(frac_part.len()).map_err(|_| QuantityError)?;
        let exp = pow10 - frac_len + 9;
        let scaled = mantissa.checked_mul(mult_num).ok_or(QuantityError)?;
        let nanos = if exp >= 0 {
            let factor = 10i128
                .checked_pow(exp.unsigned_abs())
                .ok_or(QuantityError)?;
            scaled.checked_mul(factor).ok_or(QuantityError)?
        } else {
            let div = 10i128
                .checked_pow(exp.unsigned_abs())
                .ok_or(QuantityError)?;
            // Round up to the next nano, as upstream rounds sub-nano precision up.
            (scaled + div - 1) / div
        };
        Ok(Quantity {
            nanos: if neg { -nanos } else { nanos },
            binary,
        })
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    pub fn plus(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            binary: if self.nanos == 0 {
                other.binary
            } else {
                self.binary
            },
        }
    }

    pub fn minus(self, other: Quantity) -> Quantity {
        self.plus(Quantity {
            nanos: -other.nanos,
            binary: other.binary,
        })
    }

    pub fn max(self, other: Quantity) -> Quantity {
        if other.nanos > self.nanos {
            other
        } else {
            self
        }
    }
}

/// Equal values are equal whatever their format (`1Ki` == `1024`).
impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.unsigned_abs();
        // Binary SI only for whole values of at least 1024 (upstream prints smaller and
        // fractional binary quantities in decimal SI).
        if self.binary && abs.is_multiple_of(NANO as u128) && abs >= 1024 * NANO as u128 {
            let mut v = abs / NANO as u128;
            let mut i = 0;
            while i < 6 && v.is_multiple_of(1024) {
                v /= 1024;
                i += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i];
            return write!(f, "{sign}{v}{suffix}");
        }
        // Decimal SI: the largest exponent (a multiple of 3) that keeps the value whole.
        const SUFFIXES: [&str; 10] = ["n", "u", "m", "", "k", "M", "G", "T", "P", "E"];
        let mut v = abs;
        let mut i = 0;
        while i < SUFFIXES.len() - 1 && v.is_multiple_of(1000) {
            v /= 1000;
            i += 1;
        }
        write!(f, "{sign}{v}{}", SUFFIXES[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn parses_and_prints_canonically_as_upstream() {
        for (input, canonical) in [
            ("0", "0"),
            ("1", "1"),
            ("1000", "1k"),
            ("500m", "500m"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("2000m", "2"),
            ("1Gi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("512", "512"),
            ("100M", "100M"),
            ("1e3", "1k"),
            ("-1", "-1"),
            ("0.1m", "100u"),
        ] {
            assert_eq!(q(input).to_string(), canonical, "{input}");
        }
        for bad in ["", "abc", "1x", "1..2", "Gi"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sums_keep_the_first_non_zero_format() {
        assert_eq!(q("1Gi").plus(q("1Gi")).to_string(), "2Gi");
        assert_eq!(Quantity::ZERO.plus(q("1Gi")).to_string(), "1Gi");
        assert_eq!(q("250m").plus(q("750m")).to_string(), "1");
        assert_eq!(q("2").minus(q("1")).to_string(), "1");
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1k"), q("1000"));
    }
}
