//! Resource quantities (`500m`, `1Gi`, `2e3`) as admission, the scheduler and the kubelet
//! compare and print them:
//! upstream's `resource.Quantity` parsing, comparison, addition and canonical text.
//!
//! Invariant: a quantity is held exactly, as a count of nano-units, with the format it was
//! written in (decimal SI, binary SI or decimal exponent), so `String()`-equal texts print.

use std::cmp::Ordering;
use std::fmt;

const NANO: i128 = 1_000_000_000;

/// How a quantity was written; its canonical text keeps the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

/// An exact resource quantity.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

/// A text that is not a quantity (upstream: "quantities must match the regular expression").
#[derive(Debug, thiserror::Error)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)]
pub struct QuantityError;

impl Quantity {
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: Format::DecimalSi,
    };

    pub fn zero() -> Quantity {
        Quantity::ZERO
    }

    /// A plain count (`pods=1`).
    pub fn count(n: i64) -> Quantity {
        Quantity {
            nanos: i128::from(n) * NANO,
            format: Format::DecimalSi,
        }
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The sum, keeping the first non-zero operand's format (upstream's `Add`).
    pub fn plus(mut self, other: Quantity) -> Quantity {
        self.add(&other);
        self
    }

    pub fn minus(self, other: Quantity) -> Quantity {
        self.plus(Quantity {
            nanos: -other.nanos,
            format: other.format,
        })
    }

    pub fn max(self, other: Quantity) -> Quantity {
        if other.nanos > self.nanos {
            other
        } else {
            self
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
        // Mantissa as an integer scaled by 10^-frac_len.
        let digits = format!("{int_part}{frac_part}");
        let mut mantissa: i128 = 0;
        for d in digits.bytes() {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(d - b'0')))
                .ok_or(QuantityError)?;
        }
        let frac_len = frac_part.len() as i32;
        let (format, multiplier, exp10): (Format, i128, i32) = match suffix {
            "" => (Format::DecimalSi, 1, 0),
            "n" => (Format::DecimalSi, 1, -9),
            "u" => (Format::DecimalSi, 1, -6),
            "m" => (Format::DecimalSi, 1, -3),
            "k" => (Format::DecimalSi, 1, 3),
            "M" => (Format::DecimalSi, 1, 6),
            "G" => (Format::DecimalSi, 1, 9),
            "T" => (Format::DecimalSi, 1, 12),
            "P" => (Format::DecimalSi, 1, 15),
            "E" => (Format::DecimalSi, 1, 18),
            "Ki" => (Format::BinarySi, 1 << 10, 0),
            "Mi" => (Format::BinarySi, 1 << 20, 0),
            "Gi" => (Format::BinarySi, 1 << 30, 0),
            "Ti" => (Format::BinarySi, 1 << 40, 0),
            "Pi" => (Format::BinarySi, 1 << 50, 0),
            "Ei" => (Format::BinarySi, 1 << 60, 0),
            e if e.starts_with(['e', 'E']) => {
                let exp: i32 = e[1..].parse().map_err(|_| QuantityError)?;
                (Format::DecimalExponent, 1, exp)
            }
            _ => return Err(QuantityError),
        };
        // nanos = mantissa * multiplier * 10^(exp10 + 9 - frac_len), rounded up.
        let mut v = mantissa.checked_mul(multiplier).ok_or(QuantityError)?;
        let shift = exp10 + 9 - frac_len;
        if shift >= 0 {
            v = 10i128
                .checked_pow(shift as u32)
                .and_then(|p| v.checked_mul(p))
                .ok_or(QuantityError)?;
        } else {
            let p = 10i128.checked_pow((-shift) as u32).ok_or(QuantityError)?;
            v = (v + p - 1) / p;
        }
        Ok(Quantity {
            nanos: if neg { -v } else { v },
            format,
        })
    }

    /// Upstream's `Value()`: whole units, rounded up.
    pub fn value(&self) -> i128 {
        div_ceil(self.nanos, NANO)
    }

    /// Upstream's `MilliValue()`: thousandths, rounded up.
    pub fn milli_value(&self) -> i128 {
        div_ceil(self.nanos, 1_000_000)
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Adds `other`, keeping this quantity's format (upstream's `Add`).
    pub fn add(&mut self, other: &Quantity) {
        if self.nanos == 0 && self.format == Format::DecimalSi {
            self.format = other.format;
        }
        self.nanos = self.nanos.saturating_add(other.nanos);
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b > 0 {
        q + 1
    } else {
        q
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Quantity {
    /// Upstream's canonical `String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        if self.format == Format::BinarySi && self.nanos % NANO == 0 {
            let v = self.nanos / NANO;
            if v.abs() >= 1024 {
                let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
                let mut k = 0;
                while k < 6 && v % (1i128 << (10 * (k + 1))) == 0 {
                    k += 1;
                }
                return write!(f, "{}{}", v >> (10 * k), suffixes[k]);
            }
        }
        // Largest power-of-1000 exponent that keeps the mantissa whole.
        let mut exp = 18i32;
        loop {
            let p = 10i128.pow((exp + 9) as u32);
            if self.nanos % p == 0 || exp == -9 {
                let m = self.nanos / p;
                return if self.format == Format::DecimalExponent {
                    if exp == 0 {
                        write!(f, "{m}")
                    } else {
                        write!(f, "{m}e{exp}")
                    }
                } else {
                    let suffix = match exp {
                        -9 => "n",
                        -6 => "u",
                        -3 => "m",
                        0 => "",
                        3 => "k",
                        6 => "M",
                        9 => "G",
                        12 => "T",
                        15 => "P",
                        _ => "E",
                    };
                    write!(f, "{m}{suffix}")
                };
            }
            exp -= 3;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Quantity;

    fn canon(s: &str) -> String {
        Quantity::parse(s).expect("quantity").to_string()
    }

    #[test]
    fn canonical_text_matches_upstream() {
        assert_eq!(canon("1"), "1");
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("1500m"), "1500m");
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("1000"), "1k");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("1.5Gi"), "1536Mi");
        assert_eq!(canon("512"), "512");
        assert_eq!(canon("1e3"), "1e3");
        assert_eq!(canon("128974848"), "128974848");
        assert_eq!(canon("0"), "0");
    }

    #[test]
    fn values_round_up_and_compare_exactly() {
        let a = Quantity::parse("1").unwrap();
        let b = Quantity::parse("1000m").unwrap();
        assert!(a == b);
        assert_eq!(Quantity::parse("1.5").unwrap().value(), 2);
        assert_eq!(Quantity::parse("0.1m").unwrap().milli_value(), 1);
        assert!(Quantity::parse("1Gi").unwrap() > Quantity::parse("1G").unwrap());
        assert!(Quantity::parse("abc").is_err());
        assert!(Quantity::parse("1Qi").is_err());
    }
}

#[cfg(test)]
mod quota_arithmetic_tests {
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
            // Upstream keeps the decimal-exponent format: `1e3` prints as written.
            ("1e3", "1e3"),
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
